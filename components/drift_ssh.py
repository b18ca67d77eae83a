"""k3s.driftCheck's reading of the hosts: one SSH session per node, all in parallel, each
bounded by k3s.timeouts.driftCheck, with the stack's SSH settings (user, port, bastion through
a direct-tcpip channel, the private key and its password, the agent with ssh.useAgent, and
the host keys, checked as pulumi-command checks them: when one is set it must match,
else any key is accepted). It runs at program start, before any resource is registered.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import paramiko

from . import drift
from .settings import Node, SshSettings

_KEY_TYPES: tuple[type[paramiko.PKey], ...] = (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey)


@dataclass(frozen=True)
class Credentials:
    private_key: str | None
    password: str | None


def _load_key(text: str | None, password: str | None) -> paramiko.PKey | None:
    if not text:
        return None
    for cls in _KEY_TYPES:
        try:
            return cls.from_private_key(io.StringIO(text), password=password)
        except (paramiko.SSHException, ValueError):
            continue
    raise paramiko.SSHException("sshPrivateKey is not an Ed25519, ECDSA or RSA private key paramiko can read")


class _Expect(paramiko.MissingHostKeyPolicy):
    """Accept the host's key when it is `expected` (authorized_keys form), or when none is set."""

    def __init__(self, expected: str | None) -> None:
        self.expected = expected.split()[:2] if expected else None

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        if self.expected is not None and [key.get_name(), key.get_base64()] != self.expected:
            raise paramiko.SSHException(f"host key of {hostname} does not match the one configured")


def _connect(
    host: str,
    port: int,
    user: str,
    host_key: str | None,
    key: paramiko.PKey | None,
    ssh: SshSettings,
    timeout: float,
    sock: paramiko.Channel | None = None,
) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(_Expect(host_key))
    client.connect(
        host,
        port=port,
        username=user,
        pkey=key,
        sock=sock,
        timeout=timeout,
        banner_timeout=timeout,
        auth_timeout=timeout,
        channel_timeout=timeout,
        allow_agent=ssh.use_agent,
        look_for_keys=False,
    )
    return client


def read_host(node: Node, command: str, ssh: SshSettings, creds: Credentials, timeout: float) -> str:
    """The probe's stdout from `node` (raises on any failure)."""
    host = node.ssh.host
    if not isinstance(host, str):
        # The check runs at program start, before a host made in the same program exists.
        raise TypeError(f"{node.name}: k3s.driftCheck reads hosts at program start: its address cannot be an Output")
    key = _load_key(creds.private_key, creds.password)
    opened: list[paramiko.SSHClient] = []
    try:
        sock = None
        if ssh.bastion is not None:
            b = ssh.bastion
            bastion = _connect(b.host, b.port, b.user, b.host_key, key, ssh, timeout)
            opened.append(bastion)
            transport = bastion.get_transport()
            assert transport is not None
            sock = transport.open_channel("direct-tcpip", (host, node.ssh.port), ("127.0.0.1", 0), timeout=timeout)
        client = _connect(host, node.ssh.port, node.ssh.user, node.ssh.host_key, key, ssh, timeout, sock)
        opened.append(client)
        _, stdout, _ = client.exec_command(command, timeout=timeout)
        return stdout.read().decode(errors="replace")
    finally:
        for c in reversed(opened):
            c.close()


def read_hosts(
    targets: Sequence[tuple[Node, bool]], ssh: SshSettings, creds: Credentials, timeout: int
) -> Mapping[str, drift.Probe | str]:
    """Each (node, is the init server)'s parsed read, or why there is none, within `timeout`
    seconds for all of them (they run at once)."""
    answers: dict[str, drift.Probe | str] = {}
    lock = threading.Lock()

    def one(node: Node, init: bool) -> None:
        command = drift.probe_script(node, init=init).command
        try:
            result: drift.Probe | str = drift.parse(read_host(node, command, ssh, creds, timeout)) or (
                "its answer was cut short"
            )
        except Exception as error:  # any failure to read is "not checked"
            result = f"no answer ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})"
        with lock:
            answers[node.name] = result

    threads = [threading.Thread(target=one, args=t, daemon=True) for t in targets]
    for t in threads:
        t.start()
    end = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, end - time.monotonic()))
    with lock:
        result = dict(answers)
    for node, _ in targets:
        result.setdefault(node.name, f"no answer within {timeout}s (k3s.timeouts.driftCheck)")
    return result
