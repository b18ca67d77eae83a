"""A new Rancher bootstrap password after the first install is refused by key, at program
start, in preview too (issue 24 item 3): Rancher's chart reuses the bootstrap-secret it made
first and keeps it on uninstall, and Rancher reads the password only at its first start, so a
new one would never reach Rancher while the output rancherBootstrapPassword named it.

Each "previous run" here is the program's own outputs from a first run under mocks (secrets
still wrapped as the engine hands them back), so the record round-trips as it does for real."""

from __future__ import annotations

from typing import Any

import pytest

from components.settings import ConfigError
from components.validation import bootstrap_password as bp
from tests import harness
from tests.harness import GENERATED_PASSWORD, SECRET_SIG, TEST_SSH_KEY, Run, run_program, unwrap
from tests.rancher.runs import one_server

FIRST = "first-bootstrap-password-0123"
SECOND = "second-bootstrap-password-4567"
KEY = "k3s-rancher:rancherBootstrapPassword"
DOCKER = {"topology": "docker", "k3s": {"version": "v1.33.5+k3s1"}, "rancher": {"mode": "docker"}}


def run(
    password: str | None,
    previous: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    preview: bool = False,
) -> Run:
    secrets = {} if config is DOCKER else {"sshPrivateKey": TEST_SSH_KEY}
    if password is not None:
        secrets["rancherBootstrapPassword"] = password
    return run_program(
        config if config is not None else one_server(), secrets, previous_outputs=previous, preview=preview
    )


def refusal(password: str | None, previous: dict[str, Any], config: dict[str, Any] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        run(password, previous, config, preview=True)
    assert caught.value.keys == [KEY]
    return str(caught.value)


def registered(password: str | None, previous: dict[str, Any]) -> list[str]:
    """The resources a run sends to the engine, counted even when the run fails."""
    return harness.registered_names(lambda: run(password, previous), ConfigError)


def test_a_changed_password_is_refused_by_key_with_the_reason_and_what_to_do_instead() -> None:
    installed = run(FIRST).outputs
    message = refusal(SECOND, installed)
    assert "changed after Rancher was installed" in message
    assert "bootstrap-secret" in message and "survives helm uninstall" in message
    assert "would name a password Rancher does not have" in message
    assert "for the first login only" in message and "Change Password" in message
    assert "kubectl -n cattle-system exec deploy/rancher -c rancher -- reset-password" in message
    assert "pulumi stack output rancherBootstrapPassword --show-secrets" in message
    assert FIRST not in message and SECOND not in message
    assert registered(SECOND, installed) == []  # refused before anything is registered


def test_the_same_password_goes_ahead_and_its_record_is_unchanged_and_secret() -> None:
    first = run(FIRST).outputs
    second = run(FIRST, first).outputs
    assert SECRET_SIG in second[bp.DIGEST_OUTPUT]
    record = unwrap(second[bp.DIGEST_OUTPUT])
    assert record == unwrap(first[bp.DIGEST_OUTPUT])  # same digest: no output change on a no-op up
    assert record["mode"] == "helm" and record["source"] == "config"
    assert record["digest"].startswith("scrypt$") and FIRST not in record["digest"]
    assert unwrap(second["rancherBootstrapPassword"]) == FIRST


def test_a_generated_password_stays_and_only_its_own_value_may_be_set() -> None:
    installed = run(None).outputs
    assert unwrap(installed[bp.DIGEST_OUTPUT])["source"] == "generated"
    run(None, installed)  # the same RandomPassword: nothing to refuse
    assert "changed after Rancher was installed" in refusal(SECOND, installed)
    pinned = run(GENERATED_PASSWORD, installed).outputs  # the generated one, now set in config
    assert unwrap(pinned[bp.DIGEST_OUTPUT])["source"] == "config"


def test_removing_a_given_password_is_refused_a_new_one_would_be_generated() -> None:
    installed = run(FIRST).outputs
    message = refusal(None, installed)
    assert "removed after Rancher was installed" in message and "generate a new bootstrap password" in message


def test_the_single_node_container_keeps_its_first_password_too() -> None:
    installed = run(FIRST, config=DOCKER).outputs
    assert unwrap(installed[bp.DIGEST_OUTPUT])["mode"] == "docker"
    message = refusal(SECOND, installed, DOCKER)
    assert "data volume" in message and "docker exec <stack>-rancher reset-password" in message


def test_a_first_install_another_mode_or_rancher_off_compares_nothing() -> None:
    run(SECOND, {})  # a new stack
    installed = run(FIRST).outputs
    run(SECOND, installed, DOCKER)  # another Rancher (the container has its own data)
    off = run(FIRST, config=one_server({"enabled": False})).outputs
    assert bp.DIGEST_OUTPUT not in off and "rancherBootstrapPassword" not in off
    run(SECOND, off)  # Rancher was off in the last run: this is its first install


def test_a_stack_last_updated_by_0_2_0_is_compared_with_the_password_it_exported() -> None:
    # 0.2.0 exported the password itself (a secret) and no record.
    installed = run(FIRST).outputs
    old = {k: v for k, v in installed.items() if k != bp.DIGEST_OUTPUT}
    assert "changed after Rancher was installed" in refusal(SECOND, old)
    upgraded = run(FIRST, old).outputs
    assert bp.matches(FIRST, unwrap(upgraded[bp.DIGEST_OUTPUT])["digest"])
    # Removed in the same up as the upgrade: 0.2.0 did not record whether it was given, so
    # the generated one is known too late to refuse; the output keeps naming Rancher's.
    removed = run(None, old).outputs
    assert unwrap(removed["rancherBootstrapPassword"]) == FIRST
    assert bp.matches(FIRST, unwrap(removed[bp.DIGEST_OUTPUT])["digest"])
    assert SECRET_SIG in removed["rancherBootstrapPassword"]


def test_the_digest_is_scrypt_salted_per_stack_and_checks_only_its_own_password() -> None:
    a, b = (
        bp.digest(FIRST, bp.stack_salt("org/k3s-rancher/dev")),
        bp.digest(FIRST, bp.stack_salt("org/k3s-rancher/prod")),
    )
    assert a != b and a == bp.digest(FIRST, bp.stack_salt("org/k3s-rancher/dev"))
    assert bp.matches(FIRST, a) and bp.matches(FIRST, b)
    assert not bp.matches(SECOND, a)
    assert not bp.matches(FIRST, "sha256$abc") and not bp.matches(FIRST, "garbage")
    assert bp.previous({bp.DIGEST_OUTPUT: {"mode": "helm", "digest": a}}, "helm").knows(FIRST)
    assert not bp.previous({bp.DIGEST_OUTPUT: {"mode": "helm", "digest": a}}, "docker").installed
