"""A TMPDIR of its own for every real-tier pytest run (and each xdist worker), removed at its
end: tests/real/conftest.py enters it when pytest is configured and leaves it when pytest
ends. Every process the tests start (the Pulumi CLI, its plugins, helm, curl, ...) inherits
it through the environment.

Why: the kubernetes provider writes a copy of the kubeconfig it is given (here the stack's
admin kubeconfig) to a new $TMPDIR/kubeconfigNNNN, 0600, at every configure and never removes
it (pulumi-kubernetes provider/pkg/provider/provider.go `Configure` -> `writeKubeconfigToFile`,
provider/pkg/provider/util.go); one CI run left 99 of them behind. The command stand-in's key
directories of a killed run (k3sr-standin-ssh-*) end up here too.

The directory is made in the caller's TMPDIR as k3sr-real-tmp-<pid>-XXXXXXXX (0700,
tempfile.mkdtemp). A run that was killed cannot remove its own: the next run removes those
whose process is gone. In-process temporary files (Python's tempfile, pytest's tmp_path) are
not moved: pytest keeps its basetemp where it always was.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

PREFIX = "k3sr-real-tmp-"
_NAME = re.compile(rf"^{re.escape(PREFIX)}(\d+)-")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def remove_stale(parent: Path) -> list[Path]:
    """Remove the private TMPDIRs in `parent` whose run's process is gone; return them."""
    removed = []
    for entry in parent.glob(PREFIX + "*"):
        match = _NAME.match(entry.name)
        if match and entry.is_dir() and not entry.is_symlink() and not _alive(int(match.group(1))):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def enter() -> tuple[Path, str | None]:
    """Make this process's private TMPDIR and point $TMPDIR at it: (it, the previous value)."""
    parent = Path(tempfile.gettempdir())
    remove_stale(parent)
    path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=parent))
    previous = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(path)
    return path, previous


def leave(path: Path, previous: str | None) -> None:
    """Put $TMPDIR back and remove the private one with all it holds."""
    if previous is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = previous
    shutil.rmtree(path, ignore_errors=True)
