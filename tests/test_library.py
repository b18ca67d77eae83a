"""The components work from another Pulumi program (examples/library): two clusters, Rancher
on one, resources of the program's own on each through the cluster's provider.

The example imports the installed package, `k3s_rancher`: here that name is this checkout's
components/ (the folder the wheel installs as k3s_rancher), so the graph is checked with the
suite's harness; tests/test_package.py runs the same example from a wheel installed in a
fresh virtualenv, outside the repository."""

from __future__ import annotations

import runpy
import sys
from typing import Any
from unittest import mock

import pytest

import components
from components import ConfigError, KubernetesCluster, parse_settings
from tests.harness import ROOT, TEST_SSH_KEY, Run, run_function
from tests.test_identity import config_yaml

EXAMPLE = ROOT / "examples" / "library" / "__main__.py"


@pytest.fixture(scope="module")
def example() -> tuple[Run, dict[str, Any]]:
    names: dict[str, Any] = {}
    with mock.patch.dict(sys.modules, {"k3s_rancher": components}):
        run = run_function(
            lambda: names.update(runpy.run_path(str(EXAMPLE))),
            {"edge-clusters:sshPrivateKey": TEST_SSH_KEY},
            ["edge-clusters:sshPrivateKey"],
            project="edge-clusters",
            stack="dev",
        )
    return run, names


def test_each_cluster_gets_its_own_nodes_and_graph(example: tuple[Run, dict[str, Any]]) -> None:
    run, _ = example
    assert {r.name for r in run.of_type("k3s-rancher:index:K3sCluster")} == {"hub", "edge"}
    clusters = {r.name: r.urn for r in run.of_type("k3s-rancher:index:K3sCluster")}
    for node, cluster in (("hub-cp1", "hub"), ("hub-w1", "hub"), ("edge-cp1", "edge")):
        assert run.by_name(node).parent == clusters[cluster]
        assert run.reaches(f"{node}-membership", f"{node}-install")
    # The hub's agent joins the hub's server, not the edge's; each cluster its own datastore.
    assert run.reaches("hub-w1-install", "hub-cp1-ready")
    assert not run.reaches("hub-w1-install", "edge-cp1-ready")
    assert "cluster-init" in config_yaml(run.by_name("hub-cp1-install").plain()["create"])
    assert "cluster-init" not in config_yaml(run.by_name("edge-cp1-install").plain()["create"])
    # Each cluster's token is its own generated secret.
    assert run.property_depends_on("hub-cp1-install", "stdin", "hub-token")
    assert run.property_depends_on("edge-cp1-install", "stdin", "edge-token")


def test_rancher_and_the_programs_own_resources_use_the_clusters_provider(example: tuple[Run, dict[str, Any]]) -> None:
    run, _ = example
    assert len(run.of_type("k3s-rancher:index:RancherDeployment")) == 1
    assert run.by_name("hub-rancher-release").options["provider"].startswith(run.urn("hub-k8s"))
    for name in ("hub", "edge"):
        assert run.by_name(f"{name}-apps").options["provider"].startswith(run.urn(f"{name}-k8s"))
    assert {"hubRancherUrl", "hubKubeconfig", "edgeKubeconfig"} <= set(run.outputs)


def test_a_cluster_is_a_kubernetes_cluster_and_bad_settings_name_the_key(example: tuple[Run, dict[str, Any]]) -> None:
    _, names = example
    assert isinstance(names["cluster"], KubernetesCluster)
    with pytest.raises(ConfigError) as error:
        parse_settings({"topology": "ssh", "servers": [{"name": "Bad_Name", "address": "10.0.0.1"}]}, {"sshPrivateKey"})
    assert "k3s-rancher:servers[0].name" in error.value.keys
