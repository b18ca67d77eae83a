"""newToken, the cluster token's rotation (issue 14 item 4), under Pulumi's mocks: the
rotation step exists only with newToken, on the init server, before the init server's
install; every install then joins with newToken and carries the old token as stdin's ROTATED_FROM,
all of it secret and none of it in command text; the tidy-up (token := new, newToken
removed) changes only stdin; the docker and kubeconfig topologies refuse newToken by key."""

from __future__ import annotations

from typing import Any

import pytest

from components import scripts
from components.config import parse_settings
from components.settings import ConfigError
from tests.harness import (
    GENERATED_PASSWORD,
    TEST_SSH_KEY,
    Run,
    leaves,
    load_stack_config,
    node_script,
    prod_config,
    run_program,
    stdin_values,
)

OLD = "old-token-7c1e0b55d2"
NEW = "new-token-39a4f6e810"
ROTATION = "prod-token-rotation"
SERVERS = ("prod-cp1", "prod-cp2", "prod-cp3")
AGENTS = ("prod-w1", "prod-w2", "prod-w3", "prod-w4", "prod-w5")


def run(secrets: dict[str, str], config: dict[str, Any] | None = None) -> Run:
    return run_program(config or prod_config(), {"sshPrivateKey": TEST_SSH_KEY, **secrets}, stack="prod")


def rotating() -> Run:
    return run({"token": OLD, "newToken": NEW})


def stdin_of(r: Run, name: str) -> dict[str, str]:
    return stdin_values(r.by_name(name).plain()["stdin"])


def test_no_rotation_step_without_new_token() -> None:
    for stack in ("prod", "dev"):
        config, _ = load_stack_config(stack)
        r = run_program(config, {"sshPrivateKey": TEST_SSH_KEY}, stack=stack)
        assert not [n for n in r.names() if "token-rotation" in n], stack


def test_the_rotation_runs_on_the_init_server_before_its_install_and_nothing_else_waits_for_it() -> None:
    r = rotating()
    rotation = r.by_name(ROTATION)
    assert rotation.parent.endswith("K3sCluster::prod")
    assert rotation.plain()["connection"]["host"] == "10.20.0.11"  # prod-cp1, the init server
    command = node_script(rotation.plain()["create"])
    assert command.name == "token_rotation" and "token rotate --new-token" in command.effective
    assert r.depends_on(ROTATION, "prod-cp1-scripts")  # it runs the init server's bundle
    assert not rotation.plain().get("delete")  # the tidy-up deletes it: nothing runs then
    assert r.depends_on("prod-cp1-install", ROTATION)
    # Only the init server's install: the other servers follow it, the agents the last server.
    assert [x.name for x in r.registrations if rotation.urn in x.dependencies] == ["prod-cp1-install"]
    for node in (*SERVERS, *AGENTS):
        assert r.reaches(f"{node}-install", ROTATION), node
    # After the pre-upgrade snapshot (a snapshot taken in the same up needs the old token).
    assert r.depends_on(ROTATION, "prod-pre-upgrade-snapshot")


def test_the_rotation_gets_the_old_and_the_new_token_on_secret_stdin_only() -> None:
    r = rotating()
    rotation = r.by_name(ROTATION)
    assert stdin_values(rotation.plain()["stdin"]) == {"OLD_TOKEN": OLD, "NEW_TOKEN": NEW}
    assert "stdin" in rotation.secret_paths()


def test_every_install_joins_with_the_new_token_and_carries_the_old_one_as_rotated_from() -> None:
    r = rotating()
    for node in (*SERVERS, *AGENTS):
        assert stdin_of(r, f"{node}-install") == {"TOKEN": NEW, "ROTATED_FROM": OLD}, node
        assert "stdin" in r.by_name(f"{node}-install").secret_paths()
    # The ready checks get the servers' install stdin: they re-run when it changes.
    assert stdin_of(r, "prod-cp2-ready")["TOKEN"] == NEW
    assert stdin_of(r, "prod-cluster-ready")["TOKEN"] == NEW
    # A rolled agent's in-place change is its install's update: the same stdin.
    assert "prod-w1-upgrade" not in r.names()


def test_no_token_in_any_command_text_or_other_plain_input() -> None:
    r = rotating()
    for reg in r.registrations:
        for path, value, secret in leaves(reg.inputs):
            if isinstance(value, str) and not secret:
                assert OLD not in value and NEW not in value, f"{reg.name}: {path}"


def test_a_generated_token_is_the_one_rotated_from() -> None:
    r = run({"newToken": NEW})
    assert stdin_of(r, ROTATION) == {"OLD_TOKEN": GENERATED_PASSWORD, "NEW_TOKEN": NEW}
    assert stdin_of(r, "prod-cp1-install") == {"TOKEN": NEW, "ROTATED_FROM": GENERATED_PASSWORD}


def test_the_tidy_up_changes_only_stdin_and_removes_the_rotation_step() -> None:
    """token := the new one, newToken removed: every install re-runs once (its stdin lost
    ROTATED_FROM) with the same command text, so nothing on a host changes and nothing restarts."""
    during, after = rotating(), run({"token": NEW})
    assert ROTATION not in after.names()
    for node in (*SERVERS, *AGENTS):
        old, new = during.by_name(f"{node}-install").plain(), after.by_name(f"{node}-install").plain()
        assert {k for k in old.keys() | new.keys() if old.get(k) != new.get(k)} == {"stdin"}, node
        assert new["stdin"] == scripts.install_stdin(NEW, None)
    # Before the rotation and after the tidy-up, a stack's installs differ by the token only.
    before = run({"token": OLD})
    assert before.by_name("prod-w1-install").plain()["create"] == after.by_name("prod-w1-install").plain()["create"]


def test_install_stdin_carries_rotated_from_only_with_a_rotation() -> None:
    assert scripts.install_stdin("new", None) == "TOKEN=new\n"
    assert scripts.install_stdin("new", None, rotated_from="old") == "TOKEN=new\nROTATED_FROM=old\n"
    assert stdin_values(scripts.install_stdin("new", "pg://x", "a", "b", "u:p", "old")) == {
        "TOKEN": "new",
        "DATASTORE_ENDPOINT": "pg://x",
        "S3_ACCESS_KEY": "a",
        "S3_SECRET_KEY": "b",
        "PROXY_CREDENTIALS": "u:p",
        "ROTATED_FROM": "old",
    }
    with pytest.raises(ValueError, match="single lines"):
        scripts.token_rotation_stdin("old", "new\nline")


def test_the_docker_topology_refuses_new_token_by_key() -> None:
    config, _ = load_stack_config("local")
    with pytest.raises(ConfigError) as caught:
        parse_settings(config, {"newToken"}, "local")
    assert caught.value.keys == ["k3s-rancher:newToken"]
    assert "pulumi destroy" in str(caught.value)


def test_the_kubeconfig_topology_refuses_new_token_by_key() -> None:
    config = {"topology": "kubeconfig", "rancher": {"hostname": "rancher.example.com"}}
    with pytest.raises(ConfigError) as caught:
        parse_settings(config, {"kubeconfig", "newToken"}, "shared")
    assert caught.value.keys == ["k3s-rancher:newToken"]
