"""The REAL cert-manager chart (assembled from its Go module by tests/real/cert_manager_chart.py)
against the program: its archive is upstream's packaging of the pinned version, the program's
values meet its values.schema.json (which refuses keys the chart does not have), and, on the
control plane, what the program relies on: the CRDs come with the release and stay after it,
Helm waits for the startupapicheck hook Job, the webhook is registered."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from components.charts import deep_merge, local_chart_error
from components.config import parse_settings
from components.rancher import cert_manager_values, needs_cert_manager
from tests.real.cert_manager_chart import (
    SCRIPT,
    build_cert_manager_chart,
    cached_cert_manager_chart,
    chart_file,
    chart_yaml,
    pinned_version,
    values_schema,
)
from tests.real.controlplane import ControlPlane

pytestmark = pytest.mark.real

# The six CRDs of deploy/crds, in the name order of their files (crd-<plural>.yaml).
CRDS = [
    "certificaterequests.cert-manager.io",
    "certificates.cert-manager.io",
    "challenges.acme.cert-manager.io",
    "clusterissuers.cert-manager.io",
    "issuers.cert-manager.io",
    "orders.acme.cert-manager.io",
]
# deploy/charts/cert-manager/signkey_annotation.txt (v1.18.2), as published charts carry it.
SIGN_KEY = (
    "fingerprint: 1020CF3C033D4F35BAE1C19E1226061C665DF13E\n"
    "url: https://cert-manager.io/public-keys/cert-manager-keyring-2021-09-20-1020CF3C033D4F35BAE1C19E1226061C665DF13E.gpg\n"
)
COMPONENTS = ("controller", "webhook", "cainjector", "startupapicheck")
# Per-component image values for an airgap registry: `registry` goes before `repository`
# (templates/_helpers.tpl "image": printf "%s/%s" .registry .repository), and the default
# repositories already start with quay.io/jetstack, so a mirror sets both.
AIRGAP_IMAGES: dict[str, Any] = {
    "image": {"registry": "registry.internal:5000", "repository": "jetstack/cert-manager-controller"},
    **{
        part: {"image": {"registry": "registry.internal:5000", "repository": f"jetstack/cert-manager-{part}"}}
        for part in ("webhook", "cainjector", "startupapicheck", "acmesolver")
    },
}


def settings(rancher: Mapping[str, Any]) -> Any:
    config = {"topology": "ssh", "servers": [{"name": "cp1", "address": "10.0.0.11"}], "rancher": dict(rancher)}
    return parse_settings(config, {"sshPrivateKey"}).rancher


# The settings that reach the cert-manager release (it exists for tls rancher and letsEncrypt).
VARIANTS: dict[str, dict[str, Any]] = {
    "tls-rancher": {},
    "tls-letsEncrypt": {"tls": "letsEncrypt", "letsEncryptEmail": "ops@example.com"},
    "airgap-images": {"systemDefaultRegistry": "registry.internal:5000", "certManager": {"values": AIRGAP_IMAGES}},
    "replicas-and-resources": {
        "certManager": {
            "values": {
                "replicaCount": 2,
                "webhook": {"replicaCount": 2, "timeoutSeconds": 20},
                "cainjector": {"replicaCount": 2},
                "resources": {"requests": {"cpu": "50m"}},
                "crds": {"keep": True},
            }
        }
    },
}


def schema_errors(archive: Path, values: Mapping[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(values_schema(archive))
    return sorted(f"/{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(values))


Template = Callable[[Mapping[str, Any]], "subprocess.CompletedProcess[str]"]


@pytest.fixture(scope="module")
def helm_template(
    controlplane_bin: Path, cert_manager_chart: Path, tmp_path_factory: pytest.TempPathFactory
) -> Template:
    """`helm template` of the real chart as release cert-manager in namespace cert-manager,
    with the given values (each set rendered once per module: a render takes 1-4 s)."""
    tmp = tmp_path_factory.mktemp("helm-template")
    env = {**os.environ, **{f"HELM_{k}_HOME": str(tmp / f"helm-{k.lower()}") for k in ("CACHE", "CONFIG", "DATA")}}
    done: dict[str, subprocess.CompletedProcess[str]] = {}

    def template(values: Mapping[str, Any]) -> subprocess.CompletedProcess[str]:
        text = yaml.safe_dump(dict(values), sort_keys=True)
        if text not in done:
            values_file = tmp / f"values-{len(done)}.yaml"
            values_file.write_text(text)
            done[text] = subprocess.run(
                [str(controlplane_bin / "helm"), "template", "cert-manager", str(cert_manager_chart),
                 "-n", "cert-manager", "-f", str(values_file)],
                capture_output=True, text=True, timeout=120, env=env,
            )  # fmt: skip
        return done[text]

    return template


def rendered(done: subprocess.CompletedProcess[str]) -> dict[str, list[dict[str, Any]]]:
    assert done.returncode == 0, done.stderr
    out: dict[str, list[dict[str, Any]]] = {}
    for doc in yaml.safe_load_all(done.stdout):
        if doc:
            out.setdefault(doc["kind"], []).append(doc)
    return out


# --- the archive --------------------------------------------------------------------------


def test_the_archive_is_upstreams_chart_at_the_pinned_version(cert_manager_chart: Path) -> None:
    version = pinned_version()
    # The program takes it as a local chart (rancher.certManager.chartRepo = the archive).
    assert local_chart_error(str(cert_manager_chart), "cert-manager", version) is None
    meta = chart_yaml(cert_manager_chart)
    assert (meta["name"], meta["version"], meta["appVersion"]) == ("cert-manager", version, version)
    assert meta["description"] == "A Helm chart for cert-manager"  # not a stand-in's
    assert meta["kubeVersion"] == ">= 1.22.0-0"
    assert meta["annotations"]["artifacthub.io/prerelease"] == "false"
    assert meta["annotations"]["artifacthub.io/signKey"] == SIGN_KEY
    with tarfile.open(cert_manager_chart) as tar:
        names = {m.name.removeprefix("cert-manager/") for m in tar.getmembers() if m.isfile()}
    assert {"Chart.yaml", "README.md", "values.yaml", "values.schema.json", "templates/crds.yaml"} <= names
    # Only what `make helm-chart` copies: none of the source directory's build inputs.
    assert not {"Chart.template.yaml", "README.template.md", "signkey_annotation.txt"} & names
    assert "{{RELEASE_VERSION}}" not in chart_file(cert_manager_chart, "README.md")
    # templates/crds.yaml: all six CRDs, each gated by crds.enabled or installCRDs.
    crds = chart_file(cert_manager_chart, "templates/crds.yaml").split("\n---\n")
    assert len(crds) == len(CRDS)
    for text, name in zip(crds, CRDS, strict=True):
        assert "\n# START crd {{- if or .Values.crds.enabled .Values.installCRDs }}\n" in f"\n{text}"
        assert f"  name: {name}\n" in text


def test_the_assembly_is_cached_per_version_and_names_a_version_the_proxy_lacks(
    controlplane_bin: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a cache root of its own: a first run assembles (its lines on `progress`), the next is a
    cache hit, another version is another entry, and an unserved version fails naming it."""
    monkeypatch.setenv("K3SR_CONTROLPLANE_CACHE", str(tmp_path))
    helm = controlplane_bin / "helm"
    assert cached_cert_manager_chart(helm) is None
    progress = io.StringIO()
    archive = build_cert_manager_chart(helm, progress=progress)
    assert archive.parent.parent == tmp_path and archive.name == f"cert-manager-{pinned_version()}.tgz"
    assert "[cert-manager-chart-build] helm package" in progress.getvalue()
    source = (archive.parent / "SOURCE").read_text()
    assert f"github.com/cert-manager/cert-manager@{pinned_version()} h1:" in source
    assert cached_cert_manager_chart(helm) == archive
    again = io.StringIO()
    assert build_cert_manager_chart(helm, progress=again) == archive
    assert "cache hit" in again.getvalue()

    def script(version: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "HELM": str(helm), "K3SR_CERT_MANAGER_VERSION": version}
        return subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=300, env=env)

    other = script("v1.18.1")
    assert other.returncode == 0, other.stderr
    older = Path(other.stdout.strip().splitlines()[-1])
    assert older.parent != archive.parent and chart_yaml(older)["appVersion"] == "v1.18.1"
    missing = script("v1.18.99")
    assert missing.returncode != 0
    assert "cannot download github.com/cert-manager/cert-manager@v1.18.99" in missing.stderr


# --- the real values interface -------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_program_values_meet_the_real_chart_schema(variant: str, cert_manager_chart: Path) -> None:
    r = settings(VARIANTS[variant])
    assert needs_cert_manager(r)
    assert schema_errors(cert_manager_chart, cert_manager_values(r)) == []


def test_every_example_stack_that_installs_cert_manager_meets_the_real_schema(cert_manager_chart: Path) -> None:
    from tests.harness import load_stack_config

    checked = 0
    for stack in ("dev", "local", "prod"):
        config, secrets = load_stack_config(stack)
        given = set(secrets) | ({"sshPrivateKey"} if config.get("topology") == "ssh" else set())
        r = parse_settings(config, given, stack=stack).rancher
        if r.enabled and r.mode == "helm" and needs_cert_manager(r):
            assert schema_errors(cert_manager_chart, cert_manager_values(r)) == [], stack
            checked += 1
    assert checked > 0


@pytest.mark.parametrize(
    ("wrong", "where", "key"),
    [
        # Keys other charts (or later cert-manager versions) have; v1.18.2's schema has neither.
        ({"verticalPodAutoscaler": {"enabled": True}}, "", "verticalPodAutoscaler"),
        ({"webhook": {"replicas": 2}}, "/webhook", "replicas"),  # the key is replicaCount
        ({"crds": {"keepp": False}}, "/crds", "keepp"),
        ({"installCRD": True}, "", "installCRD"),
    ],
)
def test_the_real_chart_refuses_keys_it_does_not_have(
    wrong: dict[str, Any], where: str, key: str, cert_manager_chart: Path, helm_template: Template
) -> None:
    """certManager.values goes to the chart unchecked by the program: the chart's own schema is
    what refuses a wrong key, at `up` (Helm validates values before it renders)."""
    values = deep_merge(cert_manager_values(settings({})), wrong)
    errors = schema_errors(cert_manager_chart, values)
    assert len(errors) == 1 and errors[0].startswith(f"{where or '/'}: ") and repr(key) in errors[0], errors
    done = helm_template(values)
    assert done.returncode != 0
    assert "values don't meet the specifications of the schema" in done.stderr
    assert f"at '{where}': additional properties '{key}' not allowed" in done.stderr


# --- what the program relies on, rendered -------------------------------------------------


def test_crds_come_with_the_release_kept_on_uninstall(helm_template: Template) -> None:
    objects = rendered(helm_template(cert_manager_values(settings({}))))
    crds = objects["CustomResourceDefinition"]
    assert [c["metadata"]["name"] for c in crds] == CRDS
    assert all(c["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"} for c in crds)
    # Without crds.enabled the chart has no CRDs at all (the program always sets it).
    assert "CustomResourceDefinition" not in rendered(helm_template({}))
    # The deprecated installCRDs beside the program's crds.enabled: the chart refuses to render.
    values = deep_merge(cert_manager_values(settings({})), {"installCRDs": True})
    done = helm_template(values)
    assert done.returncode != 0
    assert "the deprecated .installCRDs option cannot be enabled at the same time as its replacement" in done.stderr


def test_images_are_the_pinned_release_and_a_registry_goes_before_the_repository(helm_template: Template) -> None:
    version = pinned_version()

    def images(values: Mapping[str, Any]) -> dict[str, str]:
        objects = rendered(helm_template(values))
        found = {}
        for obj in objects["Deployment"] + objects["Job"]:
            (container,) = obj["spec"]["template"]["spec"]["containers"]
            found[obj["metadata"]["name"]] = container["image"]
            if obj["metadata"]["name"] == "cert-manager":
                solver = [a for a in container["args"] if a.startswith("--acme-http01-solver-image=")]
                found["acmesolver"] = solver[0].split("=", 1)[1]
        return found

    default = images(cert_manager_values(settings({})))
    assert default == {
        "cert-manager": f"quay.io/jetstack/cert-manager-controller:{version}",
        "cert-manager-webhook": f"quay.io/jetstack/cert-manager-webhook:{version}",
        "cert-manager-cainjector": f"quay.io/jetstack/cert-manager-cainjector:{version}",
        "cert-manager-startupapicheck": f"quay.io/jetstack/cert-manager-startupapicheck:{version}",
        "acmesolver": f"quay.io/jetstack/cert-manager-acmesolver:{version}",
    }
    # rancher.systemDefaultRegistry is Rancher's alone: cert-manager's values (so its images) stay.
    airgap = settings({"systemDefaultRegistry": "registry.internal:5000"})
    assert cert_manager_values(airgap) == cert_manager_values(settings({}))
    # A registry alone is put before the default repository, quay.io/jetstack/... included.
    only_registry = images(deep_merge(cert_manager_values(airgap), {"image": {"registry": "registry.internal:5000"}}))
    assert only_registry["cert-manager"] == f"registry.internal:5000/quay.io/jetstack/cert-manager-controller:{version}"
    mirrored = images(cert_manager_values(settings(VARIANTS["airgap-images"])))
    assert set(mirrored.values()) == {
        f"registry.internal:5000/jetstack/cert-manager-{part}:{version}" for part in (*COMPONENTS, "acmesolver")
    }


def test_startupapicheck_is_a_post_install_hook_and_the_webhook_fails_closed(helm_template: Template) -> None:
    """What makes Rancher's Issuer safe to create right after the release on a real cluster:
    the release waits for startupapicheck (a post-install hook: on install only, not on
    upgrades), and until the webhook answers, cert-manager objects are refused (Fail)."""
    objects = rendered(helm_template(cert_manager_values(settings({}))))
    (job,) = objects["Job"]
    assert job["metadata"]["name"] == "cert-manager-startupapicheck"
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install"
    assert "check" in job["spec"]["template"]["spec"]["containers"][0]["args"]
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        (config,) = objects[kind]
        (hook,) = config["webhooks"]
        assert hook["failurePolicy"] == "Fail"
        assert hook["clientConfig"]["service"] == {
            "name": "cert-manager-webhook",
            "namespace": "cert-manager",
            "path": "/validate" if kind.startswith("Validating") else "/mutate",
        }


# --- on the control plane -----------------------------------------------------------------


def test_the_real_chart_installs_on_the_control_plane_and_keeps_its_crds(
    controlplane: ControlPlane, cert_manager_chart: Path, tmp_path: Path
) -> None:
    cp = controlplane
    cp.add_nodes(1, prefix="cm-node")
    env = {f"HELM_{k}_HOME": str(tmp_path / f"helm-{k.lower()}") for k in ("CACHE", "CONFIG", "DATA")}
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(cert_manager_values(settings({}))))
    try:
        cp.run(
            ["helm", "install", "cert-manager", str(cert_manager_chart), "-n", "cert-manager", "--create-namespace",
             "-f", str(values_file), "--wait", "--wait-for-jobs", "--timeout=180s"],
            env=env, timeout=240,
        )  # fmt: skip
        (release,) = json.loads(cp.run(["helm", "list", "-n", "cert-manager", "-o", "json"], env=env).stdout)
        assert (release["chart"], release["app_version"], release["status"]) == (
            f"cert-manager-{pinned_version()}",
            pinned_version(),
            "deployed",
        )
        for name in ("cert-manager", "cert-manager-webhook", "cert-manager-cainjector"):
            conditions = cp.get_json("-n", "cert-manager", "deployment", name)["status"]["conditions"]
            assert {"type": "Available", "status": "True"} in [
                {"type": c["type"], "status": c["status"]} for c in conditions
            ], name
        # The CRDs are the release's objects.
        crds = {c["metadata"]["name"]: c for c in cp.get_json("crd")["items"] if c["metadata"]["name"] in CRDS}
        assert sorted(crds) == sorted(CRDS)
        assert {c["metadata"]["annotations"]["meta.helm.sh/release-name"] for c in crds.values()} == {"cert-manager"}
        # Helm waited for the startupapicheck hook Job (kwok completed its pod) and then deleted
        # it (hook-delete-policy hook-succeeded): only its events are left.
        assert "cert-manager-startupapicheck" not in cp.kubectl("-n", "cert-manager", "get", "jobs", "-o", "name")
        events = cp.get_json("-n", "cert-manager", "events", "--field-selector", "involvedObject.kind=Job")["items"]
        assert any(
            e["involvedObject"]["name"] == "cert-manager-startupapicheck" and e["reason"] == "Completed" for e in events
        ), [(e["involvedObject"]["name"], e["reason"]) for e in events]
        names = cp.kubectl("get", "validatingwebhookconfigurations,mutatingwebhookconfigurations", "-o", "name")
        assert sorted(names.split()) == [
            "mutatingwebhookconfiguration.admissionregistration.k8s.io/cert-manager-webhook",
            "validatingwebhookconfiguration.admissionregistration.k8s.io/cert-manager-webhook",
        ]
        # The real CRDs' own validation (no webhook runs here): a Certificate needs an issuerRef.
        bad = {"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
               "metadata": {"name": "x", "namespace": "default"}, "spec": {"secretName": "x"}}  # fmt: skip
        refused = cp.run(["kubectl", "apply", "-f", "-"], input=json.dumps(bad), check=False)
        assert refused.returncode != 0 and "issuerRef" in refused.stderr
        uninstall = ["helm", "uninstall", "cert-manager", "-n", "cert-manager", "--wait", "--timeout=90s"]
        cp.run(uninstall, env=env, timeout=120)
        left = {c["metadata"]["name"] for c in cp.get_json("crd")["items"]}
        assert set(CRDS) <= left  # helm.sh/resource-policy: keep
    finally:
        # The session's cluster is shared with later tests: leave it as found.
        cp.run(["helm", "uninstall", "cert-manager", "-n", "cert-manager", "--wait", "--timeout=90s"],
               env=env, timeout=120, check=False)  # fmt: skip
        cp.kubectl("delete", "crd", *CRDS, "--ignore-not-found", "--wait=true", timeout=120, check=False)
        cp.kubectl("delete", "namespace", "cert-manager", "--ignore-not-found", "--wait=false", check=False)
        cp.kubectl("delete", "node", "cm-node-0", "--ignore-not-found", check=False)
