"""An upgrade of this program changes nothing in existing stacks unless it means to.

Each scenario's graph (URNs, types, parents, dependencies, options and inputs) must equal the
one recorded in tests/graph_snapshots/ (see tests/graph_snapshot.py): the same URNs mean
nothing is deleted and recreated, the same inputs mean nothing is updated or replaced.
"""

from __future__ import annotations

import copy

import pytest

from tests import graph_snapshot


@pytest.mark.parametrize("name", sorted(graph_snapshot.SCENARIOS))
def test_the_registered_graph_matches_the_recorded_one(name: str) -> None:
    changes = graph_snapshot.differences(graph_snapshot.recorded(name), graph_snapshot.current(name))
    assert not changes, (
        f"{name}: `pulumi up` after this change would act on existing stacks:\n  "
        + "\n  ".join(changes[:40])
        + "\nIf that is intended, rewrite the snapshots with `python -m tests.graph_snapshot` and say why."
    )


def test_a_changed_input_dependency_or_urn_is_reported() -> None:
    before = graph_snapshot.recorded("stack-dev")
    urn = next(u for u, r in before["resources"].items() if u.endswith("dev-w1-install"))
    after = copy.deepcopy(before)
    after["resources"][urn]["inputs"]["triggers"] = ["changed"]
    after["resources"][urn]["dependencies"] = []
    moved = after["resources"].pop(next(u for u in before["resources"] if u.endswith("dev-w2-install")))
    after["resources"]["urn:moved"] = moved
    changes = graph_snapshot.differences(before, after)
    assert any(line.startswith(f"{urn}: input triggers") for line in changes)
    assert any(line.startswith(f"{urn}: dependencies") for line in changes)
    assert any(line.startswith("gone (would be deleted):") and "dev-w2-install" in line for line in changes)
    assert "new (would be created): urn:moved" in changes
