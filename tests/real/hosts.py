"""Throwaway Linux hosts reachable by SSH on 127.0.0.1, for tests that run our scripts for real.
(Over 400 lines on purpose: one TestHost interface, documented as one table in
tests/real/README.md, with the Docker plumbing that starts, faults and removes those hosts.)

Each host is a Docker container from the image that ``setup_docker.sh`` builds (Debian
bookworm with systemd, sshd, sudo, python3, curl). systemd is PID 1 (run with the flags in
``SYSTEMD_RUN_ARGS``: no ``--privileged``), sshd is a systemd service with host keys made at
first boot, user ``ubuntu`` has passwordless sudo, and a per-group ed25519 test key is
accepted for ``ubuntu`` and ``root``. Port 22 is published on a fixed port of 127.0.0.1
and each host has a fixed address on the group's Docker network, so both survive
``reboot()``; the hosts of one group reach each other by ``address``.

Usage::

    with test_hosts(2, secure_path=[1]) as (a, b):   # b: RHEL-like sudo secure_path
        rc, out, err = a.run(f"nc -z -w 5 {b.address} 22")   # real SSH, as ubuntu
        assert "ubuntu" in b.exec("id")                       # docker exec, as root; stdout
        a.reboot()                                            # docker restart: a reboot

Faults for tests: ``reboot()``, ``stop()``/``start()`` (down: connections refused),
``pause()``/``unpause()`` (frozen: connections hang), ``read_only(path)`` (a read-only bind
mount, e.g. /usr/local/bin; gone at the next reboot).

Teardown removes the containers, the network and the key directory, also on failure.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SETUP_SCRIPT = HERE / "setup_docker.sh"

LABEL_GROUP = "k3s-rancher.testhost.group"
LABEL_PID = "k3s-rancher.testhost.pid"

#: Options for every ssh call: no host-key prompts or records, no agent/config surprises.
SSH_OPTIONS: tuple[str, ...] = (
    "-F", "/dev/null",
    "-o", "StrictHostKeyChecking=no",
    "-o", "UserKnownHostsFile=/dev/null",
    "-o", "GlobalKnownHostsFile=/dev/null",
    "-o", "BatchMode=yes",
    "-o", "IdentitiesOnly=yes",
    "-o", "IdentityAgent=none",
    "-o", "PasswordAuthentication=no",
    "-o", "ConnectTimeout=10",
    "-o", "ServerAliveInterval=5",
    "-o", "ServerAliveCountMax=3",
    "-o", "LogLevel=ERROR",
)  # fmt: skip

Result = tuple[int, str, str]

#: How every host runs on a cgroup v1 engine (this machine): systemd as PID 1 without
#: --privileged (refused by this engine). SYS_ADMIN lets systemd mount its filesystems (and
#: tests make read-only bind mounts); /run and /run/lock are tmpfs as systemd expects. The
#: cgroup bind is read-only only at its top: Docker leaves the controller submounts
#: writable, and systemd manages the container's own /docker/<id> subtree in them.
#: SIGRTMIN+3 is systemd's "halt", so ``docker stop``/``restart`` shut down cleanly.
SYSTEMD_RUN_ARGS: tuple[str, ...] = (
    "--cap-add", "SYS_ADMIN",
    "--tmpfs", "/run",
    "--tmpfs", "/run/lock",
    "--volume", "/sys/fs/cgroup:/sys/fs/cgroup:ro",
    "--stop-signal", "SIGRTMIN+3",
)  # fmt: skip

#: On a cgroup v2 engine (GitHub's ubuntu-latest runners) the host's cgroup tree must NOT
#: be bind-mounted (systemd would manage the host's root): the container gets a private
#: cgroup namespace, which Docker mounts read-only; the image's /usr/local/sbin/k3sr-boot
#: remounts it read-write (CAP_SYS_ADMIN; AppArmor's docker-default profile denies mount).
#: Not exercised on this (v1) machine.
SYSTEMD_RUN_ARGS_CGROUP2: tuple[str, ...] = (
    "--cap-add", "SYS_ADMIN",
    "--cgroupns", "private",
    "--security-opt", "apparmor=unconfined",
    "--tmpfs", "/run",
    "--tmpfs", "/run/lock",
    "--stop-signal", "SIGRTMIN+3",
)  # fmt: skip


def systemd_run_args() -> tuple[str, ...]:
    """The ``docker run`` flags that boot systemd on this engine (by its cgroup version)."""
    version = _docker("info", "--format", "{{.CgroupVersion}}", timeout=30, check=False).stdout.strip()
    return SYSTEMD_RUN_ARGS_CGROUP2 if version == "2" else SYSTEMD_RUN_ARGS


#: The sudoers line of RHEL-family hosts (Rocky, Alma, RHEL, Fedora): /usr/local/bin is not
#: on sudo's PATH, so ``sudo k3s`` fails there while ``sudo /usr/local/bin/k3s`` works.
RHEL_SECURE_PATH = 'Defaults secure_path="/usr/sbin:/usr/bin:/sbin:/bin"'


class DockerError(RuntimeError):
    """A docker command failed."""


class ExecError(RuntimeError):
    """A command run by ``TestHost.exec`` exited non-zero."""

    def __init__(self, host: str, cmd: str, rc: int, stdout: str, stderr: str) -> None:
        super().__init__(f"{host}: {cmd!r} exited {rc}\nstdout: {stdout.strip()}\nstderr: {stderr.strip()}")
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr


def _docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["docker", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise DockerError(f"docker {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def _as_bytes(data: str | bytes | None) -> bytes | None:
    if data is None or isinstance(data, bytes):
        return data
    return data.encode()


def _decode(data: bytes) -> str:
    return data.decode(errors="replace")


def run_setup_script(timeout: float = 900) -> str:
    """Run ``setup_docker.sh`` (idempotent: starts Docker, builds the image if needed).

    Returns the image name (its last line of output) and records it in
    ``K3SR_TESTHOST_IMAGE``. Raises RuntimeError with the script's output if it fails.
    """
    proc = subprocess.run(
        ["bash", str(SETUP_SCRIPT)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"{SETUP_SCRIPT} failed (exit {proc.returncode}):\n{proc.stderr.strip()}\n{proc.stdout.strip()}"
        )
    image = lines[-1].strip()
    os.environ["K3SR_TESTHOST_IMAGE"] = image
    return image


def ensure_image(timeout: float = 900) -> str:
    """The test host image: ``K3SR_TESTHOST_IMAGE`` if set, else ``run_setup_script()``."""
    return os.environ.get("K3SR_TESTHOST_IMAGE") or run_setup_script(timeout)


@dataclass
class KeyPair:
    """An ed25519 key pair on disk (OpenSSH private key format, no passphrase)."""

    private_key_path: Path
    private_key: str
    public_key: str

    @classmethod
    def generate(cls, directory: Path, name: str = "id_ed25519") -> KeyPair:
        path = directory / name
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "k3s-rancher-test", "-f", str(path)],
            check=True,
            capture_output=True,
            timeout=30,
        )
        return cls(
            private_key_path=path,
            private_key=path.read_text(),
            public_key=path.with_suffix(".pub").read_text().strip(),
        )


@dataclass
class TestHost:
    """One throwaway SSH host (a container)."""

    __test__ = False  # not a pytest test class

    name: str
    container_id: str
    ssh_port: int
    address: str
    network: str
    key: KeyPair
    user: str = "ubuntu"
    ssh_host: str = "127.0.0.1"
    #: True when sudo has RHEL's secure_path (no /usr/local/bin), see ``RHEL_SECURE_PATH``.
    secure_path: bool = False
    #: The group's real Kubernetes API (tests/real/host_api.py) when started with
    #: ``kubernetes=True``: ``host.api.kubectl(...)`` asks it from the test machine.
    api: Any = None
    _known: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def private_key(self) -> str:
        return self.key.private_key

    @property
    def private_key_path(self) -> Path:
        return self.key.private_key_path

    @property
    def public_key(self) -> str:
        return self.key.public_key

    def ssh_argv(self, user: str | None = None) -> list[str]:
        """The ``ssh`` command line up to (not including) the remote command."""
        return [
            "ssh",
            *SSH_OPTIONS,
            "-i", str(self.private_key_path),
            "-p", str(self.ssh_port),
            "-l", user or self.user,
            self.ssh_host,
        ]  # fmt: skip

    def run(
        self,
        cmd: str,
        stdin: str | bytes | None = None,
        user: str | None = None,
        timeout: float = 120,
    ) -> Result:
        """Run ``cmd`` over real SSH (as ``user``, default ``self.user``); return (rc, stdout, stderr).

        rc 255 means ssh itself failed. Raises subprocess.TimeoutExpired after ``timeout`` s.
        """
        proc = subprocess.run(
            [*self.ssh_argv(user), "--", cmd],
            input=_as_bytes(stdin) if stdin is not None else b"",
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        return proc.returncode, _decode(proc.stdout), _decode(proc.stderr)

    def exec_result(
        self,
        cmd: str,
        stdin: str | bytes | None = None,
        user: str = "root",
        timeout: float = 120,
    ) -> Result:
        """Run ``cmd`` with ``sh -c`` via ``docker exec`` (no SSH); return (rc, stdout, stderr)."""
        args = ["docker", "exec", "-u", user]
        if stdin is not None:
            args.append("-i")
        proc = subprocess.run(
            [*args, self.container_id, "sh", "-c", cmd],
            input=_as_bytes(stdin),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        return proc.returncode, _decode(proc.stdout), _decode(proc.stderr)

    def exec(
        self,
        cmd: str,
        stdin: str | bytes | None = None,
        user: str = "root",
        timeout: float = 120,
        check: bool = True,
    ) -> str:
        """Run ``cmd`` with ``sh -c`` via ``docker exec`` (no SSH), for inspection; return stdout.

        Raises ExecError if ``cmd`` exits non-zero (unless ``check=False``).
        """
        rc, out, err = self.exec_result(cmd, stdin=stdin, user=user, timeout=timeout)
        if check and rc != 0:
            raise ExecError(self.name, cmd, rc, out, err)
        return out

    def system_state(self, timeout: float = 30) -> str:
        """``systemctl is-system-running``: running, degraded, starting, ..."""
        return self.exec_result("systemctl is-system-running", timeout=timeout)[1].strip()

    def unit_starts(self, unit: str) -> int:
        """How many times systemd has brought ``unit`` up (READY for Type=notify) since the
        container was created, from the journal's "Started <unit>" lines (kept across
        reboots only if the journal is persistent: count within one boot)."""
        out = self.exec(f"journalctl --no-pager -o cat -u {shlex.quote(unit)} 2>/dev/null || true")
        name = unit if "." in unit else f"{unit}.service"
        return sum(1 for line in out.splitlines() if line.startswith(f"Started {name}"))

    def wait_booted(self, timeout: float = 60) -> float:
        """Wait until systemd has finished booting and sshd answers; return seconds waited.

        Raises TimeoutError after ``timeout`` s, and RuntimeError naming the failed units if
        the boot ends ``degraded``.
        """
        started = time.monotonic()
        deadline = started + timeout
        _wait_ssh(self, deadline)
        state = _wait_system_running(self, deadline)
        if state != "running":
            failed = self.exec("systemctl --failed --no-legend --plain", check=False).strip()
            raise RuntimeError(f"{self.name}: systemd is {state!r} after boot; failed units: {failed or 'none'}")
        return time.monotonic() - started

    def wait_ssh(self, timeout: float = 60) -> float:
        """Wait until SSH as ``self.user`` works; return seconds waited (TimeoutError after ``timeout``)."""
        started = time.monotonic()
        _wait_ssh(self, started + timeout)
        return time.monotonic() - started

    def reboot(self, timeout: float = 90) -> float:
        """``docker restart``: systemd halts (SIGRTMIN+3), the container boots again with the same
        port and address. Waits for SSH only (units such as k3s may still be starting); returns
        seconds from the restart command to SSH answering."""
        started = time.monotonic()
        _docker("restart", "--time", "20", self.container_id, timeout=60)
        _wait_ssh(self, started + timeout)
        return time.monotonic() - started

    def stop(self) -> None:
        """Power off (``docker stop``): SSH connections to the port are refused until ``start()``."""
        _docker("stop", "--time", "20", self.container_id, timeout=60)

    def start(self, timeout: float = 90) -> float:
        """Power on after ``stop()``: same port and address; waits for SSH, returns seconds."""
        started = time.monotonic()
        _docker("start", self.container_id, timeout=60)
        _wait_ssh(self, started + timeout)
        return time.monotonic() - started

    def pause(self) -> None:
        """Freeze every process (``docker pause``): connections are accepted by Docker's proxy
        but nothing answers (SSH dials time out), as with a host gone from the network."""
        _docker("pause", self.container_id, timeout=30)

    def unpause(self) -> None:
        """Undo ``pause()``: the same processes go on where they stopped."""
        _docker("unpause", self.container_id, timeout=30)

    def read_only(self, path: str = "/usr/local/bin") -> None:
        """Make ``path`` read-only (a read-only bind mount over itself), as on hosts whose /usr
        is read-only; lasts until ``writable(path)`` or the next reboot."""
        quoted = shlex.quote(path)
        self.exec(f"mkdir -p {quoted} && mount --bind {quoted} {quoted} && mount -o remount,ro,bind {quoted}")

    def writable(self, path: str = "/usr/local/bin") -> None:
        """Undo ``read_only(path)``."""
        self.exec(f"umount {shlex.quote(path)}")

    def host_public_key(self, key_type: str = "ed25519") -> str:
        """This host's SSH host public key, e.g. ``ssh-ed25519 AAAA... root@name``."""
        if key_type not in self._known:
            self._known[key_type] = read_host_public_key(self.container_id, key_type)
        return self._known[key_type]

    def known_hosts_line(self, key_type: str = "ed25519") -> str:
        """A known_hosts line pinning this host's key for ``[127.0.0.1]:port``."""
        kind, blob = self.host_public_key(key_type).split()[:2]
        return f"[{self.ssh_host}]:{self.ssh_port} {kind} {blob}"


def read_host_public_key(container: str, key_type: str = "ed25519") -> str:
    """Read ``/etc/ssh/ssh_host_<key_type>_key.pub`` from a container (by id or name)."""
    proc = _docker("exec", container, "cat", f"/etc/ssh/ssh_host_{key_type}_key.pub", timeout=30)
    return proc.stdout.strip()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_group(group: str) -> None:
    """Remove every container and network labelled with ``group`` (errors ignored)."""
    flt = f"label={LABEL_GROUP}={group}"
    ids = _docker("ps", "-aq", "--filter", flt, check=False).stdout.split()
    if ids:
        _docker("rm", "-f", "-v", *ids, check=False, timeout=120)
    nets = _docker("network", "ls", "-q", "--filter", flt, check=False).stdout.split()
    for net in nets:
        _docker("network", "rm", net, check=False, timeout=60)


def remove_stale() -> list[str]:
    """Remove test host groups whose creating process is gone; return their group ids."""
    proc = _docker(
        "ps", "-a", "--filter", f"label={LABEL_GROUP}",
        "--format", f'{{{{.Label "{LABEL_GROUP}"}}}} {{{{.Label "{LABEL_PID}"}}}}',
        check=False,
    )  # fmt: skip
    nets = _docker(
        "network", "ls", "--filter", f"label={LABEL_GROUP}",
        "--format", f'{{{{.Label "{LABEL_GROUP}"}}}} {{{{.Label "{LABEL_PID}"}}}}',
        check=False,
    )  # fmt: skip
    stale: set[str] = set()
    for line in (proc.stdout + nets.stdout).splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and not _pid_alive(int(parts[1])):
            stale.add(parts[0])
    for group in sorted(stale):
        remove_group(group)
    return sorted(stale)


def _free_port() -> int:
    """A TCP port free on 127.0.0.1 now (Docker may still lose a race for it: callers retry)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start_container(
    image: str, name: str, network: str, address: str, labels: Sequence[str], key: KeyPair, run_args: Sequence[str]
) -> str:
    """Start one host with a fixed SSH port and address (Docker would pick new ones at each
    restart otherwise). Retries a few times when another process takes the port first."""
    last = ""
    for _ in range(5):
        args = [
            "run", "--detach",
            "--name", name,
            "--hostname", name,
            "--network", network,
            "--ip", address,
            "--publish", f"127.0.0.1:{_free_port()}:22",
            "--env", f"K3SR_AUTHORIZED_KEY={key.public_key}",
            *run_args,
        ]  # fmt: skip
        for label in labels:
            args += ["--label", label]
        proc = _docker(*args, image, timeout=120, check=False)
        if proc.returncode == 0:
            return proc.stdout.strip()
        last = proc.stderr.strip()
        _docker("rm", "-f", name, check=False, timeout=60)
        if "already allocated" not in last and "address already in use" not in last:
            break
    raise DockerError(f"docker run {name} failed: {last}")


def _create_network(network: str, labels: Sequence[str]) -> ipaddress.IPv4Network:
    """A bridge network with an explicit subnet (so hosts can have fixed addresses): the
    subnet Docker's own allocator picks, re-created as user-configured. Retries if another
    process takes that subnet in between."""
    label_args = [arg for label in labels for arg in ("--label", label)]
    last = ""
    for _ in range(5):
        _docker("network", "create", "--driver", "bridge", *label_args, network, timeout=60)
        subnet = _docker(
            "network", "inspect", "--format", "{{(index .IPAM.Config 0).Subnet}}", network, timeout=30
        ).stdout.strip()
        _docker("network", "rm", network, timeout=60)
        proc = _docker(
            "network", "create", "--driver", "bridge", "--subnet", subnet, *label_args, network,
            timeout=60, check=False,
        )  # fmt: skip
        if proc.returncode == 0:
            return ipaddress.IPv4Network(subnet)
        last = proc.stderr.strip()
    raise DockerError(f"docker network create {network} failed: {last}")


def _inspect(container_id: str, network: str) -> tuple[int, str]:
    fmt = (
        '{{(index (index .NetworkSettings.Ports "22/tcp") 0).HostPort}} '
        f'{{{{(index .NetworkSettings.Networks "{network}").IPAddress}}}}'
    )
    port, address = _docker("inspect", "--format", fmt, container_id, timeout=30).stdout.split()
    return int(port), address


def _wait_ssh(host: TestHost, deadline: float) -> None:
    """Wait until SSH as ``host.user`` works, or raise TimeoutError at ``deadline``."""
    last: Result = (-1, "", "not tried")
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(
                f"SSH to {host.name} ({host.ssh_host}:{host.ssh_port}) as {host.user} not ready: "
                f"last rc={last[0]} stderr={last[2].strip()!r}; "
                f"docker logs: {docker_logs(host.container_id)!r}"
            )
        try:
            last = host.run("true", timeout=min(15.0, max(remaining, 1.0)))
        except subprocess.TimeoutExpired:
            last = (-1, "", "ssh timed out")
        if last[0] == 0:
            return
        time.sleep(0.2)


def _wait_system_running(host: TestHost, deadline: float) -> str:
    """Wait until systemd's boot is over (not ``initializing``/``starting``); return its state."""
    state = "unknown"
    while time.monotonic() < deadline:
        state = host.system_state(timeout=max(deadline - time.monotonic(), 1.0))
        if state not in ("initializing", "starting", ""):
            return state
        time.sleep(0.2)
    raise TimeoutError(
        f"{host.name}: systemd still {state!r} at the deadline; jobs: "
        f"{host.exec('systemctl list-jobs --no-legend --plain', check=False).strip()!r}"
    )


def docker_logs(container: str) -> str:
    proc = _docker("logs", "--tail", "20", container, check=False, timeout=30)
    return (proc.stdout + proc.stderr).strip()


def _set_secure_path(host: TestHost) -> None:
    """RHEL's sudo secure_path on ``host``: a sudoers.d file read after Debian's own
    ``Defaults secure_path`` line in /etc/sudoers, so it wins; checked with visudo."""
    host.exec(
        "cat > /etc/sudoers.d/10-secure-path && chmod 0440 /etc/sudoers.d/10-secure-path && visudo -cq",
        stdin=RHEL_SECURE_PATH + "\n",
    )


@contextlib.contextmanager
def test_hosts(
    count: int,
    *,
    image: str | None = None,
    user: str = "ubuntu",
    ready_timeout: float = 90,
    name_prefix: str = "k3sr",
    secure_path: Collection[int] = (),
    kubernetes: bool = False,
) -> Iterator[list[TestHost]]:
    """Start ``count`` SSH test hosts on a fresh Docker network; yield them; remove everything.

    ``image`` defaults to what ``setup_docker.sh`` builds (see ``ensure_image``).
    ``secure_path``: indexes of the hosts whose sudo gets RHEL's secure_path (no /usr/local/bin).
    Waits at most ``ready_timeout`` seconds for every host to boot systemd to ``running``
    and answer SSH.
    ``kubernetes``: one real control plane for the group (tests/real/host_api.py), its socket
    directory mounted on every host, where the K3s stand-in finds it; ``host.api`` is it.
    """
    if count < 1:
        raise ValueError("count must be >= 1")
    image = image or ensure_image()
    group = uuid.uuid4().hex[:10]
    network = f"{name_prefix}-{group}"
    labels = [f"{LABEL_GROUP}={group}", f"{LABEL_PID}={os.getpid()}"]
    keydir = Path(tempfile.mkdtemp(prefix=f"{name_prefix}-keys-"))
    stack = contextlib.ExitStack()
    try:
        api = None
        if kubernetes:
            from tests.real.host_api import host_api

            api = stack.enter_context(host_api())
        key = KeyPair.generate(keydir)
        subnet = _create_network(network, labels)
        names = [f"{name_prefix}-{group}-{i}" for i in range(count)]
        # .1 is the gateway; hosts from .10 on.
        addresses = [str(subnet.network_address + 10 + i) for i in range(count)]
        run_args = (*systemd_run_args(), *(api.volume_args() if api else ()))
        with ThreadPoolExecutor(max_workers=min(count, 8)) as pool:
            ids = list(
                pool.map(
                    lambda na: _start_container(image, na[0], network, na[1], labels, key, run_args),
                    zip(names, addresses, strict=True),
                )
            )
        hosts = []
        for i, (name, cid) in enumerate(zip(names, ids, strict=True)):
            port, address = _inspect(cid, network)
            hosts.append(
                TestHost(
                    name=name,
                    container_id=cid,
                    ssh_port=port,
                    address=address,
                    network=network,
                    key=key,
                    user=user,
                    secure_path=i in secure_path,
                    api=api,
                )
            )
        for host in hosts:
            if host.secure_path:
                _set_secure_path(host)
        deadline = time.monotonic() + ready_timeout
        with ThreadPoolExecutor(max_workers=min(count, 8)) as pool:
            list(pool.map(lambda h: h.wait_booted(max(deadline - time.monotonic(), 1.0)), hosts))
        yield hosts
    finally:
        try:
            remove_group(group)
        finally:
            shutil.rmtree(keydir, ignore_errors=True)
            stack.close()


# Keep pytest from collecting the helper when a test module imports it.
test_hosts.__test__ = False  # type: ignore[attr-defined]
