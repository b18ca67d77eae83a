"""k3s.upgrade (issue 14, item 1): an in-place change of agents (a new k3s.version, new
settings) rolls out in batches, each agent cordoned and drained first and uncordoned once
Ready at the new version; the first creation stays flat (none of it runs then)."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from benchmarks.graph_scale import longest_chain, make_config
from components import scripts
from components.settings import ConfigError
from policy.shell_inputs import command_inputs
from tests.harness import (
    TEST_SSH_KEY,
    TEST_TOKEN,
    Run,
    command_variables,
    default_stdout,
    load_stack_config,
    node_script,
    prod_config,
    run_program,
)

SECRETS = {"sshPrivateKey": TEST_SSH_KEY, "token": TEST_TOKEN}
STEPS = ("cordon", "upgrade", "rejoin")


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
        marker = scripts.fingerprint(install["create"])  # the install's desired state
        upgrade = batches_of_two.by_name(f"{agent}-upgrade").plain()
        # The upgrade restarts K3s on the agent if its install left a restart owed, with the
        # install's stdin (to keep its secrets out of the log it may show).
        restart = node_script(upgrade["update"])
        assert restart.name == "restart_pending" and "restart_service" in restart.effective
        assert inputs(upgrade["update"])["NODE_NAME"] == agent and inputs(upgrade["update"])["ROLE"] == "agent"
        assert inputs(upgrade["update"])["WAIT_FOR"] == marker
        assert upgrade["connection"] == install["connection"]
        assert upgrade["stdin"] == install["stdin"]  # the token, secret (a new one re-runs it)
        assert "stdin" in batches_of_two.by_name(f"{agent}-upgrade").secret_paths()
        # The install's in-place change writes the files and leaves the restart to the batch
        # (RESTART=defer); its creation installs and starts K3s as any node's does.
        assert "RESTART" not in inputs(install["create"])
        assert inputs(install["update"]) == {**inputs(install["create"]), "RESTART": "defer"}
        assert command_inputs(install["update"]).args == command_inputs(install["create"]).args  # type: ignore[union-attr]
        cordon = batches_of_two.by_name(f"{agent}-cordon").plain()
        drain = node_script(cordon["update"])
        assert drain.name == "cordon_drain" and "kc cordon" in drain.effective
        assert variable(cordon["update"], "DRAIN") == "1" and inputs(cordon["update"])["NODE_NAME"] == agent
        assert inputs(cordon["update"])["WAIT_FOR"] == marker
        # What the install's update said about a restart: under mocks it printed nothing.
        assert inputs(cordon["update"])["RESTART"] == "unknown"
        rejoin = batches_of_two.by_name(f"{agent}-rejoin").plain()["update"]
        assert "kc uncordon" in node_script(rejoin).effective and inputs(rejoin)["WAIT_FOR"] == marker


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
        # Every step of the rollout changes (and so runs, as an update), and so does the
        # install's own update: it writes the new version's files now, and leaves the
        # restart to the -upgrade step in the agent's batch.
        for step in STEPS:
            assert before[f"{agent}-{step}"]["update"] != now[f"{agent}-{step}"]["update"], step
        assert before[f"{agent}-install"]["update"] != now[f"{agent}-install"]["update"]
        assert inputs(now[f"{agent}-install"]["update"])["K3S_VERSION"] == "v1.34.1+k3s1"
        assert inputs(now[f"{agent}-install"]["update"])["RESTART"] == "defer"
        assert before[f"{agent}-install"]["create"] != now[f"{agent}-install"]["create"]
        assert node_script(now[f"{agent}-upgrade"]["update"]).name == "restart_pending"
    for name, plain in now.items():  # triggers replace: none changes
        if name in before and "triggers" in plain:
            assert before[name]["triggers"] == plain["triggers"], name


def test_the_cordon_follows_what_each_install_said_about_a_restart() -> None:
    """The cordon step's RESTART is what the agent's install update printed: "needed" (the
    agent is cordoned and drained before its restart), "none" (no restart: nothing is
    cordoned), or "unknown" (nothing said, e.g. after a creation: cordoned, to be safe)."""
    said = {"prod-w1-install": scripts.RESTART_NEEDED, "prod-w2-install": scripts.RESTART_NONE}

    def stdout(args: Any) -> str | None:
        if args.name in said:
            return f"k3s-rancher: some log line\n{said[args.name]}\n"
        return default_stdout(args)

    r = run(four_agents(agentsAtOnce=2), stdout_for=stdout)
    restart = {
        agent: inputs(r.by_name(f"{agent}-cordon").plain()["update"])["RESTART"]
        for agent in ("prod-w1", "prod-w2", "prod-w3")
    }
    assert restart == {"prod-w1": "needed", "prod-w2": "none", "prod-w3": "unknown"}
    # It comes from the install's output: the cordon waits for the install.
    assert r.depends_on("prod-w1-cordon", "prod-w1-install")
    assert r.property_depends_on("prod-w1-cordon", "update", "prod-w1-install")


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
