"""How the graph scales: build the program under mocks for 1 and 3 servers with 50, 200 and
500 agents; print wall time, resources registered and the longest dependency chain.

The chain is what `pulumi up` must do in sequence; it must not grow with the agent count.
Run: .venv/bin/python -m benchmarks.graph_scale
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Sequence
from typing import Any

from tests.harness import TEST_SSH_KEY, TEST_TOKEN, Registration, run_program


def make_config(servers: int, agents: int) -> dict[str, Any]:
    return {
        "topology": "ssh",
        "servers": [{"name": f"cp{i}", "address": f"10.0.0.{10 + i}"} for i in range(servers)],
        "agents": [{"name": f"w{i}", "address": f"10.1.{i // 250}.{i % 250 + 1}"} for i in range(agents)],
        "rancher": {"enabled": False},
        **({"k3s": {"initServer": "cp0"}} if servers > 1 else {}),
    }


def longest_chain(registrations: Sequence[Registration]) -> int:
    """Longest path through dependency edges (a dependency on a component means a dependency
    on each of its children), counted in custom resources that do something when they are
    created: a command without `create` (an upgrade step, a forget) runs nothing then, and
    the engine passes it in a moment."""
    by_urn = {r.urn: r for r in registrations}
    children: dict[str, list[str]] = {}
    for r in registrations:
        children.setdefault(r.parent, []).append(r.urn)

    def expand(urn: str) -> list[str]:
        r = by_urn.get(urn)
        if r is None:
            return []
        if r.custom:
            return [urn]
        return [leaf for child in children.get(urn, []) for leaf in expand(child)]

    def works(r: Registration) -> int:
        return 0 if r.type.startswith("command:") and r.type.endswith(":Command") and "create" not in r.inputs else 1

    @functools.cache
    def depth(urn: str) -> int:
        deps = [leaf for dep in by_urn[urn].dependencies for leaf in expand(dep)]
        return works(by_urn[urn]) + max((depth(d) for d in deps), default=0)

    sys.setrecursionlimit(10000)
    return max(depth(r.urn) for r in registrations if r.custom)


def main() -> None:
    print(f"{'servers':>7} {'agents':>6} {'seconds':>8} {'resources':>9} {'chain':>5}")
    for servers in (1, 3):
        for agents in (50, 200, 500):
            start = time.perf_counter()
            run = run_program(make_config(servers, agents), {"sshPrivateKey": TEST_SSH_KEY, "token": TEST_TOKEN})
            seconds = time.perf_counter() - start
            print(
                f"{servers:>7} {agents:>6} {seconds:>8.2f} {len(run.registrations):>9} "
                f"{longest_chain(run.registrations):>5}",
                flush=True,
            )


if __name__ == "__main__":
    main()
