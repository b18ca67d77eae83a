"""The test host plumbing itself: systemd as PID 1, real SSH, sudo (Debian and RHEL-like),
root login, host-to-host network, the fault helpers (reboot, stop/start, pause, read-only
/usr/local/bin), teardown."""

from __future__ import annotations

import os
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.real.hosts import RHEL_SECURE_PATH, SSH_OPTIONS, ExecError, TestHost, test_hosts

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def pair(testhost_image: str) -> Iterator[list[TestHost]]:
    with test_hosts(2, image=testhost_image, secure_path=[1]) as hosts:
        yield hosts


def test_systemd_is_pid_1_and_the_boot_is_clean(pair: list[TestHost]) -> None:
    host = pair[0]
    assert host.exec("cat /proc/1/comm").strip() == "systemd"
    assert host.system_state() == "running"
    assert host.exec("systemctl is-active ssh.service testhost-init.service").split() == ["active", "active"]
    # Each container has its own machine id (made at first boot), as real hosts do.
    assert pair[0].exec("cat /etc/machine-id") != pair[1].exec("cat /etc/machine-id")


def test_a_notify_unit_makes_systemctl_restart_wait_for_ready(pair: list[TestHost]) -> None:
    """What the K3s unit relies on: Type=notify, so `systemctl restart` returns only after
    the main process has sent READY=1 (here after 2 s)."""
    host = pair[0]
    program = (
        "import os, socket, time\n"
        "time.sleep(2)\n"
        "addr = os.environ['NOTIFY_SOCKET']\n"
        "addr = '\\0' + addr[1:] if addr.startswith('@') else addr\n"
        "socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b'READY=1', addr)\n"
        "time.sleep(3600)\n"
    )
    host.exec("cat > /root/notify.py", stdin=program)
    host.exec(
        "cat > /etc/systemd/system/testhost-notify.service && systemctl daemon-reload",
        stdin="[Service]\nType=notify\nExecStart=/usr/bin/python3 /root/notify.py\n",
    )
    started = time.monotonic()
    host.exec("systemctl restart testhost-notify.service", timeout=30)
    assert time.monotonic() - started >= 2
    assert host.exec("systemctl is-active testhost-notify.service").strip() == "active"
    assert host.unit_starts("testhost-notify") == 1
    host.exec("systemctl restart testhost-notify.service", timeout=30)
    assert host.unit_starts("testhost-notify.service") == 2
    host.exec("systemctl stop testhost-notify.service")


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


PROBE = "#!/bin/sh\necho hello\n"


def test_rhel_like_sudo_has_no_usr_local_bin_on_its_path(pair: list[TestHost]) -> None:
    debian, rhel = pair
    assert (debian.secure_path, rhel.secure_path) == (False, True)
    for host in pair:
        host.exec(
            "printf '#!/bin/sh\\necho hello\\n' > /usr/local/bin/k3sr-probe && chmod 0755 /usr/local/bin/k3sr-probe"
        )
    assert debian.run("sudo -n sh -c 'command -v k3sr-probe'")[:2] == (0, "/usr/local/bin/k3sr-probe\n")
    rc, out, _ = rhel.run("sudo -n sh -c 'command -v k3sr-probe'")
    assert (rc, out) == (127, "")
    assert rhel.run("sudo -n /usr/local/bin/k3sr-probe")[:2] == (0, "hello\n")
    assert RHEL_SECURE_PATH in rhel.exec("cat /etc/sudoers.d/10-secure-path")
    for host in pair:
        host.exec("rm -f /usr/local/bin/k3sr-probe")


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


def test_read_only_usr_local_bin_and_back(pair: list[TestHost]) -> None:
    host = pair[0]
    host.read_only("/usr/local/bin")
    try:
        rc, _, err = host.run("sudo -n touch /usr/local/bin/k3sr-ro-test")
        assert rc != 0 and "Read-only file system" in err
        assert host.run("sudo -n touch /opt/k3sr-ro-test && sudo -n rm /opt/k3sr-ro-test")[0] == 0
    finally:
        host.writable("/usr/local/bin")
    assert host.run("sudo -n touch /usr/local/bin/k3sr-ro-test && sudo -n rm /usr/local/bin/k3sr-ro-test")[0] == 0


def test_reboot_keeps_port_address_and_enabled_units(testhost_image: str) -> None:
    with test_hosts(1, image=testhost_image) as (host,):
        host.exec(
            "cat > /etc/systemd/system/testhost-sleeper.service && systemctl daemon-reload"
            " && systemctl enable --now testhost-sleeper.service",
            stdin="[Service]\nExecStart=/bin/sleep infinity\n[Install]\nWantedBy=multi-user.target\n",
        )
        host.exec("touch /run/k3sr-before-reboot")
        port, address, key = host.ssh_port, host.address, host.host_public_key()
        host.reboot()
        assert host.wait_booted(60) >= 0
        # Same published port (SSH above went to it) and same address on the network.
        assert host.run("hostname -I")[1].split() == [address]
        assert _published_port(host) == port
        assert read_key(host) == key  # host keys are made once per container, not per boot
        assert host.exec("ls /run/k3sr-before-reboot 2>/dev/null || true").strip() == ""  # /run is fresh
        assert host.exec("systemctl is-active testhost-sleeper.service").strip() == "active"


def test_stop_start_and_pause_make_a_host_unreachable_then_back(testhost_image: str) -> None:
    with test_hosts(1, image=testhost_image) as (host,):
        host.stop()
        rc, _, err = host.run("true", timeout=30)
        assert rc == 255, err
        host.start()
        assert host.run("true")[0] == 0
        host.pause()
        try:
            started = time.monotonic()
            rc, _, _ = host.run("true", timeout=60)  # ConnectTimeout=10 in SSH_OPTIONS bounds it
            assert rc == 255
            assert time.monotonic() - started < 30
        finally:
            host.unpause()
        assert host.run("true")[0] == 0


def _published_port(host: TestHost) -> int:
    out = subprocess.run(
        ["docker", "port", host.container_id, "22/tcp"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    return int(out.split()[0].rsplit(":", 1)[1])


def read_key(host: TestHost) -> str:
    return host.exec("cat /etc/ssh/ssh_host_ed25519_key.pub").strip()


def test_the_docker_engine_we_start_does_not_keep_this_runs_tmpdir(testhost_image: str) -> None:
    """setup_docker.sh starts dockerd from inside a test run, whose TMPDIR is private and
    removed when the run ends (tests/real/private_tmp.py). runc writes each `docker exec`'s
    process file in its TMPDIR, so a daemon that kept it failed every exec of the next run
    ("OCI runtime exec failed: open <TMPDIR>/runc-process...")."""
    cache = os.environ.get("K3SR_CACHE") or str(Path.home() / ".cache" / "k3s-rancher")  # setup_docker.sh's
    pid_file = Path(cache) / "dockerd.pid"
    pid = pid_file.read_text().strip() if pid_file.is_file() else ""
    environ, comm = Path(f"/proc/{pid}/environ"), Path(f"/proc/{pid}/comm")
    if not pid or not comm.exists() or comm.read_text().strip() != "dockerd":
        pytest.skip("this Docker engine was not started by setup_docker.sh")
    variables = environ.read_bytes().split(b"\0")
    assert not [v for v in variables if v.startswith(b"TMPDIR=")], "dockerd runs with a TMPDIR of its caller"
