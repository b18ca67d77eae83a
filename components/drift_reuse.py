"""One read of the hosts per `pulumi up`: the update runs what its preview showed.

`pulumi up` runs the program twice, for its preview and then for the update, in two
processes. Read twice, the hosts could answer differently between the two (a K3s that comes
back, a host that stops answering), and the update would repair something other than what
the preview showed and the operator accepted; it would also open two SSH sessions per node.
So the preview keeps its read in a file of the user's cache, and the update of the same
`pulumi up` takes it (once: it deletes the file) instead of reading again. A standalone
`pulumi preview` and a later `pulumi up --skip-preview` are two CLI invocations: the second
reads afresh.

"The same `pulumi up`" is the Pulumi CLI process both program runs descend from (the CLI
starts the language host, which starts the program), named by its pid and start time from
/proc. Without /proc (macOS) or without a CLI among the ancestors nothing is kept, and the
update reads again.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .drift import Probe

CLI_NAME = "pulumi"
# How far up the process tree the CLI may be (program <- language host <- CLI, plus wrappers
# such as a virtualenv's launcher).
MAX_DEPTH = 8
# Reads no update took (a declined up, a standalone preview) are removed after this long.
STALE_SECONDS = 3600


def _stat(pid: int, proc: Path) -> tuple[str, int, str] | None:
    """(comm, ppid, start time) of `pid` from /proc/<pid>/stat, or None."""
    try:
        text = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    # comm is in parentheses and may hold spaces or parentheses: split at the last ')'.
    head, _, rest = text.rpartition(")")
    comm = head.partition("(")[2]
    fields = rest.split()
    if len(fields) < 20:
        return None
    return comm, int(fields[1]), fields[19]  # fields 4 (ppid) and 22 (starttime) of proc(5)


def cli_invocation(pid: int | None = None, proc: Path = Path("/proc")) -> str | None:
    """'<pid>:<start time>' of the nearest `pulumi` ancestor of `pid` (default: this process)."""
    current = os.getpid() if pid is None else pid
    for _ in range(MAX_DEPTH):
        found = _stat(current, proc)
        if found is None:
            return None
        comm, ppid, started = found
        if comm == CLI_NAME:
            return f"{current}:{started}"
        if ppid <= 1:
            return None
        current = ppid
    return None


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    base = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".cache")
    return Path(base) / "k3s-rancher" / "drift-reads"


def key(invocation: str, stack: str, targets: Any) -> str:
    """The file name for one invocation's read of these targets (any JSON-able description
    of what is read and how: a different target list is a different read)."""
    text = json.dumps({"invocation": invocation, "stack": stack, "targets": targets}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def encode(answers: Mapping[str, Probe | str]) -> str:
    return json.dumps(
        {name: (asdict(a) if isinstance(a, Probe) else {"unreachable": a}) for name, a in answers.items()},
        sort_keys=True,
    )


def decode(text: str) -> dict[str, Probe | str]:
    answers: dict[str, Probe | str] = {}
    for name, value in json.loads(text).items():
        if "unreachable" in value:
            answers[name] = str(value["unreachable"])
        else:
            answers[name] = Probe(**{**value, "differs": tuple(value["differs"]), "missing": tuple(value["missing"])})
    return answers


def keep(directory: Path, name: str, answers: Mapping[str, Probe | str], now: float | None = None) -> None:
    """The preview's read, for its update (private: 0700 directory, 0600 file; written whole)."""
    now = time.time() if now is None else now
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    for old in directory.glob("*.json"):
        try:
            if now - old.stat().st_mtime > STALE_SECONDS:
                old.unlink()
        except OSError:
            pass  # another run removed it meanwhile
    temp = directory / f".{name}.{os.getpid()}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(encode(answers))
    os.replace(temp, directory / f"{name}.json")


def take(directory: Path, name: str, now: float | None = None) -> dict[str, Probe | str] | None:
    """The preview's read for this update, removed as it is taken; None when there is none."""
    path = directory / f"{name}.json"
    now = time.time() if now is None else now
    try:
        text = path.read_text()
        fresh = now - path.stat().st_mtime <= STALE_SECONDS
        path.unlink()
    except OSError:
        return None
    if not fresh:
        return None
    try:
        return decode(text)
    except (ValueError, TypeError, KeyError):
        return None  # written by another release: read again
