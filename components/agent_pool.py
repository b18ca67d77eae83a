"""Agent pools: groups of agents with their own settings (kube-hetzner's agent_nodepools,
pulumi-eks's node groups), and the `AgentPool` component each pool's agents sit under.

How a pool's settings combine with the cluster's (k3s.*), decided here and nowhere else:
- labels: the cluster has none; the pool's go on every agent of the pool, an agent's own
  label of the same key wins;
- taints: the pool's, then the agent's own; an agent's taint of the same key and effect
  replaces the pool's;
- agentArgs: the cluster's k3s.agentArgs, then the pool's (appended: a later flag wins where
  K3s keeps the last value, both are kept where it takes a list);
- agentConfig: the cluster's k3s.agentConfig with the pool's keys merged over it;
- registries: the pool's, when given, replace k3s.registries for its agents (a whole
  registries.yaml, as K3s reads one file); the registryAuth secret's credentials are added to
  whichever one a node gets;
- upgrade: the pool's agentsAtOnce (and drain), when given, replace k3s.upgrade's for its
  agents; batches never mix pools.

Batch order on an in-place change: servers one at a time (as always), then the agents of
`agents` in their batches, then each pool in list order, in its own batch size; a pool's
first batch starts once the previous pool's last batch is back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pulumi

from .settings import K3sSettings, Node, UpgradeSettings

POOL_TYPE = "k3s-rancher:index:AgentPool"


@dataclass(frozen=True)
class AgentPoolArgs:
    """One pool: its name, its agents (role "agent") and the settings it adds to the cluster's
    (see the module docstring for how they combine)."""

    name: str
    nodes: Sequence[Node]
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[str, ...] = ()
    agent_args: tuple[str, ...] = ()
    agent_config: Mapping[str, Any] = field(default_factory=dict)
    # None: k3s.registries.
    registries: Mapping[str, Any] | None = None
    # None: k3s.upgrade.
    upgrade: UpgradeSettings | None = None

    def k3s(self, cluster: K3sSettings) -> K3sSettings:
        """The K3s settings this pool's agents are installed with."""
        return replace(
            cluster,
            agent_args=(*cluster.agent_args, *self.agent_args),
            agent_config={**cluster.agent_config, **self.agent_config},
            registries=cluster.registries if self.registries is None else self.registries,
            upgrade=self.upgrade or cluster.upgrade,
        )

    def members(self) -> list[Node]:
        """The pool's agents with the pool's labels and taints combined with their own."""
        return [
            replace(node, labels={**self.labels, **node.labels}, taints=combine_taints(self.taints, node.taints))
            for node in self.nodes
        ]


def combine_taints(pool: Sequence[str], own: Sequence[str]) -> tuple[str, ...]:
    """The pool's taints, less those an agent's own replaces (same key and effect), then its own."""
    owned = {taint_identity(t) for t in own}
    return (*(t for t in pool if taint_identity(t) not in owned), *own)


def taint_identity(taint: str) -> str:
    """key:effect of `key[=value]:effect` (one value per key and effect on a node)."""
    body, _, effect = taint.rpartition(":")
    return f"{body.partition('=')[0]}:{effect}"


class AgentPool(pulumi.ComponentResource):
    """The parent of one pool's agents in a cluster (created by the cluster from its args'
    `pools`: a pool joins the cluster's graph, its order and its readiness check)."""

    def __init__(self, name: str, args: AgentPoolArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(POOL_TYPE, name, None, opts)
        self.args = args
        self.node_names = [n.name for n in args.nodes]

    def finish(self) -> None:
        self.register_outputs({"pool": self.args.name, "nodes": self.node_names})
