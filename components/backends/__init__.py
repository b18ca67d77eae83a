"""How each topology reaches its nodes: ssh (hosts over SSH) and docker (containers on one
engine). components/cluster.py's docstring says what a backend provides."""
