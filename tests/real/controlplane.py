"""Test tier 3: a real Kubernetes control plane in a private network namespace.

(Over 400 lines: building, starting, entering and stopping one control plane is one
lifecycle; its PKI, namespace and daemon steps depend on each other's files.)

etcd (Debian's etcd-server), kube-apiserver, kube-controller-manager, kube-scheduler and
kwok (simulated Nodes and Pod lifecycle: no kubelet, no container runtime) all run inside
one network namespace that has only loopback. A holder process made with `unshare --net`
keeps the namespace; every daemon, and every command a test runs against the cluster
(kubectl, helm, the Pulumi CLI), enters it with `nsenter --net=/proc/<holder>/ns/net`. So
nothing here can listen on, or dial, any address outside: the API server's dials to Service
IPs (admission webhooks, aggregated APIs) have no route, and the webhook admission plugins
are off so none is attempted. As root the holder is `unshare --net`; otherwise (GitHub's
runners) `unshare --user --map-root-user --net`, which needs unprivileged user namespaces.

    with control_plane(bin_dir) as cp:
        cp.add_nodes(2)
        cp.kubectl("get", "nodes")
        cp.run(["pulumi", "up", "--yes"], env={..., "KUBECONFIG": str(cp.kubeconfig)})

Binaries: tests/real/controlplane/build.sh (cached) and install-etcd.sh.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import ipaddress
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml

from tests.real.build_runner import run_build

HERE = Path(__file__).resolve().parent
BUILD = HERE / "controlplane" / "build.sh"
INSTALL_ETCD = HERE / "controlplane" / "install-etcd.sh"
BUILD_TIMEOUT = 5400  # seconds; a cold build on 2 busy cores takes 15-40 min
DAEMONS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kwok", "helm")
SERVICE_CIDR = "10.43.0.0/16"  # K3s's default, so in-cluster addresses look like K3s's
CLUSTER_CIDR = "10.42.0.0/16"  # K3s's default pod CIDR (tiers 1-2: one /24 per Node)
KUBERNETES_SERVICE_IP = "10.43.0.1"
ETCD_CLIENT_PORT = 2379  # inside the namespace: nothing else can be there
ETCD_PEER_PORT = 2380
STOP_TIMEOUT = 15.0
GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


class ControlPlaneError(RuntimeError):
    pass


def build_controlplane(progress: TextIO | None = None) -> Path:
    """Build (or take from cache) the control-plane binaries; returns their directory.
    K3SR_CONTROLPLANE_BIN names a directory of already built ones instead. With `progress`
    the builder's own lines go there as they come (a cold build takes tens of minutes)."""
    if os.environ.get("K3SR_CONTROLPLANE_BIN"):
        return Path(os.environ["K3SR_CONTROLPLANE_BIN"])
    return run_build(
        BUILD, "controlplane", timeout=BUILD_TIMEOUT, progress=progress, error=ControlPlaneError, what="control-plane"
    )


def cached_bin_dir() -> Path | None:
    """The built binaries' directory when the cache has them (nothing is built), else None."""
    if os.environ.get("K3SR_CONTROLPLANE_BIN"):
        given = Path(os.environ["K3SR_CONTROLPLANE_BIN"])
        return given if all((given / b).is_file() for b in BINARIES) else None
    done = subprocess.run(["bash", str(BUILD), "--cached"], capture_output=True, text=True, timeout=60)
    return Path(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else None


def install_etcd() -> Path:
    """etcd from the distribution's etcd-server package (installed once, as root)."""
    done = subprocess.run(["bash", str(INSTALL_ETCD)], capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise ControlPlaneError(f"cannot install etcd: {done.stderr[-2000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


# --- certificates and credentials (openssl: the venv has no `cryptography`) ---------------


def _openssl(*args: str, cwd: Path) -> None:
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise ControlPlaneError(f"openssl {args[0]} failed: {done.stderr}")


def serving_sans(extra: Sequence[str]) -> list[str]:
    """subjectAltName entries of the API server's certificate: what kube-apiserver and K3s
    always include, plus the caller's (IP addresses and DNS names, told apart here)."""
    names = [
        "127.0.0.1",
        "::1",
        "localhost",
        KUBERNETES_SERVICE_IP,
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        *extra,
    ]
    out: list[str] = []
    for name in dict.fromkeys(names):
        out.append(f"IP:{name}" if _is_ip(name) else f"DNS:{name}")
    return out


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def make_pki(directory: Path, sans: Sequence[str]) -> None:
    """A CA, the API server's serving certificate (signed by it, SANs as given) and the
    service-account signing key pair, as files in `directory` (keys mode 0600)."""
    d = directory
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key", cwd=d)
    _openssl(
        "req", "-x509", "-new", "-key", "ca.key", "-sha256", "-days", "3",
        "-subj", "/CN=k3sr-tier3-ca", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", "ca.crt", cwd=d,
    )  # fmt: skip
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "apiserver.key", cwd=d)
    _openssl("req", "-new", "-key", "apiserver.key", "-subj", "/CN=kube-apiserver", "-out", "apiserver.csr", cwd=d)
    (d / "apiserver.ext").write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        f"extendedKeyUsage=serverAuth\nsubjectAltName={','.join(serving_sans(sans))}\n"
    )
    _openssl(
        "x509", "-req", "-in", "apiserver.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "3", "-sha256", "-extfile", "apiserver.ext", "-out", "apiserver.crt", cwd=d,
    )  # fmt: skip
    _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "sa.key", cwd=d)
    _openssl("pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=d)
    for key in ("ca.key", "apiserver.key", "sa.key"):
        (d / key).chmod(0o600)


def kubeconfig_text(server: str, ca_pem: str, credentials: Mapping[str, str], user: str = "admin") -> str:
    """A kubeconfig for `user` with `credentials` (a token, or a client certificate's files)."""
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "tier3",
                    "cluster": {
                        "server": server,
                        "certificate-authority-data": base64.b64encode(ca_pem.encode()).decode(),
                    },
                }
            ],
            "users": [{"name": user, "user": dict(credentials)}],
            "contexts": [{"name": "tier3", "context": {"cluster": "tier3", "user": user}}],
            "current-context": "tier3",
        }
    )


def _write_secret(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


# --- the namespace and the daemons -------------------------------------------------------


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it when the test process dies, so a killed test
    run leaves no daemon behind (PR_SET_PDEATHSIG survives the exec of nsenter and of the
    daemon it execs)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _netns_id(pid: int | str) -> str:
    return os.readlink(f"/proc/{pid}/ns/net")


@dataclass
class ControlPlane:
    """A running control plane; see the module docstring. Create it with control_plane()."""

    bin_dir: Path
    workdir: Path
    port: int
    holder: subprocess.Popen[bytes]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def netns(self) -> str:
        """The namespace's path, for `nsenter --net=` (valid while the holder runs)."""
        return f"/proc/{self.holder.pid}/ns/net"

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (system:masters, token auth; server https://127.0.0.1:<port>)."""
        return self.workdir / "admin.kubeconfig"

    @property
    def ca_cert(self) -> Path:
        return self.workdir / "pki" / "ca.crt"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def command(self, args: Sequence[str]) -> list[str]:
        """`args` wrapped to run inside the namespace (for callers that start it themselves)."""
        return [*_enter(self.holder.pid), *args]

    def run(
        self,
        args: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 120,
        check: bool = True,
        input: str | None = None,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace; PATH starts with the binaries' directory and
        KUBECONFIG is the admin one unless `env` says otherwise."""
        full_env = {**self.env, **(env or {})}
        done = subprocess.run(
            self.command(args), env=full_env, capture_output=True, text=True, timeout=timeout, input=input, cwd=cwd
        )
        if check and done.returncode != 0:
            raise ControlPlaneError(f"{' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done

    def kubectl(self, *args: str, timeout: float = 60, check: bool = True, input: str | None = None) -> str:
        return self.run(["kubectl", *args], timeout=timeout, check=check, input=input).stdout

    def node_kubeconfig(self, node: str) -> Path:
        """A kubeconfig with `node`'s own credentials, as a K3s agent's kubelet.kubeconfig holds:
        a client certificate for system:node:<node> in group system:nodes, signed by the
        cluster CA (K3s signs it with its client CA: pkg/server/router.go, the client-kubelet
        certificate)."""
        d = self.workdir / "nodes" / node
        d.mkdir(parents=True, exist_ok=True)
        pki = self.workdir / "pki"
        _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "client.key", cwd=d)
        _openssl(
            "req", "-new", "-key", "client.key", "-subj", f"/O=system:nodes/CN=system:node:{node}",
            "-out", "client.csr", cwd=d,
        )  # fmt: skip
        (d / "client.ext").write_text("keyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n")
        _openssl(
            "x509", "-req", "-in", "client.csr", "-CA", str(pki / "ca.crt"), "-CAkey", str(pki / "ca.key"),
            "-CAcreateserial", "-days", "1", "-sha256", "-extfile", "client.ext", "-out", "client.crt", cwd=d,
        )  # fmt: skip
        (d / "client.key").chmod(0o600)
        credentials = {"client-certificate": str(d / "client.crt"), "client-key": str(d / "client.key")}
        _write_secret(d / "kubeconfig", kubeconfig_text(self.server, self.ca_cert.read_text(), credentials, node))
        return d / "kubeconfig"

    def get_json(self, *args: str) -> dict[str, Any]:
        data = json.loads(self.kubectl("get", *args, "-o", "json"))
        assert isinstance(data, dict)
        return data

    def add_nodes(self, count: int, prefix: str = "kwok-node", timeout: float = 60) -> list[str]:
        """Create `count` Nodes that kwok manages and wait until each is Ready."""
        names = [f"{prefix}-{i}" for i in range(count)]
        docs = [node_manifest(name) for name in names]
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
        self.kubectl(
            "wait", "--for=condition=Ready", f"--timeout={int(timeout)}s", *(f"node/{n}" for n in names),
            timeout=timeout + 15,
        )  # fmt: skip
        return names

    def logs(self, daemon: str, tail: int = 40) -> str:
        path = self.workdir / "logs" / f"{daemon}.log"
        return "".join(path.read_text(errors="replace").splitlines(keepends=True)[-tail:]) if path.exists() else ""

    def pids(self) -> list[int]:
        return [p.pid for p in (self.holder, *self.processes.values())]

    # -- start/stop --

    def _start(self, name: str, args: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        log = open(self.workdir / "logs" / f"{name}.log", "wb")  # noqa: SIM115 (kept open for the daemon)
        try:
            self.processes[name] = subprocess.Popen(
                self.command(args),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**self.env, **(env or {})},
                cwd=self.workdir,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        finally:
            log.close()

    def _check_running(self) -> None:
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                raise ControlPlaneError(f"{name} exited {proc.returncode}:\n{self.logs(name)}")

    def _wait(self, what: str, ready: Callable[[], bool], timeout: float) -> float:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            self._check_running()
            if ready():
                return time.monotonic() - start
            time.sleep(0.3)
        raise ControlPlaneError(f"{what} not ready after {timeout:.0f}s")

    def stop(self) -> None:
        """Stop every daemon (SIGTERM, then SIGKILL after STOP_TIMEOUT), then the holder."""
        for name in reversed(list(self.processes)):
            _terminate(self.processes[name])
        _terminate(self.holder)


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT)


def node_manifest(name: str) -> dict[str, object]:
    """A Node for kwok, in the shape kwok's docs give: the kwok.x-k8s.io/node annotation and
    capacity in its status (Nodes take status on create; the scheduler needs `pods`)."""
    resources = {"cpu": "32", "memory": "256Gi", "pods": "110"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"node.alpha.kubernetes.io/ttl": "0", "kwok.x-k8s.io/node": "fake"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
            },
        },
        "status": {"allocatable": resources, "capacity": resources},
    }


def workload_manifest(kind: str, name: str, pod_spec: dict[str, Any], replicas: int | None = None) -> dict[str, Any]:
    """A Deployment or DaemonSet `name` in namespace default whose pods (label app=<name>) have
    `pod_spec`; kwok runs no image, so any image name does."""
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec},
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name, "namespace": "default"}, "spec": spec}


#: What the audit log keeps (control_plane(audit=True)): who changed a Node (with the patch),
#: who listed pods (kubectl drain lists a Node's pods) and evicted them; nothing else.
AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Request
  verbs: ["patch", "update"]
  resources: [{group: "", resources: ["nodes"]}]
- level: Metadata
  verbs: ["list", "create"]
  resources: [{group: "", resources: ["pods", "pods/eviction"]}]
- level: None
"""


def _audit_flags(workdir: Path) -> list[str]:
    return [
        f"--audit-policy-file={workdir / 'audit-policy.yaml'}",
        f"--audit-log-path={workdir / 'logs' / 'audit.log'}",
        "--audit-log-format=json",
    ]


ROOTLESS = os.geteuid() != 0


def _enter(holder: int) -> list[str]:
    """The nsenter prefix that runs a command in the holder's network namespace. Without
    root the holder made a user namespace too (mapping us to its root), entered first;
    --preserve-credentials because that namespace denies setgroups(2), which nsenter would
    call otherwise (our uid is already its root)."""
    user = [f"--user=/proc/{holder}/ns/user", "--preserve-credentials"] if ROOTLESS else []
    return ["nsenter", *user, f"--net=/proc/{holder}/ns/net", "--"]


def _holder(timeout: float = 10) -> subprocess.Popen[bytes]:
    """The process that keeps the namespace: `unshare --net` (as root; otherwise
    `unshare --user --map-root-user --net`) with loopback brought up."""
    user = ["--user", "--map-root-user"] if ROOTLESS else []
    holder = subprocess.Popen(
        ["unshare", *user, "--net", "--", "sleep", "infinity"],
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )
    own = _netns_id("self")
    deadline = time.monotonic() + timeout
    # Until unshare(2) has run, /proc/<pid>/ns/net is still ours.
    while _netns_id(holder.pid) == own:
        if holder.poll() is not None or time.monotonic() > deadline:
            _terminate(holder)
            raise ControlPlaneError("unshare did not make a network namespace (are user namespaces allowed?)")
        time.sleep(0.05)
    # Rootless, the uid map is written just after the namespaces are made: retry briefly.
    while True:
        up = subprocess.run(
            [*_enter(holder.pid), "ip", "link", "set", "lo", "up"], capture_output=True, text=True, timeout=30
        )
        if up.returncode == 0:
            return holder
        if time.monotonic() > deadline:
            _terminate(holder)
            raise ControlPlaneError(f"cannot bring lo up in the namespace: {up.stderr}")
        time.sleep(0.1)


@contextlib.contextmanager
def control_plane(
    bin_dir: Path,
    *,
    sans: Sequence[str] = (),
    addresses: Sequence[str] = (),
    port: int = 6443,
    etcd: Path | None = None,
    start_timeout: float = 90,
    progress: TextIO | None = None,
    kwok_managed: str = "all",
    audit: bool = False,
) -> Iterator[ControlPlane]:
    """Start etcd, the API server (serving certificate with `sans` besides the usual
    names), the controller manager, the scheduler and kwok in a new private network
    namespace; stop them all and remove every file on exit.

    `addresses`: IPv4 addresses given to the namespace's loopback device, on which the API
    server then answers too (it binds 0.0.0.0 of the namespace), e.g. a K3s apiAddress for a
    kubeconfig rewritten to it. They exist inside the namespace only.

    `kwok_managed`: "all" (one kwok in the namespace: every Node is its, Ready for ever) or
    "node" (tiers 1 and 2, tests/real/host_api.py: no kwok here; each K3s stand-in runs its
    own kwok for its own Node while it runs, as K3s runs its kubelet, so a stopped K3s stops
    renewing its Node's lease and the node lifecycle controller marks the Node NotReady after
    its default grace period of 50 s, as for a stopped kubelet).

    `audit`: the API server writes `logs/audit.log` (AUDIT_POLICY: Node patches with their
    bodies, pod lists and evictions), so tests can tell what kubectl did to a Node, even
    briefly (tests/real/host_api.py cordon_log)."""
    if kwok_managed not in ("all", "node"):
        raise ValueError(f"kwok_managed must be 'all' or 'node', not {kwok_managed!r}")
    etcd_bin = etcd or install_etcd()
    workdir = Path(tempfile.mkdtemp(prefix="k3sr-tier3-"))
    cp: ControlPlane | None = None
    try:
        for sub in ("pki", "logs", "etcd", "home"):
            (workdir / sub).mkdir(mode=0o700)
        pki = workdir / "pki"
        make_pki(pki, sans)
        token = secrets.token_hex(24)
        # Token auth file: token,user,uid,"group". Read by the API server only.
        _write_secret(pki / "tokens.csv", f'{token},admin,admin,"system:masters"\n')
        cp = ControlPlane(bin_dir=bin_dir, workdir=workdir, port=port, holder=_holder())
        for address in addresses:
            cp.run(["ip", "addr", "add", f"{address}/32", "dev", "lo"], timeout=30)
        _write_secret(cp.kubeconfig, kubeconfig_text(cp.server, cp.ca_cert.read_text(), {"token": token}))
        cp.env = {
            **os.environ,
            "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "KUBECONFIG": str(cp.kubeconfig),
        }
        if audit:
            (workdir / "audit-policy.yaml").write_text(AUDIT_POLICY)
        started = time.monotonic()

        def step(message: str) -> None:
            if progress is not None:
                progress.write(f"[tier3 +{time.monotonic() - started:4.1f}s] {message}\n")
                progress.flush()

        etcd_url = f"http://127.0.0.1:{ETCD_CLIENT_PORT}"
        peer_url = f"http://127.0.0.1:{ETCD_PEER_PORT}"
        cp._start(
            "etcd",
            [
                str(etcd_bin),
                "--name=tier3",
                f"--data-dir={workdir / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=tier3={peer_url}",
                "--log-level=warn",
            ],
            # etcd 3.4 refuses to start on arm64 unless this names the Go architecture;
            # amd64 ignores it.
            env={"ETCD_UNSUPPORTED_ARCH": GO_ARCH.get(os.uname().machine, os.uname().machine)},
        )
        cp._start(
            "kube-apiserver",
            [
                str(bin_dir / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                f"--bind-address={'0.0.0.0' if addresses else '127.0.0.1'}",
                "--advertise-address=127.0.0.1",
                f"--secure-port={port}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--token-auth-file={pki / 'tokens.csv'}",
                # As K3s runs it (k3s-io/k3s pkg/daemons/control/server.go, apiServer): the Node
                # authorizer and NodeRestriction limit a kubelet's own credentials to its Node.
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                "--anonymous-auth=false",
                "--allow-privileged=true",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                # No webhook calls: a Service IP has no route in this namespace.
                "--disable-admission-plugins=ValidatingAdmissionWebhook,MutatingAdmissionWebhook",
                # The kubernetes Service's Endpoints would be 127.0.0.1, which validation refuses.
                "--endpoint-reconciler-type=none",
                *(_audit_flags(workdir) if audit else []),
            ],
        )
        ready = cp._wait("kube-apiserver", lambda: _api_ready(cp), start_timeout)
        step(f"etcd + kube-apiserver ready in {ready:.1f}s")
        # The controller manager and the scheduler use the admin kubeconfig: this is a
        # throwaway test cluster, and the token stays in files.
        common = [f"--kubeconfig={cp.kubeconfig}", "--leader-elect=false", "--secure-port=0"]
        cp._start(
            "kube-controller-manager",
            [
                str(bin_dir / "kube-controller-manager"),
                *common,
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                # kwok's node heartbeat (its node-heartbeat stage: every 20 s plus up to 25 s
                # of jitter) can miss the default 50 s grace; a Node going NotReady mid-test
                # makes its pods unready and Helm's wait time out. Tier 3 never needs it;
                # tiers 1-2 heartbeat through node leases (each node's kwok, renewed every
                # 10 s as the kubelet's) and keep the default.
                *(["--node-monitor-grace-period=1h"] if kwok_managed == "all" else []),
                # K3s's controller manager gives each Node a pod CIDR from its cluster CIDR
                # (pkg/daemons/control/server.go controllerManager: allocate-node-cidrs,
                # cluster-cidr 10.42.0.0/16); each node's kwok takes its pods' IPs from it.
                *(["--allocate-node-cidrs=true", f"--cluster-cidr={CLUSTER_CIDR}"] if kwok_managed == "node" else []),
            ],
        )
        cp._start("kube-scheduler", [str(bin_dir / "kube-scheduler"), *common])
        if kwok_managed == "all":
            cp._start(
                "kwok",
                [str(bin_dir / "kwok"), f"--kubeconfig={cp.kubeconfig}", "--manage-all-nodes=true"],
                env={"HOME": str(workdir / "home")},
            )
        # Ready for workloads when the default ServiceAccount exists (pods need it).
        cp._wait("the default ServiceAccount", lambda: _has_default_sa(cp), start_timeout)
        step("controller manager, scheduler" + (" and kwok" if kwok_managed == "all" else "") + " running")
        yield cp
    finally:
        if cp is not None:
            cp.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _api_ready(cp: ControlPlane) -> bool:
    done = cp.run(["kubectl", "get", "--raw=/readyz"], check=False, timeout=15)
    return done.returncode == 0 and done.stdout.strip() == "ok"


def _has_default_sa(cp: ControlPlane) -> bool:
    done = cp.run(["kubectl", "-n", "default", "get", "serviceaccount", "default"], check=False, timeout=15)
    return done.returncode == 0


if __name__ == "__main__":
    # bin/test builds the binaries here, between the engine and the real tiers, with its
    # progress on the terminal, then assembles the real cert-manager chart (seconds). The
    # last line is the bin directory.
    from tests.real.cert_manager_chart import build_cert_manager_chart

    install_etcd()
    built = build_controlplane(progress=sys.stderr)
    build_cert_manager_chart(built / "helm", progress=sys.stderr)
    print(built)
