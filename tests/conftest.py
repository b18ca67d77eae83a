"""Run order for the whole suite: the fast tiers first (pure code and mocks, about two
minutes), then the real tiers (test hosts, then the engine, whose first build takes tens of
minutes). A failure in the fast tiers then shows up early, and one pytest run still ends in
one summary line."""

from __future__ import annotations

import pytest

# Real-tier modules that need the engine build go last; the other real tiers before them.
_ENGINE_MODULES = ("test_engine",)


def _tier(item: pytest.Item) -> int:
    path = item.path.as_posix()
    if "/tests/real/" not in path:
        return 0
    return 2 if item.path.stem.startswith(_ENGINE_MODULES) else 1


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_tier)  # stable: keeps the file and definition order within a tier
