"""k3s.upgrade (issue 14, item 1): an in-place change of agents (a new k3s.version, new
settings) rolls out in batches, each agent cordoned and drained first and uncordoned once
Ready at the new version; the first creation stays flat (none of it runs then)."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from benchmarks.graph_scale import longest_chain, make_config
from components.settings import ConfigError
from tests.harness import TEST_SSH_KEY, TEST_TOKEN, Run, load_stack_config, prod_config, run_program

SECRETS = {"sshPrivateKey": TEST_SSH_KEY, "token": TEST_TOKEN}
STEPS = ("cordon", "upgrade", "rejoin")


def variable(command: str, name: str) -> str:
    """The value a rendered script gives `name` (inside sh -c '...', a quoted value reads
    '"'"'v'"'"')."""
    match = re.search("\n" + name + "=([^\n]*)\n", command)
    assert match, f"{name} is not set in the command"
    return match.group(1).replace("'\"'\"'", "")


def run(config: dict[str, Any]) -> Run:
    return run_program(config, SECRETS, stack="prod")


def four_agents(**upgrade: Any) -> dict[str, Any]:
    config = prod_config()
    config["agents"] = config["agents"][:4]
    if upgrade:
        config["k3s"]["upgrade"] = upgrade
    return config


@pytest.fixture(scope="module")
def batches_of_two() -> Run:
    return run(four_agents(agentsAtOnce=2))


def test_each_agent_gets_steps_that_run_only_on_change(batches_of_two: Run) -> None:
    for agent in ("prod-w1", "prod-w2", "prod-w3", "prod-w4"):
        install = batches_of_two.by_name(f"{agent}-install").plain()
        for step in STEPS:
            command = batches_of_two.by_name(f"{agent}-{step}").plain()
            assert "create" not in command, f"{agent}-{step} would run on creation"
            assert "update" in command
        upgrade = batches_of_two.by_name(f"{agent}-upgrade").plain()
        # The upgrade applies exactly the agent's install, on the agent, with its stdin.
        assert upgrade["update"] == install["create"]
        assert upgrade["connection"]["host"] == install["connection"]["host"]
        assert upgrade["stdin"] == install["stdin"]  # the token, secret (a new one re-runs it)
        assert "stdin" in batches_of_two.by_name(f"{agent}-upgrade").secret_paths()
        # The install itself no longer changes the agent in place.
        assert install["update"] != install["create"] and "-upgrade, in its k3s.upgrade batch" in install["update"]
        cordon = batches_of_two.by_name(f"{agent}-cordon").plain()
        assert "cordon" in cordon["update"] and variable(cordon["update"], "DRAIN") == "1"
        assert "uncordon" in batches_of_two.by_name(f"{agent}-rejoin").plain()["update"]


def test_batches_follow_one_another_in_name_order(batches_of_two: Run) -> None:
    r = batches_of_two
    for agent in ("prod-w1", "prod-w2", "prod-w3", "prod-w4"):
        assert r.depends_on(f"{agent}-upgrade", f"{agent}-cordon")
        assert r.depends_on(f"{agent}-rejoin", f"{agent}-upgrade")
        assert r.depends_on(f"{agent}-cordon", f"{agent}-install")
    for later in ("prod-w3", "prod-w4"):
        # Through one no-op step per batch: edges grow with agents, not agents x batch size.
        assert r.depends_on(f"{later}-cordon", "prod-upgrade-batch-1")
        assert r.reaches(f"{later}-cordon", "prod-w1-rejoin")
        assert r.reaches(f"{later}-cordon", "prod-w2-rejoin")
    gate = r.by_name("prod-upgrade-batch-1").plain()
    assert not {"create", "update", "delete"} & set(gate), "the batch step must never run anything"
    # Within a batch, agents go together.
    assert not r.reaches("prod-w2-cordon", "prod-w1-rejoin")
    assert not r.reaches("prod-w4-cordon", "prod-w3-rejoin")
    # The cluster check and each membership wait for the agent to be back.
    for agent in ("prod-w1", "prod-w4"):
        assert r.depends_on("prod-cluster-ready", f"{agent}-rejoin")
        assert r.reaches(f"{agent}-membership", f"{agent}-rejoin")


def test_the_default_is_ten_percent_and_at_least_one() -> None:
    r = run(prod_config())  # five agents: one at a time
    for first, second in (("prod-w1", "prod-w2"), ("prod-w2", "prod-w3"), ("prod-w4", "prod-w5")):
        assert r.depends_on(f"{second}-cordon", f"{first}-rejoin")


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
    after = run(config)
    before = {r.name: r.plain() for r in batches_of_two.registrations}
    now = {r.name: r.plain() for r in after.registrations}
    for agent in ("prod-w1", "prod-w4"):
        # Every step of the rollout changes (and so runs, as an update); the install's own
        # update does not (it only records the new text for a replacement).
        for step in STEPS:
            assert before[f"{agent}-{step}"]["update"] != now[f"{agent}-{step}"]["update"], step
        assert before[f"{agent}-install"]["update"] == now[f"{agent}-install"]["update"]
        assert before[f"{agent}-install"]["create"] != now[f"{agent}-install"]["create"]
    for name, inputs in now.items():  # triggers replace: none changes
        if name in before and "triggers" in inputs:
            assert before[name]["triggers"] == inputs["triggers"], name


def test_drain_false_cordons_only() -> None:
    r = run(four_agents(drain=False))
    assert variable(r.by_name("prod-w1-cordon").plain()["update"], "DRAIN") == "0"


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
