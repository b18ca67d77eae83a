"""Rancher's graph under mocks, for each SSH example stack and custom configs: cert-manager and
Rancher releases, their provider, order, names, charts (repository, OCI, local), teardown
options and exports; nothing of Rancher when it is disabled."""

from __future__ import annotations

from pathlib import Path

import pytest

from components import charts
from tests.harness import GENERATED_PASSWORD, SECRET_SIG, TEST_SSH_KEY, Run, run_program, unwrap
from tests.rancher.runs import (
    RANCHER_TYPES,
    RELEASE,
    SSH_STACKS,
    custom_run,
    one_server,
    plain_text_outside_secrets,
    provider_of,
    stack_run,
    tiny_chart,
    values,
)

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


def test_preview_registers_the_same_graph() -> None:
    config = one_server({"bootstrap": True})
    run = run_program(config, {"sshPrivateKey": TEST_SSH_KEY}, preview=True)
    assert {"cert-manager-release", "rancher-release", "rancher-admin"} <= run.names()


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
