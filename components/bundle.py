"""The host scripts as one versioned bundle, delivered to every host by its `<node>-scripts`
step and run from there by the node commands' short entry points.

A node command's text holds what the node should be (its inputs) and a stable entry point
that sources /var/lib/k3s-rancher/scripts/current/<script>.sh; the code itself is here.
Changing a script changes the bundle, so only the `-scripts` steps update; the next real
change of a node runs the new code, and every delete runs whatever code the host has.

The stream sent on the scripts step's stdin is text: a header line, then each file as a
`=== <name>` line followed by its lines. The step checks the stream's sha256 (computed
here, carried in its command text) before unpacking it into a root-owned directory.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from . import host_facts
from .release import SCRIPTS_GENERATION, VERSION

SH_DIR = Path(__file__).resolve().parent / "sh"
HOST_ROOT = "/var/lib/k3s-rancher/scripts"
CURRENT = f"{HOST_ROOT}/current"
# Not in the bundle: the scripts step's own create and delete (they run where the bundle is not,
# yet or any more) and what runs in Rancher's container; each is rendered into its command text.
NOT_BUNDLED = ("deliver_scripts.sh", "remove_scripts.sh", "wait_rancher.sh", "drift_probe.sh")
FILE_MARK = "=== "
_NAME = re.compile(r"^[a-z0-9_]+\.sh$")


@dataclass(frozen=True)
class Bundle:
    """`text` is what the scripts step sends on stdin; `sha256` its digest."""

    files: tuple[tuple[str, str], ...]
    text: str
    sha256: str

    @property
    def names(self) -> tuple[str, ...]:
        """The files' names (tier 1 compares a host's copy with them)."""
        return tuple(name for name, _ in self.files)


def generated() -> dict[str, str]:
    """The bundle's files rendered from Python, by name (not in components/sh)."""
    return {host_facts.CONSTS_FILE: host_facts.consts_sh()}


def make_bundle(sh_dir: Path) -> Bundle:
    """The bundle of every script in `sh_dir` but NOT_BUNDLED, and the generated files, in
    name order."""
    files = []
    sources = {path.name: path.read_text() for path in sh_dir.glob("*.sh") if path.name not in NOT_BUNDLED}
    clash = set(sources) & set(generated())
    if clash:
        raise ValueError(f"{sorted(clash)}: generated into the bundle, not a file of components/sh")
    for name, text in sorted({**sources, **generated()}.items()):
        if not _NAME.match(name):
            raise ValueError(f"{name}: bundle file names are lower-case words ending in .sh")
        if not text.endswith("\n"):
            text += "\n"
        if any(line.startswith(FILE_MARK) for line in text.splitlines()):
            raise ValueError(f"{name}: a line starts with {FILE_MARK!r}, which the bundle uses between files")
        files.append((name, text))
    header = f"k3s-rancher scripts {VERSION} generation {SCRIPTS_GENERATION}\n"
    text = header + "".join(f"{FILE_MARK}{name}\n{body}" for name, body in files)
    return Bundle(files=tuple(files), text=text, sha256=hashlib.sha256(text.encode()).hexdigest())


@cache
def _cached(sh_dir: str, stamp: tuple[tuple[str, int, int], ...]) -> Bundle:
    return make_bundle(Path(sh_dir))


def current_bundle(sh_dir: Path | None = None) -> Bundle:
    """The bundle of `sh_dir` (default SH_DIR) as it is now (built once per content, by size
    and mtime)."""
    sh_dir = sh_dir if sh_dir is not None else SH_DIR
    stamp = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(sh_dir.glob("*.sh")))
    return _cached(str(sh_dir), stamp)


def unpack(text: str) -> dict[str, str]:
    """The files of a bundle stream, as the delivery script unpacks them (for tests)."""
    files: dict[str, str] = {}
    name = None
    for line in text.splitlines(keepends=True)[1:]:
        if line.startswith(FILE_MARK):
            name = line[len(FILE_MARK) :].rstrip("\n")
            files[name] = ""
        elif name is not None:
            files[name] += line
    return files
