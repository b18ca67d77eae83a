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

import pulumi

# The pool's settings are a settings dataclass like Node (settings.py), re-exported here.
from .settings import AgentPoolArgs

__all__ = ["POOL_TYPE", "AgentPool", "AgentPoolArgs"]

POOL_TYPE = "k3s-rancher:index:AgentPool"


class AgentPool(pulumi.ComponentResource):
    """The parent of one pool's agents in a cluster (created by the cluster from its args'
    `pools`: a pool joins the cluster's graph, its order and its readiness check)."""

    def __init__(self, name: str, args: AgentPoolArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(POOL_TYPE, name, None, opts)
        self.args = args
        self.node_names = [n.name for n in args.nodes]

    def finish(self) -> None:
        self.register_outputs({"pool": self.args.name, "nodes": self.node_names})
