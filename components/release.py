"""This release of k3s-rancher: its version, and the one number that re-runs every install.

VERSION is the package's version (pyproject.toml says the same; a test keeps them equal).
SCRIPTS_GENERATION is part of every install command's desired state: bump it, and say so in
CHANGELOG.md, only when a release must re-run the installs on existing nodes (a fix that
changes what is on the hosts). Nothing else in the scripts' code reaches a node command's
text: the code travels in the scripts bundle (components/bundle.py).
"""

VERSION = "0.3.0"
SCRIPTS_GENERATION = 1
