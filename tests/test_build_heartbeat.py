"""The cached builds (engine, control plane) say they are alive while a step prints nothing:
a cold Go build of one module can be silent for ten minutes (issue 24 item 12)."""

from __future__ import annotations

import io
from pathlib import Path

from tests.real.build_runner import run_build


def test_a_silent_build_step_gets_heartbeat_lines_naming_the_step(tmp_path: Path) -> None:
    script = tmp_path / "build.sh"
    script.write_text(
        "echo '[demo-build] building slow-module ...' >&2\n"
        "sleep 1.5\n"
        "echo '[demo-build] built slow-module in 1s' >&2\n"
        "echo /cached/bin\n"
    )
    progress = io.StringIO()
    result = run_build(script, "demo", timeout=30, progress=progress, heartbeat=0.4)
    assert result == Path("/cached/bin")
    lines = progress.getvalue().splitlines()
    beats = [line for line in lines if "still working (last: building slow-module)" in line]
    assert len(beats) >= 2, lines
    assert lines[0].endswith("[demo-build] building slow-module ...")
    assert lines[-1].endswith("[demo-build] built slow-module in 1s")


def test_a_build_that_prints_often_gets_no_heartbeat(tmp_path: Path) -> None:
    script = tmp_path / "build.sh"
    script.write_text('for i in 1 2 3 4 5; do echo "[demo-build] step $i" >&2; sleep 0.1; done\necho /bin\n')
    progress = io.StringIO()
    run_build(script, "demo", timeout=30, progress=progress, heartbeat=5)
    assert "still working" not in progress.getvalue()
