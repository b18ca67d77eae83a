"""Node addresses given as Pulumi Inputs: a host created in the same program (a cloud VM's
IP) is an Output until that host exists.

Pure helpers for the SSH cluster (components/backends/ssh.py): whether any address of its
nodes or of its API is unknown at program start, and the settings with every such address
resolved, as one Output, so that a node's command texts render inside its apply with the
very functions plain addresses use (the same texts, byte for byte, once known). With plain
addresses nothing here is an Output: the texts are rendered directly, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pulumi

from .settings import AgentPoolArgs, K3sSettings, Node


def is_plain(value: Any) -> bool:
    """Known at program start (a str), not an Output or another awaitable Input."""
    return not isinstance(value, pulumi.Output) and not hasattr(value, "__await__")


@dataclass(frozen=True)
class Plain:
    """The cluster's nodes (its pools' too) and K3s settings with every address a plain string."""

    servers: tuple[Node, ...]
    agents: tuple[Node, ...]
    k3s: K3sSettings
    pools: tuple[AgentPoolArgs, ...] = ()

    def all_nodes(self) -> list[Node]:
        """Every node as the graph has it (a pool's agents with the pool's labels and taints)."""
        return [*self.servers, *self.agents, *(n for pool in self.pools for n in pool.members())]

    def node(self, name: str) -> Node:
        """The node as the graph has it (a pool's agent with the pool's labels and taints)."""
        return next(n for n in self.all_nodes() if n.name == name)

    def k3s_of(self, name: str) -> K3sSettings:
        """The K3s settings node `name` is installed with: its pool's, else the cluster's."""
        pool = next((p for p in self.pools if any(n.name == name for n in p.nodes)), None)
        return pool.k3s(self.k3s) if pool else self.k3s


def completed(k3s: K3sSettings, servers: Sequence[Node], agents: Sequence[Node], init_server: str) -> K3sSettings:
    """K3s settings as a hand-built cluster needs them: an empty api_address becomes the init
    server's address (as config derives k3s.apiAddress), and k3s.proxy's NO_PROXY gets the
    node and API addresses when none were given (as config adds them)."""
    init = next((n for n in servers if n.name == init_server), servers[0] if len(servers) == 1 else None)
    if isinstance(k3s.api_address, str) and not k3s.api_address and init is not None:
        k3s = replace(k3s, api_address=init.address)
    if k3s.proxy is not None and not k3s.proxy.node_addresses:
        addresses: tuple[pulumi.Input[str], ...] = (*(n.address for n in (*servers, *agents)), k3s.api_address)
        if all(isinstance(a, str) for a in addresses):  # else sorted once known (resolved)
            addresses = tuple(sorted({a for a in addresses if isinstance(a, str) and a}))
        k3s = replace(k3s, proxy=replace(k3s.proxy, node_addresses=addresses))
    return k3s


def _inputs(
    servers: Sequence[Node], agents: Sequence[Node], pools: Sequence[AgentPoolArgs], k3s: K3sSettings
) -> list[Any]:
    pooled = [n for pool in pools for n in pool.nodes]
    nodes = [value for n in (*servers, *agents, *pooled) for value in (n.address, n.ssh.host)]
    proxied = list(k3s.proxy.node_addresses) if k3s.proxy else []
    return [*nodes, k3s.api_address, *proxied]


def resolved(
    servers: Sequence[Node],
    agents: Sequence[Node],
    pools: Sequence[AgentPoolArgs],
    k3s: K3sSettings,
    check: Callable[[Plain], None] = lambda _: None,
) -> pulumi.Output[Plain] | None:
    """None when every address is plain; else the settings with every address known, once
    the hosts exist, after `check` (the validators, which skipped what was unknown) passed on
    them: a bad address fails there with the same keyed ConfigError."""
    values = _inputs(servers, agents, pools, k3s)
    if all(is_plain(v) for v in values):
        return None

    def plain(values: list[Any]) -> Plain:
        it = iter(values)  # in _inputs' order

        def known(n: Node) -> Node:
            return replace(n, address=next(it), ssh=replace(n.ssh, host=next(it)))

        nodes = [known(n) for n in (*servers, *agents)]
        known_pools = tuple(replace(pool, nodes=[known(n) for n in pool.nodes]) for pool in pools)
        api = next(it)
        proxy = k3s.proxy
        if proxy is not None:
            # As config builds it: each address once, sorted, empty ones left out.
            proxy = replace(proxy, node_addresses=tuple(sorted({a for a in it if isinstance(a, str) and a})))
        result = Plain(
            tuple(nodes[: len(servers)]),
            tuple(nodes[len(servers) :]),
            replace(k3s, api_address=api, proxy=proxy),
            known_pools,
        )
        check(result)
        return result

    return pulumi.Output.all(*values).apply(plain)


def rendered(
    found: pulumi.Output[Plain] | None, node: Node, k3s: K3sSettings, render: Callable[[Node, K3sSettings], str]
) -> pulumi.Input[str]:
    """`render(node, k3s)` now with plain addresses; else inside the apply of the resolved ones."""
    if found is None:
        return render(node, k3s)
    return found.apply(lambda p: render(p.node(node.name), p.k3s_of(node.name)))
