"""Fixtures of the script tests: airgap files, every rendered script, a fresh sandbox."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from components import scripts
from tests.scripts.awkward import every_file_rendered_with_awkward_values, rendered
from tests.scripts.sandbox import Sandbox, make_sandbox


@pytest.fixture(scope="module")
def airgap_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    where = tmp_path_factory.mktemp("airgap")
    files = {"installScript": "install.sh", "binary": "k3s", "images": "k3s airgap 'images' $(x).tar.zst"}
    for name in files.values():
        (where / name).write_text("stand-in\n")
    return {key: str(where / name) for key, name in files.items()}


@pytest.fixture(scope="module")
def all_rendered(airgap_files: dict[str, str]) -> dict[str, scripts.Script]:
    return {**rendered(airgap_files), **every_file_rendered_with_awkward_values()}


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Sandbox]:
    yield make_sandbox(tmp_path / "box")
