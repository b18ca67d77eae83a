"""Each SSH example stack (dev, prod) run once per module."""

from __future__ import annotations

import pytest

from tests.harness import Run
from tests.rancher.runs import SSH_STACKS, stack_run


@pytest.fixture(scope="module", params=SSH_STACKS)
def stack(request: pytest.FixtureRequest) -> tuple[str, Run]:
    return request.param, stack_run(request.param)
