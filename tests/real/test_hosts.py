"""The test host plumbing itself: real SSH, sudo, root login, host-to-host network, teardown."""

from __future__ import annotations

import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.real.hosts import SSH_OPTIONS, ExecError, TestHost, test_hosts

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def pair(testhost_image: str) -> Iterator[list[TestHost]]:
    with test_hosts(2, image=testhost_image) as hosts:
        yield hosts


def test_ssh_as_ubuntu(pair: list[TestHost]) -> None:
    host = pair[0]
    assert (host.ssh_host, host.user) == ("127.0.0.1", "ubuntu")
    rc, out, err = host.run("id -un; hostname")
    assert rc == 0, err
    assert out.split() == ["ubuntu", host.name]
    rc, out, _ = host.run("cat; echo; exit 3", stdin="from stdin")
    assert (rc, out) == (3, "from stdin\n")


def test_passwordless_sudo(pair: list[TestHost]) -> None:
    rc, out, err = pair[0].run("sudo -n true && sudo -n id -u")
    assert rc == 0, err
    assert out.strip() == "0"


def test_root_login_by_key(pair: list[TestHost]) -> None:
    rc, out, err = pair[1].run("id -u", user="root")
    assert rc == 0, err
    assert out.strip() == "0"


def test_hosts_reach_each_other_by_address(pair: list[TestHost]) -> None:
    a, b = pair
    assert a.address != b.address
    assert "127.0.0.1" not in (a.address, b.address)
    rc, _, err = a.run(f"nc -z -w 5 {b.address} 22")
    assert rc == 0, err
    rc, out, err = b.run(f"timeout 5 bash -c 'exec 3<>/dev/tcp/{a.address}/22 && head -c 7 <&3'")
    assert rc == 0, err
    assert out == "SSH-2.0"


def test_private_key_and_exec(pair: list[TestHost]) -> None:
    host = pair[0]
    assert host.private_key.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert host.private_key_path.read_text() == host.private_key
    assert stat.S_IMODE(host.private_key_path.stat().st_mode) == 0o600
    assert host.exec("id -un").strip() == "root"
    assert host.exec("cat", stdin="x", user="ubuntu") == "x"
    assert host.exec("cat /home/ubuntu/.ssh/authorized_keys").strip() == host.public_key
    with pytest.raises(ExecError):
        host.exec("exit 4")
    assert host.exec_result("echo out; echo err >&2; exit 4") == (4, "out\n", "err\n")


def test_host_key_pinning(pair: list[TestHost], tmp_path: Path) -> None:
    a, b = pair
    assert a.host_public_key().startswith("ssh-ed25519 ")
    assert a.host_public_key() != b.host_public_key()  # made per container at start

    def ssh_pinned(host: TestHost, known: str) -> subprocess.CompletedProcess[str]:
        known_hosts = tmp_path / "known_hosts"
        known_hosts.write_text(known + "\n")
        argv = [*host.ssh_argv(), "--", "true"]
        # Same options, but verify the host key against the pinned one.
        argv = [o.replace("StrictHostKeyChecking=no", "StrictHostKeyChecking=yes") for o in argv]
        argv = [o.replace("UserKnownHostsFile=/dev/null", f"UserKnownHostsFile={known_hosts}") for o in argv]
        assert "StrictHostKeyChecking=no" in SSH_OPTIONS  # the replacement above did something
        return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)

    ok = ssh_pinned(a, a.known_hosts_line())
    assert ok.returncode == 0, ok.stderr
    wrong_kind, wrong_blob = b.host_public_key().split()[:2]
    bad = ssh_pinned(a, f"[{a.ssh_host}]:{a.ssh_port} {wrong_kind} {wrong_blob}")
    assert bad.returncode == 255


def _leftovers(names: list[str], network: str) -> tuple[str, str]:
    containers = subprocess.run(
        ["docker", "ps", "-a", "-q", *[f"--filter=name=^{n}$" for n in names]],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout.strip()  # fmt: skip
    networks = subprocess.run(
        ["docker", "network", "ls", "-q", f"--filter=name=^{network}$"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout.strip()  # fmt: skip
    return containers, networks


def test_teardown_leaves_nothing(testhost_image: str) -> None:
    with test_hosts(2, image=testhost_image) as hosts:
        names = [h.name for h in hosts]
        network = hosts[0].network
        keydir = hosts[0].private_key_path.parent
        assert _leftovers(names, network)[0].count("\n") == 1  # two containers while up
    assert _leftovers(names, network) == ("", "")
    assert not keydir.exists()


def test_teardown_on_failure_leaves_nothing(testhost_image: str) -> None:
    with pytest.raises(RuntimeError, match="boom"), test_hosts(1, image=testhost_image) as hosts:
        names = [h.name for h in hosts]
        network = hosts[0].network
        raise RuntimeError("boom")
    assert _leftovers(names, network) == ("", "")
