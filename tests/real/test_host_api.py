"""The real Kubernetes API of tiers 1 and 2 (tests/real/host_api.py) is isolated as tier 3's:
its daemons and the socket forwarder run in a network namespace with loopback alone, and the
test hosts reach it only through the unix socket mounted read-only into their containers.
(Issue 26: a real API server dials Service IPs; here it has nowhere to dial.)"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from typing import Any

import pytest

from tests.real.hosts import test_hosts


@pytest.fixture(scope="module")
def group(controlplane_bin: Any) -> Iterator[list[Any]]:
    with test_hosts(1, kubernetes=True) as hosts:
        yield hosts


def test_every_daemon_and_the_forwarder_run_in_a_namespace_with_loopback_alone(group: list[Any]) -> None:
    api = group[0].api
    cp = api.cp
    namespace = os.readlink(cp.netns)
    assert namespace != os.readlink("/proc/self/ns/net")
    # No kwok here: each K3s stand-in runs its own, on its host (tests/real/standin/k3s).
    assert set(cp.processes) == {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "api-socket"}
    for name, proc in cp.processes.items():
        # The Popen is nsenter, which execs the daemon: the same pid, in the namespace.
        assert proc.poll() is None, name
        assert os.readlink(f"/proc/{proc.pid}/ns/net") == namespace, name
    links = cp.run(["ip", "-o", "link"]).stdout.splitlines()
    assert [line.split(":")[1].strip() for line in links] == ["lo"]
    assert cp.run(["ip", "route"]).stdout.strip() == ""
    assert cp.run(["ip", "-6", "route"]).stdout.strip() in ("", "::1 dev lo proto kernel metric 256 pref medium")
    # Every listener is on loopback (the API server's 6443, etcd's 2379/2380).
    listeners = cp.run(["ss", "-Hltn"]).stdout.split("\n")
    addresses = [line.split()[3] for line in listeners if line.strip()]
    loopback = ("127.0.0.1:", "[::1]:", "[::ffff:127.0.0.1]:")
    assert addresses and all(a.startswith(loopback) for a in addresses), addresses
    # What the API server would dial (a Service IP, an address outside, the host's address)
    # has no route from there.
    for target in ("10.43.0.10", "192.0.2.1", group[0].address):
        dial = cp.run(["bash", "-c", f"exec 3<>/dev/tcp/{target}/443"], check=False, timeout=30)
        assert dial.returncode != 0 and "unreachable" in dial.stderr.lower(), (target, dial.stderr)


def test_the_hosts_reach_the_api_only_through_the_read_only_socket(group: list[Any]) -> None:
    host = group[0]
    api = host.api
    mode = os.stat(api.socket).st_mode
    assert stat.S_ISSOCK(mode)
    mounts = json.loads(host.exec("findmnt -J -o TARGET,OPTIONS /var/lib/k3s-standin-api"))
    options = mounts["filesystems"][0]["options"].split(",")
    assert "ro" in options, mounts
    listing = host.exec("ls -l /var/lib/k3s-standin-api").splitlines()
    assert any(line.startswith("s") and line.endswith("api.sock") for line in listing), listing
    # Through the socket: the real API server (its /version), from the host.
    probe = (
        "import http.client, json, socket, ssl\n"
        "d = '/var/lib/k3s-standin-api/'\n"
        "c = ssl.create_default_context(cafile=d + 'ca.crt')\n"
        "c.load_cert_chain(d + 'admin.crt', d + 'admin.key')\n"
        "s = socket.socket(socket.AF_UNIX); s.connect(d + 'api.sock')\n"
        "t = c.wrap_socket(s, server_hostname='127.0.0.1')\n"
        "t.sendall(b'GET /version HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n')\n"
        "print(t.recv(65536).decode().split('\\r\\n\\r\\n', 1)[1])\n"
    )
    answer = host.exec("python3 -", stdin=probe)
    assert '"gitVersion": "v1.33.13"' in answer, answer
    # The host's own 6443 is no API server: nothing listens there until K3s runs.
    refused = host.exec("curl -sk --max-time 5 https://127.0.0.1:6443/version; echo rc=$?", check=False)
    assert "rc=7" in refused, refused
