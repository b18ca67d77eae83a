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
from policy.shell_inputs import parse as parse_inputs
from tests.engine_steps import COPY, REMOTE, Step, engine_steps, node_steps
from tests.harness import ROOT, TEST_SSH_KEY, Registration, Run, load_stack_config, prod_config, run_program

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


def test_the_init_server_is_the_one_named_wherever_it_is_in_the_list() -> None:
    config = prod_config()
    config["k3s"]["initServer"] = "prod-cp2"
    result = run(config)
    plain = commands(result)
    assert "cluster-init: true" in config_yaml(plain["prod-cp2-install"]["create"])
    for other in ("prod-cp1", "prod-cp3"):
        assert "cluster-init" not in config_yaml(plain[f"{other}-install"]["create"])
        assert "server: https://10.20.0.10:6443" in plain[f"{other}-install"]["create"]
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
    assert "drain" in plain["prod-cp1-membership"]["delete"]
    assert "delete node" in plain["prod-cp1-forget"]["delete"]


def test_moving_the_init_role_deletes_and_replaces_nothing() -> None:
    """Step one of the README's two-step move: set initServer to another server."""
    config = prod_config()
    before = commands(run(config))
    config["k3s"]["initServer"] = "prod-cp2"
    after = commands(run(config))
    assert before.keys() == after.keys()  # no resource deleted: no forget or drain runs
    for name in before:
        assert before[name].get("triggers") == after[name].get("triggers"), name  # nothing replaced
    # The old init server becomes an ordinary server: from now on it is drained and forgotten
    # when removed (step two), and the new one never is.
    assert "delete node" in after["prod-cp1-forget"]["delete"] and not after["prod-cp2-forget"].get("delete")
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


def test_the_readme_gives_the_two_step_move_of_the_init_role() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Lifecycle rules") : readme.index("## Secrets")]
    assert "initServer" in section
    assert re.search(r"set `k3s\.initServer` to\s+another\s+server.*?`pulumi up`.*?then\s+remove", section, re.S)


# --- the SSH endpoint is not identity (item 13) ----------------------------------------------


def test_a_new_ssh_endpoint_updates_the_connection_and_replaces_nothing(airgap: dict[str, str]) -> None:
    config = prod_config()
    config["k3s"]["airgap"] = airgap
    before = commands(run(config))
    config = copy.deepcopy(config)
    config["agents"][1]["ssh"] = {"host": "w2.example.net", "port": 2222, "user": "admin"}
    config["servers"][1]["ssh"] = {"host": "cp2.example.net"}
    after = commands(run(config))
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {
        *(f"prod-{n}-install" for n in ("w2", "cp2")),
        "prod-w2-upgrade",  # an agent's k3s.upgrade step on its host: same text, new connection
        *(f"prod-{n}-airgap-{f}" for n in ("w2", "cp2") for f in ("install-sh", "k3s", "stage")),
        *(f"prod-{n}-registration" for n in ("w2", "cp2") if f"prod-{n}-registration" in before),
        "prod-cp2-ready",  # runs on cp2: same check, new connection
    }
    for name in changed:
        assert before[name].get("triggers") == after[name].get("triggers"), name
        assert before[name]["connection"] != after[name]["connection"], name
    assert after["prod-w2-install"]["connection"]["host"] == "w2.example.net"
    assert after["prod-w2-install"]["connection"]["port"] == 2222
    # Its drain and forget go through the init server: they do not need the node's endpoint.
    assert before["prod-w2-forget"] == after["prod-w2-forget"]


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
    # The deletes that run are the OLD ones: drain and forget from the init server, the
    # uninstall through the old connection, all saved in state before the change.
    old = commands(before)
    assert "drain" in old["prod-w2-membership"]["delete"] and "delete node" in old["prod-w2-forget"]["delete"]
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
        "prod-cp3-airgap-install-sh",
        "prod-cp3-airgap-k3s",
        "prod-cp3-airgap-stage",  # no delete steps: the uninstall removes its generation
        "prod-cp3-registration",  # no delete step: the uninstall removes /etc/rancher/k3s
    }
    assert names.index("prod-cp3-membership") < names.index("prod-cp3-install") < names.index("prod-cp3-forget")
    assert names.index("prod-cp3-install") < names.index("prod-cp3-airgap-k3s") < names.index("prod-cp3-forget")


# --- a host gone for good (item 13) ----------------------------------------------------------


def _readme_section(title: str) -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index(title)
    end = readme.find("\n**", start + len(title))
    return readme[start : end if end != -1 else None]


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


def test_a_gone_host_needs_only_its_install_deleted_from_state() -> None:
    """The README's way out: remove the node from config, `pulumi up` (drain runs, then the
    uninstall fails: the host is gone), `pulumi state delete` its install, `pulumi up` again.
    That works only if (1) only the install's delete talks to the node's own host (its
    k3s.upgrade step runs there only on a change, and has no delete), (2) once the node
    is out of the program nothing still registered depends on its install (the CLI refuses to
    delete a resource others depend on), and (3) the README names that exact URN."""
    config = prod_config()
    before = run(config)
    config["agents"] = [a for a in config["agents"] if a["name"] != "prod-w3"]
    after = run(config)
    own_host = "10.20.0.23"
    on_host = {r.name for r in before.registrations if r.plain().get("connection", {}).get("host") == own_host}
    assert on_host == {"prod-w3-install", "prod-w3-upgrade"}
    assert not before.by_name("prod-w3-upgrade").plain().get("delete")
    install = before.urn("prod-w3-install")
    for registration in after.registrations:
        assert install not in registration.dependencies, registration.name
        assert all(install not in urns for urns in registration.property_dependencies.values()), registration.name
    section = _readme_section("**A host is gone for good")
    assert "pulumi stack --show-urns" in section
    urns = re.findall(r"pulumi state delete '([^']+)'", section)
    assert engine_urn(before, "prod-w3-install") in urns  # the README's example is prod's w3


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
    section = _readme_section("**The cluster is gone")
    assert "PULUMI_K8S_DELETE_UNREACHABLE=true pulumi refresh" in section


def test_the_readme_never_invites_a_token_change() -> None:
    """Item 5: a token change on a live cluster is refused (by the install, host-side); the
    README says so, gives the rotation procedure, and sets `token` only before the first up."""
    readme = (ROOT / "README.md").read_text()
    lifecycle = readme[readme.index("## Lifecycle rules") : readme.index("## Secrets")]
    assert "**refused** by the install" in lifecycle and "k3s token rotate" in lifecycle
    for line in readme.splitlines():
        if "config set --secret token" not in line:
            continue
        if line in lifecycle:  # only as the last step of the rotation
            assert lifecycle.index("k3s token rotate") < lifecycle.index(line), line
        else:
            assert "before the first up only" in line, line
