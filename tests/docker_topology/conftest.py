"""The local stack as it is, and a three-server one, run once for the whole package."""

from __future__ import annotations

import pytest

from tests.docker_topology.local import local_run
from tests.harness import TEST_TOKEN, Run


@pytest.fixture(scope="package")
def local() -> Run:
    """The stack file as it is: 1 server, 2 agents, Rancher by Helm, generated token."""
    return local_run()


@pytest.fixture(scope="package")
def ha() -> Run:
    """Three etcd servers and three agents, with a configured token."""
    return local_run({"token": TEST_TOKEN}, docker={"servers": 3, "agents": 3}, rancher={"enabled": False})
