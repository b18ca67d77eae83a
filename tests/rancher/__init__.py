"""Rancher on the cluster (rancher.mode helm) under Pulumi's mocks, by concern: the graph and
its releases (test_releases.py), the chart values (test_values.py), the rancher2 bootstrap and
the admin password (test_bootstrap.py), the config it refuses (test_config.py). runs.py runs
the example stacks and small custom configs."""
