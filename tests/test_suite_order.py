"""The suite runs its fast tiers before the real ones (tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tests.conftest import pytest_collection_modifyitems

ROOT = Path(__file__).resolve().parent


def item(relative: str) -> Any:
    return SimpleNamespace(path=ROOT / relative)


def test_mock_tier_first_then_real_hosts_then_the_engine() -> None:
    collected = [
        item("real/test_engine.py"),
        item("real/test_hosts.py"),
        item("scripts/test_install.py"),
        item("real/test_engine_faults.py"),
        item("real/test_scripts_on_hosts.py"),
        item("test_docs.py"),
    ]
    pytest_collection_modifyitems(collected)
    assert [i.path.relative_to(ROOT).as_posix() for i in collected] == [
        "scripts/test_install.py",
        "test_docs.py",
        "real/test_hosts.py",
        "real/test_scripts_on_hosts.py",
        "real/test_engine.py",
        "real/test_engine_faults.py",
    ]
