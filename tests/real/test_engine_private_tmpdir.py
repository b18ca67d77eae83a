"""Issue 24 item 7: every real-tier run gets a TMPDIR of its own, removed at its end
(tests/real/conftest.py), because the kubernetes provider leaves a copy of the admin
kubeconfig in $TMPDIR at every configure (tests/real/tmpdir_probe.py says where in its
source). One CI run had left 99 of them in the runner's temporary directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.real import private_tmp
from tests.real.engine_project import ROOT

pytestmark = pytest.mark.real


def test_a_real_tier_run_leaves_nothing_in_the_callers_tmpdir(tmp_path: Path) -> None:
    caller = tmp_path / "caller-tmp"
    caller.mkdir()
    report = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env |= {"TMPDIR": str(caller), "K3SR_TMPDIR_PROBE_REPORT": str(report)}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/real/tmpdir_probe.py", "-q", "-p", "no:randomly",
         "-p", "no:cacheprovider", f"--basetemp={tmp_path / 'basetemp'}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert sorted(os.listdir(caller)) == []  # nothing left: no kubeconfig copy, no directory
    seen = json.loads(report.read_text())
    # While it ran: the run's own TMPDIR, inside the caller's, which the engine inherited and
    # where the kubernetes provider did write its kubeconfig copy.
    assert Path(seen["tmpdir"]).parent == caller, seen
    assert seen["engine_tmpdir"] == seen["tmpdir"]
    assert seen["kubeconfigs"], seen


def test_the_tmpdir_of_a_killed_run_goes_at_the_next_run(tmp_path: Path) -> None:
    """A run killed with SIGKILL cannot remove its TMPDIR: the next run removes those whose
    process is gone, and nothing of a live run or anyone else's."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f"{private_tmp.PREFIX}{dead.pid}-abcdefgh"
    live = tmp_path / f"{private_tmp.PREFIX}{os.getpid()}-ijklmnop"
    other = tmp_path / "someone-elses"
    for directory in (stale, live, other):
        directory.mkdir()
        (directory / "kubeconfig123").write_text("admin\n")
    assert private_tmp.remove_stale(tmp_path) == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name])
