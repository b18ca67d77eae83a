"""The SSH topology's graph under mocks: resources, parents and dependency edges."""

from __future__ import annotations

import itertools

import pytest

from components import bundle
from policy import shell_inputs
from policy.shell_inputs import ScriptInputs
from policy.shell_inputs import parse as parse_shell_inputs
from tests.harness import TEST_SSH_KEY, TEST_TOKEN, Run, load_stack_config, node_script, run_program

SSH_STACKS = ["dev", "prod"]


def parse_inputs(text: str | None) -> ScriptInputs:
    """A command text's inputs preamble (policy/shell_inputs.py); the text must have one."""
    assert text is not None
    parsed = parse_shell_inputs(text)
    assert parsed is not None, text[:200]
    return parsed


def stack_run(stack: str, **overrides: object) -> Run:
    config, secrets = load_stack_config(stack)
    config.update(overrides)
    secrets.setdefault("sshPrivateKey", TEST_SSH_KEY)
    return run_program(config, secrets, stack=stack)


def node_names(stack: str) -> tuple[list[str], list[str]]:
    config, _ = load_stack_config(stack)
    return [n["name"] for n in config["servers"]], [n["name"] for n in config.get("agents", [])]


@pytest.fixture(scope="module", params=SSH_STACKS)
def stack(request: pytest.FixtureRequest) -> tuple[str, Run]:
    return request.param, stack_run(request.param, rancher={"enabled": False})


def test_every_node_is_a_component_with_its_commands(stack: tuple[str, Run]) -> None:
    name, run = stack
    servers, agents = node_names(name)
    cluster = run.by_name(name)
    assert cluster.type == "k3s-rancher:index:K3sCluster"
    for server in servers:
        component = run.by_name(server)
        assert component.type == "k3s-rancher:index:K3sServer"
        assert component.parent == cluster.urn
        for child in ("install", "ready", "membership"):
            assert run.by_name(f"{server}-{child}").parent == component.urn
    for agent in agents:
        component = run.by_name(agent)
        assert component.type == "k3s-rancher:index:K3sAgent"
        assert run.by_name(f"{agent}-install").parent == component.urn
        assert f"{agent}-ready" not in run.names()  # readiness is checked once, from server[0]


def test_servers_join_one_after_another(stack: tuple[str, Run]) -> None:
    name, run = stack
    servers, _ = node_names(name)
    for previous, current in itertools.pairwise(servers):
        assert run.depends_on(f"{current}-install", f"{previous}-ready")
    assert run.depends_on(f"{servers[0]}-ready", f"{servers[0]}-install")
    for server in servers[1:]:
        assert not run.reaches(f"{servers[0]}-install", f"{server}-install")


def test_agents_wait_for_the_last_server_and_never_for_each_other(stack: tuple[str, Run]) -> None:
    name, run = stack
    servers, agents = node_names(name)
    for agent in agents:
        assert run.depends_on(f"{agent}-install", f"{servers[-1]}-ready")
        for other in agents:
            if other != agent:
                assert not run.reaches(f"{agent}-install", f"{other}-install")


def test_cluster_ready_waits_for_every_node_and_gates_the_provider(stack: tuple[str, Run]) -> None:
    name, run = stack
    servers, agents = node_names(name)
    ready = f"{name}-cluster-ready"
    for node in servers + agents:
        assert run.depends_on(ready, f"{node}-install")
    assert run.depends_on(f"{name}-kubeconfig", ready)
    provider = run.by_name(f"{name}-k8s")
    assert provider.type == "pulumi:providers:kubernetes"
    assert run.depends_on(f"{name}-k8s", ready)
    assert provider.plain()["clusterIdentifier"] == f"k3s-rancher-{name}"
    # One command, on the first server, waits for all nodes (not one SSH session per agent).
    command = run.by_name(ready).plain()
    assert command["connection"]["host"] == load_stack_config(name)[0]["servers"][0]["address"]
    for node in servers + agents:
        assert f"'{node}'" in command["create"] or f" {node}" in command["create"]


def test_each_node_gets_the_scripts_bundle_first_and_every_command_on_its_host_waits_for_it(
    stack: tuple[str, Run],
) -> None:
    """The node commands' texts are entry points into the scripts bundle: each host gets it
    from its `<node>-scripts` step, which waits for nothing on its host and which every other command run
    on that host (the init server's cluster-wide ones too) waits for; it is deleted last."""
    name, run = stack
    servers, agents = node_names(name)
    scripts_bundle = bundle.current_bundle()
    steps = {}
    for node in servers + agents:
        step = run.by_name(f"{node}-scripts")
        assert step.type == "command:remote:Command" and step.parent == run.urn(node)
        # The node's first step on its host: nothing runs there before it. A joining node's
        # waits for its forget (on the init server), so that its delete, which uninstalls what a
        # failed first install left, runs before the Node object's delete.
        expected = [] if node == servers[0] else [run.urn(f"{node}-forget")]
        assert step.dependencies == expected, node
        plain = step.plain()
        assert plain["connection"] == run.by_name(f"{node}-install").plain()["connection"]
        delivery = parse_inputs(shell_inputs.unwrap(plain["create"]))
        assert delivery is not None and delivery.name == "deliver_scripts"
        assert delivery.variables["BUNDLE_SHA256"] == scripts_bundle.sha256
        assert plain["stdin"] == scripts_bundle.text and "stdin" not in step.secret_paths()  # public code
        removal = parse_inputs(shell_inputs.unwrap(plain["delete"]))
        assert removal is not None and removal.name == "remove_scripts"
        assert step.options["deleteBeforeReplace"] is True
        steps[node] = step
    on_hosts = 0
    for command in run.of_type("command:remote:Command"):
        if command.name.endswith("-scripts"):
            continue
        host = [n for n, s in steps.items() if s.plain()["connection"] == command.plain()["connection"]]
        assert len(host) == 1, command.name
        assert run.depends_on(command.name, f"{host[0]}-scripts"), command.name
        # ... and it runs the bundle's code: each of its texts is an entry point (node_script
        # renders it back), not the code itself.
        texts = [command.plain()[f] for f in ("create", "update", "delete") if command.plain().get(f)]
        assert all(node_script(text).effective for text in texts), command.name
        on_hosts += 1
    assert on_hosts > 3 * len(steps)


def test_the_scripts_steps_delete_uninstalls_what_a_failed_first_install_left(stack: tuple[str, Run]) -> None:
    """A failed first install is not in the state, so its own delete never runs: the node's
    `<node>-scripts` step (in the state before anything can put K3s on the host, deleted after
    everything there) runs the node's uninstall with LEFTOVERS=1 before it removes the
    bundle. A new stack has no `<node>-cleanup` step (0.3.0 retired it: it did that alone)."""
    name, run = stack
    servers = node_names(name)[0]
    config, _ = load_stack_config(name)
    assert not [r.name for r in run.registrations if r.name.endswith("-cleanup")]
    for node in config["servers"] + config.get("agents", []):
        n = node["name"]
        removal = parse_inputs(shell_inputs.unwrap(run.by_name(f"{n}-scripts").plain()["delete"]))
        uninstall = parse_inputs(shell_inputs.unwrap(run.by_name(f"{n}-install").plain()["delete"]))
        assert removal.name == "remove_scripts" and uninstall.name == "uninstall_node", n
        assert removal.variables == uninstall.variables, n  # the role and the airgap generation
        assert removal.variables["ROLE"] == ("server" if n in servers else "agent")
        assert run.depends_on(f"{n}-install", f"{n}-forget") and run.reaches(f"{n}-install", f"{n}-scripts")
        if f"{n}-registration" in run.names():
            assert run.depends_on(f"{n}-registration", f"{n}-forget")


def test_a_stack_made_before_keeps_its_cleanup_steps_retained_until_its_record_retires_them(
    stack: tuple[str, Run],
) -> None:
    """On a stack an earlier release made (a record without retiredSteps), each node keeps its
    `<node>-cleanup` step as it was (no create; its delete the uninstall with LEFTOVERS=1;
    triggers the node's identity), now with retain_on_delete: in the next up, once the record
    says retiredSteps, it leaves, and its leaving runs nothing."""
    name, _ = stack
    config, secrets = load_stack_config(name)
    config["rancher"] = {"enabled": False}
    secrets.setdefault("sshPrivateKey", TEST_SSH_KEY)
    record = {"nodes": [{"name": n["name"], "role": "server", "address": n["address"]} for n in config["servers"]]}
    run = run_program(config, secrets, stack=name, previous_outputs=record)
    assert run.outputs["retiredSteps"] == ["-cleanup"]
    for node in config["servers"] + config.get("agents", []):
        n = node["name"]
        step = run.by_name(f"{n}-cleanup")
        plain = step.plain()
        assert step.options["retainOnDelete"] is True and step.options["deleteBeforeReplace"] is True, n
        assert not plain.get("create") and not plain.get("update"), n  # nothing runs on creation
        cleanup = parse_inputs(shell_inputs.unwrap(plain["delete"]))
        assert cleanup.variables == {
            **parse_inputs(shell_inputs.unwrap(run.by_name(f"{n}-install").plain()["delete"])).variables,
            "LEFTOVERS": "1",
        }
        assert plain["triggers"] == [n, node["address"], cleanup.variables["ROLE"]]
        assert run.depends_on(f"{n}-cleanup", f"{n}-forget") and run.depends_on(f"{n}-install", f"{n}-cleanup")
    after = run_program(config, secrets, stack=name, previous_outputs=run.outputs)
    assert not [r.name for r in after.registrations if r.name.endswith("-cleanup")]


def test_critical_path_does_not_grow_with_agents() -> None:
    from benchmarks.graph_scale import longest_chain, make_config

    lengths = []
    for agents in (1, 10):
        run = run_program(make_config(1, agents), {"sshPrivateKey": TEST_SSH_KEY, "token": TEST_TOKEN})
        lengths.append(longest_chain(run.registrations))
    assert lengths[0] == lengths[1]


def test_every_remote_command_disables_previous_output_env(stack: tuple[str, Run]) -> None:
    _, run = stack
    commands = run.of_type("command:remote:Command")
    assert commands
    for command in commands:
        assert command.plain()["addPreviousOutputInEnv"] is False, command.name


def test_a_host_change_replaces_the_node_delete_first(stack: tuple[str, Run]) -> None:
    name, run = stack
    servers, agents = node_names(name)
    install = run.by_name(f"{agents[0]}-install")
    assert install.options["deleteBeforeReplace"] is True
    config, _ = load_stack_config(name)
    agent_address = next(a["address"] for a in config["agents"] if a["name"] == agents[0])
    assert agent_address in install.plain()["triggers"]  # the address is what the node is
    membership = run.by_name(f"{agents[0]}-membership")
    assert membership.options["deleteBeforeReplace"] is True
    drain = node_script(membership.plain()["delete"])
    assert drain.name == "drain_delete" and parse_inputs(drain.body).variables["NODE_NAME"] == agents[0]
    assert int(parse_inputs(drain.body).variables["DRAIN_TIMEOUT"]) > 0
    assert "kc drain" in drain.effective and "kc delete node" in drain.effective
    assert run.depends_on(f"{agents[0]}-membership", f"{agents[0]}-install")  # drained before uninstall
    # ... and its Node object deleted only after the uninstall (else the running agent
    # registers it again): Pulumi deletes the install before what the install depends on.
    forget = run.by_name(f"{agents[0]}-forget")
    assert run.depends_on(f"{agents[0]}-install", f"{agents[0]}-forget")
    assert forget.options["deleteBeforeReplace"] is True
    # The init server is never forgotten: its forget step exists (so that moving initServer
    # deletes nothing) but has no delete.
    assert not run.by_name(f"{servers[0]}-forget").plain().get("delete")
    deleted = node_script(forget.plain()["delete"])
    assert parse_inputs(deleted.body).variables == {"NODE_NAME": agents[0], "DRAIN_TIMEOUT": "0"}  # no drain
    assert "kc delete node" in deleted.effective
    assert forget.plain()["connection"]["host"] == run.by_name(f"{name}-cluster-ready").plain()["connection"]["host"]
    uninstall = node_script(install.plain()["delete"])
    assert uninstall.name == "uninstall_node" and parse_inputs(uninstall.body).variables["ROLE"] == "agent"
    assert "k3s-agent-uninstall.sh" in uninstall.effective


def test_names_follow_nodes_not_list_positions() -> None:
    config, _ = load_stack_config("prod")
    config["rancher"] = {"enabled": False}
    secrets = {"sshPrivateKey": TEST_SSH_KEY}
    before = run_program(config, secrets, stack="prod")
    config["agents"] = list(reversed(config["agents"]))
    after = run_program(config, secrets, stack="prod")
    for agent in config["agents"]:
        name = f"{agent['name']}-install"
        assert before.by_name(name).plain() == after.by_name(name).plain()
        assert before.urn(name) == after.urn(name)


def test_exports(stack: tuple[str, Run]) -> None:
    name, run = stack
    servers, agents = node_names(name)
    outputs = run.outputs
    assert {"apiServer", "kubeconfig", "nodes", "k3sVersion"} <= set(outputs)
    assert not {"rancherUrl", "rancherBootstrapPassword"} & set(outputs)  # Rancher is off here
    assert outputs["k3sVersion"] == "v1.33.5+k3s1"
    assert [n["name"] for n in outputs["nodes"]] == servers + agents
    api = load_stack_config(name)[0]["k3s"].get("apiAddress") or load_stack_config(name)[0]["servers"][0]["address"]
    assert outputs["apiServer"] == f"https://{api}:6443"
