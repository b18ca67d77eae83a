"""Rancher on the cluster (rancher.mode helm) under mocks: cert-manager and Rancher releases,
their provider, order, values, secrets and teardown options; and the pure chart helpers."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from components import charts
from components.config import ConfigError, parse_settings
from components.rancher import publicly_trusted, rancher_values
from tests.harness import (
    GENERATED_PASSWORD,
    SECRET_SIG,
    TEST_SSH_KEY,
    Registration,
    Run,
    load_stack_config,
    run_program,
    unwrap,
)

SSH_STACKS = ["dev", "prod"]
RELEASE = "kubernetes:helm.sh/v3:Release"
RANCHER_TYPES = (
    RELEASE,
    "kubernetes:core/v1:Namespace",
    "kubernetes:core/v1:Secret",
    "k3s-rancher:index:RancherDeployment",
    "pulumi:providers:rancher2",
    "rancher2:index/bootstrap:Bootstrap",
)
GIVEN_PASSWORD = "given-bootstrap-password-0123"
CERT = "-----BEGIN CERTIFICATE-----\nTEST-CERT\n-----END CERTIFICATE-----\n"
CA = "-----BEGIN CERTIFICATE-----\nTEST-CA\n-----END CERTIFICATE-----\n"
TLS_KEY = "-----BEGIN PRIVATE KEY-----\nTEST-KEY-SECRET\n-----END PRIVATE KEY-----\n"


def stack_run(stack: str, rancher: dict[str, Any] | None = None, **secrets: str) -> Run:
    config, stack_secrets = load_stack_config(stack)
    if rancher is not None:
        config["rancher"] = {**config.get("rancher", {}), **rancher}
    stack_secrets.setdefault("sshPrivateKey", TEST_SSH_KEY)
    stack_secrets.update(secrets)
    return run_program(config, stack_secrets, stack=stack)


def one_server(rancher: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "topology": "ssh",
        "servers": [{"name": "cp1", "address": "10.0.0.11"}],
        "rancher": rancher or {},
    }
    config.update(extra)
    return config


def custom_run(rancher: dict[str, Any] | None = None, secrets: dict[str, str] | None = None, **extra: Any) -> Run:
    return run_program(one_server(rancher, **extra), {"sshPrivateKey": TEST_SSH_KEY, **(secrets or {})})


def values(run: Run) -> dict[str, Any]:
    return run.by_name("rancher-release").plain()["values"]


def provider_of(reg: Registration) -> str:
    """The provider reference is '<urn>::<id>'; return the URN."""
    return reg.options["provider"].rsplit("::", 1)[0]


def tiny_chart(tmp_path: Path, name: str, version: str, packed: bool = True) -> Path:
    """A minimal chart of our own (never a vendored third-party chart)."""
    chart_yaml = f"apiVersion: v2\nname: {name}\nversion: {version}\nappVersion: {version}\n"
    template = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-probe\n"
    if not packed:
        root = tmp_path / name
        (root / "templates").mkdir(parents=True)
        (root / "Chart.yaml").write_text(chart_yaml)
        (root / "templates" / "probe.yaml").write_text(template)
        return root
    path = tmp_path / f"{name}-{version}.tgz"
    with tarfile.open(path, "w:gz") as archive:
        for member, text in ((f"{name}/Chart.yaml", chart_yaml), (f"{name}/templates/probe.yaml", template)):
            data = text.encode()
            info = tarfile.TarInfo(member)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def plain_text_outside_secrets(value: Any) -> str:
    """Everything in a wire-form value that is not inside a secret wrapper, as text."""
    if isinstance(value, dict):
        if SECRET_SIG in value:
            return ""
        return " ".join(f"{k} {plain_text_outside_secrets(v)}" for k, v in value.items())
    if isinstance(value, list):
        return " ".join(plain_text_outside_secrets(v) for v in value)
    return json.dumps(value)


@pytest.fixture(scope="module", params=SSH_STACKS)
def stack(request: pytest.FixtureRequest) -> tuple[str, Run]:
    return request.param, stack_run(request.param)


# --- the graph, for each SSH example stack ---------------------------------------------


def test_rancher_is_one_component_with_its_children(stack: tuple[str, Run]) -> None:
    _, run = stack
    component = run.by_name("rancher")
    assert component.type == "k3s-rancher:index:RancherDeployment"
    for child in ("cert-manager-namespace", "cattle-system-namespace", "cert-manager-release", "rancher-release"):
        assert run.by_name(child).parent == component.urn, child
    assert run.by_name("rancher-bootstrap-password").parent == component.urn


def test_releases_use_the_cluster_provider_which_waits_for_cluster_ready(stack: tuple[str, Run]) -> None:
    name, run = stack
    provider = run.urn(f"{name}-k8s")
    assert run.depends_on(f"{name}-k8s", f"{name}-cluster-ready")
    for child in ("cert-manager-namespace", "cattle-system-namespace", "cert-manager-release", "rancher-release"):
        assert provider_of(run.by_name(child)) == provider, child


def test_rancher_waits_for_cert_manager(stack: tuple[str, Run]) -> None:
    _, run = stack
    assert run.depends_on("rancher-release", "cert-manager-release")
    assert run.depends_on("rancher-release", "cattle-system-namespace")
    assert run.depends_on("cert-manager-release", "cert-manager-namespace")
    assert not run.reaches("cert-manager-release", "rancher-release")


def test_release_names_namespaces_charts_and_versions(stack: tuple[str, Run]) -> None:
    _, run = stack
    rancher = run.by_name("rancher-release").plain()
    assert rancher["name"] == "rancher"
    assert rancher["namespace"] == "cattle-system"
    assert rancher["chart"] == "rancher"
    assert rancher["repositoryOpts"] == {"repo": "https://releases.rancher.com/server-charts/stable"}
    assert rancher["version"] == "2.12.3"
    cm = run.by_name("cert-manager-release").plain()
    assert (cm["name"], cm["namespace"], cm["chart"], cm["version"]) == (
        "cert-manager",
        "cert-manager",
        "cert-manager",
        "v1.18.2",
    )
    assert cm["repositoryOpts"] == {"repo": "https://charts.jetstack.io"}
    assert cm["values"] == {"crds": {"enabled": True}}


def test_releases_wait_bounded_and_atomic(stack: tuple[str, Run]) -> None:
    _, run = stack
    for release in ("cert-manager-release", "rancher-release"):
        inputs = run.by_name(release).plain()
        assert inputs["timeout"] == 900  # Helm's default 300 s is too short for Rancher
        assert inputs["atomic"] is True
        assert inputs.get("skipAwait") is not True
        assert inputs["waitForJobs"] is True  # cert-manager's startupapicheck proves the webhook


def test_values_carry_the_configured_settings(stack: tuple[str, Run]) -> None:
    name, run = stack
    v = values(run)
    if name == "dev":
        assert v["hostname"] == "192.168.56.10.sslip.io"
        assert v["replicas"] == 1
        assert v["ingress"]["tls"] == {"source": "rancher"}
        assert "letsEncrypt" not in v and "agentTLSMode" not in v
    else:
        assert v["hostname"] == "rancher.prod.example.com"
        assert v["replicas"] == 3
        assert v["ingress"]["tls"] == {"source": "letsEncrypt"}
        assert v["letsEncrypt"] == {
            "email": "platform@example.com",
            "environment": "production",
            "ingress": {"class": "traefik"},
        }
        assert v["agentTLSMode"] == "system-store"
    assert v["ingress"]["ingressClassName"] == "traefik"


def test_bootstrap_password_is_generated_and_secret(stack: tuple[str, Run]) -> None:
    _, run = stack
    release = run.by_name("rancher-release")
    assert "values.bootstrapPassword" in release.secret_paths()
    assert values(run)["bootstrapPassword"] == GENERATED_PASSWORD
    assert run.depends_on("rancher-release", "rancher-bootstrap-password")
    for reg in run.registrations:
        assert GENERATED_PASSWORD not in plain_text_outside_secrets(reg.inputs), reg.name


def test_everything_on_the_cluster_is_deleted_with_it(stack: tuple[str, Run]) -> None:
    name, run = stack
    ready = run.urn(f"{name}-cluster-ready")
    on_cluster = [r for r in run.registrations if r.custom and provider_of(r) == run.urn(f"{name}-k8s")]
    assert {r.name for r in on_cluster} >= {"cert-manager-release", "rancher-release", "cattle-system-namespace"}
    for reg in on_cluster:
        assert reg.options["deletedWith"] == ready, reg.name


def test_exports(stack: tuple[str, Run]) -> None:
    name, run = stack
    outputs = run.outputs
    host = "192.168.56.10.sslip.io" if name == "dev" else "rancher.prod.example.com"
    assert outputs["rancherUrl"] == f"https://{host}"
    assert outputs["rancherVersion"] == "2.12.3"
    assert outputs["certManagerVersion"] == "v1.18.2"
    assert SECRET_SIG in outputs["rancherBootstrapPassword"]
    assert unwrap(outputs["rancherBootstrapPassword"]) == GENERATED_PASSWORD
    assert "rancherAdminPassword" not in outputs  # bootstrap is off in the examples


# --- custom configs -----------------------------------------------------------------------


def test_given_bootstrap_password_is_used_secret_and_nothing_is_generated() -> None:
    run = stack_run("prod", rancherBootstrapPassword=GIVEN_PASSWORD)
    assert values(run)["bootstrapPassword"] == GIVEN_PASSWORD
    assert "values.bootstrapPassword" in run.by_name("rancher-release").secret_paths()
    assert "rancher-bootstrap-password" not in run.names()
    assert unwrap(run.outputs["rancherBootstrapPassword"]) == GIVEN_PASSWORD
    assert SECRET_SIG in run.outputs["rancherBootstrapPassword"]
    for reg in run.registrations:
        assert GIVEN_PASSWORD not in plain_text_outside_secrets(reg.inputs), reg.name


@pytest.mark.parametrize("stack_name", SSH_STACKS)
def test_disabled_registers_nothing_of_rancher(stack_name: str) -> None:
    run = stack_run(stack_name, rancher={"enabled": False})
    assert not [r.name for r in run.registrations if r.type in RANCHER_TYPES]
    passwords = [r.name for r in run.of_type("random:index/randomPassword:RandomPassword")]
    assert passwords == ["cluster-token"]
    assert not [key for key in run.outputs if key.startswith(("rancher", "certManager"))]


def test_disabled_ignores_rancher_problems() -> None:
    # A Rancher setting that would be refused does not matter while Rancher is off.
    run = custom_run({"enabled": False, "tls": "letsEncrypt"})
    assert not run.of_type(RELEASE)


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
    assert "agentTLSMode" not in v  # staging certificates are not publicly trusted
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


@pytest.mark.parametrize("packed", [True, False])
def test_local_chart_is_installed_from_its_path(tmp_path: Path, packed: bool) -> None:
    rancher_chart = tiny_chart(tmp_path, "rancher", "2.12.3", packed)
    cm_chart = tiny_chart(tmp_path, "cert-manager", "v1.18.2", packed)
    run = custom_run({"chartRepo": str(rancher_chart), "certManager": {"chartRepo": str(cm_chart)}})
    rancher = run.by_name("rancher-release").plain()
    assert rancher["chart"] == str(rancher_chart)
    assert "repositoryOpts" not in rancher
    assert rancher["version"] == "2.12.3"  # a version bump with a new archive shows as an update
    cm = run.by_name("cert-manager-release").plain()
    assert cm["chart"] == str(cm_chart)
    assert "repositoryOpts" not in cm


def test_oci_chart_repository() -> None:
    run = custom_run({"certManager": {"chartRepo": "oci://quay.io/jetstack/charts"}})
    cm = run.by_name("cert-manager-release").plain()
    assert cm["chart"] == "oci://quay.io/jetstack/charts/cert-manager"
    assert cm["version"] == "v1.18.2"
    assert "repositoryOpts" not in cm


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


def test_preview_registers_the_same_graph() -> None:
    config = one_server({"bootstrap": True})
    run = run_program(config, {"sshPrivateKey": TEST_SSH_KEY}, preview=True)
    assert {"cert-manager-release", "rancher-release", "rancher-admin"} <= run.names()


# --- bad config: one ConfigError naming the key, before anything is registered -------------

BAD_RANCHER = [
    pytest.param({"tls": "letsEncrypt"}, {}, "k3s-rancher:rancher.letsEncryptEmail", id="letsencrypt-no-email"),
    pytest.param(
        {"tls": "letsEncrypt", "letsEncryptEmail": "not an email"},
        {},
        "k3s-rancher:rancher.letsEncryptEmail",
        id="letsencrypt-bad-email",
    ),
    pytest.param({"hostname": "rancher_example!"}, {}, "k3s-rancher:rancher.hostname", id="hostname-not-dns"),
    pytest.param({"hostname": "10.0.0.11"}, {}, "k3s-rancher:rancher.hostname", id="hostname-ip"),
    pytest.param({"replicas": 0}, {}, "k3s-rancher:rancher.replicas", id="replicas-zero"),
    pytest.param({"tls": "secret"}, {"rancherTlsKey": TLS_KEY}, "k3s-rancher:rancher.tlsCert", id="secret-no-cert"),
    pytest.param({"tls": "secret", "tlsCert": CERT}, {}, "k3s-rancher:rancherTlsKey", id="secret-no-key"),
    pytest.param({"version": "2.10.3"}, {}, "k3s-rancher:rancher.version", id="rancher-too-old-for-k3s"),
    pytest.param({"version": "2.8.5"}, {}, "k3s-rancher:rancher.version", id="rancher-unknown-line"),
    pytest.param({"chartRepo": "/nonexistent/rancher.tgz"}, {}, "k3s-rancher:rancher.chartRepo", id="chart-missing"),
    pytest.param(
        {"values": {"bootstrapPassword": "plain"}},
        {},
        "k3s-rancher:rancher.values.bootstrapPassword",
        id="password-in-values",
    ),
    pytest.param(
        {"certManager": {"version": "v1.14.5"}},
        {},
        "k3s-rancher:rancher.certManager.version",
        id="cert-manager-without-crds-enabled",
    ),
    pytest.param({"privateCa": CA}, {}, "k3s-rancher:rancher.privateCa", id="private-ca-without-secret"),
    pytest.param({"timeout": 10}, {}, "k3s-rancher:rancher.timeout", id="timeout-too-short"),
]


@pytest.mark.parametrize(("rancher", "secrets", "key"), BAD_RANCHER)
def test_bad_rancher_config_names_the_key(rancher: dict[str, Any], secrets: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        custom_run(rancher, secrets)
    assert key in caught.value.keys, caught.value


def test_incompatible_k3s_for_rancher_names_the_version_key() -> None:
    with pytest.raises(ConfigError) as caught:
        custom_run({"version": "2.12.3"}, k3s={"version": "v1.35.1+k3s1"})
    assert caught.value.keys == ["k3s-rancher:rancher.version"]
    assert "1.31 to 1.33" in str(caught.value)


def test_dns_api_address_needs_a_hostname() -> None:
    with pytest.raises(ConfigError) as caught:
        custom_run({}, k3s={"apiAddress": "k3s.example.com"})
    assert caught.value.keys == ["k3s-rancher:rancher.hostname"]


def test_local_chart_of_another_version_is_refused(tmp_path: Path) -> None:
    chart = tiny_chart(tmp_path, "rancher", "2.12.1")
    with pytest.raises(ConfigError) as caught:
        parse_settings(one_server({"chartRepo": str(chart)}), {"sshPrivateKey"})
    assert caught.value.keys == ["k3s-rancher:rancher.chartRepo"]
    assert "2.12.1" in str(caught.value) and "2.12.3" in str(caught.value)


def test_local_chart_of_another_name_is_refused(tmp_path: Path) -> None:
    chart = tiny_chart(tmp_path, "cert-manager", "v1.18.2")
    with pytest.raises(ConfigError) as caught:
        parse_settings(one_server({"chartRepo": str(chart)}), {"sshPrivateKey"})
    assert caught.value.keys == ["k3s-rancher:rancher.chartRepo"]


# --- pure helpers ---------------------------------------------------------------------------


def test_chart_source_kinds() -> None:
    assert charts.chart_source("https://charts.example.com/", "x", "1.0.0") == charts.ChartSource(
        chart="x", version="1.0.0", repo="https://charts.example.com/"
    )
    assert charts.chart_source("oci://r.example.com/charts/", "x", "1.0.0").chart == "oci://r.example.com/charts/x"
    local = charts.chart_source("./charts/x-1.0.0.tgz", "x", "1.0.0")
    assert (local.chart, local.repo) == ("./charts/x-1.0.0.tgz", None)


def test_local_chart_error(tmp_path: Path) -> None:
    packed = tiny_chart(tmp_path, "rancher", "2.12.3")
    assert charts.local_chart_error(str(packed), "rancher", "2.12.3") is None
    assert (
        charts.local_chart_error(str(tiny_chart(tmp_path, "rancher", "2.12.3", packed=False)), "rancher", "2.12.3")
        is None
    )
    not_a_chart = tmp_path / "notes.txt"
    not_a_chart.write_text("hello")
    error = charts.local_chart_error(str(not_a_chart), "rancher", "2.12.3")
    assert error is not None and "not a Helm chart" in error


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
