"""One read of the hosts per `pulumi up` (components/drift_reuse.py): the update of an `up`
takes the read its preview kept, once; another CLI invocation reads again. The process tree
is a fake /proc; the hosts' reads are faked at the edge (components/drift_ssh.read_hosts)."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from components import drift, drift_reuse, drift_ssh
from tests.harness import run_program
from tests.test_drift import PREVIOUS, SECRETS, answers, commands, config


def fake_proc(root: Path, tree: list[tuple[int, str, int, str]]) -> Path:
    """/proc/<pid>/stat for each (pid, comm, ppid, start time), in proc(5)'s layout."""
    for pid, comm, ppid, started in tree:
        (root / str(pid)).mkdir(parents=True)
        tail = " ".join(["0"] * 15)  # fields 5-19; field 22 (starttime) is 19 after the ')'
        (root / str(pid) / "stat").write_text(f"{pid} ({comm}) S {ppid} {tail} 0 0 {started} 1000 200\n")
    return root


def test_the_cli_is_found_above_the_language_host(tmp_path: Path) -> None:
    proc = fake_proc(
        tmp_path,
        [(30, "python3", 20, "900"), (20, "pulumi-language", 10, "800"), (10, "pulumi", 5, "777"), (5, "bash", 1, "1")],
    )
    assert drift_reuse.cli_invocation(30, proc) == "10:777"


def test_no_cli_among_the_ancestors_or_no_proc_keeps_nothing(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path / "a", [(30, "python3", 20, "9"), (20, "a (pulumi) b", 1, "8")])
    assert drift_reuse.cli_invocation(30, proc) is None  # a comm with spaces and parentheses is no CLI
    assert drift_reuse.cli_invocation(30, tmp_path / "none") is None


def test_the_real_process_tree_of_a_test_has_no_cli() -> None:
    assert drift_reuse.cli_invocation(os.getpid()) is None


PROBE = drift.Probe(
    unit=True,
    state="inactive",
    version="v1.33.5+k3s1",
    bundle=True,
    applied=True,
    differs=("/etc/rancher/k3s/config.yaml",),
    missing=(),
    registered={"cp1": "True", "w1": "False"},
)


def test_a_kept_read_is_taken_once_whole_and_private(tmp_path: Path) -> None:
    read: dict[str, drift.Probe | str] = {"cp1": PROBE, "w1": "no answer within 10s (k3s.timeouts.driftCheck)"}
    directory = tmp_path / "reads"
    drift_reuse.keep(directory, "abc", read)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / "abc.json").stat().st_mode) == 0o600
    assert drift_reuse.take(directory, "abc") == read
    assert drift_reuse.take(directory, "abc") is None  # taken: the next up reads again
    assert list(directory.iterdir()) == []


def test_a_read_older_than_an_hour_is_not_taken_and_old_ones_are_removed(tmp_path: Path) -> None:
    directory = tmp_path / "reads"
    drift_reuse.keep(directory, "old", {"cp1": PROBE})
    later = (directory / "old.json").stat().st_mtime + drift_reuse.STALE_SECONDS + 1
    assert drift_reuse.take(directory, "old", now=later) is None
    drift_reuse.keep(directory, "old", {"cp1": PROBE})
    drift_reuse.keep(directory, "new", {"cp1": PROBE}, now=later)
    assert sorted(p.name for p in directory.iterdir()) == ["new.json"]


def test_the_key_names_the_invocation_the_stack_and_the_targets() -> None:
    key = drift_reuse.key("10:777", "o/p/s", [["cp1", "server", True]])
    assert key == drift_reuse.key("10:777", "o/p/s", [["cp1", "server", True]])
    assert key != drift_reuse.key("11:777", "o/p/s", [["cp1", "server", True]])
    assert key != drift_reuse.key("10:777", "o/p/t", [["cp1", "server", True]])
    assert key != drift_reuse.key("10:777", "o/p/s", [["cp1", "server", False]])


def run(preview: bool, invocation: str | None, reads: dict[str, str], cache: Path) -> tuple[Any, mock.MagicMock]:
    fake = mock.MagicMock(side_effect=answers(**reads))
    with (
        mock.patch.object(drift_ssh, "read_hosts", fake),
        mock.patch.object(drift_reuse, "cli_invocation", return_value=invocation),
        mock.patch.dict(os.environ, {"XDG_CACHE_HOME": str(cache)}),
    ):
        result = run_program(config(True), SECRETS, preview=preview, previous_outputs=PREVIOUS)
    return result, fake


STOPPED = "unit=yes\nstate=inactive\nversion=v1.33.5+k3s1\nbundle=yes\napplied=yes\n"


def test_the_update_of_an_up_repairs_what_its_preview_read(tmp_path: Path) -> None:
    """The preview finds w1 stopped; by the update it answers healthy: the update still
    repairs w1, as shown, and reads no host."""
    previewed, read_in_preview = run(True, "10:777", {"w1": STOPPED}, tmp_path)
    updated, read_in_update = run(False, "10:777", {}, tmp_path)
    assert read_in_preview.call_count == 1 and read_in_update.call_count == 0
    assert commands(updated) == commands(previewed)
    fresh, _ = run(False, "10:777", {}, tmp_path)  # taken: a second update reads again
    assert commands(fresh) != commands(previewed)


@pytest.mark.parametrize("invocation", ["11:778", None])
def test_another_invocation_or_no_cli_reads_again(tmp_path: Path, invocation: str | None) -> None:
    run(True, "10:777", {"w1": STOPPED}, tmp_path)
    _, read_in_update = run(False, invocation, {}, tmp_path)
    assert read_in_update.call_count == 1
