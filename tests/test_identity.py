"""Node identity under mocks (issue 12, items 6, 12, 13, 14): what identifies a node and the
initialising server, and what a reorder, a new SSH endpoint, a move of the init role, a new
address and a removal do to the graph the engine receives.

Pulumi decides from inputs: the same inputs mean nothing runs; a changed `triggers` replaces a
command (pulumi-command marks only `triggers` replaceOnChanges); any other change updates it.
The order the engine deletes and creates in comes from the STAND-IN in tests/engine_steps.py.
"""

from __future__ import annotations

import copy
import re
import shlex
import warnings
from typing import Any

import pytest

from components.config import parse_settings
from components.settings import NAMESPACE, ConfigError
from policy import shell_inputs
from policy.shell_inputs import parse as parse_inputs
from tests.engine_steps import COPY, REMOTE, Step, engine_steps, node_steps
from tests.harness import (
    ROOT,
    TEST_SSH_KEY,
    Registration,
    Run,
    load_stack_config,
    node_script,
    prod_config,
    run_program,
)

SECRETS = {"sshPrivateKey": TEST_SSH_KEY, "token": "a-fixed-token-for-identity-tests"}


def run(config: dict[str, Any]) -> Run:
    return run_program(config, SECRETS, stack="prod")


def by_urn(result: Run) -> dict[str, Registration]:
    return {r.urn: r for r in result.registrations}


def commands(result: Run) -> dict[str, dict[str, Any]]:
    return {r.name: r.plain() for r in result.registrations if r.type in (REMOTE, COPY)}


@pytest.fixture(scope="module")
def airgap(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    where = tmp_path_factory.mktemp("airgap")
    files = {"installScript": "install.sh", "binary": "k3s"}
    for name in files.values():
        (where / name).write_text("stand-in\n")
    return {key: str(where / name) for key, name in files.items()}


# --- reordering (items 6 and 12) -------------------------------------------------------------


@pytest.mark.parametrize("lists", [("servers",), ("agents",), ("servers", "agents")])
def test_reordering_servers_or_agents_changes_no_resource(lists: tuple[str, ...]) -> None:
    config = prod_config()
    assert config["k3s"]["initServer"] == "prod-cp1"  # names the init server: never positional
    before = run(config)
    for key in lists:
        config[key] = list(reversed(config[key]))
    after = run(config)
    old, new = by_urn(before), by_urn(after)
    assert old.keys() == new.keys()
    for urn, registration in old.items():
        other = new[urn]
        # Inputs, secrets included (wire form), options, and even the dependency edges: the
        # join order is the init server, then the others by name, whatever the list order.
        assert registration.inputs == other.inputs, registration.name
        assert registration.options == other.options, registration.name
        assert sorted(registration.dependencies) == sorted(other.dependencies), registration.name
        assert registration.property_dependencies == other.property_dependencies, registration.name
    assert before.outputs["nodes"] == after.outputs["nodes"]


def test_the_nodes_output_is_the_graph_order_not_the_list_order() -> None:
    config = prod_config()
    config["servers"] = [config["servers"][i] for i in (2, 0, 1)]
    config["agents"] = list(reversed(config["agents"]))
    config["k3s"]["initServer"] = "prod-cp2"
    names = [n["name"] for n in run(config).outputs["nodes"]]
    assert names == ["prod-cp2", "prod-cp1", "prod-cp3", *(f"prod-w{i}" for i in range(1, 6))]


# --- the init server (item 6) ----------------------------------------------------------------


def config_yaml(command: str) -> str:
    """The config.yaml an install command writes (its CONFIG_YAML input), not the script's code,
    which mentions cluster-init for every server (the preflight's etcd ports)."""
    inputs = parse_inputs(shlex.split(command)[-1])
    assert inputs is not None
    return inputs.variables["CONFIG_YAML"]


def drains(command: str, node: str) -> bool:
    """`command` (a membership's delete) drains `node` and deletes its Node object."""
    script = node_script(command)
    inputs = parse_inputs(script.body)
    assert inputs is not None
    return (
        script.name == "drain_delete"
        and inputs.variables["NODE_NAME"] == node
        and int(inputs.variables["DRAIN_TIMEOUT"]) > 0
        and "kc drain" in script.effective
        and "kc delete node" in script.effective
    )


def forgets(command: str, node: str) -> bool:
    """`command` (a forget's delete) deletes `node`'s Node object, without a drain."""
    script = node_script(command)
    inputs = parse_inputs(script.body)
    assert inputs is not None
    return (
        script.name == "drain_delete"
        and inputs.variables == {"NODE_NAME": node, "DRAIN_TIMEOUT": "0"}
        and "kc delete node" in script.effective
    )


def cleans(command: str, uninstall: str) -> bool:
    """`command` (the `-scripts` step's delete, or a retained `-cleanup` step's) runs the
    node's uninstall (`uninstall`, its install's delete) for what a failed first install left:
    its inputs, with LEFTOVERS=1."""
    removal = parse_inputs(node_script(uninstall).body)
    assert removal is not None and "LEFTOVERS" not in removal.variables
    body = shell_inputs.unwrap(command)
    assert body is not None
    inputs = parse_inputs(body)
    assert inputs is not None
    if inputs.name == "remove_scripts":  # inline: LEFTOVERS=1 and the bundle's uninstall, in its text
        return inputs.variables == removal.variables and "LEFTOVERS=1" in body and "uninstall_node.sh" in body
    return inputs.name == "uninstall_node" and inputs.variables == {**removal.variables, "LEFTOVERS": "1"}


def test_the_init_server_is_the_one_named_wherever_it_is_in_the_list() -> None:
    config = prod_config()
    config["k3s"]["initServer"] = "prod-cp2"
    result = run(config)
    plain = commands(result)
    assert "cluster-init: true" in config_yaml(plain["prod-cp2-install"]["create"])
    for other in ("prod-cp1", "prod-cp3"):
        assert "cluster-init" not in config_yaml(plain[f"{other}-install"]["create"])
        assert "server: https://10.20.0.10:6443" in config_yaml(plain[f"{other}-install"]["create"])
    # Join order: the init server, then the others by name.
    assert result.depends_on("prod-cp1-install", "prod-cp2-ready")
    assert result.depends_on("prod-cp3-install", "prod-cp1-ready")
    assert not result.reaches("prod-cp2-install", "prod-cp1-install")
    # Every cluster-wide command runs on the init server.
    cluster_wide = ["prod-cluster-ready", "prod-kubeconfig"]
    cluster_wide += [n for n in plain if n.endswith(("-membership", "-forget"))]
    for name in cluster_wide:
        assert plain[name]["connection"]["host"] == "10.20.0.12", name
    # It is never drained nor forgotten; every other node is.
    assert not plain["prod-cp2-membership"].get("delete") and not plain["prod-cp2-forget"].get("delete")
    assert drains(plain["prod-cp1-membership"]["delete"], "prod-cp1")
    assert forgets(plain["prod-cp1-forget"]["delete"], "prod-cp1")


def test_moving_the_init_role_deletes_and_replaces_nothing() -> None:
    """Step one of the two-step move in docs/operations.md: set initServer to another server."""
    config = prod_config()
    before = commands(run(config))
    config["k3s"]["initServer"] = "prod-cp2"
    after = commands(run(config))
    assert before.keys() == after.keys()  # no resource deleted: no forget or drain runs
    for name in before:
        assert before[name].get("triggers") == after[name].get("triggers"), name  # nothing replaced
    # The old init server becomes an ordinary server: from now on it is drained and forgotten
    # when removed (step two), and the new one never is.
    assert forgets(after["prod-cp1-forget"]["delete"], "prod-cp1") and not after["prod-cp2-forget"].get("delete")
    assert "cluster-init: true" in config_yaml(after["prod-cp2-install"]["create"])
    assert "cluster-init" not in config_yaml(after["prod-cp1-install"]["create"])


def test_removing_the_init_server_is_refused_while_it_is_named() -> None:
    config = prod_config()
    config["servers"] = [s for s in config["servers"] if s["name"] != "prod-cp1"]
    with warnings.catch_warnings(), pytest.raises(ConfigError) as caught:
        warnings.simplefilter("ignore")
        parse_settings(config, frozenset({"sshPrivateKey"}), "prod")
    assert f"{NAMESPACE}:k3s.initServer" in caught.value.keys
    assert "'prod-cp1' is not one of the servers" in str(caught.value)


def lifecycle_rules() -> str:
    """docs/operations.md's "Lifecycle rules" section (with its subsections), to the next `## `."""
    text = (ROOT / "docs" / "operations.md").read_text()
    start = text.index("## Lifecycle rules")
    return text[start : text.index("\n## ", start)]


def test_the_docs_give_the_two_step_move_of_the_init_role() -> None:
    section = lifecycle_rules()
    assert "initServer" in section
    assert re.search(r"set `k3s\.initServer` to\s+another\s+server.*?`pulumi up`.*?then\s+remove", section, re.S)


# --- the SSH endpoint is not identity (item 13) ----------------------------------------------


def test_a_new_ssh_endpoint_updates_the_connection_and_replaces_nothing(airgap: dict[str, str]) -> None:
    config = prod_config()
    config["k3s"]["airgap"] = airgap
    before_run = run(config)
    config = copy.deepcopy(config)
    config["agents"][1]["ssh"] = {"host": "w2.example.net", "port": 2222, "user": "admin"}
    config["servers"][1]["ssh"] = {"host": "cp2.example.net"}
    after_run = run(config)
    before, after = commands(before_run), commands(after_run)
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {
        # The scripts bundle, delivered again through the new endpoint: same bundle, same host.
        *(f"prod-{n}-scripts" for n in ("w2", "cp2")),
        *(f"prod-{n}-install" for n in ("w2", "cp2")),
        *(f"prod-{n}-airgap-{f}" for n in ("w2", "cp2") for f in ("install-sh", "k3s", "stage")),
        *(f"prod-{n}-registration" for n in ("w2", "cp2") if f"prod-{n}-registration" in before),
        "prod-cp2-ready",  # runs on cp2: same check, new connection
    }
    for name in changed:
        assert before[name].get("triggers") == after[name].get("triggers"), name
        assert before[name]["connection"] != after[name]["connection"], name
    assert before["prod-w2-scripts"]["stdin"] == after["prod-w2-scripts"]["stdin"]
    assert after["prod-w2-install"]["connection"]["host"] == "w2.example.net"
    assert after["prod-w2-scripts"]["connection"] == after["prod-w2-install"]["connection"]
    assert after["prod-w2-install"]["connection"]["port"] == 2222
    # Its drain and forget go through the init server: they do not need the node's endpoint.
    assert before["prod-w2-forget"] == after["prod-w2-forget"]
    # The scripts step's delete (the leftovers' uninstall, the bundle's removal) is the same
    # text: only its connection moves to the new endpoint.
    for node in ("prod-w2", "prod-cp2"):
        assert after[f"{node}-scripts"]["delete"] == before[f"{node}-scripts"]["delete"], node
    # Nothing is replaced nor deleted.
    assert engine_steps(before_run, after_run) == []


def test_a_new_endpoint_for_the_init_server_moves_every_cluster_wide_command_in_place() -> None:
    config = prod_config()
    before = commands(run(config))
    config["servers"][0]["ssh"] = {"port": 2200}
    after = commands(run(config))
    for name in before:
        assert before[name].get("triggers") == after[name].get("triggers"), name
    assert after["prod-w3-forget"]["connection"]["port"] == 2200
    assert after["prod-cluster-ready"]["connection"]["port"] == 2200


def test_triggers_carry_what_a_node_is_never_how_it_is_reached() -> None:
    config = prod_config()
    config["agents"][0]["ssh"] = {"host": "jump-w1.example.net", "port": 2201, "user": "admin"}
    plain = commands(run(config))
    for name in ("prod-w1-install", "prod-w1-membership", "prod-w1-forget"):
        triggers = plain[name]["triggers"]
        assert triggers[:3] == ["prod-w1", "10.20.0.21", "agent"], name
        assert not {"jump-w1.example.net", "2201", 2201, "admin"} & set(triggers), name


# --- replacement and removal order (item 14) -------------------------------------------------


def test_a_new_address_replaces_the_node_drain_uninstall_forget_then_install(airgap: dict[str, str]) -> None:
    config = prod_config()
    config["k3s"]["airgap"] = airgap
    before = run(config)
    config = copy.deepcopy(config)
    config["agents"][1]["address"] = "10.20.0.99"
    after = run(config)
    steps = engine_steps(before, after)
    mine = node_steps(steps, "prod-w2", ("membership", "install", "forget"))
    copies = {"prod-w2-airgap-install-sh", "prod-w2-airgap-k3s"}
    assert {name for kind, name in mine if kind == "create"} >= copies  # both, in either order
    collapsed: list[Step] = []
    for kind, name in mine:  # the two copies are independent: their order varies
        step = (kind, "prod-w2-airgap-*" if name in copies else name)
        if not collapsed or collapsed[-1] != step:
            collapsed.append(step)
    assert collapsed == [
        ("delete", "prod-w2-membership"),  # drain (through the init server)
        ("delete", "prod-w2-install"),  # uninstall the old host's K3s
        ("delete", "prod-w2-forget"),  # delete its Node object: nothing can register it again
        ("create", "prod-w2-forget"),
        ("create", "prod-w2-airgap-*"),  # staged only after the old uninstall
        ("create", "prod-w2-install"),
        ("create", "prod-w2-membership"),
        ("delete", "prod-w2-airgap-*"),  # the old copies: no delete exists, nothing runs
    ]
    # The scripts step has no triggers: it is updated in place (the bundle goes to the new
    # host, before the new install that waits for it) and never deleted, so the old host's
    # uninstall still finds the bundle it runs.
    assert not [step for step in steps if step[1] == "prod-w2-scripts"]
    assert commands(after)["prod-w2-scripts"]["connection"]["host"] == "10.20.0.99"
    assert after.depends_on("prod-w2-install", "prod-w2-scripts")
    # The deletes that run are the OLD ones: drain and forget from the init server, the
    # uninstall through the old connection, all saved in state before the change.
    old = commands(before)
    assert drains(old["prod-w2-membership"]["delete"], "prod-w2") and forgets(
        old["prod-w2-forget"]["delete"], "prod-w2"
    )
    assert old["prod-w2-install"]["connection"]["host"] == "10.20.0.22"  # the old host
    # Nothing else is deleted: not the other nodes, not the cluster check (it is updated).
    assert {name for kind, name in steps if kind == "delete"} == {
        "prod-w2-membership",
        "prod-w2-install",
        "prod-w2-forget",
        "prod-w2-airgap-install-sh",
        "prod-w2-airgap-k3s",
    }


def test_the_replacement_order_rests_on_property_dependencies_of_triggers() -> None:
    """What the STAND-IN relies on, checked on the real registrations: each step's triggers
    come from the previous step's id, and all three are delete_before_replace."""
    result = run(prod_config())
    for node in ("prod-cp2", "prod-w4"):
        assert result.property_depends_on(f"{node}-install", "triggers", f"{node}-forget")
        assert result.property_depends_on(f"{node}-membership", "triggers", f"{node}-install")
        for step in ("forget", "install", "membership"):
            assert result.by_name(f"{node}-{step}").options["deleteBeforeReplace"] is True
    # The cluster check and the next server only wait (depends_on): a replacement never
    # deletes them.
    assert not result.property_depends_on("prod-cluster-ready", "triggers", "prod-w4-install")
    assert not result.property_depends_on("prod-cp3-install", "triggers", "prod-cp2-install")


def test_removing_a_node_drains_uninstalls_then_forgets(airgap: dict[str, str]) -> None:
    config = prod_config()
    config["k3s"]["airgap"] = airgap
    before = run(config)
    config = copy.deepcopy(config)
    config["servers"] = [s for s in config["servers"] if s["name"] != "prod-cp3"]
    after = run(config)
    steps = [s for s in engine_steps(before, after) if s[0] == "delete"]
    names = [name for _, name in steps]
    assert set(names) == {
        "prod-cp3",
        "prod-cp3-membership",
        "prod-cp3-install",
        "prod-cp3-ready",
        "prod-cp3-forget",
        "prod-cp3-airgap-install-sh",  # copies: no delete (CopyToRemote), nothing runs
        "prod-cp3-airgap-k3s",
        "prod-cp3-airgap-stage",  # removes what was staged and never installed
        "prod-cp3-registration",  # no delete step: the uninstall removes /etc/rancher/k3s
        "prod-cp3-scripts",  # the uninstall again (LEFTOVERS=1: it finds nothing), the bundle's removal
    }
    old = {name: before.by_name(name).plain() for name in names}
    assert cleans(old["prod-cp3-scripts"]["delete"], old["prod-cp3-install"]["delete"])
    # Drain, uninstall, uninstall again and the bundle, then delete the Node object.
    order = [names.index(f"prod-cp3-{step}") for step in ("membership", "install", "scripts", "forget")]
    assert order == sorted(order), names
    # The bundle goes last from its host: every step there ran its delete (with the bundle's code) before.
    host = before.by_name("prod-cp3-scripts").plain()["connection"]
    on_host = [
        n
        for n in names
        if before.by_name(n).type == REMOTE
        and before.by_name(n).plain()["connection"] == host
        and n != "prod-cp3-scripts"
    ]
    assert "prod-cp3-install" in on_host
    assert all(names.index(n) < names.index("prod-cp3-scripts") for n in on_host), names
    assert names.index("prod-cp3-install") < names.index("prod-cp3-airgap-k3s") < names.index("prod-cp3-forget")


def test_a_node_whose_first_install_failed_is_cleaned_from_its_host_on_removal(airgap: dict[str, str]) -> None:
    """A first install that fails leaves no install in the state (nor what waits for it),
    whatever it put on the host. Its scripts step is in the state before the install runs
    (everything on the host waits for it), so removing the node still runs the uninstall on
    the host, through that step's delete (before it removes the bundle whose code it runs):
    after the staged files' and the registration's deletes, and before the Node object's
    delete (a K3s left running could have registered it: the step waits for the forget)."""
    config = prod_config()
    config["k3s"]["airgap"] = airgap
    without = copy.deepcopy(config)
    without["servers"] = [s for s in without["servers"] if s["name"] != "prod-cp3"]
    after = run(without)  # the cluster before prod-cp3 was added, and once it is removed
    full = run(config)
    for step in ("install", "registration", "airgap-stage"):
        assert full.reaches(f"prod-cp3-{step}", "prod-cp3-scripts"), step
    assert full.depends_on("prod-cp3-scripts", "prod-cp3-forget")
    assert not full.reaches("prod-cp3-scripts", "prod-cp3-install")
    # The state the `up` that added prod-cp3 left when its install failed: the cluster as it
    # was, plus the node's steps that ran before the install; not the install, nor what
    # depends on it (its ready check and membership, created only after it).
    install = full.urn("prod-cp3-install")
    missing = {install}
    for registration in full.registrations:  # dependency order
        if set(registration.dependencies) & missing:
            missing.add(registration.urn)
    dropped = {r.name for r in full.registrations if r.urn in missing and r.name.startswith("prod-cp3")}
    assert dropped == {"prod-cp3-install", "prod-cp3-ready", "prod-cp3-membership"}
    created = [r for r in full.registrations if r.name.startswith("prod-cp3") and r.urn not in missing]
    assert "prod-cp3-scripts" in {r.name for r in created}
    failed = Run(registrations=[*after.registrations, *created], outputs=after.outputs)
    in_state = {r.urn for r in failed.registrations}
    for registration in failed.registrations:  # a state the engine could have written
        assert set(registration.dependencies) <= in_state, registration.name
    names = [name for kind, name in engine_steps(failed, after) if kind == "delete"]
    assert set(names) == {
        "prod-cp3",
        "prod-cp3-forget",
        "prod-cp3-airgap-install-sh",
        "prod-cp3-airgap-k3s",
        "prod-cp3-airgap-stage",
        "prod-cp3-registration",
        "prod-cp3-scripts",
    }
    removal = failed.by_name("prod-cp3-scripts").plain()
    # The uninstall the install would have run, with LEFTOVERS=1, on the node's own host.
    assert cleans(removal["delete"], full.by_name("prod-cp3-install").plain()["delete"])
    assert removal["connection"]["host"] == "10.20.0.13"
    for first in ("prod-cp3-registration", "prod-cp3-airgap-stage"):
        assert names.index(first) < names.index("prod-cp3-scripts"), names
    assert names.index("prod-cp3-scripts") < names.index("prod-cp3-forget"), names


# --- a host gone for good (item 13) ----------------------------------------------------------


def _troubleshooting(title: str) -> str:
    """One bold-titled entry of docs/troubleshooting.md, to the next bold title."""
    text = (ROOT / "docs" / "troubleshooting.md").read_text()
    start = text.index(title)
    end = text.find("\n**", start + len(title))
    return text[start : end if end != -1 else None]


def engine_urn(result: Run, name: str) -> str:
    """The URN the engine (and `pulumi stack --show-urns`) gives a resource: its type
    qualified by every ancestor's type but the stack's (the mock monitor only uses the
    parent's)."""
    by_urn = {r.urn: r for r in result.registrations}
    registration = result.by_name(name)
    types = [registration.type]
    parent = by_urn.get(registration.parent)
    while parent is not None:
        types.insert(0, parent.type)
        parent = by_urn.get(parent.parent)
    return f"urn:pulumi:prod::k3s-rancher::{'$'.join(types)}::{name}"


def _edges(registration: Registration) -> set[str]:
    """The URNs `registration` depends on: explicit and property dependencies, and its parent
    (the CLI's state delete refuses a resource any of these edges point at)."""
    edges = set(registration.dependencies) | {registration.parent}
    for urns in registration.property_dependencies.values():
        edges |= set(urns)
    return edges


def on_own_host(result: Run, node: str) -> set[str]:
    """The commands (and copies) that run on `node`'s own host: its scripts step's connection."""
    host = result.by_name(f"{node}-scripts").plain()["connection"]
    return {r.name for r in result.registrations if r.type in (REMOTE, COPY) and r.plain()["connection"] == host}


def state_after_a_failed_removal(before: Run, after: Run, node: str) -> list[Registration]:
    """The state once the `pulumi up` that removes `node` has stopped at its uninstall (the
    host is gone): everything still in the program, as registered now, and the node's removed
    resources but those the engine deleted before the install (its dependents: dependents go
    first). Those independent of the install are all kept: the worst case for what follows."""
    kept = after.names()
    install = before.urn(f"{node}-install")
    deleted: set[str] = set()
    for registration in before.registrations:  # dependency order: dependencies first
        if registration.name not in kept and _edges(registration) & (deleted | {install}):
            deleted.add(registration.urn)
    removed = [r for r in before.registrations if r.name not in kept and r.urn not in deleted]
    return [*after.registrations, *removed]


def drop_from_state(state: list[Registration], urns: list[str]) -> list[Registration]:
    """`pulumi state delete` each of `urns` (mock URNs) in turn, refused as the CLI refuses
    it: a resource not in the state, or one another resource in it depends on."""
    state = list(state)
    for urn in urns:
        assert urn in {r.urn for r in state}, f"{urn} is not in the state"
        dependents = [r.name for r in state if r.urn != urn and urn in _edges(r)]
        assert not dependents, f"the CLI refuses to delete {urn}: {dependents} depend on it"
        state = [r for r in state if r.urn != urn]
    return state


def _documented_drops(before: Run) -> list[str]:
    """The steps docs/troubleshooting.md's "A host is gone for good" drops with `pulumi state delete`, in
    its order, as names of `before` (its example is prod's w3): one quoted URN a command."""
    section = _troubleshooting("**A host is gone for good")
    assert "pulumi stack --show-urns" in section
    names = {engine_urn(before, r.name): r.name for r in before.registrations}
    urns = re.findall(r"pulumi state delete '([^']+)'", section)
    unknown = [urn for urn in urns if urn not in names]
    assert not unknown, f"docs/troubleshooting.md names URNs this program does not register: {unknown}"
    return [names[urn] for urn in urns]


def test_a_gone_host_needs_only_its_install_and_scripts_deleted_from_state() -> None:
    """The documented way out (docs/troubleshooting.md): remove the node from config, `pulumi up` (drain runs, then the
    uninstall fails: the host is gone), `pulumi state delete` the steps whose delete talks to
    that host, `pulumi up` again. That works only if (1) only the install's and the scripts
    step's deletes talk to the node's own host, (2) once the node is out of the program nothing
    still registered depends on them, (3) the docs name those exact URNs, in an order the
    CLI accepts (it refuses to delete a resource others in the state depend on), and (4) what
    is left of the node then has nothing to run on the gone host."""
    config = prod_config()
    before = run(config)
    config["agents"] = [a for a in config["agents"] if a["name"] != "prod-w3"]
    after = run(config)
    on_host = on_own_host(before, "prod-w3")
    assert on_host == {"prod-w3-scripts", "prod-w3-install"}
    assert {r.name for r in before.registrations if r.plain().get("connection", {}).get("host") == "10.20.0.23"} == (
        on_host
    )
    # The scripts step's delete (the uninstall again, the bundle's removal) runs after the
    # uninstall: on a gone host it fails as the uninstall does.
    talking = {name for name in on_host if before.by_name(name).plain().get("delete")}
    assert talking == {"prod-w3-install", "prod-w3-scripts"}
    for name in talking:
        urn = before.urn(name)
        for registration in after.registrations:
            assert urn not in _edges(registration), (name, registration.name)
    # The docs drop exactly those, in the one order the CLI accepts: each before what it
    # depends on (the install waits for the scripts step).
    drops = _documented_drops(before)
    assert drops == ["prod-w3-install", "prod-w3-scripts"], drops
    state = state_after_a_failed_removal(before, after, "prod-w3")
    left = drop_from_state(state, [before.urn(name) for name in drops])
    # The next `pulumi up` deletes the rest of the node: its forget (on the init server) and
    # its component; nothing there talks to the gone host.
    rest = {r.name for r in left if r.name not in after.names()}
    assert rest == {"prod-w3", "prod-w3-forget"}
    assert not rest & on_host


def test_a_gone_host_with_airgap_and_labels_needs_its_staging_and_registration_dropped_too(
    airgap: dict[str, str],
) -> None:
    """Where a node has airgap files or labels/taints, more of its steps are on its host: the
    staging step's delete talks to it, and the copies and the registration depend on the
    scripts step (the CLI refuses to drop it while they are in the state). All go, before
    the scripts step; the docs name them for such a node."""
    config = prod_config()
    config["k3s"]["airgap"] = airgap
    config["agents"][2]["labels"] = {"workload": "batch"}
    assert config["agents"][2]["name"] == "prod-w3"
    before = run(config)
    config = copy.deepcopy(config)
    config["agents"] = [a for a in config["agents"] if a["name"] != "prod-w3"]
    after = run(config)
    extra = ["prod-w3-registration", "prod-w3-airgap-install-sh", "prod-w3-airgap-k3s", "prod-w3-airgap-stage"]
    on_host = on_own_host(before, "prod-w3")
    assert on_host == {"prod-w3-scripts", "prod-w3-install", *extra}
    talking = {name for name in on_host if before.by_name(name).plain().get("delete")}
    assert talking == {"prod-w3-install", "prod-w3-scripts", "prod-w3-airgap-stage"}
    drops = ["prod-w3-install", *extra, "prod-w3-scripts"]
    state = state_after_a_failed_removal(before, after, "prod-w3")
    # Once the install is dropped, the registration and the staging step (which the copies
    # depend on) still depend on the scripts step: the CLI would refuse to drop it before them.
    dropped = drop_from_state(state, [before.urn("prod-w3-install")])
    assert {r.name for r in dropped if before.urn("prod-w3-scripts") in _edges(r)} == {
        "prod-w3-registration",
        "prod-w3-airgap-stage",
    }
    assert {r.name for r in dropped if before.urn("prod-w3-airgap-stage") in _edges(r)} == {
        "prod-w3-airgap-install-sh",
        "prod-w3-airgap-k3s",
    }
    left = drop_from_state(state, [before.urn(name) for name in drops])
    rest = {r.name for r in left if r.name not in after.names()}
    assert rest == {"prod-w3", "prod-w3-forget"}
    section = _troubleshooting("**A host is gone for good")
    for name in extra:
        suffix = name.removeprefix("prod-w3")
        assert suffix in section, f"docs/troubleshooting.md does not name the {suffix} step"


def test_the_kubernetes_provider_never_deletes_unreachable_resources() -> None:
    """A refresh during a short API outage must fail, not drop cert-manager and Rancher from
    state (item 8): the provider is registered without deleteUnreachable, on both topologies."""
    config = prod_config()
    config["rancher"] = {"enabled": True, "hostname": "rancher.prod.example.com", "tls": "rancher"}
    ssh = run_program(config, SECRETS, stack="prod")
    local_config, _ = load_stack_config("local")
    docker = run_program(local_config, {}, stack="local")
    for result, name in ((ssh, "prod-k8s"), (docker, "local-k8s")):
        provider = result.by_name(name)
        assert provider.type == "pulumi:providers:kubernetes"
        assert "deleteUnreachable" not in provider.plain()
        # ... and it is the provider the Helm releases use.
        assert result.by_name("rancher-release").options["provider"].startswith(provider.urn)
    section = _troubleshooting("**The cluster is gone")
    assert "PULUMI_K8S_DELETE_UNREACHABLE=true pulumi refresh" in section


def test_the_docs_never_invite_a_token_change() -> None:
    """Item 5: a token change on a live cluster is refused (by the install, host-side); the
    docs say so, give the rotation procedure, and set `token` only before the first up."""
    lifecycle = lifecycle_rules()
    assert "**refused** by the install" in lifecycle and "k3s token rotate" in lifecycle
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    lines = [line for page in pages for line in page.read_text().splitlines()]
    assert any("config set --secret token" in line for line in lines)
    for line in lines:
        if "config set --secret token" not in line:
            continue
        if line in lifecycle:  # only as the last step of the rotation
            assert lifecycle.index("k3s token rotate") < lifecycle.index(line), line
        else:
            assert "before the first up only" in line, line
