"""Tier 3: the program's cluster-side half for real. The real Pulumi CLI and the real
pulumi-kubernetes provider (tests/real/engine) run the program with topology kubeconfig
against a real API server with real controllers and kwok nodes (tests/real/controlplane.py),
all inside one private network namespace. cert-manager is the REAL chart at the pinned
version, assembled from its Go module (tests/real/cert_manager_chart.py); Rancher is the
STAND-IN in tests/real/charts (its module is not served). Every step is asserted on the objects
in the API.

On a machine with internet, K3SR_REAL_CHARTS=1 runs the same tests on the real charts: they
are pulled (helm pull, outside the namespace: nothing inside it reaches beyond loopback) from
the program's default repositories at its default versions, and given to the program as
local chart archives, the way an airgapped install gives them. Not run here (no chart repos).

The tests run in order and share one stack: preview, up, a no-op up, a values change, tls
secret, rancher.enabled false, destroy.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.real.cert_manager_chart import pinned_version
from tests.real.controlplane import ControlPlane
from tests.real.engine_project import EngineProject, engine_bin, make_project

pytestmark = pytest.mark.real

CHARTS = Path(__file__).resolve().parent / "charts"
SCHEMA = Path(__file__).resolve().parents[2] / "components" / "data" / "config.schema.json"
REAL_CHARTS = os.environ.get("K3SR_REAL_CHARTS") == "1"
HOSTNAME = "rancher.tier3.test"
BOOTSTRAP = "tier3-bootstrap-password-0123"
RELEASE = "kubernetes:helm.sh/v3:Release"
NAMESPACE = "kubernetes:core/v1:Namespace"
CERT_MANAGER_CRDS = [  # deploy/crds of cert-manager, all in the chart's templates/crds.yaml
    f"{plural}.{group}"
    for plural, group in [
        ("certificaterequests", "cert-manager.io"),
        ("certificates", "cert-manager.io"),
        ("challenges", "acme.cert-manager.io"),
        ("clusterissuers", "cert-manager.io"),
        ("issuers", "cert-manager.io"),
        ("orders", "acme.cert-manager.io"),
    ]
]
DEPLOYMENTS = {
    "cert-manager": ["cert-manager", "cert-manager-cainjector", "cert-manager-webhook"],
    "cattle-system": ["rancher"],
}


# Where the charts come from: Rancher's STAND-IN and the real cert-manager chart assembled from
# its module (set by the `tier3` fixture), or the published charts pulled by `real_charts`.
chart_paths = {"rancher": CHARTS / "rancher"}


def real_charts(helm: Path, directory: Path) -> dict[str, Path]:
    """The real rancher and cert-manager charts at the program's default versions, from its
    default repositories (components/data/config.schema.json), as archives in `directory`."""
    props = json.loads(SCHEMA.read_text())["properties"]["rancher"]["properties"]
    wanted = {
        "rancher": props,
        "cert-manager": props["certManager"]["properties"],
    }
    paths: dict[str, Path] = {}
    for chart, p in wanted.items():
        repo, version = p["chartRepo"]["default"], p["version"]["default"]
        subprocess.run(
            [str(helm), "pull", chart, "--repo", repo, "--version", version, "--destination", str(directory)],
            check=True, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        paths[chart] = directory / f"{chart}-{version}.tgz"
    return paths


def rancher_config(**overrides: Any) -> dict[str, Any]:
    rancher: dict[str, Any] = {
        "hostname": HOSTNAME,
        "chartRepo": str(chart_paths["rancher"]),
        "replicas": 1,
        "timeout": 180,
        "certManager": {"chartRepo": str(chart_paths["cert-manager"])},
    }
    rancher.update(overrides)
    return rancher


class Tier3:
    """The stack of this module: a project with the program, driven inside the namespace."""

    def __init__(self, project: EngineProject, cp: ControlPlane) -> None:
        self.project, self.cp = project, cp

    def pulumi(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        done = self.cp.run(
            ["pulumi", *args, "--stack", self.project.stack, "--non-interactive"],
            env=self.project.env,
            cwd=self.project.directory,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"pulumi {' '.join(args)} failed:\n{done.stdout[-6000:]}\n{done.stderr[-3000:]}")
        return done

    def configure(self, rancher: dict[str, Any]) -> None:
        """The stack file's non-secret config (secrets set with `pulumi config set --secret` stay)."""
        stack_file = self.project.directory / "stacks" / f"Pulumi.{self.project.stack}.yaml"
        existing = yaml.safe_load(stack_file.read_text()) if stack_file.exists() else {}
        secure = {k: v for k, v in (existing or {}).get("config", {}).items() if isinstance(v, dict) and "secure" in v}
        config = {"k3s-rancher:topology": "kubeconfig", "k3s-rancher:rancher": rancher}
        stack_file.write_text(yaml.safe_dump({**(existing or {}), "config": {**config, **secure}}))

    def steps(self) -> list[tuple[str, str, str]]:
        """(op, type, name) of every step `pulumi preview` plans."""
        done = self.pulumi("preview", "--json")
        return [
            (s["op"], s.get("newState", s.get("oldState", {})).get("type", ""), s["urn"].rsplit("::", 1)[1])
            for s in json.loads(done.stdout).get("steps", [])
        ]

    def changes(self) -> set[tuple[str, str]]:
        return {(op, name) for op, _, name in self.steps() if op != "same"}

    def available(self, namespace: str, name: str) -> bool:
        data = self.cp.get_json("deployment", name, "-n", namespace)
        conditions = {c["type"]: c["status"] for c in data.get("status", {}).get("conditions", [])}
        return conditions.get("Available") == "True"

    def helm_releases(self) -> set[tuple[str, str]]:
        done = self.cp.run(["helm", "list", "--all-namespaces", "--output", "json"])
        return {(r["namespace"], r["name"]) for r in json.loads(done.stdout)}

    def namespaces(self) -> set[str]:
        return {n["metadata"]["name"] for n in self.cp.get_json("namespaces")["items"]}

    def bootstrap_secret(self) -> str:
        data = self.cp.get_json("secret", "bootstrap-secret", "-n", "cattle-system")["data"]["bootstrapPassword"]
        return base64.b64decode(data).decode()


def rancher_container(deployment: dict[str, Any]) -> dict[str, Any]:
    first: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return first


@pytest.fixture(scope="module")
def tier3(
    controlplane: ControlPlane, cert_manager_chart: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Tier3]:
    chart_paths["cert-manager"] = cert_manager_chart
    if REAL_CHARTS:
        chart_paths.update(real_charts(controlplane.bin_dir / "helm", tmp_path_factory.mktemp("charts")))
    project = make_project(tmp_path_factory.mktemp("tier3"), engine_bin())
    stack = Tier3(project, controlplane)
    controlplane.add_nodes(2, prefix="tier3-node")
    stack.configure(rancher_config())
    project.set_secret("kubeconfig", controlplane.kubeconfig.read_text())
    project.set_secret("rancherBootstrapPassword", BOOTSTRAP)
    yield stack
    # Leave the session's cluster as found, whatever failed above.
    stack.pulumi("destroy", "--yes", "--skip-preview", check=False)
    for node in ("tier3-node-0", "tier3-node-1"):
        controlplane.kubectl("delete", "node", node, "--ignore-not-found", check=False)


def test_preview_plans_the_namespaces_and_both_releases(tier3: Tier3) -> None:
    planned = {(op, type_, name) for op, type_, name in tier3.steps() if type_ in (RELEASE, NAMESPACE)}
    assert planned == {
        ("create", NAMESPACE, "cert-manager-namespace"),
        ("create", NAMESPACE, "cattle-system-namespace"),
        ("create", RELEASE, "cert-manager-release"),
        ("create", RELEASE, "rancher-release"),
    }
    assert tier3.helm_releases() == set()  # a preview changes nothing


def test_up_deploys_cert_manager_and_rancher_available_behind_the_ingress(tier3: Tier3) -> None:
    tier3.pulumi("up", "--yes", "--skip-preview", timeout=900)
    assert tier3.helm_releases() == {("cert-manager", "cert-manager"), ("cattle-system", "rancher")}
    for namespace, names in DEPLOYMENTS.items():
        for name in names:
            assert tier3.available(namespace, name), f"{namespace}/{name} is not Available"
    ingress = tier3.cp.get_json("ingress", "rancher", "-n", "cattle-system")
    assert [rule["host"] for rule in ingress["spec"]["rules"]] == [HOSTNAME]
    assert ingress["spec"]["tls"] == [{"hosts": [HOSTNAME], "secretName": "tls-rancher-ingress"}]
    assert ingress["spec"].get("ingressClassName") == "traefik"
    # The real cert-manager chart at the pinned version; all six of its CRDs came with its
    # release (crds.enabled), and Rancher's chart made its Issuer (tls rancher).
    listed = tier3.cp.run(["helm", "list", "-n", "cert-manager", "--output", "json"]).stdout
    (release,) = json.loads(listed)
    assert (release["chart"], release["app_version"]) == (f"cert-manager-{pinned_version()}", pinned_version())
    crds = {c["metadata"]["name"]: c["metadata"] for c in tier3.cp.get_json("crd")["items"]}
    assert set(CERT_MANAGER_CRDS) <= set(crds)
    assert {crds[name]["annotations"]["meta.helm.sh/release-name"] for name in CERT_MANAGER_CRDS} == {"cert-manager"}
    assert tier3.cp.get_json("issuers.cert-manager.io", "-n", "cattle-system")["items"]
    # The chart's bootstrap Secret holds the password; Rancher's own CA (tls rancher): no
    # --no-cacerts, agents keep the default strict mode; one replica: maxUnavailable 0.
    assert tier3.bootstrap_secret() == BOOTSTRAP
    deployment = tier3.cp.get_json("deployment", "rancher", "-n", "cattle-system")
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    assert "--no-cacerts" not in rancher_container(deployment)["args"]
    outputs = json.loads(tier3.pulumi("stack", "output", "--json").stdout)
    assert outputs["rancherBootstrapPassword"] == outputs["rancherBootstrapPasswordDigest"] == "[secret]"
    assert outputs["rancherUrl"] == f"https://{HOSTNAME}"
    assert outputs["apiServer"] == tier3.cp.server
    assert outputs["nodes"] == []


def test_a_second_up_with_nothing_changed_changes_nothing(tier3: Tier3) -> None:
    assert tier3.changes() == set()
    tier3.pulumi("up", "--yes", "--skip-preview", "--expect-no-changes")


def test_a_new_bootstrap_password_is_refused_in_preview_by_key(tier3: Tier3) -> None:
    """Issue 24 item 3, through the real engine: the program reads the record of the last
    run (a secret output) back with readStackOutputs and refuses before planning anything."""
    tier3.project.set_secret("rancherBootstrapPassword", "a-new-bootstrap-password-4567")
    try:
        refused = tier3.pulumi("preview", check=False)
        assert refused.returncode != 0
        text = refused.stdout + refused.stderr
        assert "k3s-rancher:rancherBootstrapPassword" in text and "changed after Rancher was installed" in text
        assert "a-new-bootstrap-password-4567" not in text and BOOTSTRAP not in text
    finally:
        tier3.project.set_secret("rancherBootstrapPassword", BOOTSTRAP)
    assert tier3.changes() == set()
    assert tier3.bootstrap_secret() == BOOTSTRAP


def test_a_values_change_updates_the_rancher_release_in_place(tier3: Tier3) -> None:
    before = tier3.cp.get_json("deployment", "rancher", "-n", "cattle-system")["metadata"]["uid"]
    tier3.configure(rancher_config(replicas=2))
    assert tier3.changes() == {("update", "rancher-release")}
    tier3.pulumi("up", "--yes", "--skip-preview", timeout=900)
    after = tier3.cp.get_json("deployment", "rancher", "-n", "cattle-system")
    assert after["metadata"]["uid"] == before  # upgraded, not reinstalled
    assert after["spec"]["replicas"] == 2
    assert after["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 1
    # The chart's pre-upgrade hook Job ran (and the upgrade waited for it).
    job = "involvedObject.name=rancher-pre-upgrade"
    events = tier3.cp.get_json("events", "-n", "cattle-system", "--field-selector", job)["items"]
    assert "Completed" in {e["reason"] for e in events}
    assert tier3.available("cattle-system", "rancher")


def test_a_key_the_real_cert_manager_chart_lacks_fails_the_update_and_changes_nothing(tier3: Tier3) -> None:
    """rancher.certManager.values reaches the chart as given; the real chart's values.schema.json
    refuses a key it does not have (here webhook.replicas; the key is replicaCount), so the
    update fails with the key named, and the release stays as it was."""
    wrong = {"chartRepo": str(chart_paths["cert-manager"]), "values": {"webhook": {"replicas": 2}}}
    tier3.configure(rancher_config(replicas=2, certManager=wrong))
    done = tier3.pulumi("up", "--yes", "--skip-preview", check=False, timeout=900)
    assert done.returncode != 0
    assert "additional properties 'replicas' not allowed" in done.stdout + done.stderr, done.stdout[-5000:]
    webhook = tier3.cp.get_json("deployment", "cert-manager-webhook", "-n", "cert-manager")
    assert webhook["metadata"]["generation"] == 1 and webhook["spec"]["replicas"] == 1
    listed = json.loads(tier3.cp.run(["helm", "list", "-n", "cert-manager", "--output", "json"]).stdout)
    assert [(r["revision"], r["status"]) for r in listed] == [("1", "deployed")]
    # The failed update left the release's state as it was: back to valid values, nothing to do.
    tier3.configure(rancher_config(replicas=2))
    assert ("update", "cert-manager-release") not in tier3.changes()


def test_tls_secret_mode_uses_our_certificate_and_drops_cert_manager(tier3: Tier3, tmp_path: Path) -> None:
    key, cert = tmp_path / "tls.key", tmp_path / "tls.crt"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", f"/CN={HOSTNAME}", "-addext", f"subjectAltName=DNS:{HOSTNAME}",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    tier3.project.set_secret("rancherTlsKey", key.read_text())
    tier3.configure(rancher_config(replicas=2, tls="secret", tlsCert=str(cert)))
    tier3.pulumi("up", "--yes", "--skip-preview", timeout=900)
    secret = tier3.cp.get_json("secret", "tls-rancher-ingress", "-n", "cattle-system")
    assert secret["type"] == "kubernetes.io/tls"
    assert set(secret["data"]) == {"tls.crt", "tls.key"}
    # tls secret needs no cert-manager: its release is uninstalled and its namespace deleted.
    assert tier3.helm_releases() == {("cattle-system", "rancher")}
    assert "cert-manager" not in tier3.namespaces()
    ingress = tier3.cp.get_json("ingress", "rancher", "-n", "cattle-system")
    assert ingress["spec"]["tls"] == [{"hosts": [HOSTNAME], "secretName": "tls-rancher-ingress"}]
    # Our certificate without a private CA: the chart clears Rancher's CA (--no-cacerts), so
    # the program makes agents use their trust store (issue 24 item 4).
    c = rancher_container(tier3.cp.get_json("deployment", "rancher", "-n", "cattle-system"))
    assert "--no-cacerts" in c["args"]
    assert {"name": "CATTLE_AGENT_TLS_MODE", "value": "system-store"} in c["env"]


def test_rancher_disabled_uninstalls_the_releases_and_their_namespaces(tier3: Tier3) -> None:
    tier3.configure({"enabled": False})
    tier3.pulumi("up", "--yes", "--skip-preview", timeout=900)
    assert tier3.helm_releases() == set()
    assert not {"cattle-system", "cert-manager"} & tier3.namespaces()
    # cert-manager's CRDs stay (crds.keep): the README says how to remove them.
    crds = {c["metadata"]["name"] for c in tier3.cp.get_json("crd")["items"]}
    assert set(CERT_MANAGER_CRDS) <= crds


def test_destroy_leaves_an_empty_stack_and_the_cluster_running(tier3: Tier3) -> None:
    tier3.configure(rancher_config())
    tier3.pulumi("up", "--yes", "--skip-preview", timeout=900)
    assert tier3.helm_releases() == {("cert-manager", "cert-manager"), ("cattle-system", "rancher")}
    tier3.pulumi("destroy", "--yes", "--skip-preview", timeout=900)
    assert tier3.helm_releases() == set()
    assert not {"cattle-system", "cert-manager"} & tier3.namespaces()
    resources = json.loads(tier3.pulumi("stack", "export").stdout)["deployment"].get("resources") or []
    assert resources == []
    assert tier3.cp.kubectl("get", "--raw", "/readyz").strip() == "ok"


# --- the SSH tier's kubeconfig, rewritten to the API address -----------------------------

PROVIDER_PROGRAM = """
import pulumi
import pulumi_kubernetes as k8s

provider = k8s.Provider("cluster", kubeconfig=pulumi.Config().require_secret("kubeconfig"))
k8s.core.v1.ConfigMap(
    "probe",
    metadata=k8s.meta.v1.ObjectMetaArgs(name="k3s-rancher-probe", namespace="default"),
    data={"through": "the rewritten kubeconfig"},
    opts=pulumi.ResourceOptions(provider=provider),
)
"""


def test_the_ssh_kubeconfig_rewritten_to_the_api_address_works_through_the_provider(
    controlplane_bin: Path, tmp_path: Path
) -> None:
    """K3s writes k3s.yaml for https://127.0.0.1:6443 and serves a certificate for its tls-san
    list; the program rewrites the kubeconfig to k3s.apiAddress. Served here: an API server
    whose certificate names what the program's config.yaml asks K3s for (tls-san) besides the
    names K3s always adds, answering on the apiAddress; the real provider must connect."""
    from components.config import parse_settings
    from components.kubeconfig import context_name, rewrite_kubeconfig
    from components.scripts import node_config
    from tests.harness import prod_config
    from tests.real.controlplane import control_plane

    settings = parse_settings(prod_config(), {"sshPrivateKey"}, "prod")
    init = settings.init_node
    tls_san = node_config(init, settings.k3s, first_server=True)["tls-san"]
    api_address = settings.k3s.api_address
    assert isinstance(api_address, str) and api_address in tls_san  # the load balancer's, as prod sets it
    with control_plane(controlplane_bin, sans=tls_san, addresses=[api_address]) as cp:
        k3s_yaml = cp.kubeconfig.read_text()  # like K3s's: https://127.0.0.1:6443
        rewritten = rewrite_kubeconfig(k3s_yaml, settings.k3s.server_url, context_name(settings.stack))
        assert yaml.safe_load(rewritten)["clusters"][0]["cluster"]["server"] == "https://10.20.0.10:6443"
        project = make_project(tmp_path, engine_bin(), program=PROVIDER_PROGRAM)
        project.set_config("contract:kubeconfig", rewritten, secret=True)
        stack = Tier3(project, cp)
        try:
            stack.pulumi("up", "--yes", "--skip-preview", timeout=600)
            data = cp.get_json("configmap", "k3s-rancher-probe", "-n", "default")["data"]
            assert data == {"through": "the rewritten kubeconfig"}
            # The certificate is what made it work: the same kubeconfig pointed at an
            # address the certificate does not name is refused by the client.
            wrong = rewrite_kubeconfig(k3s_yaml, "https://127.0.0.2:6443", "wrong")
            (tmp_path / "wrong.yaml").write_text(wrong)
            refused = cp.run(
                ["kubectl", "--kubeconfig", str(tmp_path / "wrong.yaml"), "get", "--raw", "/readyz"], check=False
            )
            assert refused.returncode != 0 and "certificate" in refused.stderr
        finally:
            stack.pulumi("destroy", "--yes", "--skip-preview", check=False)


def test_real_charts_are_pulled_from_the_default_repositories_at_the_default_versions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """K3SR_REAL_CHARTS=1's chart source, with a recording helm in place of the real one (no
    chart repository is reachable here)."""
    calls = tmp_path / "calls"
    helm = tmp_path / "helm"
    helm.write_text(
        '#!/bin/sh\nprintf "%s\\n" "$*" >> "$CALLS"\n'
        'while [ "$#" -gt 0 ]; do case $1 in --version) v=$2 ;; --destination) d=$2 ;; esac; shift; done\n'
        'echo archive > "$d/x-$v.tgz"\n'
    )
    helm.chmod(0o755)
    monkeypatch.setenv("CALLS", str(calls))
    paths = real_charts(helm, tmp_path)
    stable = "https://releases.rancher.com/server-charts/stable"
    assert calls.read_text().splitlines() == [
        f"pull rancher --repo {stable} --version 2.12.3 --destination {tmp_path}",
        f"pull cert-manager --repo https://charts.jetstack.io --version v1.18.2 --destination {tmp_path}",
    ]
    assert paths == {"rancher": tmp_path / "rancher-2.12.3.tgz", "cert-manager": tmp_path / "cert-manager-v1.18.2.tgz"}
