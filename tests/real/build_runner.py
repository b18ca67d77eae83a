"""Run one of the cached builders (tests/real/engine/build.sh, tests/real/controlplane/build.sh):
both print progress on stderr, prefixed with their name, and the cached bin directory as the
last line of stdout."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO


def run_build(
    script: Path,
    label: str,
    *,
    timeout: float,
    progress: TextIO | None = None,
    env: Mapping[str, str] | None = None,
    error: type[Exception] = RuntimeError,
    what: str | None = None,
) -> Path:
    """Run `script`, bounded by `timeout` seconds; with `progress`, its lines that start with
    `[<label>-build]` go there as they come, each with the seconds since the build began (a cold
    build takes tens of minutes). On failure, `error` saying `what` (default: `label`) failed,
    with the last of its stderr."""
    prefix = f"[{label}-build]"
    start = time.monotonic()
    proc = subprocess.Popen(
        ["bash", str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(env) if env is not None else None,
    )
    stdout: list[str] = []
    reader = threading.Thread(target=lambda: stdout.extend(proc.stdout or []), daemon=True)
    reader.start()
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.start()
    tail: list[str] = []
    try:
        for line in proc.stderr or []:  # ends when the builder exits (or the watchdog kills it)
            tail = [*tail[-199:], line]
            if progress is not None and line.startswith(prefix):
                progress.write(f"[+{time.monotonic() - start:5.0f}s] {line}")
                progress.flush()
        code = proc.wait(timeout=60)
    finally:
        watchdog.cancel()
    reader.join(timeout=60)
    if code != 0:
        raise error(f"{what or label} build failed:\n" + "".join(tail)[-4000:])
    return Path("".join(stdout).strip().splitlines()[-1])
