"""Embedded etcd keeps quorum while servers are removed: the rule, as a pure function over the
previous run's servers (a cluster's record: components/cluster_record.py) and this run's.

Removing one server at a time is always safe: K3s removes its etcd member when its Node is
deleted (pkg/etcd member handler, `nodes.OnRemove`), and the leaving member is still running
and voting while that happens. Removing r >= 2 of n members in one `pulumi up` goes through
intermediate member counts the remaining servers must carry: it is refused unless the servers
that stay are a majority of the servers there were (n - r >= n // 2 + 1), so that losing every
leaving member at once still leaves quorum.

Not one of VALIDATORS: it needs the previous run's servers, which each cluster component
keeps in its record (components/cluster_record.py, check_quorum: run by the component before it
registers anything, and by components/program.py right after the config is parsed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def previous_servers(outputs: Mapping[str, Any]) -> list[str] | None:
    """The server names in a previous run's `nodes` output ([{name, role, address}]); None
    when there is no such output (first run, or a stack of another topology)."""
    nodes = outputs.get("nodes")
    if not isinstance(nodes, list):
        return None
    return [str(n["name"]) for n in nodes if isinstance(n, dict) and n.get("role") == "server" and "name" in n]


def quorum_error(previous: Sequence[str] | None, current: Sequence[str], datastore: str) -> str | None:
    """Why this change of servers would leave embedded etcd without quorum, or None."""
    if datastore != "etcd" or not previous:
        return None
    staying = set(current)
    kept = [name for name in previous if name in staying]
    # Last joined first: the reverse of the join order the previous run listed them in.
    removed = [name for name in reversed(previous) if name not in staying]
    n, r = len(previous), len(removed)
    if r < 2 or n - r >= n // 2 + 1:
        return None
    steps = "; ".join(f"up {i}: without {name}" for i, name in enumerate(removed, start=1))
    return (
        f"removing {r} of {n} etcd servers in one update ({', '.join(removed)}) would leave {n - r}, fewer than "
        f"the {n // 2 + 1} that etcd needs for quorum while members are removed. Remove one server per "
        f"`pulumi up`, keeping {', '.join(kept) or 'the init server'}: {steps} (each up drains the server, "
        "deletes its Node, K3s removes its etcd member, then K3s is uninstalled from it)"
    )
