"""Both topologies get every graph behaviour from components/cluster.py: the same order of
servers, agents and checks, and the same removal steps, whatever reaches the nodes."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest

from policy.shell_inputs import command_inputs
from tests.engine_steps import engine_steps
from tests.harness import TEST_SSH_KEY, TEST_TOKEN, Run, load_stack_config, node_script, prod_config, run_program

# topology -> (config, secrets, stack, the removed agent, the name of its install step)
Case = tuple[dict[str, Any], dict[str, str], str, str, str]


def ssh_case() -> Case:
    return prod_config(), {"sshPrivateKey": TEST_SSH_KEY, "token": TEST_TOKEN}, "prod", "prod-w5", "install"


def docker_case() -> Case:
    config, _ = load_stack_config("local")
    config["rancher"] = {"enabled": False}
    config["docker"] = {**config["docker"], "servers": 3, "agents": 3}
    return config, {"token": TEST_TOKEN}, "local", "local-agent-2", "container"


def shrink(topology: str, config: dict[str, Any]) -> dict[str, Any]:
    smaller = copy.deepcopy(config)
    if topology == "ssh":
        smaller["agents"] = [a for a in smaller["agents"] if a["name"] != "prod-w5"]
    else:
        smaller["docker"]["agents"] -= 1
    return smaller


CASES = {"ssh": ssh_case, "docker": docker_case}


@pytest.mark.parametrize("topology", sorted(CASES))
def test_removing_an_agent_drains_then_uninstalls_then_forgets_its_node(topology: str) -> None:
    config, secrets, stack, agent, install = CASES[topology]()
    before = run_program(config, secrets, stack=stack)
    after = run_program(shrink(topology, config), secrets, stack=stack)
    deletes = [name for kind, name in engine_steps(before, after) if kind == "delete"]
    assert deletes, "nothing is deleted"
    assert all(name.startswith(agent) for name in deletes), deletes  # only that node
    order = [deletes.index(f"{agent}-{step}") for step in ("membership", install, "forget")]
    assert order == sorted(order), deletes
    old = {r.name: r.plain() for r in before.registrations}
    # Its scripts step goes too: on an SSH host after the uninstall (which runs the bundle's
    # code; the step's delete then removes the bundle); in a container it has no delete, and
    # goes before the container it was put in.
    assert f"{agent}-scripts" in deletes
    if topology == "ssh":
        assert deletes.index(f"{agent}-{install}") < deletes.index(f"{agent}-scripts")
        assert command_inputs(old[f"{agent}-scripts"]["delete"]).name == "remove_scripts"  # type: ignore[union-attr]
        # Its delete runs the uninstall again first (LEFTOVERS=1: after the install's own, it
        # finds nothing), for a node whose first install failed; there is no cleanup step.
        assert command_inputs(old[f"{agent}-scripts"]["delete"]).variables["ROLE"] == "agent"  # type: ignore[union-attr]
        assert not [r.name for r in before.registrations if r.name.endswith("-cleanup")]
    else:
        assert deletes.index(f"{agent}-scripts") < deletes.index(f"{agent}-{install}")
        assert not old[f"{agent}-scripts"].get("delete")
        # A container's removal takes all it had: there is no cleanup step.
        assert not [r.name for r in before.registrations if r.name.endswith("-cleanup")]
    drain = node_script(old[f"{agent}-membership"]["delete"])
    assert drain.name == "drain_delete" and "kc drain" in drain.effective
    assert command_inputs(old[f"{agent}-membership"]["delete"]).variables["NODE_NAME"] == agent  # type: ignore[union-attr]
    forget = old[f"{agent}-forget"]["delete"]
    assert command_inputs(forget).variables == {"NODE_NAME": agent, "DRAIN_TIMEOUT": "0"}  # type: ignore[union-attr]
    assert "kc delete node" in node_script(forget).effective
    # Both run on the init server, where the admin kubeconfig is.
    init = "prod-cp1" if topology == "ssh" else "local-server-0"
    if topology == "ssh":
        assert (
            old[f"{agent}-forget"]["connection"]["host"]
            == before.by_name(f"{init}-install").plain()["connection"]["host"]
        )
    else:
        assert old[f"{agent}-forget"]["delete"].startswith(f"docker exec {init} ")


@pytest.mark.parametrize("topology", sorted(CASES))
def test_the_same_order_servers_one_by_one_agents_together_then_one_cluster_check(topology: str) -> None:
    config, secrets, stack, _, install = CASES[topology]()
    run: Run = run_program(config, secrets, stack=stack)
    # Join order: the init server, then the others by name (ssh); server-0, 1, 2 (docker).
    servers = sorted(r.name for r in run.registrations if r.type.endswith("Server"))
    agents = sorted(r.name for r in run.registrations if r.type.endswith("Agent"))
    assert len(servers) == 3 and len(agents) >= 3
    for previous, server in itertools.pairwise(servers):
        assert run.depends_on(f"{server}-{install}", f"{previous}-ready")
    for agent in agents:
        assert run.depends_on(f"{agent}-{install}", f"{servers[-1]}-ready")
        assert not any(run.reaches(f"{agent}-{install}", f"{other}-{install}") for other in agents if other != agent)
        assert run.depends_on(f"{agent}-membership", f"{stack}-cluster-ready")
    provider = f"{stack}-k8s"
    assert run.depends_on(provider, f"{stack}-cluster-ready")
    assert all(run.depends_on(provider, f"{n}-membership") for n in (*servers, *agents))
