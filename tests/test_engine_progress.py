"""The engine build shows its progress while the suite waits on it (issue: a cold build was
half an hour of silence)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from tests.real import engine_project

FAKE_BUILD = """#!/usr/bin/env bash
echo 'go: downloading example.com/x v1.0.0' >&2
echo '[engine-build] building pulumi ...' >&2
echo '[engine-build] built pulumi in 1s' >&2
echo {last}
exit {code}
"""


def fake_builder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int = 0) -> None:
    script = tmp_path / "build.sh"
    script.write_text(FAKE_BUILD.format(last=tmp_path / "bin", code=code))
    monkeypatch.setattr(engine_project, "ENGINE_BUILD", script)
    monkeypatch.delenv("K3SR_ENGINE_BIN", raising=False)


def test_the_builders_own_lines_stream_with_elapsed_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_builder(tmp_path, monkeypatch)
    progress = io.StringIO()
    assert engine_project.engine_bin(progress=progress) == tmp_path / "bin"
    lines = progress.getvalue().splitlines()
    assert [line.split("] ", 1)[1] for line in lines] == [
        "[engine-build] building pulumi ...",
        "[engine-build] built pulumi in 1s",
    ]
    assert all(line.startswith("[+") and "s] " in line for line in lines)  # elapsed seconds first


def test_a_failed_build_says_what_the_builder_said(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_builder(tmp_path, monkeypatch, code=3)
    with pytest.raises(RuntimeError, match=r"engine build failed:(.|\n)*built pulumi in 1s"):
        engine_project.engine_bin()
