"""Throwaway Linux hosts reachable by SSH on 127.0.0.1, for tests that run our scripts for real.

Each host is a Docker container from the image that ``setup_docker.sh`` builds (Debian
bookworm with sshd, sudo, python3, curl). It runs ``sshd -D -e`` with host keys made at
start, has a user ``ubuntu`` with passwordless sudo, and accepts a per-group ed25519 test
key for ``ubuntu`` and ``root``. Port 22 is published on 127.0.0.1 at a random port; the
hosts of one group share a dedicated Docker network and reach each other by ``address``.

Usage::

    with test_hosts(2) as (a, b):
        rc, out, err = a.run(f"nc -z -w 5 {b.address} 22")   # real SSH, as ubuntu
        assert "ubuntu" in b.exec("id")                       # docker exec, as root; stdout

Teardown removes the containers, the network and the key directory, also on failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

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


def _start_container(image: str, name: str, network: str, labels: Sequence[str], key: KeyPair) -> str:
    args = [
        "run", "--detach",
        "--name", name,
        "--hostname", name,
        "--network", network,
        "--publish", "127.0.0.1::22",
        "--env", f"K3SR_AUTHORIZED_KEY={key.public_key}",
    ]  # fmt: skip
    for label in labels:
        args += ["--label", label]
    return _docker(*args, image, timeout=120).stdout.strip()


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


def docker_logs(container: str) -> str:
    proc = _docker("logs", "--tail", "20", container, check=False, timeout=30)
    return (proc.stdout + proc.stderr).strip()


@contextlib.contextmanager
def test_hosts(
    count: int,
    *,
    image: str | None = None,
    user: str = "ubuntu",
    ready_timeout: float = 60,
    name_prefix: str = "k3sr",
) -> Iterator[list[TestHost]]:
    """Start ``count`` SSH test hosts on a fresh Docker network; yield them; remove everything.

    ``image`` defaults to what ``setup_docker.sh`` builds (see ``ensure_image``).
    Waits at most ``ready_timeout`` seconds for SSH on all hosts.
    """
    if count < 1:
        raise ValueError("count must be >= 1")
    image = image or ensure_image()
    group = uuid.uuid4().hex[:10]
    network = f"{name_prefix}-{group}"
    labels = [f"{LABEL_GROUP}={group}", f"{LABEL_PID}={os.getpid()}"]
    keydir = Path(tempfile.mkdtemp(prefix=f"{name_prefix}-keys-"))
    try:
        key = KeyPair.generate(keydir)
        net_args = ["network", "create", "--driver", "bridge"]
        for label in labels:
            net_args += ["--label", label]
        _docker(*net_args, network, timeout=60)
        names = [f"{name_prefix}-{group}-{i}" for i in range(count)]
        with ThreadPoolExecutor(max_workers=min(count, 8)) as pool:
            ids = list(pool.map(lambda n: _start_container(image, n, network, labels, key), names))
        hosts = []
        for name, cid in zip(names, ids, strict=True):
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
                )
            )
        deadline = time.monotonic() + ready_timeout
        with ThreadPoolExecutor(max_workers=min(count, 8)) as pool:
            list(pool.map(lambda h: _wait_ssh(h, deadline), hosts))
        yield hosts
    finally:
        try:
            remove_group(group)
        finally:
            shutil.rmtree(keydir, ignore_errors=True)


# Keep pytest from collecting the helper when a test module imports it.
test_hosts.__test__ = False  # type: ignore[attr-defined]
