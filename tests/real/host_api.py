"""A real Kubernetes API for the test hosts of tiers 1 and 2 (issue 26).

One control plane (tests/real/controlplane.py: etcd, kube-apiserver, controller manager,
scheduler; all inside a private network namespace with loopback only) per host group. No
kwok runs there: each K3s stand-in runs its own for its own Node (as K3s runs its kubelet).
The hosts reach it through ONE unix socket, nothing else: a forwarder started inside the
namespace listens on `<dir>/api.sock` and connects each accepted connection to the API
server's 127.0.0.1:6443 there. The directory is bind-mounted into every host container at
`HOST_DIR`. A unix socket carries only connections made TO it, so the API server's own
outgoing connections (to Service IPs: webhooks, aggregated APIs) still have no route
anywhere; test_host_api.py checks that.

What the directory holds for the hosts (the K3s stand-in reads it):

- `api.sock`: the API server (TLS, its serving certificate names 127.0.0.1);
- `ca.crt`: the cluster CA (K3s's server-ca: what k3s.yaml and server/tls/server-ca.crt hold);
- `ca.key`: its key, standing in for K3s's server/tls/client-ca.key: with it the stand-in's
  supervisor signs each node's kubelet client certificate (CN=system:node:<node>,
  O=system:nodes), as K3s's /v1-k3s/client-kubelet.crt handler does with its client CA
  (K3s keeps separate server and client CAs; this cluster has one CA for both);
- `serving.crt`, `serving.key`: a certificate for 127.0.0.1/localhost signed by that CA, with
  which the stand-in's supervisor serves TLS on 6443 (as K3s's dynamiclistener does);
- `admin.crt`, `admin.key`: the admin client certificate (O=system:masters), as K3s's
  client-admin certificate in k3s.yaml;
- `kubectl`: the real kubectl (v1.33.13, from the control-plane build) that `k3s kubectl` runs;
- `kwok`: kwok v0.7.0 (same build), which the stand-in runs for its Node while K3s runs.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.real.controlplane import ControlPlane, ControlPlaneError, _openssl, cached_bin_dir, control_plane

#: Where the hosts see the directory (the stand-in's API_DIR).
HOST_DIR = "/var/lib/k3s-standin-api"

#: The forwarder, run inside the namespace: unix socket -> 127.0.0.1:<port>, bytes only.
FORWARDER = r"""
import os, socket, sys, threading
path, port = sys.argv[1], int(sys.argv[2])
def pipe(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
def serve(client):
    try:
        upstream = socket.create_connection(("127.0.0.1", port), timeout=10)
    except OSError:
        client.close()
        return
    upstream.settimeout(None)
    threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
    pipe(upstream, client)
    client.close()
    upstream.close()
listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind(path + ".tmp")
os.chmod(path + ".tmp", 0o666)
os.replace(path + ".tmp", path)
listener.listen(64)
while True:
    conn, _ = listener.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""


@dataclass
class HostAPI:
    """A running control plane and the directory the hosts mount."""

    cp: ControlPlane
    directory: Path

    @property
    def socket(self) -> Path:
        return self.directory / "api.sock"

    def volume_args(self) -> list[str]:
        """`docker run` arguments that mount the directory on a host (read-only)."""
        return ["--volume", f"{self.directory}:{HOST_DIR}:ro"]

    def kubectl(self, *args: str, timeout: float = 60, check: bool = True, input: str | None = None) -> str:
        return self.cp.kubectl(*args, timeout=timeout, check=check, input=input)

    def audit_events(self) -> list[dict[str, Any]]:
        path = self.cp.workdir / "logs" / "audit.log"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def cordon_log(self) -> list[dict[str, Any]]:
        """Every cordon, drain and uncordon the API server saw, in order, from its audit log:
        a Node patch setting spec.unschedulable true is a `cordon`, one clearing it an
        `uncordon`; kubectl drain's listing of a Node's pods (fieldSelector
        spec.nodeName=<node>) a `drain`; only kubectl's requests (its user agent) count.
        Each with `time` (wall clock) and `monotonic` (CLOCK_MONOTONIC, the clock of
        systemd's *TimestampMonotonic: the hosts share this kernel), so a cordon can be
        ordered around a K3s restart."""
        offset = time.time() - time.monotonic()
        log: list[dict[str, Any]] = []
        for event in self.audit_events():
            if event.get("stage") != "ResponseComplete" or event.get("responseStatus", {}).get("code", 0) >= 300:
                continue
            if not str(event.get("userAgent", "")).startswith("kubectl/"):
                continue  # kwok and the controllers list pods by node too
            ref = event.get("objectRef") or {}
            stamp = datetime.datetime.fromisoformat(event["requestReceivedTimestamp"].replace("Z", "+00:00"))
            when = stamp.timestamp()
            verb = None
            if ref.get("resource") == "nodes" and not ref.get("subresource") and event["verb"] == "patch":
                spec = (event.get("requestObject") or {}).get("spec") or {}
                if "unschedulable" in spec:
                    verb, node = ("cordon" if spec["unschedulable"] else "uncordon"), ref.get("name")
            elif ref.get("resource") == "pods" and event["verb"] == "list":
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(event.get("requestURI", "")).query)
                selector = (query.get("fieldSelector") or [""])[0]
                if selector.startswith("spec.nodeName="):
                    verb, node = "drain", selector.split("=", 1)[1]
            if verb:
                log.append({"node": node, "verb": verb, "time": when, "monotonic": when - offset})
        return log


def _client_certificate(pki: Path, out: Path) -> None:
    """admin.crt/admin.key: client auth, CN=system:admin, O=system:masters (K3s's
    client-admin.crt), signed by the control plane's CA."""
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(out / "admin.key"), cwd=pki)
    _openssl("req", "-new", "-key", str(out / "admin.key"), "-subj", "/O=system:masters/CN=system:admin",
             "-out", "admin.csr", cwd=pki)  # fmt: skip
    (pki / "admin.ext").write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                                   "extendedKeyUsage=clientAuth\n")  # fmt: skip
    _openssl("x509", "-req", "-in", "admin.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "365", "-sha256", "-extfile", "admin.ext", "-out", str(out / "admin.crt"), cwd=pki)  # fmt: skip


@contextlib.contextmanager
def host_api(bin_dir: Path | None = None, *, start_timeout: float = 90) -> Iterator[HostAPI]:
    """Start a control plane for one host group and the socket the hosts reach it by."""
    bin_dir = bin_dir or cached_bin_dir()
    if bin_dir is None:
        raise ControlPlaneError(
            "control-plane binaries not built: run `python -m tests.real.controlplane` (tens of minutes, cached)"
        )
    directory = Path(tempfile.mkdtemp(prefix="k3sr-hostapi-"))
    directory.chmod(0o755)
    try:
        with control_plane(bin_dir, start_timeout=start_timeout, kwok_managed="node", audit=True) as cp:
            pki = cp.workdir / "pki"
            shutil.copy(pki / "ca.crt", directory / "ca.crt")
            # The API server's own serving certificate (127.0.0.1, localhost, kubernetes...):
            # the stand-in's supervisor serves it on 6443.
            shutil.copy(pki / "apiserver.crt", directory / "serving.crt")
            shutil.copy(pki / "apiserver.key", directory / "serving.key")
            _client_certificate(pki, directory)
            # The CA key: the stand-in's supervisor signs the nodes' kubelet client certificates
            # with it (K3s: server/tls/client-ca.key, in pkg/server/handlers/handlers.go
            # ClientKubeletCert -> signAndSend).
            shutil.copy(pki / "ca.key", directory / "ca.key")
            for key in ("serving.key", "admin.key", "ca.key"):
                (directory / key).chmod(0o600)
            for binary in ("kubectl", "kwok"):  # a hard link when the cache is on this filesystem
                try:
                    os.link(bin_dir / binary, directory / binary)
                except OSError:
                    shutil.copy(bin_dir / binary, directory / binary)
            cp._start("api-socket", [sys.executable, "-c", FORWARDER, str(directory / "api.sock"), str(cp.port)])
            deadline = time.monotonic() + 30
            while not (directory / "api.sock").exists():
                cp._check_running()
                if time.monotonic() > deadline:
                    raise ControlPlaneError("the API socket forwarder did not start")
                time.sleep(0.05)
            yield HostAPI(cp=cp, directory=directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def in_namespace_of(pid: int | str) -> str:
    return os.readlink(f"/proc/{pid}/ns/net")
