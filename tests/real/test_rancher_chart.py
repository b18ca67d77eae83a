"""The Rancher chart STAND-IN keeps the real chart's values interface, both ways, and
imitates what the program depends on (issue 24 items 3, 4 and 10): its values.yaml and
values.schema.json are built from the interface data (tests/real/charts/rancher-values-2.12.3.yaml);
the real defaults' forms validate; what 2.12 does not render is not rendered; `--no-cacerts`,
`maxUnavailable`, the bootstrap Secret's lookup-reuse and keep-on-uninstall, and the
pre-upgrade and post-delete hook Jobs, rendered by the real helm and run on the control plane."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from components.config import parse_settings
from components.rancher import rancher_values
from components.schema import load_schema
from tests.real import rancher_chart
from tests.real.controlplane import ControlPlane

CHART = rancher_chart.CHART
CERT = "-----BEGIN CERTIFICATE-----\nTEST-CERT\n-----END CERTIFICATE-----\n"
CA = "-----BEGIN CERTIFICATE-----\nTEST-CA\n-----END CERTIFICATE-----\n"
EMAIL = "ops@example.com"


def settings(rancher: Mapping[str, Any], secrets: set[str] | None = None) -> Any:
    config = {"topology": "ssh", "servers": [{"name": "cp1", "address": "10.0.0.11"}], "rancher": dict(rancher)}
    return parse_settings(config, {"sshPrivateKey", *(secrets or set())}).rancher


def errors(values: Mapping[str, Any], schema: Mapping[str, Any] | None = None) -> list[str]:
    validator = jsonschema.Draft7Validator(schema or json.loads(rancher_chart.SCHEMA.read_text()))
    return sorted(f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(values))


# --- the interface as data ----------------------------------------------------------------


def test_values_and_schema_are_built_from_the_interface_data() -> None:
    assert rancher_chart.VALUES.read_text() == rancher_chart.values_text(), "run python -m tests.real.rancher_chart"
    assert rancher_chart.SCHEMA.read_text() == rancher_chart.schema_text(), "run python -m tests.real.rancher_chart"
    data = rancher_chart.interface()
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    pinned = load_schema()["properties"]["rancher"]["properties"]["version"]["default"]
    assert data["chart"] == chart["name"] == "rancher"
    assert data["version"] == chart["version"] == pinned
    assert "rancher/rancher chart/values.yaml at tag v2.12.3" in data["source"]


def test_the_real_defaults_forms_validate_against_the_stand_in_schema() -> None:
    real_defaults = rancher_chart.defaults()
    assert errors(real_defaults) == []
    # The forms the old stand-in refused (issue 24 item 10): each is the real values.yaml's.
    assert real_defaults["webhook"] == "" and real_defaults["fleet"] == ""
    assert real_defaults["extraTolerations"] == {} and real_defaults["extraNodeSelectorTerms"] == {}
    assert {"image", "extraObjects", "postDelete", "preUpgrade", "startupProbe"} <= set(real_defaults)
    # Set as users set them, they validate too.
    assert (
        errors(
            {
                "extraTolerations": [{"key": "a", "operator": "Exists"}],
                "extraNodeSelectorTerms": [{"key": "zone", "operator": "In", "values": ["a"]}],
                "image": {"registry": "registry.internal", "repository": "rancher/rancher", "tag": "v2.12.3"},
                "extraObjects": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}],
                "webhook": {"replicas": 2},
            }
        )
        == []
    )


@pytest.mark.parametrize("key", ["nodeSelector", "tolerations", "podAnnotations", "restrictedAdmin", "hostnmae"])
def test_keys_the_real_2_12_chart_does_not_have_are_refused(key: str) -> None:
    (error,) = errors({key: {}})
    assert key in error


def test_the_real_schema_enums_and_its_disable_http_rule_hold() -> None:
    assert errors({"agentTLSMode": "lenient"}) != []
    assert errors({"service": {"type": "ExternalName"}}) != []
    assert errors({"service": {"disableHTTP": True}, "ingress": {"servicePort": 80}}) != []
    assert errors({"service": {"disableHTTP": True}, "ingress": {"servicePort": 443}}) == []


@pytest.mark.parametrize(
    ("rancher", "secrets"),
    [
        ({}, set()),
        ({"tls": "letsEncrypt", "letsEncryptEmail": EMAIL, "letsEncryptEnvironment": "staging"}, set()),
        ({"tls": "secret", "tlsCert": CERT}, {"rancherTlsKey"}),
        ({"tls": "secret", "tlsCert": CERT, "privateCa": CA}, {"rancherTlsKey"}),
        ({"systemDefaultRegistry": "registry.internal:5000", "replicas": 3}, set()),
    ],
)
def test_the_program_values_validate(rancher: dict[str, Any], secrets: set[str]) -> None:
    assert errors(rancher_values(settings(rancher, secrets), "pw")) == []


# --- rendered by the real helm (no cluster) --------------------------------------------------


def helm_env(tmp: Path) -> dict[str, str]:
    return {f"HELM_{k}_HOME": str(tmp / f"helm-{k.lower()}") for k in ("CACHE", "CONFIG", "DATA")}


def render(bin_dir: Path, values: Mapping[str, Any], tmp: Path, *extra: str) -> dict[str, list[dict[str, Any]]]:
    values_file = tmp / "values.yaml"
    values_file.write_text(yaml.safe_dump(dict(values)))
    done = subprocess.run(
        [str(bin_dir / "helm"), "template", "rancher", str(CHART), "-n", "cattle-system",
         "-f", str(values_file), *extra],
        capture_output=True, text=True, timeout=60, env={**os.environ, **helm_env(tmp)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out: dict[str, list[dict[str, Any]]] = {}
    for doc in yaml.safe_load_all(done.stdout):
        if doc:
            out.setdefault(doc["kind"], []).append(doc)
    return out


def container(objects: Mapping[str, list[dict[str, Any]]]) -> dict[str, Any]:
    (deployment,) = objects["Deployment"]
    first: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return first


@pytest.mark.parametrize(
    ("rancher", "secrets", "clears", "agent_mode"),
    [
        ({}, set(), False, None),
        ({"tls": "letsEncrypt", "letsEncryptEmail": EMAIL}, set(), True, "system-store"),
        (
            {"tls": "letsEncrypt", "letsEncryptEmail": EMAIL, "letsEncryptEnvironment": "staging"},
            set(),
            True,
            "system-store",
        ),
        ({"tls": "secret", "tlsCert": CERT}, {"rancherTlsKey"}, True, "system-store"),
        ({"tls": "secret", "tlsCert": CERT, "privateCa": CA}, {"rancherTlsKey"}, False, None),
    ],
    ids=["rancher", "letsEncrypt", "letsEncrypt-staging", "secret", "secret-private-ca"],
)
def test_no_cacerts_as_the_real_chart_and_the_agent_tls_mode_the_program_sets_with_it(
    controlplane_bin: Path, tmp_path: Path, rancher: dict[str, Any], secrets: set[str], clears: bool,
    agent_mode: str | None,
) -> None:  # fmt: skip
    c = container(render(controlplane_bin, rancher_values(settings(rancher, secrets), "pw"), tmp_path))
    assert ("--no-cacerts" in c["args"]) == clears
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env.get("CATTLE_AGENT_TLS_MODE") == agent_mode


@pytest.mark.parametrize(("replicas", "unavailable"), [(1, 0), (2, 1), (3, 1)])
def test_max_unavailable_is_one_unless_there_is_one_replica(
    controlplane_bin: Path, tmp_path: Path, replicas: int, unavailable: int
) -> None:
    values = {"hostname": "r.example.com", "replicas": replicas}
    (deployment,) = render(controlplane_bin, values, tmp_path)["Deployment"]
    assert deployment["spec"]["replicas"] == replicas
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": unavailable}


def test_a_negative_replica_count_scales_with_the_nodes(controlplane_bin: Path, tmp_path: Path) -> None:
    (deployment,) = render(controlplane_bin, {"hostname": "r.example.com", "replicas": -3}, tmp_path)["Deployment"]
    assert "replicas" not in deployment["spec"]
    assert deployment["metadata"]["annotations"] == {"management.cattle.io/scale-available": "3"}


def test_scheduling_values_are_the_real_ones_and_the_ignored_ones_stay_ignored(
    controlplane_bin: Path, tmp_path: Path
) -> None:
    values = {
        "hostname": "r.example.com",
        "extraTolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
        "extraNodeSelectorTerms": [{"key": "role", "operator": "In", "values": ["rancher"]}],
        # Not values of the 2.12 chart: refused by the schema, and not rendered even past it.
        "nodeSelector": {"role": "rancher"},
        "tolerations": [{"key": "other", "operator": "Exists"}],
        "podAnnotations": {"a": "b"},
    }
    objects = render(controlplane_bin, values, tmp_path, "--skip-schema-validation")
    (deployment,) = objects["Deployment"]
    pod = deployment["spec"]["template"]
    assert "annotations" not in pod["metadata"] and "nodeSelector" not in pod["spec"]
    assert [t["key"] for t in pod["spec"]["tolerations"]] == ["cattle.io/os", "dedicated"]
    terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert [e["key"] for e in terms["nodeSelectorTerms"][0]["matchExpressions"]] == ["kubernetes.io/os", "role"]
    # The defaults' forms ({} for both) render the Linux toleration and term alone.
    (plain,) = render(controlplane_bin, {"hostname": "r.example.com"}, tmp_path)["Deployment"]
    assert [t["key"] for t in plain["spec"]["template"]["spec"]["tolerations"]] == ["cattle.io/os"]


def test_image_extra_objects_and_the_hooks_render(controlplane_bin: Path, tmp_path: Path) -> None:
    values = {
        "hostname": "r.example.com",
        "bootstrapPassword": "pw",
        "rancherImage": "",
        "image": {"registry": "registry.internal", "tag": "v2.12.3-custom"},
        "extraObjects": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "{{ .Release.Name }}-extra"}}],
    }
    objects = render(controlplane_bin, values, tmp_path)
    assert container(objects)["image"] == "registry.internal/rancher/rancher:v2.12.3-custom"
    assert "rancher-extra" in {c["metadata"]["name"] for c in objects["ConfigMap"]}
    hooks = {
        (o["kind"], o["metadata"]["name"]): o["metadata"]["annotations"]
        for kind in objects.values()
        for o in kind
        if "helm.sh/hook" in (o["metadata"].get("annotations") or {})
    }
    assert hooks[("Secret", "bootstrap-secret")] == {
        "helm.sh/hook": "pre-install,pre-upgrade",
        "helm.sh/hook-weight": "-5",
        "helm.sh/resource-policy": "keep",
    }
    assert hooks[("Job", "rancher-pre-upgrade")]["helm.sh/hook"] == "pre-upgrade"
    assert hooks[("Job", "rancher-post-delete")]["helm.sh/hook"] == "post-delete"
    assert {kind for kind, name in hooks if name == "rancher-post-delete"} == {
        "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "Job",
    }  # fmt: skip
    off = render(controlplane_bin, {**values, "postDelete": {"enabled": False}}, tmp_path)
    assert "rancher-post-delete" not in {o["metadata"]["name"] for o in off.get("Job", [])}


# --- on the control plane: what Helm does with them --------------------------------------


def test_bootstrap_secret_keeps_its_first_password_and_the_hooks_run(
    controlplane: ControlPlane, tmp_path: Path
) -> None:
    cp = controlplane
    cp.add_nodes(1, prefix="chart-hooks-node")
    env = helm_env(tmp_path)
    namespace = "rancher-chart-test"

    def helm(*args: str, password: str) -> None:
        values_file = tmp_path / "values.yaml"
        values = {"hostname": "r.example.com", "replicas": 1, "bootstrapPassword": password}
        # tls source secret: no cert-manager Issuer, so no cert-manager CRDs needed here.
        values_file.write_text(yaml.safe_dump({**values, "ingress": {"tls": {"source": "secret"}}}))
        values_file.chmod(0o600)
        cp.run(["helm", *args, "rancher", str(CHART), "-n", namespace, "-f", str(values_file),
                "--wait", "--wait-for-jobs", "--timeout=120s"], env=env, timeout=180)  # fmt: skip

    def stored_password() -> str:
        data = cp.get_json("secret", "bootstrap-secret", "-n", namespace)["data"]["bootstrapPassword"]
        return base64.b64decode(data).decode()

    def job_events(job: str) -> set[str]:
        events = cp.get_json("events", "-n", namespace, "--field-selector", f"involvedObject.name={job}")["items"]
        return {e["reason"] for e in events}

    try:
        helm("install", "--create-namespace", password="first-password")
        assert stored_password() == "first-password"
        assert job_events("rancher-pre-upgrade") == set()  # an install runs no pre-upgrade hook
        helm("upgrade", password="second-password")
        # The lookup gave the existing Secret's password back: the new one never reached it.
        assert stored_password() == "first-password"
        assert "Completed" in job_events("rancher-pre-upgrade")  # the upgrade ran (and waited for) its Job
        cp.run(["helm", "uninstall", "rancher", "-n", namespace, "--wait", "--timeout=120s"], env=env, timeout=180)
        assert "Completed" in job_events("rancher-post-delete")
        # Kept on uninstall (helm.sh/resource-policy: keep): a reinstall finds the first password.
        assert stored_password() == "first-password"
        helm("install", password="third-password")
        assert stored_password() == "first-password"
        cp.run(["helm", "uninstall", "rancher", "-n", namespace, "--wait", "--timeout=120s"], env=env, timeout=180)
    finally:
        cp.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        cp.kubectl("delete", "node", "chart-hooks-node-0", "--ignore-not-found", check=False)
