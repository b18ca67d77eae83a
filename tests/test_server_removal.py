"""Removing servers (issue 14 item 3): the quorum rule, the program's refusal before any
resource is registered, and what a removed server's membership runs (drain, delete the Node,
then confirm K3s removed its etcd member, with the token on stdin)."""

from __future__ import annotations

from typing import Any

import pytest

from components.settings import ConfigError
from components.validation.quorum import previous_servers, quorum_error
from policy.shell_inputs import command_inputs
from tests import harness
from tests.harness import TEST_SSH_KEY, Run, node_script, prod_config, run_program

SECRETS = {"sshPrivateKey": TEST_SSH_KEY, "token": "a-fixed-token-for-removal"}
THREE = ["cp1", "cp2", "cp3"]
FIVE = ["cp1", "cp2", "cp3", "cp4", "cp5"]


@pytest.mark.parametrize(
    ("previous", "current", "datastore", "refused"),
    [
        (THREE, ["cp1", "cp2"], "etcd", False),  # 3 -> 2: one at a time is always allowed
        (THREE, ["cp1"], "etcd", True),  # 3 -> 1: 1 < 2 needed
        (["cp1", "cp2"], ["cp1"], "etcd", False),  # 2 -> 1: one at a time
        (FIVE, ["cp1", "cp2", "cp3"], "etcd", False),  # 5 -> 3: 3 >= 3 needed
        (["cp1", "cp2", "cp3", "cp4"], ["cp1", "cp2"], "etcd", True),  # 4 -> 2: 2 < 3 needed
        (FIVE, ["cp1", "cp2"], "etcd", True),  # 5 -> 2
        (THREE, ["cp1"], "sqlite", False),  # no etcd: no rule
        (THREE, ["cp1"], "external", False),
        (None, ["cp1"], "etcd", False),  # first up: nothing to compare with
        (THREE, ["cp1", "cp4", "cp5"], "etcd", True),  # two replaced at once: two members leave
    ],
)
def test_quorum_rule(previous: list[str] | None, current: list[str], datastore: str, refused: bool) -> None:
    assert (quorum_error(previous, current, datastore) is not None) == refused


def test_the_refusal_lists_what_would_go_and_the_steps_last_joined_first() -> None:
    error = quorum_error(THREE, ["cp1"], "etcd")
    assert error is not None
    assert "removing 2 of 3 etcd servers in one update (cp3, cp2)" in error
    assert "one server per `pulumi up`" in error
    assert "up 1: without cp3; up 2: without cp2" in error


def test_previous_servers_come_from_the_nodes_output() -> None:
    nodes = [
        {"name": "cp1", "role": "server", "address": "10.0.0.1"},
        {"name": "w1", "role": "agent", "address": "10.0.0.2"},
        {"name": "cp2", "role": "server", "address": "10.0.0.3"},
    ]
    assert previous_servers({"nodes": nodes}) == ["cp1", "cp2"]
    assert previous_servers({}) is None


def nodes_output(config: dict[str, Any]) -> list[dict[str, str]]:
    return [{"name": s["name"], "role": "server", "address": s["address"]} for s in config["servers"]] + [
        {"name": a["name"], "role": "agent", "address": a["address"]} for a in config["agents"]
    ]


def run(config: dict[str, Any], previous: dict[str, Any] | None = None) -> Run:
    return run_program(config, SECRETS, stack="prod", previous_outputs=previous)


def test_three_to_one_server_is_refused_by_key_before_any_resource() -> None:
    before = prod_config()  # three servers, datastore etcd
    after = prod_config()
    after["servers"] = after["servers"][:1]
    with pytest.raises(ConfigError) as caught:
        run(after, {"nodes": nodes_output(before)})
    assert caught.value.keys == ["k3s-rancher:servers"]
    assert "prod-cp3, prod-cp2" in str(caught.value)


def registered_names(config: dict[str, Any], previous: dict[str, Any]) -> list[str]:
    """The resources a run sends to the engine, counted even when the run fails."""
    return harness.registered_names(lambda: run(config, previous), ConfigError)


def test_a_refused_run_registers_nothing() -> None:
    before, after = prod_config(), prod_config()
    previous = {"nodes": nodes_output(before)}
    after["servers"] = after["servers"][:1]
    assert registered_names(after, previous) == []
    after["servers"] = before["servers"][:2]  # one at a time: the same run goes ahead
    assert "prod-cp1-install" in registered_names(after, previous)


def test_one_server_less_goes_ahead_and_its_membership_confirms_the_member_is_gone() -> None:
    before = prod_config()
    after = prod_config()
    after["servers"] = after["servers"][:2]
    result = run(after, {"nodes": nodes_output(before)})
    assert "prod-cp3-membership" not in result.names()
    assert "prod-cp2-membership" in result.names()
    # The docker topology names its own key.
    docker = {"topology": "docker", "k3s": {"version": "v1.33.5+k3s1", "datastore": "etcd"}, "docker": {"servers": 1}}
    previous = {"nodes": [{"name": f"dev-server-{i}", "role": "server", "address": "x"} for i in range(3)]}
    with pytest.raises(ConfigError) as caught:
        run_program({**docker, "rancher": {"enabled": False}}, previous_outputs=previous)
    assert caught.value.keys == ["k3s-rancher:docker.servers"]


def test_server_memberships_carry_the_member_check_agents_do_not_and_no_membership_gets_a_secret() -> None:
    result = run(prod_config())
    server = result.by_name("prod-cp2-membership")
    delete = server.plain()["delete"]
    removal = node_script(delete)
    # drain_delete.sh, then etcd_member_gone.sh (the /db/info member check), in one command
    assert (removal.name, removal.source[5]) == ("drain_delete", "etcd_member_gone")  # type: ignore[index]
    assert "kc drain" in removal.effective and "/db/info" in removal.effective
    assert command_inputs(delete).variables["MEMBER_TIMEOUT"] == "60"  # type: ignore[union-attr]
    # /db/info from 127.0.0.1 needs no credentials: no token in its text, none on stdin.
    assert SECRETS["token"] not in delete and "stdin" not in server.plain()
    assert server.secret_paths() == {"connection"}  # the SSH key only
    agent = result.by_name("prod-w1-membership").plain()
    assert "/db/info" not in node_script(agent["delete"]).effective and "stdin" not in agent
    init = result.by_name("prod-cp1-membership").plain()
    assert not init.get("delete") and "stdin" not in init


def test_docker_servers_rely_on_the_node_delete_alone() -> None:
    """The rancher/k3s image has no curl: no /db/info check there (and no stdin)."""
    config = {"topology": "docker", "k3s": {"version": "v1.33.5+k3s1", "datastore": "etcd"}, "docker": {"servers": 3}}
    result = run_program({**config, "rancher": {"enabled": False}})
    membership = result.by_name("dev-server-1-membership").plain()
    removal = node_script(membership["delete"])
    assert "kc delete node" in removal.effective and "/db/info" not in removal.effective
    assert membership["delete"].startswith("docker exec dev-server-0 ") and "stdin" not in membership


def test_sqlite_and_external_servers_have_no_member_check() -> None:
    config = prod_config()
    config["k3s"]["datastore"] = "external"
    result = run_program(config, {**SECRETS, "datastoreEndpoint": "postgres://db/k3s"}, stack="prod")
    server = result.by_name("prod-cp2-membership").plain()
    assert "/db/info" not in node_script(server["delete"]).effective and "stdin" not in server


def test_the_previous_outputs_read_is_retried_while_the_checkpoint_is_being_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A first up on the file backend once failed with "failed to load checkpoint: EOF": a few
    retries, then the error stands (the quorum rule is never skipped)."""
    from types import SimpleNamespace

    from components import previous_run

    calls: list[str] = []

    def invoke(token: str, args: dict[str, str]) -> SimpleNamespace:
        calls.append(args["name"])
        if len(calls) < 3:
            raise RuntimeError("failed to load checkpoint: EOF")
        return SimpleNamespace(value={"outputs": {"nodes": [{"name": "cp1", "role": "server"}]}})

    monkeypatch.setattr(previous_run.pulumi, "get_organization", lambda: "org")
    monkeypatch.setattr(previous_run.pulumi, "get_project", lambda: "proj")
    monkeypatch.setattr(previous_run.pulumi, "get_stack", lambda: "dev")
    monkeypatch.setattr(previous_run.pulumi.runtime, "invoke", invoke)
    monkeypatch.setattr(previous_run.time, "sleep", lambda _s: None)
    assert previous_run.own_previous_outputs() == {"nodes": [{"name": "cp1", "role": "server"}]}
    assert calls == ["org/proj/dev"] * 3

    def always_fails(token: str, args: dict[str, str]) -> SimpleNamespace:
        calls.append(args["name"])
        raise RuntimeError("failed to load checkpoint: EOF")

    calls.clear()
    monkeypatch.setattr(previous_run.pulumi.runtime, "invoke", always_fails)
    with pytest.raises(RuntimeError, match="checkpoint"):
        previous_run.own_previous_outputs()
    assert len(calls) == previous_run.READ_ATTEMPTS
