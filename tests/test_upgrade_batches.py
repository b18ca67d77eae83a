"""k3s.upgrade (issue 14, item 1): an in-place change of agents (a new k3s.version, new
settings) rolls out in batches, each agent cordoned and drained first and uncordoned once
Ready at the new version, all by its one `-upgrade` step on the agent (issue 27: with the
node's own credentials); the first creation stays flat (none of it runs then)."""

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


def test_each_agent_gets_one_step_that_runs_only_on_change(batches_of_two: Run) -> None:
    names = {r.name for r in batches_of_two.registrations}
    for agent in ("prod-w1", "prod-w2", "prod-w3", "prod-w4"):
        install = batches_of_two.by_name(f"{agent}-install").plain()
        upgrade = batches_of_two.by_name(f"{agent}-upgrade").plain()
        assert "create" not in upgrade, f"{agent}-upgrade would run on creation"
        assert not {f"{agent}-cordon", f"{agent}-rejoin"} & names
        marker = scripts.fingerprint(install["create"])  # the install's desired state
        # On the agent (its own connection), with the install's stdin (to keep its secrets
        # out of the log it may show): cordon, drain, restart, Ready at the version, uncordon.
        rollout = node_script(upgrade["update"])
        assert rollout.name == "rollout"
        for call in ("kc cordon", "drain_own_pods", "restart_service", "kc uncordon", "KUBELET_KUBECONFIG"):
            assert call in rollout.effective, call
        values = inputs(upgrade["update"])
        assert values["NODE_NAME"] == agent and values["ROLE"] == "agent"
        assert values["K3S_VERSION"] == "v1.33.5+k3s1" and values["DRAIN"] == "1"
        assert values["WAIT_FOR"] == marker
        assert upgrade["connection"] == install["connection"]
        assert upgrade["stdin"] == install["stdin"]  # the token, secret (a new one re-runs it)
        assert "stdin" in batches_of_two.by_name(f"{agent}-upgrade").secret_paths()
        # The install's in-place change writes the files and leaves the restart to the batch
        # (RESTART=defer); its creation installs and starts K3s as any node's does.
        assert "RESTART" not in inputs(install["create"])
        assert inputs(install["update"]) == {**inputs(install["create"]), "RESTART": "defer"}
        assert command_inputs(install["update"]).args == command_inputs(install["create"]).args  # type: ignore[union-attr]


def test_batches_follow_one_another_in_name_order(batches_of_two: Run) -> None:
    r = batches_of_two
    for agent in ("prod-w1", "prod-w2", "prod-w3", "prod-w4"):
        assert r.depends_on(f"{agent}-upgrade", f"{agent}-install")
    for later in ("prod-w3", "prod-w4"):
        # Through one no-op step per batch: edges grow with agents, not agents x batch size.
        assert r.depends_on(f"{later}-upgrade", "prod-upgrade-batch-1")
        assert r.reaches(f"{later}-upgrade", "prod-w1-upgrade")
        assert r.reaches(f"{later}-upgrade", "prod-w2-upgrade")
    gate = r.by_name("prod-upgrade-batch-1").plain()
    assert not {"create", "update", "delete"} & set(gate), "the batch step must never run anything"
    # Within a batch, agents go together.
    assert not r.reaches("prod-w2-upgrade", "prod-w1-upgrade")
    assert not r.reaches("prod-w4-upgrade", "prod-w3-upgrade")
    # The cluster check and each membership wait for the agent to be back.
    for agent in ("prod-w1", "prod-w4"):
        assert r.depends_on("prod-cluster-ready", f"{agent}-upgrade")
        assert r.reaches(f"{agent}-membership", f"{agent}-upgrade")


def test_the_default_is_ten_percent_and_at_least_one() -> None:
    r = run(prod_config())  # five agents: one at a time
    for first, second in (("prod-w1", "prod-w2"), ("prod-w2", "prod-w3"), ("prod-w4", "prod-w5")):
        assert r.depends_on(f"{second}-upgrade", f"{first}-upgrade")


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
        # The rollout changes (and so runs, as an update), and so does the install's own
        # update: it writes the new version's files now, and leaves the restart to the
        # -upgrade step in the agent's batch.
        assert before[f"{agent}-upgrade"]["update"] != now[f"{agent}-upgrade"]["update"]
        assert inputs(now[f"{agent}-upgrade"]["update"])["K3S_VERSION"] == "v1.34.1+k3s1"
        assert before[f"{agent}-install"]["update"] != now[f"{agent}-install"]["update"]
        assert inputs(now[f"{agent}-install"]["update"])["K3S_VERSION"] == "v1.34.1+k3s1"
        assert inputs(now[f"{agent}-install"]["update"])["RESTART"] == "defer"
        assert before[f"{agent}-install"]["create"] != now[f"{agent}-install"]["create"]
    for name, plain in now.items():  # triggers replace: none changes
        if name in before and "triggers" in plain:
            assert before[name]["triggers"] == plain["triggers"], name


def test_each_install_run_is_followed_by_one_rollout() -> None:
    """The -upgrade step's WAIT_FOR carries the stamp of the install run that printed what it
    found (a restart owed or not): each run of the install is followed by one rollout in the
    agent's batch, which decides on the host (sh/rollout.sh) whether to cordon."""
    said = {"prod-w1-install": scripts.RESTART_NEEDED + " 1765000000", "prod-w2-install": scripts.RESTART_NONE}

    def stdout(args: Any) -> str | None:
        if args.name in said:
            return f"k3s-rancher: some log line\n{said[args.name]}\n"
        return default_stdout(args)

    r = run(four_agents(agentsAtOnce=2), stdout_for=stdout)
    wait_for = {
        agent: inputs(r.by_name(f"{agent}-upgrade").plain()["update"])["WAIT_FOR"] for agent in ("prod-w1", "prod-w2")
    }
    assert wait_for["prod-w1"].endswith(" run 1765000000") and " run " not in wait_for["prod-w2"]
    assert r.property_depends_on("prod-w1-upgrade", "update", "prod-w1-install")


def test_drain_false_cordons_only() -> None:
    r = run(four_agents(drain=False))
    assert variable(r.by_name("prod-w1-upgrade").plain()["update"], "DRAIN") == "0"


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
