"""A node never changes role (agent <-> server) in one `pulumi up`: the rule, as a pure function
over the previous run's nodes (what the cluster's record kept, components/cluster_record.py:
the stack program's `nodes` output, or a library cluster's own output) and this run's.

The install would refuse it on the host anyway (a K3s agent's host cannot become a server on
top), but only halfway through an `up` that had already planned the old node's removal and
the new one's creation. Comparing with the previous run refuses it before anything is
registered, so `pulumi preview` says so too. A node is matched by name or by address: a host
renamed and moved to the other list in the same change is still the same host.

Not one of VALIDATORS, for the same reason as quorum.py: it needs the previous run's outputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..settings import NAMESPACE, Node

LISTS = {"server": "servers", "agent": "agents"}


def previous_nodes(outputs: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(name, role, address) of each node in a previous run's `nodes` output; empty when there
    is none (first run, or another topology)."""
    nodes = outputs.get("nodes")
    if not isinstance(nodes, list):
        return []
    return [
        (str(n["name"]), str(n["role"]), str(n.get("address", "")))
        for n in nodes
        if isinstance(n, dict) and "name" in n and n.get("role") in LISTS
    ]


def role_change_errors(previous: Sequence[tuple[str, str, str]], current: Sequence[Node]) -> list[tuple[str, str]]:
    """(config key, message) for each node whose name or address was a node of the other role
    in the previous run."""
    errors = []
    for node in current:
        for name, role, address in previous:
            if role == node.role or (name != node.name and (not address or address != node.address)):
                continue
            was = f"{name} ({address})" if name != node.name else f"{address or name}"
            errors.append(
                (
                    f"{NAMESPACE}:{LISTS[node.role]}",
                    f"{node.name} is listed as {'a server' if node.role == 'server' else 'an agent'}, but "
                    f"{was} was {'a server' if role == 'server' else 'an agent'} in the last update: a node "
                    "cannot change role in one `pulumi up` (an agent's host cannot become a server on top, "
                    f"nor the other way). Do it in two: remove it from '{LISTS[role]}' and run pulumi up (it "
                    f"is drained and K3s is uninstalled), then add it to '{LISTS[node.role]}' and run pulumi "
                    "up again",
                )
            )
            break
    return errors
