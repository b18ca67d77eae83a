"""Many instances in one program (issue 27 item 3): two clusters whose nodes have the same
names and a Rancher deployment on each, under mocks. Each component's children are named
after it, each Rancher goes through its own cluster's provider, and each cluster keeps its
own record (components/cluster_record.py): its quorum guard and kubeconfig renewal compare
with its own previous run, not with the stack's fixed outputs. A stack made with the
unprefixed names of earlier releases finds every resource again through the aliases."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from components import ConfigError, K3sCluster, K3sClusterArgs, RancherDeployment, RancherDeploymentArgs
from components.config import parse_settings
from tests import harness
from tests.harness import TEST_SSH_KEY, TEST_TOKEN, Registration, Run, run_function

PROJECT = "fleet"
# Alike node names in both clusters: three etcd servers and an agent each.
NODES = {
    "servers": [{"name": f"cp{i}", "address": f"10.0.{{net}}.1{i}"} for i in (1, 2, 3)],
    "agents": [{"name": "w1", "address": "10.0.{net}.21"}],
}


def cluster_config(net: int, servers: int = 3) -> dict[str, Any]:
    nodes = json.loads(json.dumps(NODES).replace("{net}", str(net)))
    return {
        "topology": "ssh",
        "k3s": {"version": "v1.33.5+k3s1", "datastore": "etcd", "initServer": "cp1"},
        "servers": nodes["servers"][:servers],
        "agents": nodes["agents"],
        "rancher": {"hostname": f"rancher.{net}.example.com", "tls": "rancher"},
    }


def fleet(configs: dict[str, dict[str, Any]], name_prefix: str | None = None) -> Callable[[], None]:
    """A program of a library user: one cluster and one Rancher per entry, named after it."""

    def program() -> None:
        for name, raw in configs.items():
            settings = parse_settings(raw, secrets_set={"sshPrivateKey"}, stack=name)
            cluster = K3sCluster(
                name,
                K3sClusterArgs(
                    servers=settings.servers,
                    agents=settings.agents,
                    k3s=settings.k3s,
                    ssh=settings.ssh,
                    token=TEST_TOKEN,
                    private_key=TEST_SSH_KEY,
                    name_prefix=name_prefix,
                ),
            )
            RancherDeployment(
                name,
                RancherDeploymentArgs(
                    settings=settings.rancher,
                    provider=cluster.provider,
                    deleted_with=cluster.ready,
                    name_prefix=name_prefix,
                ),
            )

    return program


TWO = {"east": cluster_config(1), "west": cluster_config(2)}


def run(
    configs: dict[str, dict[str, Any]] = TWO,
    previous: dict[str, Any] | None = None,
    name_prefix: str | None = None,
) -> Run:
    return run_function(fleet(configs, name_prefix), project=PROJECT, stack="dev", previous_outputs=previous)


@pytest.fixture(scope="module")
def two() -> Run:
    return run()


def component(r: Run, type_: str, name: str) -> str:
    """The URN of the component `name` of type `type_` (a cluster and its Rancher share a name)."""
    (urn,) = [x.urn for x in r.of_type(f"k3s-rancher:index:{type_}") if x.name == name]
    return urn


def test_two_clusters_with_alike_node_names_and_two_ranchers_have_no_urn_in_common(two: Run) -> None:
    urns = [r.urn for r in two.registrations]
    assert len(urns) == len(set(urns)), sorted(u for u in urns if urns.count(u) > 1)
    for cluster in ("east", "west"):
        cluster_urn = component(two, "K3sCluster", cluster)
        for node in ("cp1", "cp2", "cp3", "w1"):
            assert two.by_name(f"{cluster}-{node}").parent == cluster_urn
            assert two.by_name(f"{cluster}-{node}-install").parent == two.urn(f"{cluster}-{node}")
        # Each node joins its own cluster: its install waits for its own init server only.
        other = "west" if cluster == "east" else "east"
        assert two.reaches(f"{cluster}-w1-install", f"{cluster}-cp1-ready")
        assert not two.reaches(f"{cluster}-w1-install", f"{other}-cp1-ready")


def test_each_rancher_is_on_its_own_clusters_provider(two: Run) -> None:
    for cluster, other in (("east", "west"), ("west", "east")):
        rancher = component(two, "RancherDeployment", cluster)
        children = [r for r in two.registrations if r.parent == rancher and r.type.startswith("kubernetes:")]
        assert {r.name for r in children} >= {f"{cluster}-rancher-release", f"{cluster}-cert-manager-release"}
        for child in children:
            assert child.options["provider"].startswith(two.urn(f"{cluster}-k8s") + "::"), child.name
            assert child.options["deletedWith"] == two.urn(f"{cluster}-cluster-ready"), child.name
        release = two.by_name(f"{cluster}-rancher-release").plain()
        assert release["values"]["hostname"] == f"rancher.{1 if cluster == 'east' else 2}.example.com"
        assert not two.reaches(f"{cluster}-rancher-release", f"{other}-cluster-ready")


def test_each_cluster_keeps_its_own_record(two: Run) -> None:
    for cluster in ("east", "west"):
        record = two.outputs[f"k3s-rancher:{cluster}"]
        net = 1 if cluster == "east" else 2
        assert record["servers"] == ["cp1", "cp2", "cp3"]
        assert record["nodes"] == record_nodes(net)
        assert set(record) == {"servers", "nodes", "kubeconfigExpiry", "kubeconfigRenewal", "retiredSteps"}
        assert record["retiredSteps"] == ["-cleanup"]
    assert "nodes" not in two.outputs and "kubeconfigExpiry" not in two.outputs  # the stack program's names


def test_each_cluster_retires_its_cleanup_steps_by_its_own_record(two: Run) -> None:
    """A new cluster has no `-cleanup` steps. One whose record predates their retirement (no
    retiredSteps) registers them, retained, until its own record says a completed run did;
    the other cluster's record does not count."""
    assert not [r.name for r in two.registrations if r.name.endswith("-cleanup")]
    older = {
        key: {k: v for k, v in value.items() if k != "retiredSteps"}
        for key, value in two.outputs.items()
        if key.startswith("k3s-rancher:")
    }
    kept = run(TWO, older)
    cleanups = [r for r in kept.registrations if r.name.endswith("-cleanup")]
    assert {r.name for r in cleanups} >= {"east-cp1-cleanup", "east-w1-cleanup", "west-cp1-cleanup", "west-w1-cleanup"}
    assert all(r.options["retainOnDelete"] for r in cleanups)
    mixed = run(TWO, {**older, "k3s-rancher:east": kept.outputs["k3s-rancher:east"]})
    left = {r.name for r in mixed.registrations if r.name.endswith("-cleanup")}
    assert left and all(name.startswith("west-") for name in left)


def record(servers: list[str], expiry_in_days: int = 200, renewal: str = "") -> dict[str, Any]:
    expiry = (datetime.now(UTC).date() + timedelta(days=expiry_in_days)).isoformat() + "T00:00:00Z"
    return {"servers": servers, "kubeconfigExpiry": expiry, "kubeconfigRenewal": renewal}


def record_nodes(net: int, agent_role: str = "agent") -> list[dict[str, str]]:
    """A record's `nodes` for cluster_config(net), its agent w1 with `agent_role`."""
    nodes = json.loads(json.dumps(NODES).replace("{net}", str(net)))
    servers = [{**n, "role": "server"} for n in nodes["servers"]]
    return servers + [{**n, "role": agent_role} for n in nodes["agents"]]


def test_the_role_guard_of_each_cluster_compares_with_its_own_nodes() -> None:
    """A node moved between a cluster's agents and servers is refused by key, naming the
    cluster, before anything of it is registered; another cluster's node of the same name, or
    the stack program's `nodes` output, is not that cluster's previous run."""
    moved = cluster_config(1)
    moved["servers"].append(moved["agents"].pop())  # east's w1 becomes a server
    previous = {"k3s-rancher:east": {**record(["cp1", "cp2", "cp3"]), "nodes": record_nodes(1)}}
    with pytest.raises(ConfigError) as caught:
        run({"east": moved, "west": cluster_config(2)}, previous)
    assert caught.value.keys == ["k3s-rancher:servers"]
    assert "cluster east: w1 is listed as a server, but 10.0.1.21 was an agent in the last update" in str(caught.value)
    assert harness.registered_names(lambda: run({"east": moved}, previous), ConfigError) == []
    # West's w1 was a server in west's record: west is refused, east (its w1 an agent, as
    # before) is not.
    swapped = {"k3s-rancher:east": {"nodes": record_nodes(1)}, "k3s-rancher:west": {"nodes": record_nodes(2, "server")}}
    with pytest.raises(ConfigError) as caught:
        run(TWO, swapped)
    assert "cluster west: w1 is listed as an agent, but 10.0.2.21 was a server" in str(caught.value)
    assert run({"east": cluster_config(1)}, swapped).outputs["k3s-rancher:east"]["nodes"] == record_nodes(1)
    # The stack program's `nodes` output is not a library cluster's record.
    stack_nodes = [{"name": "w1", "role": "server", "address": "10.0.1.21"}]
    assert run(TWO, {"nodes": stack_nodes}).outputs


def test_the_quorum_guard_of_each_cluster_compares_with_its_own_servers() -> None:
    three = ["cp1", "cp2", "cp3"]
    shrunk = {"east": cluster_config(1), "west": cluster_config(2, servers=1)}
    previous = {"k3s-rancher:east": record(three), "k3s-rancher:west": record(three)}
    with pytest.raises(ConfigError) as caught:
        run(shrunk, previous)
    assert caught.value.keys == ["k3s-rancher:servers"]
    assert "cluster west: removing 2 of 3 etcd servers in one update (cp3, cp2)" in str(caught.value)
    # Nothing of the refused cluster is registered (east, built first, is the program's own order).
    registered = harness.registered_names(lambda: run(shrunk, previous), ConfigError)
    assert registered and not [n for n in registered if n.startswith("west")]
    # East's record says three servers, west's one: the same shrink of east's is refused,
    # west's two new servers are not a removal.
    grown = {"east": cluster_config(1, servers=1), "west": cluster_config(2)}
    with pytest.raises(ConfigError, match="cluster east: removing 2 of 3"):
        run(grown, {"k3s-rancher:east": record(three), "k3s-rancher:west": record(["cp1"])})
    # The stack program's `nodes` output is not a library cluster's record.
    stack_nodes = [{"name": n, "role": "server", "address": "x"} for n in three]
    assert run(shrunk, {"nodes": stack_nodes, "k3s-rancher:west": record(["cp1"])}).outputs


def kubeconfig_read(r: Run, cluster: str) -> str:
    text: str = r.by_name(f"{cluster}-kubeconfig").plain()["create"]
    return text


def test_the_kubeconfig_renewal_of_each_cluster_follows_its_own_expiry(two: Run) -> None:
    three = ["cp1", "cp2", "cp3"]
    today = datetime.now(UTC).date().isoformat()
    near_east = run(previous={"k3s-rancher:east": record(three, 20), "k3s-rancher:west": record(three, 200)})
    assert kubeconfig_read(near_east, "east") != kubeconfig_read(two, "east")
    assert kubeconfig_read(near_east, "west") == kubeconfig_read(two, "west")
    assert near_east.outputs["k3s-rancher:east"]["kubeconfigRenewal"] == today
    assert near_east.outputs["k3s-rancher:west"]["kubeconfigRenewal"] == ""
    # The stack program's kubeconfigExpiry output is not a library cluster's record.
    stack_near = {"kubeconfigExpiry": record([], 20)["kubeconfigExpiry"], "kubeconfigRenewal": ""}
    assert kubeconfig_read(run(previous=stack_near), "east") == kubeconfig_read(two, "east")


# -- a library user's stack made before 0.3.0 ----------------------------------------------


def _alias_urn(r: Registration, name: str) -> str:
    """The URN an alias of `name` alone stands for: the same type chain, the old name (a
    child's URN does not hold its parent's name, so a renamed parent changes nothing here)."""
    return r.urn.rsplit("::", 1)[0] + "::" + name if "::" not in name else name


def test_a_stack_of_unprefixed_names_keeps_every_resource_through_the_aliases() -> None:
    """The same program rendered with the names of earlier releases (name_prefix "", one
    cluster: alike names would have collided) and with the prefixed ones: every old URN is
    found again, by exactly one new resource, with the same inputs (ids aside: a mock's id is
    its name, an aliased resource keeps its real one)."""
    one = {"east": cluster_config(1)}
    old, new = run(one, name_prefix=""), run(one)
    assert not any(r.aliases for r in old.registrations), "no prefix: no alias"
    found: dict[str, Registration] = {}
    for r in new.registrations:
        for urn in {r.urn, *(_alias_urn(r, a) for a in r.aliases)}:
            assert urn not in found, f"{urn}: claimed by {found[urn].name} and {r.name}"
            found[urn] = r
    renamed = {r.name: found[r.urn].name for r in old.registrations}
    missing = [r.urn for r in old.registrations if r.urn not in found]
    assert not missing, missing

    def normalised(r: Registration) -> str:
        text = json.dumps(r.inputs, sort_keys=True)
        for old_name, new_name in sorted(renamed.items(), key=lambda kv: -len(kv[1])):
            text = text.replace(f'"{new_name}-id"', f'"{old_name}-id"')
        return text

    for r in old.registrations:
        again = found[r.urn]
        assert normalised(again) == json.dumps(r.inputs, sort_keys=True), f"{r.urn}: inputs differ"
        assert again.type == r.type and again.custom == r.custom
    assert len(new.registrations) == len(old.registrations), "the same resources, none new"
    moved = {now for was, now in renamed.items() if was != now}
    assert {r.name for r in new.registrations if r.aliases} == moved
    assert {"east-cp1-install", "east-rancher-release", "east-rancher-bootstrap-password"} <= moved


def test_the_stack_programs_own_components_keep_their_names_without_aliases() -> None:
    """The stack program gives the empty prefix: its URNs are those of earlier releases
    (tests/graph_snapshots holds them), and no alias is sent."""
    config = harness.prod_config()
    config["rancher"] = {"enabled": True, "hostname": "rancher.prod.example.com", "bootstrap": True}
    r = harness.run_program(config, {"sshPrivateKey": TEST_SSH_KEY, "token": TEST_TOKEN}, stack="prod")
    assert not [x.name for x in r.registrations if x.aliases]
    assert {"prod-cp1-install", "rancher-release", "rancher-admin", "prod-w1-membership"} <= r.names()
