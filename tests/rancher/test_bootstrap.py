"""The bootstrap password (generated or given, always secret) and the rancher2 Bootstrap that
sets the admin password and server URL."""

from __future__ import annotations

import json
from pathlib import Path

from tests.harness import GENERATED_PASSWORD, SECRET_SIG, unwrap
from tests.rancher.runs import (
    CA,
    CERT,
    GIVEN_PASSWORD,
    TLS_KEY,
    custom_run,
    plain_text_outside_secrets,
    provider_of,
    stack_run,
    values,
)


def test_given_bootstrap_password_is_used_secret_and_nothing_is_generated() -> None:
    run = stack_run("prod", rancherBootstrapPassword=GIVEN_PASSWORD)
    assert values(run)["bootstrapPassword"] == GIVEN_PASSWORD
    assert "values.bootstrapPassword" in run.by_name("rancher-release").secret_paths()
    assert "rancher-bootstrap-password" not in run.names()
    assert unwrap(run.outputs["rancherBootstrapPassword"]) == GIVEN_PASSWORD
    assert SECRET_SIG in run.outputs["rancherBootstrapPassword"]
    for reg in run.registrations:
        assert GIVEN_PASSWORD not in plain_text_outside_secrets(reg.inputs), reg.name


def test_bootstrap_sets_admin_password_and_server_url_through_rancher2() -> None:
    run = custom_run({"bootstrap": True})
    provider = run.by_name("rancher-bootstrap-provider")
    assert provider.type == "pulumi:providers:rancher2"
    inputs = provider.plain()
    assert inputs["apiUrl"] == "https://10.0.0.11.sslip.io"  # Bootstrap sets server-url to it
    assert json.loads(inputs["bootstrap"]) is True
    assert json.loads(inputs["insecure"]) is True  # Rancher's own CA is not known beforehand
    bootstrap = run.by_name("rancher-admin")
    assert bootstrap.type == "rancher2:index/bootstrap:Bootstrap"
    assert provider_of(bootstrap) == provider.urn
    assert run.depends_on("rancher-admin", "rancher-release")
    assert run.depends_on("rancher-bootstrap-provider", "rancher-release")
    assert bootstrap.options["deletedWith"] == run.urn("dev-cluster-ready")
    assert {"password", "initialPassword"} <= bootstrap.secret_paths()
    assert bootstrap.plain()["initialPassword"] == GENERATED_PASSWORD
    assert SECRET_SIG in run.outputs["rancherAdminPassword"]
    assert run.by_name("rancher-admin-password").parent == run.urn("rancher")


def test_bootstrap_trusts_a_private_ca(tmp_path: Path) -> None:
    run = custom_run({"bootstrap": True, "tls": "secret", "tlsCert": CERT, "privateCa": CA}, {"rancherTlsKey": TLS_KEY})
    inputs = run.by_name("rancher-bootstrap-provider").plain()
    assert inputs["caCerts"] == CA
    assert json.loads(inputs["insecure"]) is False
