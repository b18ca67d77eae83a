"""Test tier 3's infrastructure: the control plane in its private network namespace, kwok
nodes, and the Rancher chart STAND-IN (tests/real/charts) against the program's values. The
real cert-manager chart is tested in test_cert_manager_chart.py."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from components.charts import local_chart_error
from components.config import parse_settings
from components.rancher import cert_manager_values, rancher_values
from components.schema import load_schema
from tests.real.controlplane import ControlPlane, control_plane, workload_manifest

CHARTS = Path(__file__).resolve().parent / "charts"
CERT = "-----BEGIN CERTIFICATE-----\nTEST-CERT\n-----END CERTIFICATE-----\n"
CA = "-----BEGIN CERTIFICATE-----\nTEST-CA\n-----END CERTIFICATE-----\n"


def settings(rancher: Mapping[str, Any], secrets: set[str] | None = None) -> Any:
    config = {"topology": "ssh", "servers": [{"name": "cp1", "address": "10.0.0.11"}], "rancher": dict(rancher)}
    return parse_settings(config, {"sshPrivateKey", *(secrets or set())}).rancher


# Every rancher.tls mode, and the other settings that change the values.
RANCHER_VARIANTS: dict[str, tuple[dict[str, Any], set[str]]] = {
    "tls-rancher": ({}, set()),
    "tls-letsEncrypt-production": ({"tls": "letsEncrypt", "letsEncryptEmail": "ops@example.com"}, set()),
    "tls-letsEncrypt-staging": (
        {"tls": "letsEncrypt", "letsEncryptEmail": "ops@example.com", "letsEncryptEnvironment": "staging"},
        set(),
    ),
    "tls-secret": ({"tls": "secret", "tlsCert": CERT}, {"rancherTlsKey"}),
    "tls-secret-private-ca": ({"tls": "secret", "tlsCert": CERT, "privateCa": CA}, {"rancherTlsKey"}),
    "airgap-registry": ({"systemDefaultRegistry": "registry.internal:5000"}, set()),
    "extra-values": ({"values": {"ingress": {"extraAnnotations": {"a": "b"}}, "auditLog": {"level": 1}}}, set()),
}


def chart_schema(name: str) -> dict[str, Any]:
    schema = json.loads((CHARTS / name / "values.schema.json").read_text())
    assert isinstance(schema, dict)
    return schema


def schema_errors(name: str, values: Mapping[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(chart_schema(name))
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(values)]


# --- the chart stand-ins, pure ----------------------------------------------------------


@pytest.mark.parametrize("chart", ["rancher"])
def test_stand_in_is_the_chart_and_version_the_program_pins(chart: str) -> None:
    pinned = load_schema()["properties"]["rancher"]["properties"]["version"]["default"]
    # The program's own check of a local chart source (rancher.chartRepo = a path).
    assert local_chart_error(str(CHARTS / chart), chart, pinned) is None
    meta = yaml.safe_load((CHARTS / chart / "Chart.yaml").read_text())
    assert "STAND-IN" in meta["description"]
    assert "STAND-IN" in (CHARTS / chart / "README.md").read_text()


@pytest.mark.parametrize("variant", RANCHER_VARIANTS)
def test_rancher_schema_accepts_the_program_values(variant: str) -> None:
    rancher, secrets = RANCHER_VARIANTS[variant]
    values = rancher_values(settings(rancher, secrets), "bootstrap-pw")
    assert schema_errors("rancher", values) == []


def test_rancher_schema_accepts_every_example_stack() -> None:
    from tests.harness import load_stack_config

    for stack in ("dev", "local", "prod"):
        config, secrets = load_stack_config(stack)
        given = set(secrets) | ({"sshPrivateKey"} if config.get("topology") == "ssh" else set())
        r = parse_settings(config, given, stack=stack).rancher
        assert schema_errors("rancher", rancher_values(r, "pw")) == [], stack


@pytest.mark.parametrize(
    ("bad", "where"),
    [
        ({"hostnmae": "typo.example.com"}, ""),
        ({"ingress": {"tls": {"source": "rancher", "secretname": "x"}}}, "ingress.tls"),
        ({"letsEncrypt": {"emial": "x@example.com"}}, "letsEncrypt"),
        ({"ingress": {"tls": {"source": "vault"}}}, "ingress.tls.source"),
    ],
)
def test_rancher_schema_refuses_unknown_keys_and_values(bad: dict[str, Any], where: str) -> None:
    values = rancher_values(settings({}), "pw")
    from components.charts import deep_merge

    errors = schema_errors("rancher", deep_merge(values, bad))
    assert len(errors) == 1 and errors[0].startswith(f"{where}:"), errors


# --- the charts rendered by the real helm (no cluster) ------------------------------------


def helm_template(bin_dir: Path, chart: str, values: Mapping[str, Any], tmp: Path, *extra: str) -> Any:
    values_file = tmp / f"{chart}-values.yaml"
    values_file.write_text(yaml.safe_dump(dict(values)))
    done = subprocess.run(
        [str(bin_dir / "helm"), "template", chart, str(CHARTS / chart), "-n", "ns", "-f", str(values_file), *extra],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **helm_env(tmp)},
    )
    return done


def helm_env(tmp: Path) -> dict[str, str]:
    return {f"HELM_{k}_HOME": str(tmp / f"helm-{k.lower()}") for k in ("CACHE", "CONFIG", "DATA")}


def by_kind(manifests: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for doc in yaml.safe_load_all(manifests):
        if doc:
            out.setdefault(doc["kind"], []).append(doc)
    return out


def test_rancher_chart_refuses_kubernetes_1_34_as_rancher_2_12_does(controlplane_bin: Path, tmp_path: Path) -> None:
    values = rancher_values(settings({}), "pw")
    ok = helm_template(controlplane_bin, "rancher", values, tmp_path, "--kube-version", "1.33.5")
    assert ok.returncode == 0, ok.stderr
    refused = helm_template(controlplane_bin, "rancher", values, tmp_path, "--kube-version", "1.34.0")
    assert refused.returncode != 0 and "kubeVersion" in refused.stderr


def test_rancher_chart_renders_what_each_tls_mode_needs(controlplane_bin: Path, tmp_path: Path) -> None:
    for variant in ("tls-rancher", "tls-letsEncrypt-staging", "tls-secret-private-ca"):
        rancher, secrets = RANCHER_VARIANTS[variant]
        r = settings({**rancher, "hostname": "rancher.example.com", "replicas": 2}, secrets)
        done = helm_template(controlplane_bin, "rancher", rancher_values(r, "pw"), tmp_path)
        assert done.returncode == 0, done.stderr
        objects = by_kind(done.stdout)
        (ingress,) = objects["Ingress"]
        assert ingress["spec"]["rules"][0]["host"] == "rancher.example.com"
        assert ingress["spec"]["tls"] == [{"hosts": ["rancher.example.com"], "secretName": "tls-rancher-ingress"}]
        (deployment,) = objects["Deployment"]
        assert deployment["spec"]["replicas"] == 2
        issuers = objects.get("Issuer", [])
        if r.tls == "secret":
            assert issuers == [] and "cert-manager.io/issuer" not in ingress["metadata"]["annotations"]
            volumes = deployment["spec"]["template"]["spec"]["volumes"]
            assert volumes[0]["secret"]["secretName"] == "tls-ca"
        else:
            (issuer,) = issuers
            assert ingress["metadata"]["annotations"]["cert-manager.io/issuer"] == issuer["metadata"]["name"]
            assert ("acme" in issuer["spec"]) == (r.tls == "letsEncrypt")
            if r.tls == "letsEncrypt":  # the HTTP-01 solver uses rancher.ingressClassName
                assert issuer["spec"]["acme"]["solvers"] == [{"http01": {"ingress": {"class": "traefik"}}}]
                assert issuer["spec"]["acme"]["server"].startswith("https://acme-staging-v02.")
        # The bootstrap password reaches the pod through a Secret, not as a plain value.
        env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        assert {
            "name": "CATTLE_BOOTSTRAP_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": "bootstrap-secret", "key": "bootstrapPassword"}},
        } in env


# --- the control plane ------------------------------------------------------------------


def test_control_plane_runs_in_a_private_namespace_with_only_loopback(controlplane: ControlPlane) -> None:
    cp = controlplane
    host_ns = os.readlink("/proc/self/ns/net")
    holder_ns = os.readlink(cp.netns)
    assert holder_ns != host_ns
    for name, proc in cp.processes.items():
        assert proc.poll() is None, f"{name} is not running"
        assert os.readlink(f"/proc/{proc.pid}/ns/net") == holder_ns, name
    links = cp.run(["ip", "-o", "link", "show"]).stdout.splitlines()
    assert [line.split(":")[1].strip() for line in links] == ["lo"]
    assert cp.run(["ip", "route", "show"]).stdout.strip() == ""
    # Listeners inside: loopback only.
    listening = cp.run(["ss", "-Htln"]).stdout.split("\n")
    local = [line.split()[3] for line in listening if line.strip()]
    assert local and all(a.startswith(("127.0.0.1:", "[::1]:", "localhost:")) for a in local), local
    # Nothing outside can be dialled from inside: no route.
    dial = cp.run(["bash", "-c", "exec 3<>/dev/tcp/192.0.2.1/443"], check=False, timeout=30)
    assert dial.returncode != 0 and "unreachable" in dial.stderr.lower()


def test_api_is_not_reachable_from_the_host_namespace(controlplane: ControlPlane) -> None:
    # The API answers inside the namespace ...
    assert controlplane.kubectl("get", "--raw=/readyz").strip() == "ok"
    # ... and the same address from the test's own namespace finds nothing there.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        code = s.connect_ex(("127.0.0.1", controlplane.port))
    host_listener = code == 0
    if host_listener:  # something of the host's own on that port: it must not be our API
        probe = subprocess.run(
            ["kubectl", f"--kubeconfig={controlplane.kubeconfig}", "get", "--raw=/readyz", "--request-timeout=5s"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert probe.returncode != 0
    else:
        assert code == errno.ECONNREFUSED


def test_a_kwok_node_becomes_ready_and_a_deployment_available(controlplane: ControlPlane) -> None:
    cp = controlplane
    (node,) = cp.add_nodes(1, prefix="tier3-node")
    ready = {c["type"]: c["status"] for c in cp.get_json("node", node)["status"]["conditions"]}
    assert ready["Ready"] == "True"
    deployment = workload_manifest("Deployment", "web", {"containers": [{"name": "web", "image": "nginx:1.27"}]}, 2)
    cp.kubectl("apply", "-f", "-", input=json.dumps(deployment))
    cp.kubectl("-n", "default", "wait", "--for=condition=Available", "--timeout=60s", "deployment/web", timeout=75)
    status = cp.get_json("-n", "default", "deployment", "web")["status"]
    assert status["readyReplicas"] == 2
    pods = cp.get_json("-n", "default", "pods", "-l", "app=web")["items"]
    assert {p["spec"]["nodeName"] for p in pods} == {node}
    cp.kubectl("-n", "default", "delete", "deployment", "web", "--wait=false")


def test_a_nodes_own_credentials_reach_only_its_own_node_as_on_k3s(controlplane: ControlPlane) -> None:
    """The Node authorizer and NodeRestriction, as K3s runs its API server: what a kubelet's
    own credentials (a K3s agent's kubelet.kubeconfig) may do. A node may cordon, annotate and
    uncordon itself, list the pods bound to it and evict them (within their budgets); it may
    not read or change another Node, change its own taints or node-role label, delete its
    Node, or read a DaemonSet, so kubectl drain cannot run with these credentials."""
    cp = controlplane
    own, other = cp.add_nodes(2, prefix="own")
    kubeconfig = str(cp.node_kubeconfig(own))

    def as_node(*args: str, input: str | None = None) -> tuple[int, str]:
        done = cp.run(["kubectl", "--kubeconfig", kubeconfig, *args], check=False, input=input, timeout=90)
        return done.returncode, done.stdout + done.stderr

    def evict(pod: str) -> tuple[int, str]:
        eviction = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod, "namespace": "default"}}
        return as_node(
            "create", "--raw", f"/api/v1/namespaces/default/pods/{pod}/eviction", "-f", "-", input=json.dumps(eviction)
        )

    pod_spec = {"containers": [{"name": "c", "image": "busybox:1.36"}]}  # kwok runs no image
    workloads = [
        workload_manifest("DaemonSet", "own-ds", pod_spec),
        workload_manifest("Deployment", "own-web", {**pod_spec, "nodeName": own}, 2),
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "own-other", "namespace": "default"},
         "spec": {**pod_spec, "nodeName": other}},
    ]  # fmt: skip
    cp.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(workloads))
    try:
        cp.kubectl(
            "-n", "default", "wait", "--for=condition=Available", "--timeout=60s", "deployment/own-web", timeout=75
        )
        web = sorted(p["metadata"]["name"] for p in cp.get_json("-n", "default", "pods", "-l", "app=own-web")["items"])
        # Its own Node: read, cordon, mark, uncordon (what an agent-side rollout would do).
        assert as_node("cordon", own)[0] == 0
        assert cp.get_json("node", own)["spec"]["unschedulable"] is True
        assert as_node("annotate", "--overwrite", "node", own, "k3s-rancher.io/cordoned-for-upgrade=true")[0] == 0
        # Its own pods, by the field selector only; evicted through the Eviction API.
        rc, out = as_node("get", "pods", "-A", "--field-selector", f"spec.nodeName={own}", "-o", "name")
        assert rc == 0 and {f"pod/{name}" for name in web} <= set(out.split()), out
        rc, out = as_node("get", "pods", "-A", "-o", "name")
        assert rc != 0 and "spec.nodeName field selector" in out, out
        rc, out = evict(web[0])
        assert rc == 0 and json.loads(out)["code"] == 201, out
        rc, out = evict("own-other")
        assert rc != 0 and "can only evict pods with spec.nodeName set to itself" in out, out
        budget = {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": "own-web", "namespace": "default"},
            "spec": {"maxUnavailable": 0, "selector": {"matchLabels": {"app": "own-web"}}},
        }
        cp.kubectl("apply", "-f", "-", input=json.dumps(budget))
        rc, out = evict(web[1])
        for _ in range(20):  # until the disruption controller has counted the budget
            if "disruption budget" in out:
                break
            time.sleep(1)
            rc, out = evict(web[1])
        assert rc != 0 and "TooManyRequests" in out and "disruption budget" in out, out
        # Not: kubectl drain (it reads each DaemonSet pod's DaemonSet), another Node, its own
        # taints or node-role label, its own deletion.
        rc, out = as_node("drain", own, "--ignore-daemonsets", "--delete-emptydir-data", "--force", "--timeout=20s")
        assert rc != 0 and 'cannot get resource "daemonsets"' in out, out
        refused = {
            "another Node": (("cordon", other), "only its own Node object"),
            "its taints": (("taint", "node", own, "dedicated=x:NoSchedule"), "not allowed to modify taints"),
            "its role label": (
                ("label", "node", own, "node-role.kubernetes.io/worker=true"),
                "not allowed to modify labels",
            ),
            "its deletion": (("delete", "node", own, "--wait=false"), 'cannot delete resource "nodes"'),
        }  # fmt: skip
        for what, (args, reason) in refused.items():
            rc, out = as_node(*args)
            assert rc != 0 and "Forbidden" in out and reason in out, (what, out)
        assert as_node("uncordon", own)[0] == 0
        assert as_node("annotate", "node", own, "k3s-rancher.io/cordoned-for-upgrade-")[0] == 0
        assert not cp.get_json("node", own)["spec"].get("unschedulable")
    finally:
        cp.kubectl("-n", "default", "delete", "pdb/own-web", "daemonset/own-ds", "deployment/own-web", "pod/own-other",
                   "--ignore-not-found", "--wait=false")  # fmt: skip
        cp.kubectl("delete", "node", own, other, "--wait=false")


def test_the_charts_install_and_their_deployments_become_available(
    controlplane: ControlPlane, cert_manager_chart: Path, tmp_path: Path
) -> None:
    """The real cert-manager chart (its CRDs with the release) and the Rancher stand-in on it."""
    cp = controlplane
    cp.add_nodes(2, prefix="charts-node")
    env = helm_env(tmp_path)
    r = settings({"hostname": "rancher.tier3.example", "replicas": 2})

    def install(release: str, namespace: str, values: Mapping[str, Any], chart: Path) -> None:
        values_file = tmp_path / f"{release}.yaml"
        values_file.write_text(yaml.safe_dump(dict(values)))
        values_file.chmod(0o600)
        cp.run(
            ["helm", "install", release, str(chart), "-n", namespace, "--create-namespace",
             "-f", str(values_file), "--wait", "--wait-for-jobs", "--timeout=120s"],
            env=env, timeout=180,
        )  # fmt: skip

    install("cert-manager", "cert-manager", cert_manager_values(r), cert_manager_chart)
    install("rancher", "cattle-system", rancher_values(r, "tier3-bootstrap-pw"), CHARTS / "rancher")

    def available(namespace: str, name: str) -> bool:
        conditions = cp.get_json("-n", namespace, "deployment", name)["status"]["conditions"]
        return any(c["type"] == "Available" and c["status"] == "True" for c in conditions)

    for name in ("cert-manager", "cert-manager-webhook", "cert-manager-cainjector"):
        assert available("cert-manager", name), name
    assert available("cattle-system", "rancher")
    assert cp.get_json("-n", "cattle-system", "deployment", "rancher")["spec"]["replicas"] == 2
    ingress = cp.get_json("-n", "cattle-system", "ingress", "rancher")["spec"]
    assert ingress["rules"][0]["host"] == "rancher.tier3.example"
    assert ingress["tls"][0]["secretName"] == "tls-rancher-ingress"
    issuer = cp.get_json("-n", "cattle-system", "issuers.cert-manager.io", "rancher")
    assert issuer["spec"] == {"ca": {"secretName": "tls-rancher"}}
    # The real CRDs validate: a Certificate without issuerRef is refused.
    bad = {"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": {"name": "x", "namespace": "default"},
           "spec": {"secretName": "x"}}  # fmt: skip
    refused = cp.run(["kubectl", "apply", "-f", "-"], input=json.dumps(bad), check=False)
    assert refused.returncode != 0 and "issuerRef" in refused.stderr
    # Uninstalling cert-manager keeps its CRDs (crds.keep), as the real chart does.
    cp.run(["helm", "uninstall", "rancher", "-n", "cattle-system", "--wait", "--timeout=60s"], env=env, timeout=90)
    cp.run(["helm", "uninstall", "cert-manager", "-n", "cert-manager", "--wait", "--timeout=60s"], env=env, timeout=90)
    assert cp.kubectl("get", "crd", "issuers.cert-manager.io", "-o", "name").strip()
    assert "rancher" not in cp.kubectl("-n", "cattle-system", "get", "deployments", "-o", "name")
    # The session's cluster is shared with later tests (one per xdist worker): leave it as found.
    crds = [c["metadata"]["name"] for c in cp.get_json("crd")["items"]]
    cp.kubectl("delete", "crd", *(c for c in crds if c.endswith("cert-manager.io")), "--wait=true", timeout=120)
    cp.kubectl("delete", "namespace", "cert-manager", "cattle-system", "--wait=false")


def in_namespace(netns: str) -> list[int]:
    """Every process whose network namespace is `netns` (an ns/net link text)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "ns" / "net") == netns:
                    found.append(int(entry.name))
            except OSError:
                pass  # gone meanwhile, or a kernel thread
    return found


def test_teardown_leaves_no_process_and_no_files(controlplane_bin: Path) -> None:
    sans = ["k3s.tier3.example", "10.20.0.10"]
    with control_plane(controlplane_bin, sans=sans, addresses=["10.20.0.10"], port=7443) as cp:
        netns = os.readlink(cp.netns)
        workdir = cp.workdir
        assert sorted(in_namespace(netns)) == sorted(cp.pids())  # holder + 5 daemons
        assert len(cp.pids()) == 6
        # The serving certificate carries the caller's SANs besides the usual names.
        text = cp.run(["openssl", "x509", "-in", str(cp.workdir / "pki" / "apiserver.crt"), "-noout", "-ext",
                       "subjectAltName"]).stdout  # fmt: skip
        assert "DNS:k3s.tier3.example" in text and "IP Address:10.20.0.10" in text
        assert cp.kubectl("get", "--raw=/readyz").strip() == "ok"
        # A kubeconfig rewritten to the extra address verifies the certificate there.
        at_address = cp.kubectl("--server=https://10.20.0.10:7443", "get", "--raw=/readyz")
        assert at_address.strip() == "ok"
    assert in_namespace(netns) == []
    assert not workdir.exists()
