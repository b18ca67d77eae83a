"""The docker topology (the local stack) under Pulumi's mocks, by concern: graph
(test_graph.py), container specs and Rancher's container (test_containers.py), the config it
refuses (test_config.py), the engine check (test_engine_check.py). local.py runs the stack."""
