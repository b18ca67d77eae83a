"""Run one of the cached builders (tests/real/engine/build.sh, tests/real/controlplane/build.sh):
both print progress on stderr, prefixed with their name, and the cached bin directory as the
last line of stdout."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO


def run_build(
    script: Path,
    label: str,
    *,
    timeout: float,
    progress: TextIO | None = None,
    env: Mapping[str, str] | None = None,
    error: type[Exception] = RuntimeError,
    what: str | None = None,
    heartbeat: float = 30.0,
) -> Path:
    """Run `script`, bounded by `timeout` seconds; with `progress`, its lines that start with
    `[<label>-build]` go there as they come, each with the seconds since the build began (a cold
    build takes tens of minutes), and while it prints none for `heartbeat` seconds (a Go build
    of one module can take ten minutes), a line saying it is still at the last step. On
    failure, `error` saying `what` (default: `label`) failed, with the last of its stderr."""
    prefix = f"[{label}-build]"
    start = time.monotonic()
    last: dict[str, Any] = {"line": f"{prefix} starting", "at": start}
    done = threading.Event()
    lock = threading.Lock()

    def write(text: str) -> None:
        if progress is not None:
            with lock:
                progress.write(f"[+{time.monotonic() - start:5.0f}s] {text}")
                progress.flush()

    def beat() -> None:
        while not done.wait(heartbeat / 4):
            now = time.monotonic()
            if now - last["at"] >= heartbeat:
                step = last["line"].removeprefix(prefix).strip().rstrip(".").strip()
                write(f"{prefix} still working (last: {step})\n")
                last["at"] = now

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
    beating = threading.Thread(target=beat, daemon=True)
    if progress is not None:
        beating.start()
    try:
        for line in proc.stderr or []:  # ends when the builder exits (or the watchdog kills it)
            tail = [*tail[-199:], line]
            if line.startswith(prefix):
                last.update(line=line.strip(), at=time.monotonic())
                write(line)
        code = proc.wait(timeout=60)
    finally:
        done.set()
        watchdog.cancel()
    reader.join(timeout=60)
    if code != 0:
        raise error(f"{what or label} build failed:\n" + "".join(tail)[-4000:])
    return Path("".join(stdout).strip().splitlines()[-1])
