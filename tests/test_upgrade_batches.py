"""k3s.upgrade (issue 14, item 1): an in-place change of agents (a new k3s.version, new
settings) rolls out in batches, each agent cordoned and drained first and uncordoned once
Ready at the new version, all within its install's update, on the agent, with the node's own
credentials (issue 27: no step of its own). The batches hold back only agents that ran
before (the previous run's record): the first creation, and each new agent, stay flat."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from benchmarks.graph_scale import longest_chain, make_config
from components.settings import ConfigError
from policy.shell_inputs import command_inputs
from tests.harness import (
    TEST_SSH_KEY,
    TEST_TOKEN,
    Run,
    command_variables,
    load_stack_config,
    node_script,
    prod_config,
    run_program,
)

SECRETS = {"sshPrivateKey": TEST_SSH_KEY, "token": TEST_TOKEN}


def variable(command: str, name: str) -> str:
    """The value a rendered script gives `name` (inside sh -c '...', a quoted value reads
    '"'"'v'"'"')."""
    match = re.search("\n" + name + "=([^\n]*)\n", command)
    assert match, f"{name} is not set in the command"
    return match.group(1).replace("'\"'\"'", "")


def run(config: dict[str, Any], **kwargs: Any) -> Run:
    return run_program(config, SECRETS, stack="prod", **kwargs)


inputs = command_variables


def four_agents(**upgrade: Any) -> dict[str, Any]:
    config = prod_config()
    config["agents"] = config["agents"][:4]
    if upgrade:
        config["k3s"]["upgrade"] = upgrade
    return config


def again(config: dict[str, Any], first: Run, **kwargs: Any) -> Run:
    """`config` run after `first` (whose outputs are the previous run's record)."""
    return run(config, previous_outputs=first.outputs, **kwargs)


@pytest.fixture(scope="module")
def batches_of_two() -> Run:
    """Four agents, two at a time, that all ran before (the second run of the same config)."""
    config = four_agents(agentsAtOnce=2)
    return again(config, run(config))


def test_an_agents_in_place_change_is_its_install_update(batches_of_two: Run) -> None:
    names = batches_of_two.names()
    for agent in ("prod-w1", "prod-w2", "prod-w3", "prod-w4"):
        assert not {f"{agent}-upgrade", f"{agent}-cordon", f"{agent}-rejoin"} & names
        install = batches_of_two.by_name(f"{agent}-install").plain()
        # Its creation installs and starts K3s as any node's does; its in-place change
        # (RESTART=roll) cordons, drains, restarts, waits for Ready at the version and
        # uncordons, on the agent (its own connection), with the kubelet's credentials.
        assert not {"RESTART", "DRAIN", "DRAIN_TIMEOUT"} & set(inputs(install["create"]))
        rolled = {"RESTART": "roll", "DRAIN": "1", "DRAIN_TIMEOUT": "300"}
        assert inputs(install["update"]) == {**inputs(install["create"]), **rolled}
        assert command_inputs(install["update"]).args == command_inputs(install["create"]).args  # type: ignore[union-attr]
        update = node_script(install["update"])
        for call in ("kc cordon", "drain_own_pods", "restart_service", "kc uncordon", "KUBELET_KUBECONFIG"):
            assert call in update.effective, call
        assert "stdin" in batches_of_two.by_name(f"{agent}-install").secret_paths()


def test_batches_follow_one_another_in_name_order(batches_of_two: Run) -> None:
    r = batches_of_two
    for later in ("prod-w3", "prod-w4"):
        # Through one no-op step per batch: edges grow with agents, not agents x batch size.
        assert r.depends_on(f"{later}-install", "prod-upgrade-batch-1")
        assert r.reaches(f"{later}-install", "prod-w1-install")
        assert r.reaches(f"{later}-install", "prod-w2-install")
    gate = r.by_name("prod-upgrade-batch-1").plain()
    assert not {"create", "update", "delete"} & set(gate), "the batch step must never run anything"
    # Within a batch, agents go together; the first batch waits only for the servers.
    assert not r.reaches("prod-w2-install", "prod-w1-install")
    assert not r.reaches("prod-w4-install", "prod-w3-install")
    assert not r.reaches("prod-w1-install", "prod-upgrade-batch-1")
    # The cluster check and each membership wait for the agent to be back.
    for agent in ("prod-w1", "prod-w4"):
        assert r.depends_on("prod-cluster-ready", f"{agent}-install")
        assert r.reaches(f"{agent}-membership", f"{agent}-install")


def test_new_agents_wait_for_no_batch() -> None:
    """On the first run every agent is new: all are installed at once. A later run holds back
    only the agents of the previous run's record; an agent added then is installed at once."""
    config = four_agents(agentsAtOnce=1)
    first = run(config)
    for agent in ("prod-w2", "prod-w3", "prod-w4"):
        assert not first.reaches(f"{agent}-install", "prod-w1-install"), agent
    config["agents"] = [*config["agents"], {**config["agents"][-1], "name": "prod-w9", "address": "10.20.0.99"}]
    second = again(config, first)
    assert second.reaches("prod-w4-install", "prod-w3-install")
    assert second.reaches("prod-w2-install", "prod-w1-install")
    assert not second.reaches("prod-w9-install", "prod-w1-install")
    # A new agent is still in its batch's gate: the agents after it wait for its creation.
    third = again(four_agents(agentsAtOnce=1), run(four_agents(agentsAtOnce=1)))
    assert third.reaches("prod-w4-install", "prod-w1-install")


def test_the_default_is_ten_percent_and_at_least_one() -> None:
    r = again(prod_config(), run(prod_config()))  # five agents: one at a time
    for first, second in (("prod-w1", "prod-w2"), ("prod-w2", "prod-w3"), ("prod-w4", "prod-w5")):
        assert r.depends_on(f"{second}-install", f"{first}-install")


def test_creation_stays_flat_in_agents_whatever_the_batch_size() -> None:
    lengths = []
    for agents in (1, 12):
        config = make_config(1, agents)
        config["k3s"] = {"upgrade": {"agentsAtOnce": 1}}  # the longest chain of batches
        lengths.append(longest_chain(run_program(config, SECRETS).registrations))
    assert lengths[0] == lengths[1]


def test_a_version_change_rolls_out_and_replaces_nothing(batches_of_two: Run) -> None:
    config = four_agents(agentsAtOnce=2)
    config["k3s"]["version"] = "v1.34.1+k3s1"
    after = again(config, batches_of_two)
    before = {r.name: r.plain() for r in batches_of_two.registrations}
    now = {r.name: r.plain() for r in after.registrations}
    for agent in ("prod-w1", "prod-w4"):
        # The install's update changes (and so runs, in the agent's batch): it writes the new
        # version's files and restarts K3s cordoned and drained.
        assert before[f"{agent}-install"]["update"] != now[f"{agent}-install"]["update"]
        assert inputs(now[f"{agent}-install"]["update"])["K3S_VERSION"] == "v1.34.1+k3s1"
        assert inputs(now[f"{agent}-install"]["update"])["RESTART"] == "roll"
        assert before[f"{agent}-install"]["create"] != now[f"{agent}-install"]["create"]
    assert after.depends_on("prod-w3-install", "prod-upgrade-batch-1")
    for name, plain in now.items():  # triggers replace: none changes
        if name in before and "triggers" in plain:
            assert before[name]["triggers"] == plain["triggers"], name


def test_drain_false_cordons_only() -> None:
    r = run(four_agents(drain=False))
    assert variable(r.by_name("prod-w1-install").plain()["update"], "DRAIN") == "0"


def test_the_docker_topology_replaces_containers_and_refuses_the_setting() -> None:
    config, _ = load_stack_config("local")
    local = run_program(config, {}, stack="local")
    assert not any(r.name.endswith(("-cordon", "-upgrade", "-rejoin")) for r in local.registrations)
    config = copy.deepcopy(config)
    config["k3s"]["upgrade"] = {"agentsAtOnce": 2}
    with pytest.raises(ConfigError) as error:
        run_program(config, {}, stack="local")
    assert "k3s-rancher:k3s.upgrade" in error.value.keys


@pytest.mark.parametrize("value", [0, "0%", "101%", "ten", -1])
def test_a_bad_batch_size_is_refused_by_key(value: Any) -> None:
    with pytest.raises(ConfigError) as error:
        run(four_agents(agentsAtOnce=value))
    assert error.value.keys == ["k3s-rancher:k3s.upgrade.agentsAtOnce"]
