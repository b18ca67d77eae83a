"""agentPools (issue 27, item 4): groups of agents with their own labels, taints, agent
flags, registries and upgrade batch size, beside today's `agents` (components/agent_pool.py
says how the settings combine and how batches order)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from components import AgentPool, AgentPoolArgs, __all__
from components.settings import ConfigError
from tests.harness import TEST_SSH_KEY, Run, command_variables, node_script, prod_config, run_program

SECRETS = {"sshPrivateKey": TEST_SSH_KEY, "token": "a-fixed-token-for-pools"}
POOL_TYPE = "k3s-rancher:index:AgentPool"


def run(config: dict[str, Any], after: Run | None = None) -> Run:
    """`config`'s program; `after`: the run before it (its outputs are the record)."""
    return run_program(config, SECRETS, stack="prod", previous_outputs=after.outputs if after else None)


def with_pools() -> dict[str, Any]:
    """prod's five agents, a pool `gpu` of two (batches of one) and a pool `edge` of three
    (batches of two)."""
    config = prod_config()
    config["k3s"]["agentArgs"] = ["--kubelet-arg=image-gc-high-threshold=85"]
    config["agentPools"] = [
        {
            "name": "gpu",
            "nodes": [
                {"name": "prod-g1", "address": "10.20.0.41", "labels": {"card": "a100"}},
                {"name": "prod-g2", "address": "10.20.0.42", "taints": ["gpu=shared:NoSchedule"]},
            ],
            "labels": {"pool": "gpu", "card": "any"},
            "taints": ["gpu=only:NoSchedule"],
            "agentArgs": ["--kubelet-arg=max-pods=50"],
            "agentConfig": {"kube-proxy-arg": ["proxy-mode=ipvs"]},
            "registries": {"mirrors": {"docker.io": {"endpoint": ["https://mirror.gpu.example.com"]}}},
            "upgrade": {"agentsAtOnce": 1},
        },
        {
            "name": "edge",
            "nodes": [{"name": f"prod-e{i}", "address": f"10.20.0.5{i}"} for i in (1, 2, 3)],
            "upgrade": {"agentsAtOnce": 2, "drain": False},
        },
    ]
    return config


@pytest.fixture(scope="module")
def created() -> Run:
    """The first run: every agent new."""
    return run(with_pools())


@pytest.fixture(scope="module")
def pools(created: Run) -> Run:
    """The run after it: every agent ran before (an in-place change goes in batches)."""
    return run(with_pools(), after=created)


def test_each_pool_is_a_component_holding_its_agents(pools: Run) -> None:
    components = {r.name: r for r in pools.of_type(POOL_TYPE)}
    assert set(components) == {"gpu", "edge"}
    cluster = pools.by_name("prod").urn
    assert all(c.parent == cluster for c in components.values())
    for pool, agents in (("gpu", ("prod-g1", "prod-g2")), ("edge", ("prod-e1", "prod-e2", "prod-e3"))):
        for agent in agents:
            node = pools.by_name(agent)
            assert node.type == "k3s-rancher:index:K3sAgent" and node.parent == components[pool].urn
            for step in ("scripts", "forget", "install", "membership"):
                assert pools.by_name(f"{agent}-{step}").parent == node.urn, f"{agent}-{step}"
    # `agents` stay where they were: under the cluster, with the same names (same URNs).
    assert pools.by_name("prod-w1").parent == cluster


def test_servers_before_agents_and_pools_after_one_another(created: Run, pools: Run) -> None:
    r = pools
    for agent in ("prod-w1", "prod-g1", "prod-e3"):
        assert r.reaches(f"{agent}-install", "prod-cp3-ready")
    # agents in batches of one (10% of five), then gpu in batches of one, then edge in twos.
    assert r.reaches("prod-g1-install", "prod-w5-install")
    assert r.depends_on("prod-g2-install", "prod-g1-install")
    assert r.reaches("prod-e1-install", "prod-g2-install") and r.reaches("prod-e2-install", "prod-g2-install")
    assert not r.reaches("prod-e2-install", "prod-e1-install")  # one batch
    # edge's second batch waits for its first through one no-op step.
    assert r.depends_on("prod-e3-install", "prod-edge-upgrade-batch-1")
    assert r.by_name("prod-edge-upgrade-batch-1").parent == r.by_name("edge").urn
    assert r.reaches("prod-e3-install", "prod-e2-install")
    # Creation stays flat: on the first run no install waits for another agent's.
    assert not created.reaches("prod-e1-install", "prod-g1-install")
    assert not created.reaches("prod-g1-install", "prod-w1-install")
    assert not created.reaches("prod-e3-install", "prod-e1-install")
    for agent in ("prod-w1", "prod-g2", "prod-e3"):
        assert r.depends_on("prod-cluster-ready", f"{agent}-install")


def variable_of(r: Run, name: str, prop: str, key: str) -> str:
    return command_variables(r.by_name(name).plain()[prop])[key]


def test_a_pools_settings_reach_its_agents_only(pools: Run) -> None:
    def config_yaml(agent: str) -> str:
        return command_variables(pools.by_name(f"{agent}-install").plain()["create"])["CONFIG_YAML"]

    def registries(agent: str) -> str:
        return command_variables(pools.by_name(f"{agent}-install").plain()["create"])["REGISTRIES_YAML"]

    for agent in ("prod-g1", "prod-g2"):
        text = config_yaml(agent)
        assert "max-pods=50" in text and "proxy-mode=ipvs" in text and "image-gc-high-threshold" in text
        assert "mirror.gpu.example.com" in registries(agent)
    for agent in ("prod-w1", "prod-e1"):
        text = config_yaml(agent)
        assert "max-pods" not in text and "proxy-mode" not in text and "image-gc-high-threshold" in text
        assert registries(agent) == ""
    # Labels and taints: the pool's, an agent's own winning (registration and membership).
    g1 = pools.by_name("prod-g1-membership").plain()["create"]
    g2 = pools.by_name("prod-g2-membership").plain()["create"]
    assert "card=a100" in g1 and "pool=gpu" in g1 and "gpu=only:NoSchedule" in g1
    assert "card=any" in g2 and "gpu=shared:NoSchedule" in g2 and "gpu=only:NoSchedule" not in g2
    assert "pool=gpu" in pools.by_name("prod-g1-registration").plain()["create"]
    assert "pool=gpu" not in pools.by_name("prod-e1-membership").plain()["create"]
    assert "prod-e1-registration" not in pools.names()
    # edge's drain: false cordons its agents only; the others drain.
    assert variable_of(pools, "prod-e1-install", "update", "DRAIN") == "0"
    assert variable_of(pools, "prod-g1-install", "update", "DRAIN") == "1"


def test_pools_change_nothing_of_the_agents() -> None:
    before = {r.urn: r.inputs for r in run(prod_config()).registrations}
    config = with_pools()
    config["k3s"].pop("agentArgs")
    after = {r.urn: r.inputs for r in run(config).registrations}
    changed = {urn for urn in before if before[urn] != after.get(urn)}
    assert all(urn.endswith("::prod-cluster-ready") for urn in changed), changed


def test_adding_a_pool_installs_its_agents_and_removing_it_uninstalls_them(pools: Run) -> None:
    config = with_pools()
    without = copy.deepcopy(config)
    without["agentPools"] = config["agentPools"][:1]
    smaller = {r.name: r.plain() for r in run(without).registrations}
    full = {r.name: r.plain() for r in pools.registrations}
    gone = set(full) - set(smaller)
    edge_steps = ("scripts", "forget", "install", "membership")
    agents = ("prod-e1", "prod-e2", "prod-e3")
    assert gone == {"edge", "prod-edge-upgrade-batch-1", *agents, *(f"{a}-{s}" for a in agents for s in edge_steps)}
    # Removing the pool: each agent's saved deletes drain it, uninstall K3s, delete its Node,
    # as for an agent removed from `agents`; adding it back creates them (install on create).
    for agent in agents:
        assert node_script(full[f"{agent}-membership"]["delete"]).name == "drain_delete"
        assert "k3s-agent-uninstall.sh" in node_script(full[f"{agent}-install"]["delete"]).effective
        assert "kc delete node" in node_script(full[f"{agent}-forget"]["delete"]).effective
        assert node_script(full[f"{agent}-install"]["create"]).name == "install_node"
    # What stays keeps its inputs (the cluster check aside: it lists the nodes).
    assert all(full[name] == smaller[name] for name in smaller if name != "prod-cluster-ready")


def bad(mutate: Any) -> list[str]:
    config = with_pools()
    mutate(config)
    with pytest.raises(ConfigError) as error:
        run(config)
    return error.value.keys


def test_bad_pools_are_refused_by_key() -> None:
    def dup_agent(c: dict[str, Any]) -> None:
        c["agentPools"][1]["nodes"][0]["name"] = "prod-w2"

    assert "k3s-rancher:agentPools[1].nodes[0].name" in bad(dup_agent)

    def dup_across(c: dict[str, Any]) -> None:
        c["agentPools"][1]["nodes"][0]["name"] = "prod-g1"

    assert "k3s-rancher:agentPools[1].nodes[0].name" in bad(dup_across)

    def unknown(c: dict[str, Any]) -> None:
        c["agentPools"][0]["size"] = 3

    assert any(key.startswith("k3s-rancher:agentPools[0]") for key in bad(unknown))

    def batch(c: dict[str, Any]) -> None:
        c["agentPools"][1]["upgrade"]["agentsAtOnce"] = 0

    assert bad(batch) == ["k3s-rancher:agentPools[1].upgrade.agentsAtOnce"]

    def flag(c: dict[str, Any]) -> None:
        c["agentPools"][0]["agentArgs"] = ["--cluster-init"]

    assert bad(flag) == ["k3s-rancher:agentPools[0].agentArgs[0]"]

    def same_pool(c: dict[str, Any]) -> None:
        c["agentPools"][1]["name"] = "gpu"

    assert bad(same_pool) == ["k3s-rancher:agentPools[1].name"]

    def taint(c: dict[str, Any]) -> None:
        c["agentPools"][0]["taints"] = ["nope"]

    assert bad(taint) == ["k3s-rancher:agentPools[0].taints[0]"]


def test_agent_pool_is_exported() -> None:
    assert {"AgentPool", "AgentPoolArgs"} <= set(__all__)
    assert AgentPool.__name__ == "AgentPool" and AgentPoolArgs.__name__ == "AgentPoolArgs"


def test_moving_an_agent_into_a_pool_keeps_its_resources(pools: Run) -> None:
    """Each pool agent carries an alias to the place an agent of `agents` has (its URN
    there), so moving one from `agents` into a pool is no replacement."""
    plain = run(prod_config())
    old = plain.by_name("prod-w1").urn
    config = prod_config()
    moved = config["agents"].pop(0)
    config["agentPools"] = [{"name": "gpu", "nodes": [moved]}]
    after = run(config)
    assert after.by_name("prod-w1").parent == after.by_name("gpu").urn
    assert any(old == alias or old.endswith(str(alias)) for alias in after.by_name("prod-w1").aliases), after.by_name(
        "prod-w1"
    ).aliases


def test_docker_and_kubeconfig_refuse_pools() -> None:
    from components import parse_settings

    pool = [{"name": "gpu", "nodes": [{"name": "g1", "address": "10.0.0.41"}]}]
    with pytest.raises(ConfigError) as docker:
        parse_settings({"topology": "docker", "agentPools": pool})
    assert "k3s-rancher:agentPools" in docker.value.keys
    with pytest.raises(ConfigError) as kubeconfig:
        parse_settings({"topology": "kubeconfig", "agentPools": pool}, {"kubeconfig"})
    assert "k3s-rancher:agentPools" in kubeconfig.value.keys
