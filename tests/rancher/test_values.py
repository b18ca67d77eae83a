"""The Rancher chart values: TLS sources, private CA, replicas, timeout, ingress class,
airgap registry, values deep-merged over the computed ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
import pytest

from components import charts
from components.config import parse_settings
from components.rancher import clears_cacerts, publicly_trusted, rancher_values
from components.settings import ConfigError
from tests.harness import TEST_SSH_KEY, run_program
from tests.rancher.runs import CA, CERT, TLS_KEY, custom_run, one_server, plain_text_outside_secrets, values


def test_tls_secret_creates_the_ingress_secret_and_skips_cert_manager() -> None:
    run = custom_run({"tls": "secret", "tlsCert": CERT}, {"rancherTlsKey": TLS_KEY})
    assert "cert-manager-release" not in run.names() and "cert-manager-namespace" not in run.names()
    assert "certManagerVersion" not in run.outputs
    secret = run.by_name("rancher-tls-ingress")
    plain = secret.plain()
    assert plain["type"] == "kubernetes.io/tls"
    assert plain["metadata"] == {"name": "tls-rancher-ingress", "namespace": "cattle-system"}
    assert plain["stringData"] == {"tls.crt": CERT, "tls.key": TLS_KEY}
    assert any(path.startswith("stringData") for path in secret.secret_paths())
    assert TLS_KEY not in plain_text_outside_secrets(secret.inputs)
    assert run.depends_on("rancher-release", "rancher-tls-ingress")
    assert "rancher-tls-ca" not in run.names()
    v = values(run)
    assert v["ingress"]["tls"] == {"source": "secret", "secretName": "tls-rancher-ingress"}
    assert "privateCA" not in v
    assert v["agentTLSMode"] == "system-store"  # a publicly trusted certificate


def test_tls_secret_with_private_ca(tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text(CA)
    run = custom_run({"tls": "secret", "tlsCert": CERT, "privateCa": str(ca_file)}, {"rancherTlsKey": TLS_KEY})
    ca = run.by_name("rancher-tls-ca").plain()
    assert ca["metadata"] == {"name": "tls-ca", "namespace": "cattle-system"}
    assert ca["stringData"] == {"cacerts.pem": CA}
    assert run.depends_on("rancher-release", "rancher-tls-ca")
    v = values(run)
    assert v["privateCA"] is True
    assert "agentTLSMode" not in v  # strict: agents trust exactly this CA


def test_replicas_default_follows_server_count() -> None:
    assert values(custom_run())["replicas"] == 1
    three = one_server(
        servers=[{"name": f"cp{i}", "address": f"10.0.0.1{i}"} for i in range(3)],
        k3s={"initServer": "cp0"},
        rancher={},
    )
    run = run_program(three, {"sshPrivateKey": TEST_SSH_KEY})
    assert values(run)["replicas"] == 3
    assert values(custom_run({"replicas": 2}))["replicas"] == 2


def test_timeout_is_configurable() -> None:
    run = custom_run({"timeout": 1800})
    assert run.by_name("rancher-release").plain()["timeout"] == 1800
    assert run.by_name("cert-manager-release").plain()["timeout"] == 1800


def test_ingress_class_and_registry_for_airgap() -> None:
    run = custom_run(
        {
            "ingressClassName": "nginx",
            "systemDefaultRegistry": "registry.internal:5000",
            "tls": "letsEncrypt",
            "letsEncryptEmail": "ops@example.com",
            "letsEncryptEnvironment": "staging",
        }
    )
    v = values(run)
    assert v["ingress"]["ingressClassName"] == "nginx"
    assert v["letsEncrypt"]["ingress"] == {"class": "nginx"}
    assert v["letsEncrypt"]["environment"] == "staging"
    # The chart clears Rancher's CA for letsEncrypt in both environments (--no-cacerts): strict
    # agents would trust nothing, so the mode is system-store (see the staging test below).
    assert v["agentTLSMode"] == "system-store"
    assert v["systemDefaultRegistry"] == "registry.internal:5000"
    assert v["useBundledSystemChart"] is True


def test_rancher_values_are_deep_merged_over_the_computed_ones() -> None:
    run = custom_run(
        {
            "values": {"ingress": {"extraAnnotations": {"a": "b"}}, "auditLog": {"level": 1}},
            "certManager": {"values": {"image": {"registry": "registry.internal"}}},
        }
    )
    v = values(run)
    assert v["ingress"] == {"ingressClassName": "traefik", "tls": {"source": "rancher"}, "extraAnnotations": {"a": "b"}}
    assert v["auditLog"] == {"level": 1}
    assert v["hostname"] == "10.0.0.11.sslip.io"
    cm = run.by_name("cert-manager-release").plain()["values"]
    assert cm == {"crds": {"enabled": True}, "image": {"registry": "registry.internal"}}


def test_deep_merge_keeps_both_sides_and_does_not_mutate() -> None:
    base = {"a": {"b": 1, "c": {"d": 2}}, "e": [1]}
    over = {"a": {"c": {"f": 3}}, "e": [2], "g": None}
    merged = charts.deep_merge(base, over)
    assert merged == {"a": {"b": 1, "c": {"d": 2, "f": 3}}, "e": [2], "g": None}
    assert base == {"a": {"b": 1, "c": {"d": 2}}, "e": [1]}


def test_rancher_values_pure() -> None:
    settings = parse_settings(
        one_server({"tls": "letsEncrypt", "letsEncryptEmail": "ops@example.com"}), {"sshPrivateKey"}
    ).rancher
    assert publicly_trusted(settings)
    v = rancher_values(settings, "pw")
    assert v["bootstrapPassword"] == "pw"
    assert v["letsEncrypt"]["email"] == "ops@example.com"
    assert v["agentTLSMode"] == "system-store"


@pytest.mark.parametrize(
    ("rancher", "secrets", "mode"),
    [
        ({}, {}, None),  # Rancher's own CA: cacerts holds it, strict (the default) works
        ({"tls": "letsEncrypt", "letsEncryptEmail": "ops@example.com"}, {}, "system-store"),
        (
            {"tls": "letsEncrypt", "letsEncryptEmail": "ops@example.com", "letsEncryptEnvironment": "staging"},
            {},
            "system-store",
        ),
        ({"tls": "secret", "tlsCert": CERT}, {"rancherTlsKey": TLS_KEY}, "system-store"),
        ({"tls": "secret", "tlsCert": CERT, "privateCa": CA}, {"rancherTlsKey": TLS_KEY}, None),
    ],
    ids=["rancher", "letsEncrypt", "letsEncrypt-staging", "secret", "secret-private-ca"],
)
def test_agents_never_get_strict_where_the_chart_clears_rancher_ca(
    rancher: dict[str, Any], secrets: dict[str, str], mode: str | None
) -> None:
    """Issue 24 item 4: the chart runs Rancher with --no-cacerts for letsEncrypt (both
    environments) and for tls secret without a private CA; strict agents (the default of a
    fresh Rancher >= 2.9) then trust no CA at all."""
    settings = parse_settings(one_server(rancher), {"sshPrivateKey", *secrets}).rancher
    assert clears_cacerts(settings) == (mode is not None)
    assert rancher_values(settings, "pw").get("agentTLSMode") == mode


def test_letsencrypt_staging_says_downstream_agents_cannot_connect(monkeypatch: pytest.MonkeyPatch) -> None:
    messages: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda msg, *a, **k: messages.append(msg))
    custom_run({"tls": "letsEncrypt", "letsEncryptEmail": "ops@example.com", "letsEncryptEnvironment": "staging"})
    custom_run({"tls": "letsEncrypt", "letsEncryptEmail": "ops@example.com"})
    (warning,) = [m for m in messages if "letsEncryptEnvironment staging" in m]
    assert "no cluster can be imported or created" in warning and "production before adding clusters" in warning


def test_strict_agents_where_the_chart_clears_rancher_ca_are_refused_by_key() -> None:
    staging = {"tls": "letsEncrypt", "letsEncryptEmail": "ops@example.com", "letsEncryptEnvironment": "staging"}
    with pytest.raises(ConfigError) as caught:
        custom_run({**staging, "values": {"agentTLSMode": "strict"}})
    assert caught.value.keys == ["k3s-rancher:rancher.values.agentTLSMode"]
    assert "--no-cacerts" in str(caught.value)
    # With Rancher's own CA, strict is what a fresh install does anyway: accepted.
    assert values(custom_run({"values": {"agentTLSMode": "strict"}}))["agentTLSMode"] == "strict"


@pytest.mark.parametrize(
    ("cert_manager_values", "key"),
    [
        ({"crds": {"enabled": False}}, "k3s-rancher:rancher.certManager.values.crds.enabled"),
        ({"crds": "yes"}, "k3s-rancher:rancher.certManager.values.crds"),
        ({"installCRDs": True}, "k3s-rancher:rancher.certManager.values.installCRDs"),
    ],
)
def test_cert_manager_values_that_would_drop_or_double_its_crds_are_refused_by_key(
    cert_manager_values: dict[str, Any], key: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        custom_run({"certManager": {"values": cert_manager_values}})
    assert caught.value.keys == [key]
