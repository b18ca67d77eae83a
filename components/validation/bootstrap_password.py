"""Rancher's bootstrap password cannot change once Rancher is installed: the rule, as pure
functions over the previous run's outputs and this run's password.

Rancher reads its bootstrap password once. Its chart's `bootstrap-secret` is a
pre-install/pre-upgrade hook that looks up the existing Secret and renders that Secret's
password again instead of the value given, and it is kept when the release is uninstalled
(rancher/rancher chart/templates/secret.yaml: `lookup "v1" "Secret" .Release.Namespace
"bootstrap-secret"`, `helm.sh/resource-policy: keep`). Rancher itself takes
CATTLE_BOOTSTRAP_PASSWORD only when that Secret does not exist yet (rancher/rancher
pkg/data/management GetBootstrapPassword), which is also why the single-node container
ignores a new one: the Secret lives in its data volume. So a new rancherBootstrapPassword
would update the release (or replace the container) and reach nothing, while the stack
output `rancherBootstrapPassword` named a password Rancher does not have.

What the previous run records (the stack output `rancherBootstrapPasswordDigest`, a secret):
the rancher.mode it was made for, whether the password was given or generated, and an scrypt
digest of it salted per stack, never the password. A stack last updated by 0.2.0 has no record; its
`rancherBootstrapPassword` output (a secret, which this program reads back as the engine
hands it over) is compared instead.

Not one of VALIDATORS, for the same reason as quorum.py: it needs the previous run's outputs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..settings import NAMESPACE

KEY = f"{NAMESPACE}:rancherBootstrapPassword"
DIGEST_OUTPUT = "rancherBootstrapPasswordDigest"  # program.export_rancher exports it as a literal
PASSWORD_OUTPUT = "rancherBootstrapPassword"
# scrypt's cost (RFC 7914): 16 MiB and some tens of milliseconds per digest, once per run.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SALT_BYTES = 16
# What pulumi's RPC layer wraps a secret value in (pulumi/runtime/rpc.py _special_sig_key,
# _special_secret_sig): nested secrets in readStackOutputs' answer come back wrapped.
_SIG_KEY = "4dabf18193072939515e22adb298388d"
_SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"


def plain(value: Any) -> Any:
    """`value` with every secret wrapper of the RPC layer removed."""
    if isinstance(value, Mapping):
        if value.get(_SIG_KEY) == _SECRET_SIG:
            return plain(value.get("value"))
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r, dklen=32)


def stack_salt(stack: str) -> bytes:
    """The salt of a stack's digests (`stack`: organization/project/stack). Per stack rather
    than random, so that the same password gives the same output and a no-op up changes no
    output; whoever can read the digest (a secret output) can read the password output too."""
    return hashlib.sha256(f"k3s-rancher bootstrap password digest\n{stack}".encode()).digest()[:SALT_BYTES]


def digest(password: str, salt: bytes) -> str:
    """`scrypt$N$r$p$<salt>$<hash>` (base64)."""
    hashed = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(hashed).decode()}"


def matches(password: str, recorded: str) -> bool:
    """Whether `password` is the one `recorded` (a digest()) was made from."""
    try:
        scheme, n, r, p, salt, hashed = recorded.split("$")
        if scheme != "scrypt":
            return False
        computed = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
        return hmac.compare_digest(computed, base64.b64decode(hashed))
    except (ValueError, TypeError):
        return False


@dataclass(frozen=True)
class Record:
    """The previous run's record of the bootstrap password."""

    mode: str  # rancher.mode
    source: str  # "config" (rancherBootstrapPassword) or "generated"
    digest: str

    def output(self) -> dict[str, str]:
        return {"mode": self.mode, "source": self.source, "digest": self.digest}


@dataclass(frozen=True)
class Previous:
    """What the previous run says about Rancher's bootstrap password: its record, or (a stack
    last updated by 0.2.0) the password it exported; neither on a first install."""

    record: Record | None = None
    password: str | None = None  # 0.2.0's `rancherBootstrapPassword` output

    @property
    def installed(self) -> bool:
        return self.record is not None or self.password is not None

    def knows(self, password: str) -> bool:
        if self.record is not None:
            return matches(password, self.record.digest)
        return self.password is not None and hmac.compare_digest(password.encode(), self.password.encode())

    def next_record(self, password: str, source: str, mode: str, salt: bytes) -> Record:
        """The record to export for `password`: the previous digest when it is that password
        (one made with other parameters stays as it was), else a new one."""
        if self.record is not None and self.record.mode == mode and matches(password, self.record.digest):
            return Record(mode, source, self.record.digest)
        return Record(mode, source, digest(password, salt))


def previous(outputs: Mapping[str, Any], mode: str) -> Previous:
    """The previous run's bootstrap password for Rancher in `mode`. Another mode was another
    Rancher (the single-node container keeps its data in its own volume; a chart's in the
    cluster): nothing to keep then. A 0.2.0 stack (no record) recorded no mode."""
    recorded = plain(outputs.get(DIGEST_OUTPUT))
    if isinstance(recorded, Mapping) and isinstance(recorded.get("digest"), str):
        if recorded.get("mode") != mode:
            return Previous()
        return Previous(record=Record(mode, str(recorded.get("source", "config")), recorded["digest"]))
    password = plain(outputs.get(PASSWORD_OUTPUT))
    if isinstance(password, str) and password:
        return Previous(password=password)
    return Previous()


def _keeps_it(mode: str) -> str:
    if mode == "docker":
        return (
            "Rancher's container reads it only at its first start and keeps it (the bootstrap-secret of its "
            "embedded cluster, in its data volume)"
        )
    return (
        "Rancher's chart keeps the first one: its bootstrap-secret is reused on every upgrade (a lookup of the "
        "existing Secret) and survives helm uninstall, and Rancher reads it only at its first start"
    )


def _change_admin_password(mode: str) -> str:
    reset = (
        "docker exec <stack>-rancher reset-password"
        if mode == "docker"
        else "kubectl -n cattle-system exec deploy/rancher -c rancher -- reset-password"
    )
    return (
        "The bootstrap password is for the first login only: to change the admin password, change it in Rancher "
        f"(user menu > Account & API Keys > Change Password), or reset it with `{reset}`"
    )


def change_error(prev: Previous, given: str | None, mode: str) -> str | None:
    """Why this run's password cannot be used with a Rancher installed by an earlier run, or
    None. `given`: the rancherBootstrapPassword secret (None: unset, one is generated)."""
    if not prev.installed:
        return None
    set_back = (
        "set it back to the one Rancher was installed with: pulumi config set --secret rancherBootstrapPassword "
        '"$(pulumi stack output rancherBootstrapPassword --show-secrets)"'
    )
    if given is None:
        # A generated password is the same RandomPassword from run to run; one replacing a
        # given password would be a new one. A 0.2.0 stack recorded no source: its generated
        # password is checked when it is known (program.export_rancher).
        if prev.record is None or prev.record.source == "generated":
            return None
        return (
            f"removed after Rancher was installed: k3s-rancher would generate a new bootstrap password, which "
            f"Rancher would never get ({_keeps_it(mode)}), and the output rancherBootstrapPassword would name a "
            f"password Rancher does not have. {_change_admin_password(mode)}; and {set_back}"
        )
    if prev.knows(given):
        return None
    return (
        f"changed after Rancher was installed: the new password would never reach Rancher ({_keeps_it(mode)}), "
        f"and the output rancherBootstrapPassword would name a password Rancher does not have. "
        f"{_change_admin_password(mode)}; and {set_back}"
    )
