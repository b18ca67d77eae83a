"""What `pulumi up` would do on a second run, an upgrade, a host change, a removal.

Pulumi decides from inputs: identical inputs mean no command re-runs; a change in a remote
command's `triggers` replaces it; any other input change updates it in place (re-running
its create/update script). These tests compare the inputs of two runs.
"""

from __future__ import annotations

import copy
from typing import Any

from policy.shell_inputs import command_inputs
from tests.harness import (
    TEST_SSH_KEY,
    Run,
    command_variables,
    leaves,
    node_script,
    prod_config,
    run_program,
)

SECRETS = {"sshPrivateKey": TEST_SSH_KEY, "token": "a-fixed-token-for-lifecycle"}


def run(config: dict[str, Any], **kwargs: Any) -> Run:
    return run_program(config, SECRETS, stack="prod", **kwargs)


inputs = command_variables


def commands(result: Run) -> dict[str, dict[str, Any]]:
    return {r.name: r.plain() for r in result.of_type("command:remote:Command")}


def test_the_same_config_registers_the_same_graph_so_a_second_up_has_nothing_to_do() -> None:
    """Pulumi diffs inputs: identical inputs, options and dependencies for every resource
    mean no step at all (the engine tier's test_a_second_up_changes_nothing runs it)."""

    def graph(r: Run) -> dict[str, tuple[Any, ...]]:
        return {x.urn: (x.inputs, x.options, sorted(x.dependencies)) for x in r.registrations}

    first, second = graph(run(prod_config())), graph(run(prod_config()))
    assert first == second
    assert len(first) > 40  # every node's commands, the cluster-wide ones and the provider


def test_a_version_change_updates_every_node_in_place_and_reruns_ready_checks() -> None:
    before = commands(run(prod_config()))
    config = prod_config()
    config["k3s"]["version"] = "v1.33.6+k3s1"
    after = commands(run(config))
    installs = [name for name in before if name.endswith("-install")]
    assert len(installs) == 8
    for name in installs:
        assert before[name]["triggers"] == after[name]["triggers"], "a version change must not replace a node"
        assert before[name]["create"] != after[name]["create"]
        assert "K3S_VERSION=v1.33.6+k3s1" in after[name]["create"]
        if name.startswith("prod-w"):  # agents: the restart runs in their k3s.upgrade batch
            # The install's update writes the new version's files and restarts K3s, cordoned
            # and drained (RESTART=roll), in the agent's batch.
            assert "RESTART" not in inputs(after[name]["create"])
            rolled = {"RESTART": "roll", "DRAIN": "1", "DRAIN_TIMEOUT": "300"}
            assert inputs(after[name]["update"]) == {**inputs(after[name]["create"]), **rolled}
            assert before[name]["update"] != after[name]["update"]
        else:
            assert after[name]["update"] == after[name]["create"]
    for name in [n for n in before if n.endswith("-ready")]:
        assert before[name]["create"] != after[name]["create"], f"{name} must re-run after its install changes"
    # Membership (labels, drain) does not depend on the version: it stays untouched.
    for name in [n for n in before if n.endswith("-membership")]:
        assert before[name] == after[name]


def test_changing_one_agents_settings_touches_only_that_agent_and_the_cluster_check() -> None:
    before = commands(run(prod_config()))
    config = prod_config()
    config["k3s"]["agentArgs"] = []
    config["agents"][0]["ssh"] = {"port": 2222}
    after = commands(run(config))
    changed = {name for name in before if before[name] != after.get(name)}
    # The scripts bundle is delivered again through the new endpoint, the install records it
    # (its update runs there: it finds the files as they are, so nothing restarts and nothing
    # is cordoned).
    on_host = {"prod-w1-scripts", "prod-w1-install"}
    assert changed == on_host
    # A new SSH endpoint is not a new node: the install is updated in place.
    assert before["prod-w1-install"]["triggers"] == after["prod-w1-install"]["triggers"]
    for step in ("scripts", "install"):
        assert after[f"prod-w1-{step}"]["connection"]["port"] == 2222, step
    assert before["prod-w1-scripts"]["stdin"] == after["prod-w1-scripts"]["stdin"]
    assert before["prod-w1-install"]["update"] == after["prod-w1-install"]["update"]
    assert before["prod-w1-scripts"]["delete"] == after["prod-w1-scripts"]["delete"]


def test_a_changed_host_replaces_that_node_delete_first() -> None:
    config = prod_config()
    before = run(config)
    config = copy.deepcopy(config)
    config["agents"][1]["address"] = "10.20.0.99"
    after = run(config)
    old, new = before.by_name("prod-w2-install"), after.by_name("prod-w2-install")
    assert old.plain()["triggers"] != new.plain()["triggers"]
    assert new.options["deleteBeforeReplace"] is True
    # Its Node object is drained and deleted before the old host is uninstalled.
    assert after.by_name("prod-w2-membership").options["deleteBeforeReplace"] is True
    assert "prod-w2" in after.by_name("prod-w2-membership").plain()["delete"]


def test_removing_an_agent_removes_only_that_agent() -> None:
    config = prod_config()
    before = commands(run(config))
    config["agents"] = [a for a in config["agents"] if a["name"] != "prod-w3"]
    after = commands(run(config))
    assert set(before) - set(after) == {
        "prod-w3-scripts",
        "prod-w3-forget",
        "prod-w3-install",
        "prod-w3-membership",
    }
    # The removed agent's saved delete steps drain it, uninstall K3s, then delete its Node;
    # the bundle is removed from its host (after the uninstall, which depends on it).
    drain = node_script(before["prod-w3-membership"]["delete"])
    assert drain.name == "drain_delete" and "kc drain" in drain.effective
    assert inputs(before["prod-w3-membership"]["delete"])["NODE_NAME"] == "prod-w3"
    assert "k3s-agent-uninstall.sh" in node_script(before["prod-w3-install"]["delete"]).effective
    # Its scripts step's delete runs the same uninstall again, for what a failed first install
    # would have left (LEFTOVERS=1: after the install's uninstall it finds nothing), then
    # removes the bundle.
    removal = before["prod-w3-scripts"]
    assert "LEFTOVERS" not in inputs(before["prod-w3-install"]["delete"])
    assert inputs(removal["delete"]) == inputs(before["prod-w3-install"]["delete"])
    assert "LEFTOVERS=1" in removal["delete"] and "uninstall_node.sh" in removal["delete"]
    assert removal["connection"] == before["prod-w3-install"]["connection"]
    forget = before["prod-w3-forget"]["delete"]
    assert inputs(forget) == {"NODE_NAME": "prod-w3", "DRAIN_TIMEOUT": "0"}
    assert "kc delete node" in node_script(forget).effective
    assert not before["prod-w3-forget"].get("create")
    assert command_inputs(before["prod-w3-scripts"]["delete"]).name == "remove_scripts"  # type: ignore[union-attr]
    assert before["prod-w3-scripts"]["connection"] == before["prod-w3-install"]["connection"]
    unchanged = set(after) - {"prod-cluster-ready"}
    assert all(before[name] == after[name] for name in unchanged)


def test_the_first_server_is_never_drained_by_its_own_membership() -> None:
    result = commands(run(prod_config()))
    assert "delete" not in result["prod-cp1-membership"] or not result["prod-cp1-membership"]["delete"]
    drain = result["prod-cp2-membership"]["delete"]
    assert inputs(drain)["NODE_NAME"] == "prod-cp2" and int(inputs(drain)["DRAIN_TIMEOUT"]) > 0
    assert "kc drain" in node_script(drain).effective


def test_label_changes_go_through_the_api_not_a_reinstall() -> None:
    before = commands(run(prod_config()))
    config = prod_config()
    config["agents"][3]["labels"] = {"workload": "batch"}
    after = commands(run(config))
    assert before["prod-w4-install"] == after["prod-w4-install"]
    assert before["prod-w4-membership"]["create"] != after["prod-w4-membership"]["create"]
    assert "workload=batch" in after["prod-w4-membership"]["create"]


def _ready_checks(result: Run) -> dict[str, Any]:
    return {r.name: r for r in result.of_type("command:remote:Command") if r.name.endswith("-ready")}


def _secret_change_reruns_ready_checks(config: dict[str, Any], before: dict[str, str], after: dict[str, str]) -> None:
    old = _ready_checks(run_program(config, before, stack="prod"))
    new_run = run_program(config, after, stack="prod")
    new = _ready_checks(new_run)
    assert set(old) == {"prod-cp1-ready", "prod-cp2-ready", "prod-cp3-ready", "prod-cluster-ready"}
    for name, check in old.items():
        # An input change (stdin), so each check is an update: it runs again after K3s restarted.
        assert check.plain() != new[name].plain(), name
        assert check.plain()["create"] == new[name].plain()["create"], name  # the secret is not in the text
        assert "stdin" in new[name].secret_paths(), name
    changed = {value for key, value in after.items() if before.get(key) != value}
    for registration in new_run.registrations:
        for path, value, secret in leaves(registration.inputs):
            if not secret and isinstance(value, str):
                assert not any(s in value for s in changed), (registration.name, path)


def test_a_token_change_reruns_every_ready_check_and_never_shows_the_token() -> None:
    _secret_change_reruns_ready_checks(prod_config(), SECRETS, {**SECRETS, "token": "another-token-for-lifecycle"})


def test_a_datastore_endpoint_change_reruns_every_ready_check() -> None:
    config = prod_config()
    config["k3s"]["datastore"] = "external"
    endpoint = "postgres://k3s:first-password@db.prod.example.com:5432/k3s"
    before = {**SECRETS, "datastoreEndpoint": endpoint}
    _secret_change_reruns_ready_checks(
        config, before, {**before, "datastoreEndpoint": endpoint.replace("first", "second")}
    )
