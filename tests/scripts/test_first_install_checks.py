"""install_node.sh's checks before a first install (k3s.preflight): Linux on a K3s
architecture, no K3s someone else installed, the K3s ports free, the clock near the init
server's. Each refusal names the host and what to do, and writes nothing; a host we
installed is not checked again; PREFLIGHT=off (k3s.preflight false) skips them."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from email.utils import formatdate
from pathlib import Path

from components import scripts
from tests.scripts.awkward import awkward_config, settings_for
from tests.scripts.sandbox import Sandbox, install, make_sandbox, needs_sandbox, stdin
from tests.scripts.test_preflight import nothing_written, snapshot

FIRST_INSTALL = Path(scripts.SH_DIR / "first_install.sh").read_text()


def listening(box: Sandbox, *ports: int) -> None:
    """What the ss stand-in reports as listening."""
    (box.log / "listening").write_text("".join(f"{p}\n" for p in ports))


def fake_uname(box: Sandbox, system: str, machine: str) -> None:
    stub = box.stubs / "uname"
    stub.write_text(f'#!/bin/sh\ncase "$1" in -m) echo {machine} ;; *) echo {system} ;; esac\n')
    stub.chmod(0o755)


def refused(box: Sandbox, node: str, *expected: str) -> str:
    before = snapshot(box)
    result = install(box, awkward_config(), node=node)
    assert result.returncode != 0
    for text in expected:
        assert text in result.stderr, result.stderr
    assert "k3s.preflight false" in result.stderr
    assert nothing_written(box, before)
    return result.stderr


@needs_sandbox
def test_a_busy_k3s_port_is_refused_naming_host_and_port(box: Sandbox) -> None:
    listening(box, 22, 6443, 2380)
    refused(box, "cp1", "port(s) 6443/tcp 2380/tcp already in use on cp1", "ss -ltnp")


@needs_sandbox
def test_an_agent_needs_only_the_kubelet_port(box: Sandbox) -> None:
    listening(box, 6443, 2379, 2380)
    result = install(box, awkward_config(), node="w1")
    assert result.returncode == 0, result.stderr


@needs_sandbox
def test_the_agent_refuses_a_busy_kubelet_port(box: Sandbox) -> None:
    listening(box, 10250)
    refused(box, "w1", "port(s) 10250/tcp already in use on w1")


@needs_sandbox
def test_etcd_ports_are_checked_only_with_embedded_etcd(box: Sandbox) -> None:
    listening(box, 2379, 2380)
    result = install(box, awkward_config("sqlite"))
    assert result.returncode == 0, result.stderr  # sqlite: etcd's ports are not K3s's


@needs_sandbox
def test_a_host_we_installed_is_not_checked_again(box: Sandbox) -> None:
    assert install(box, awkward_config()).returncode == 0
    listening(box, 6443, 10250, 2379, 2380)  # our own K3s listens there now
    result = install(box, awkward_config())
    assert result.returncode == 0, result.stderr


@needs_sandbox
def test_a_k3s_someone_else_installed_is_refused_and_preflight_off_takes_it_over(box: Sandbox) -> None:
    box.put_k3s()
    stderr = refused(box, "cp1", "cp1 already has a K3s that k3s-rancher did not install", "/usr/local/bin/k3s")
    assert "k3s-uninstall.sh" in stderr
    result = install(box, awkward_config(), PREFLIGHT="off")
    assert result.returncode == 0, result.stderr


@needs_sandbox
def test_airgap_images_put_there_before_the_install_are_not_a_foreign_k3s(box: Sandbox) -> None:
    """K3s docs (airgap, manual images): the tarball may be placed before K3s is installed."""
    box.put("/var/lib/rancher/k3s/agent/images/k3s-airgap-images-amd64.tar.zst", "images")
    result = install(box, awkward_config(), node="w1")
    assert result.returncode == 0, result.stderr


@needs_sandbox
def test_an_agent_of_another_cluster_without_our_token_file_is_refused(box: Sandbox) -> None:
    box.put("/var/lib/rancher/k3s/agent/client-kubelet.crt", "joined elsewhere", 0o600)
    refused(box, "w1", "w1 already has a K3s that k3s-rancher did not install")


@needs_sandbox
def test_an_unsupported_architecture_or_os_is_refused(box: Sandbox) -> None:
    fake_uname(box, "Linux", "mips64")
    refused(box, "cp1", "cp1 is mips64", "x86_64, aarch64 (arm64), armv7 (armhf) and s390x")
    fake_uname(box, "FreeBSD", "amd64")
    refused(box, "cp1", "cp1 runs FreeBSD", "Linux only")
    for machine in ("x86_64", "aarch64", "armv7l", "s390x"):
        fresh = make_sandbox(box.root.parent / f"box-{machine}")
        fake_uname(fresh, "Linux", machine)
        result = install(fresh, awkward_config("sqlite"))
        assert result.returncode == 0, result.stderr


def server_date(box: Sandbox, offset: float) -> None:
    (box.log / "server-date").write_text(formatdate(time.time() + offset, usegmt=True))


@needs_sandbox
def test_a_joining_node_whose_clock_is_off_is_refused(box: Sandbox) -> None:
    server_date(box, -90)
    stderr = refused(box, "w1", "the clock of w1 differs from the server's (https://10.0.0.11:6443)", "set-ntp")
    match = re.search(r"by (-?\d+)s", stderr)
    assert match and 85 <= int(match.group(1)) <= 95  # this host is about 90 s ahead
    assert (box.log / "curl-head.log").read_text().splitlines() == ["https://10.0.0.11:6443/ping"]


@needs_sandbox
def test_a_clock_within_seconds_or_a_server_without_answer_passes(box: Sandbox) -> None:
    server_date(box, 1)
    result = install(box, awkward_config(), node="w1")
    assert result.returncode == 0, result.stderr
    silent = make_sandbox(box.root.parent / "silent")  # no Date: the server does not answer
    result = install(silent, awkward_config(), node="cp2")
    assert result.returncode == 0, result.stderr  # the join itself will report the server
    assert (silent.log / "curl-head.log").read_text().splitlines() == ["https://10.0.0.11:6443/ping"]


@needs_sandbox
def test_preflight_off_skips_every_new_check(box: Sandbox) -> None:
    listening(box, 6443, 10250)
    fake_uname(box, "Linux", "mips64")
    server_date(box, 3600)
    s = settings_for(awkward_config(preflight=False))
    script = scripts.install_script(s.servers[1], s.k3s, first_server=False)
    assert "PREFLIGHT=off" in script.body
    result = box.run(script, stdin())
    assert result.returncode == 0, result.stderr


def _listening_ports(bin_dir: Path) -> list[str]:
    """The ports first_install.sh's listening_ports() reports, with only `bin_dir` on PATH."""
    start = FIRST_INSTALL.index("listening_ports() {")
    function = FIRST_INSTALL[start : FIRST_INSTALL.index("\n}\n", start) + 3]
    return subprocess.run(
        ["/bin/sh", "-c", function + "listening_ports"],
        env={"PATH": str(bin_dir)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()


def test_busy_ports_are_found_without_ss_or_netstat_from_proc_net_tcp(tmp_path: Path) -> None:
    """The busybox fallback: /proc/net/tcp and tcp6, state 0A, hex ports (this machine's own)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink(shutil.which("cat") or "/bin/cat", bin_dir / "cat")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as v4, socket.socket(socket.AF_INET6) as v6:
        v4.bind(("127.0.0.1", 0))
        v4.listen()
        v6.bind(("::1", 0))
        v6.listen()
        out = _listening_ports(bin_dir)
        assert str(v4.getsockname()[1]) in out and str(v6.getsockname()[1]) in out
        with socket.socket() as connected_only:  # not listening: not reported
            connected_only.bind(("127.0.0.1", 0))
            assert str(connected_only.getsockname()[1]) not in out


def test_busy_ports_are_read_from_netstat_when_ss_is_missing(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    netstat = bin_dir / "netstat"
    netstat.write_text(
        "#!/bin/sh\n"
        "echo 'Active Internet connections (only servers)'\n"
        "echo 'Proto Recv-Q Send-Q Local Address           Foreign Address         State'\n"
        "echo 'tcp        0      0 0.0.0.0:6443            0.0.0.0:*               LISTEN'\n"
        "echo 'tcp        0      0 :::10250                :::*                    LISTEN'\n"
    )
    netstat.chmod(0o755)
    out = _listening_ports(bin_dir)
    assert "6443" in out and "10250" in out
