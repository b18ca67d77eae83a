"""The K3s cluster graph, one for every topology; a backend only says how nodes are reached.

(Over 400 lines, a third of it this docstring: the order, the removal chain, the agents'
rollout and the backend contract are one design, read in one place.)

The order, owned here:

    init server: forget, pre-upgrade snapshot (etcd), token rotation (newToken) -> install
    -> ready -> next server: ...
    -> last server's ready -> every agent's install (in parallel on creation; an in-place
       change of agents that ran before goes in k3s.upgrade batches: cordon, drain, restart,
       Ready, uncordon, on the agent, within its install)
    -> cluster-ready (one check, on the init server, of every node)
    -> membership of each node (labels and taints through the API; delete = drain)
    -> kubeconfig -> kubernetes.Provider (after cluster-ready and every membership)

Servers join strictly one after another, each after the previous one is Ready; agents wait
for the last server and never for each other, so the critical path does not grow with
agents. Cluster-wide commands (forget, membership, cluster-ready, kubeconfig) run on the init
server, which holds the admin kubeconfig and is never removed while others are.

Per node, a removal or a replacement runs: drain (membership delete) -> uninstall (the
backend's install delete) -> delete the Node object (forget delete) -> [install the new].
Removal gets that order from the dependencies (Pulumi deletes dependents first). A
replacement (delete_before_replace everywhere in the chain) gets it from the `triggers`: the
install's carry the forget's id (a backend's choice, see backends/ssh.py) and the
membership's carry `Installed.replaced_with`, so when one step is replaced the engine treats
the steps after it as replaced too and deletes them first (pulumi/pulumi
pkg/resource/deploy/step_generator.go, calculateDependentReplacements). A plain depends_on
edge would not: the engine follows property dependencies only.

What a backend must provide (the `Backend` protocol; backends/ssh.py and backends/docker.py
are the two, a few dozen lines of wiring each on top of their pure halves):

- `cluster_type`, `server_type`, `agent_type`: the component types. They are part of every
  URN below them: a backend's types never change once released.
- `names`: how the children made per node are named (components/naming.py: the cluster's
  prefix, with an alias to the unprefixed name); the backend names its own per-node children
  with it too. Docker's is empty: its nodes are named after the cluster already.
- `servers` (join order, the init server first) and `agents`: the nodes, as `Node`s whose
  `ssh.user` is the user commands run as on that node.
- `identity(node)`: what a node IS; a change replaces the node (drain, uninstall, forget,
  install). How it is reached is not part of it.
- `prepare(parent, node, after)`: the node's first step on its host, before any other there
  (SSH: `<node>-scripts`, which puts the scripts bundle on the host: components/bundle.py),
  after `after` (a joining node's forget: the step's delete, which uninstalls what a failed
  first install left, then runs before the Node object's delete); every command the backend
  runs on that host depends on it. A backend may do nothing here (docker delivers the bundle
  once the container exists).
- `install(parent, node, first_server=, after=, forget=)`: create whatever puts K3s on the
  node (parented to `parent`, waiting for `after` and for `forget`, its first step) and
  return `Installed`.
- `command(name, on, create=, update=, delete=, ...)`: a command whose text (a rendered
  script from components/scripts.py, run as root) runs on node `on`; without `update`, create
  also serves as update; with `update` alone nothing runs on creation.
- `rolls_agents`: whether agents take in-place changes in batches (k3s.upgrade): then the
  install of an agent made with `rolled=True` must, on an in-place change, cordon and drain
  the agent (only when a restart is owed), restart K3s, wait until it is Ready and uncordon
  it; the graph puts each agent that ran before behind the previous batch (in `after`). A
  new agent waits for no batch, so creation stays flat.
- `upgrade_command(name, on, update=, opts=)`: a command that runs nothing on creation and
  `update` whenever that text changes (the pre-upgrade etcd snapshot); None where the
  topology has none (docker: a new version replaces the containers, etcd's data stays in
  their volumes).
- `read_kubeconfig(name, waits_for, opts)`: the init server's K3s kubeconfig, secret.
- `api_server`: the URL users and the provider reach the API at.
- `check_stdin`: what readiness checks get on stdin so that a change of a secret that
  restarts K3s (token, datastore endpoint) re-runs them; None where a secret change already
  changes `Installed.generation`.
- `wait_hint(names)`: what a failed readiness check tells the user to look at (None: the
  generic hint).
- `token_rotation`: the stdin (current token, new token; secret) of the step that rotates
  the cluster token on the init server before its install (newToken); None where there is no
  rotation (docker: its token cannot change).
- `forget_init`: whether the init server also gets a (delete-less) forget step, so that
  moving the init role deletes no resource; False where the init server cannot move.

A third backend (say, hosts reached through a cloud provider's command API) implements
those and gets every graph behaviour above: order, readiness, labels, drain and removal.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, cast, runtime_checkable

import pulumi
import pulumi_kubernetes as k8s

from . import scripts
from .agent_pool import AgentPool, AgentPoolArgs
from .cluster_record import ClusterRecord, Previous, agents_that_ran_before, renewal, warn_if_expiring
from .kubeconfig import (
    client_certificate_expiry,
    context_name,
    kubernetes_provider,
    user_kubeconfig,
)
from .naming import ChildNames
from .settings import K3sSettings, Node


@dataclass(frozen=True)
class Installed:
    """What a backend's install of one node hands back to the graph."""

    # The resources readiness checks wait for (the install command, the container).
    resources: Sequence[pulumi.Resource]
    # Text that changes whenever K3s on the node is installed again or reconfigured: the
    # readiness checks and the kubeconfig read carry its fingerprint, so they re-run.
    generation: pulumi.Input[str]
    # Values that change only when the node is replaced: the membership's triggers carry
    # them, so a replaced node's membership is replaced (drained) before it.
    replaced_with: Sequence[pulumi.Input[str]] = ()


class Backend(Protocol):
    """How one topology reaches its nodes (see the module docstring)."""

    cluster_type: str
    server_type: str
    agent_type: str
    forget_init: bool
    # How the children made per node are named (the graph's and the backend's own).
    names: ChildNames
    # Whether an in-place change of an agent (new version, new settings) rolls out in
    # batches (k3s.upgrade), cordoned and drained, instead of all at once.
    rolls_agents: bool
    # Whether a removed etcd server's membership also waits until K3s has removed its etcd
    # member (asked of /db/info with curl on the init server's host).
    checks_etcd_members: bool

    @property
    def check_stdin(self) -> pulumi.Input[str] | None: ...

    @property
    def api_server(self) -> pulumi.Input[str]: ...

    @property
    def token_rotation(self) -> pulumi.Input[str] | None: ...

    @property
    def servers(self) -> Sequence[Node]: ...

    @property
    def agents(self) -> Sequence[Node]: ...

    # Agent pools (components/agent_pool.py): their agents join after `agents`, each pool
    # under its AgentPool component; empty where the topology has none (docker).
    @property
    def pools(self) -> Sequence[AgentPoolArgs]: ...

    def identity(self, node: Node) -> Sequence[pulumi.Input[str]]: ...

    def prepare(self, parent: pulumi.Resource, node: Node, after: Sequence[pulumi.Resource]) -> None: ...

    def install(
        self,
        parent: pulumi.Resource,
        node: Node,
        *,
        first_server: bool,
        after: Sequence[pulumi.Resource],
        forget: pulumi.Resource | None,
        rolled: bool = False,
    ) -> Installed: ...

    def command(
        self,
        name: str,
        on: Node,
        *,
        opts: pulumi.ResourceOptions,
        create: pulumi.Input[str] | None = None,
        update: pulumi.Input[str] | None = None,
        delete: pulumi.Input[str] | None = None,
        stdin: pulumi.Input[str] | None = None,
        triggers: Sequence[pulumi.Input[str]] | None = None,
    ) -> pulumi.Resource: ...

    def upgrade_command(
        self, name: str, on: Node, *, update: pulumi.Input[str], opts: pulumi.ResourceOptions
    ) -> pulumi.Resource | None: ...

    def read_kubeconfig(
        self, name: str, waits_for: pulumi.Input[str], opts: pulumi.ResourceOptions
    ) -> pulumi.Output[str]: ...

    def wait_hint(self, names: Sequence[str]) -> str | None: ...

    def retired_steps(self) -> pulumi.Output[list[str]]:
        """The name suffixes of steps this backend no longer keeps, for the cluster's record:
        each is either left out or registered with retain_on_delete by this run, for every
        node, so that the next run may leave it out (components/cluster_record.py)."""
        ...

    def reimaged(self, node: Node) -> int:
        """The node's k3s.driftCheck reimage marker (0: none; components/drift.py)."""
        ...


@runtime_checkable
class KubernetesCluster(Protocol):
    """What every cluster hands on (K3sCluster, DockerCluster, and KubeconfigCluster, a
    cluster given by its kubeconfig): the API address, the admin kubeconfig (secret), a
    kubernetes Provider that is usable once the cluster is Ready, the resource whose deletion
    takes the cluster with it (None for a cluster this program did not build), and the nodes."""

    @property
    def api_server(self) -> pulumi.Input[str]: ...

    @property
    def kubeconfig(self) -> pulumi.Output[str]: ...

    @property
    def provider(self) -> k8s.Provider: ...

    @property
    def ready(self) -> pulumi.Resource | None: ...

    @property
    def nodes(self) -> tuple[Node, ...]: ...


class ClusterNode(pulumi.ComponentResource):
    """One node: its forget step, its install (the backend's), for a server its readiness
    check, and its membership. Outputs are registered once the graph is complete."""

    forget: pulumi.Resource | None
    installed: Installed
    ready: pulumi.Resource | None
    membership: pulumi.Resource

    def __init__(self, type_: str, node: Node, names: ChildNames, opts: pulumi.ResourceOptions) -> None:
        name, opts = names.child(node.name, opts)
        super().__init__(type_, name, None, opts)
        self.node = node
        self.ready = None


def render_text(value: pulumi.Input[str], render: Callable[[str], str]) -> pulumi.Input[str]:
    """`render(value)`, kept a plain string when `value` is one (no needless Output)."""
    if isinstance(value, str):
        return render(value)
    return pulumi.Output.from_input(cast(pulumi.Input[str], value)).apply(render)


@dataclass
class ClusterGraph:
    """The graph's handles, for the component that built it."""

    servers: list[ClusterNode]
    # Every agent: those of `agents`, then each pool's.
    agents: list[ClusterNode]
    pools: list[AgentPool]
    ready: pulumi.Resource
    kubeconfig: pulumi.Output[str]
    provider: k8s.Provider
    api_server: pulumi.Input[str]
    # The admin client certificate's notAfter (ISO 8601 UTC, not secret) and the renewal
    # marker the kubeconfig read carries: both exported, so that the next run compares them.
    expiry: pulumi.Output[str]
    renewal: pulumi.Output[str]

    @property
    def nodes(self) -> tuple[Node, ...]:
        return tuple(n.node for n in (*self.servers, *self.agents))


def membership_delete(node: Node, k3s: K3sSettings, user: str, checks_etcd_members: bool) -> str:
    """What a (non-init) node's membership runs when the node leaves: drain and delete the Node;
    for a server of embedded etcd, then wait until K3s has removed its etcd member (/db/info
    from 127.0.0.1 needs no credentials, so no secret goes with it). A backend that cannot ask
    /db/info (docker: the rancher/k3s image has no curl) relies on the Node delete alone:
    `kubectl delete node --wait` returns once K3s's finalizer has removed the member
    (pkg/etcd/member_controller.go, OnRemove)."""
    if node.role == "server" and k3s.datastore == "etcd" and checks_etcd_members:
        return scripts.server_removal_script(node.name, k3s.timeouts.drain, user, api_port=k3s.api_port).command
    return scripts.drain_script(node.name, k3s.timeouts.drain, user).command


def build_graph(
    parent: pulumi.ComponentResource,
    name: str,
    backend: Backend,
    k3s: K3sSettings,
    cluster_name: str,
    last_run: Previous,
) -> ClusterGraph:
    """Register the cluster's graph under `parent` (see the module docstring); `last_run` is
    what the cluster's record kept from the previous run (the agents that ran, the kubeconfig
    renewal marker)."""
    servers, agents = list(backend.servers), list(backend.agents)
    if not servers:
        raise ValueError("a cluster needs at least one server")
    init = servers[0]
    child = pulumi.ResourceOptions(parent=parent)
    names = backend.names

    def wait(names: list[str], timeout: int, user: str) -> Callable[[str], str]:
        def render(generation: str) -> str:
            hint = backend.wait_hint(names)
            extra = {"hint": hint} if hint is not None else {}
            return scripts.wait_script(names, k3s, timeout=timeout, waits_for=generation, user=user, **extra).command

        return render

    def member(
        node: Node,
        first_server: bool,
        after: Sequence[pulumi.Resource],
        init_installed: Installed | None,
        rolled: bool = False,
        under: pulumi.Resource | None = None,
    ) -> ClusterNode:
        node_type = backend.server_type if node.role == "server" else backend.agent_type
        # A pool's agent keeps an alias to where an agent of `agents` sits: moving an agent into
        # a pool keeps its resources (the engine follows the alias) instead of replacing it.
        opts = child if under is None else pulumi.ResourceOptions(parent=under, aliases=[pulumi.Alias(parent=parent)])
        component = ClusterNode(node_type, node, names, opts)
        is_init = node.name == init.name
        if is_init:  # its forget runs on its own host, after the bundle is there
            backend.prepare(component, node, [])
        component.forget = None
        if not is_init or backend.forget_init:
            # First in the node's chain: its delete runs last, once the host is uninstalled,
            # so that K3s accepts the name again ("node password rejected" otherwise). It runs
            # on the init server, so it waits for the init server's install; its create does
            # nothing, so it stays off the critical path. The init server's has no delete.
            # A host found reimaged (k3s.driftCheck): its Node and node-password Secret go before
            # its install runs again, as on a replacement; only while it has the marker.
            reimaged = 0 if is_init else backend.reimaged(node)
            forget_name, forget_opts = names.child(
                f"{node.name}-forget",
                pulumi.ResourceOptions(
                    parent=component,
                    depends_on=list(init_installed.resources) if init_installed else [],
                    delete_before_replace=True,
                ),
            )
            component.forget = backend.command(
                forget_name,
                init,
                update=scripts.forget_reimaged_script(node.name, init.ssh.user, reimaged).command if reimaged else None,
                delete=None if is_init else scripts.forget_script(node.name, init.ssh.user).command,
                triggers=backend.identity(node),
                opts=forget_opts,
            )
        if not is_init:
            # The node's first step on its host where the backend has one (the scripts
            # bundle), after its forget: deleted before it, so that a K3s a failed first
            # install left running is gone before its Node object is deleted (else it would
            # register again).
            backend.prepare(component, node, [component.forget] if component.forget is not None else [])
        if is_init and k3s.datastore == "etcd":
            # Before any server is upgraded: a snapshot on the init server, whose install (the
            # first of the servers') waits for it. Its text carries k3s.version, so it runs
            # when the version changes; on creation it runs nothing (no critical path added).
            # One per cluster, not per server: moving the init role (k3s.initServer) then
            # only updates its connection (the script finds nothing to upgrade there).
            snapshot = backend.upgrade_command(
                f"{name}-pre-upgrade-snapshot",
                node,
                update=scripts.pre_upgrade_snapshot_script(k3s, node.ssh.user).command,
                opts=pulumi.ResourceOptions(parent=parent),
            )
            after = [*after, *([snapshot] if snapshot is not None else [])]
        if is_init and backend.token_rotation is not None:
            # newToken: `k3s token rotate` on the init server before its install starts using
            # the new token (every install's stdin carries it from now on). It runs on creation
            # too: adding newToken creates it, and on a new cluster it finds nothing to rotate.
            # After the snapshot, if one runs: a pre-upgrade snapshot then needs the old token.
            rotation = backend.command(
                f"{name}-token-rotation",
                node,
                create=scripts.token_rotation_script(node.name, node.ssh.user).command,
                stdin=backend.token_rotation,
                opts=pulumi.ResourceOptions(parent=parent, depends_on=list(after)),
            )
            after = [*after, rotation]
        component.installed = backend.install(
            component, node, first_server=first_server, after=after, forget=component.forget, rolled=rolled
        )
        return component

    def generations(members: Sequence[ClusterNode]) -> pulumi.Input[str]:
        parts = [m.installed.generation for m in members]
        if all(isinstance(p, str) for p in parts):
            return scripts.fingerprint(*(str(p) for p in parts))
        return pulumi.Output.all(*parts).apply(lambda values: scripts.fingerprint(*map(str, values)))

    server_members: list[ClusterNode] = []
    previous: list[pulumi.Resource] = []
    for node in servers:
        init_installed = server_members[0].installed if server_members else None
        server = member(node, not server_members, previous, init_installed)
        ready_name, ready_opts = names.child(
            f"{node.name}-ready", pulumi.ResourceOptions(parent=server, depends_on=list(server.installed.resources))
        )
        server.ready = backend.command(
            ready_name,
            node,
            create=render_text(generations([server]), wait([node.name], k3s.timeouts.node_ready, node.ssh.user)),
            stdin=backend.check_stdin,
            opts=ready_opts,
        )
        server_members.append(server)
        previous = [server.ready]
    rolled = backend.rolls_agents
    # Agents that ran before: an in-place change of theirs waits for its batch. The others are
    # created at once (creation stays flat), whatever their batch.
    ran_before = agents_that_ran_before(last_run)
    init_installed = server_members[0].installed
    # The agents of `agents`, then each pool's (in name order), each group in its own batch
    # size (components/agent_pool.py): the name prefix and the parent of its batch steps.
    groups: list[tuple[list[Node], K3sSettings, AgentPoolArgs | None]] = [(list(agents), k3s, None)]
    groups += [(sorted(p.members(), key=lambda n: n.name), p.k3s(k3s), p) for p in backend.pools]
    agent_members: list[ClusterNode] = []
    pools: list[AgentPool] = []
    before: list[pulumi.Resource] = []
    for i, (group, group_k3s, pool_args) in enumerate(groups):
        under: pulumi.Resource | None = None
        barrier: tuple[str, pulumi.Resource] = (name, parent)
        if pool_args is not None:
            pool_name, pool_opts = names.child(pool_args.name, child)
            under = AgentPool(pool_name, pool_args, pool_opts)
            pools.append(under)
            barrier = (f"{name}-{pool_args.name}", under)
        more = any(g for g, _, _ in groups[i + 1 :])
        size = group_k3s.upgrade.batch_size(len(group)) if rolled else max(1, len(group))
        for number, start in enumerate(range(0, len(group), size), start=1):
            batch: list[pulumi.Resource] = []
            for node in group[start : start + size]:
                waits = [*previous, *before] if rolled and node.name in ran_before else previous
                m = member(node, False, waits, init_installed, rolled, under)
                agent_members.append(m)
                batch += m.installed.resources
            if not rolled:
                continue
            before = batch
            if len(batch) > 1 and (start + size < len(group) or more):
                # One step that waits for the whole batch (and runs nothing, ever): the next
                # batch's agents wait for it, not each for every agent of this batch, so the
                # edges grow with the agents, not with the agents times the batch size.
                before = [
                    backend.command(
                        f"{barrier[0]}-upgrade-batch-{number}",
                        init,
                        opts=pulumi.ResourceOptions(parent=barrier[1], depends_on=batch),
                    )
                ]
    members = [*server_members, *agent_members]
    member_names = [m.node.name for m in members]

    # The same stdin as the checks above: a new token or endpoint restarts K3s on every node.
    ready = backend.command(
        f"{name}-cluster-ready",
        init,
        create=render_text(generations(members), wait(member_names, k3s.timeouts.cluster_ready, init.ssh.user)),
        stdin=backend.check_stdin,
        opts=pulumi.ResourceOptions(
            parent=parent, depends_on=[*previous, *(r for m in members for r in m.installed.resources)]
        ),
    )
    for m in members:
        # Labels and taints through the API; on delete (any node but the init server), drain
        # and delete the Node, so that K3s accepts the name again.
        is_init = m.node.name == init.name
        delete = None if is_init else membership_delete(m.node, k3s, init.ssh.user, backend.checks_etcd_members)
        membership_name, membership_opts = names.child(
            f"{m.node.name}-membership",
            pulumi.ResourceOptions(parent=m, depends_on=[*m.installed.resources, ready], delete_before_replace=True),
        )
        m.membership = backend.command(
            membership_name,
            init,
            create=scripts.node_meta_script(m.node, init.ssh.user, backend.reimaged(m.node)).command,
            delete=delete,
            triggers=[*backend.identity(m.node), *m.installed.replaced_with],
            opts=membership_opts,
        )

    # Read again when the init server's install changes, and when the previous run's client
    # certificate was within RENEW_WITHIN_DAYS of expiry (the renewal marker changes then).
    marker = renewal(last_run)
    raw = backend.read_kubeconfig(
        f"{name}-kubeconfig",
        pulumi.Output.all(generations(server_members[:1]), marker).apply(
            lambda v: str(v[0]) + (f" renewal {v[1]}" if v[1] else "")
        ),
        pulumi.ResourceOptions(parent=parent, depends_on=[ready]),
    )
    kubeconfig = user_kubeconfig(raw, backend.api_server, context_name(cluster_name))
    provider = kubernetes_provider(
        f"{name}-k8s",
        kubeconfig,
        cluster_name,
        pulumi.ResourceOptions(parent=parent, depends_on=[ready, *(m.membership for m in members)]),
    )
    for m in members:
        m.register_outputs({"name": m.node.name, "role": m.node.role, "address": m.node.address})
    for pool in pools:
        pool.finish()
    return ClusterGraph(
        pools=pools,
        expiry=pulumi.Output.unsecret(raw.apply(client_certificate_expiry)),
        renewal=pulumi.Output.from_input(marker),
        servers=server_members,
        agents=agent_members,
        ready=ready,
        kubeconfig=kubeconfig,
        provider=provider,
        api_server=backend.api_server,
    )


class GraphCluster(pulumi.ComponentResource):
    """Base of the clusters built by `build_graph` (K3sCluster, DockerCluster): the graph's
    handles as attributes (see KubernetesCluster), outputs registered once, at the end. Each
    keeps its own record of what the next run compares with (components/cluster_record.py:
    the servers for the quorum guard, which a subclass runs before it registers anything,
    and the kubeconfig's expiry for its renewal)."""

    servers: list[ClusterNode]
    agents: list[ClusterNode]
    pools: list[AgentPool]
    ready: pulumi.Resource
    kubeconfig: pulumi.Output[str]
    provider: k8s.Provider
    api_server: pulumi.Input[str]
    nodes: tuple[Node, ...]
    node_names: list[str]
    kubeconfig_expiry: pulumi.Output[str]
    kubeconfig_renewal: pulumi.Output[str]
    # The steps this run retired, for the record (Backend.retired_steps).
    retired_steps: pulumi.Output[list[str]]

    def _build(
        self,
        name: str,
        backend: Backend,
        k3s: K3sSettings,
        cluster_name: str,
        record: ClusterRecord,
        last_run: Previous,
    ) -> None:
        graph = build_graph(self, name, backend, k3s, cluster_name, last_run)
        self.servers, self.agents, self.pools = graph.servers, graph.agents, graph.pools
        self.ready, self.kubeconfig, self.provider = graph.ready, graph.kubeconfig, graph.provider
        self.api_server = graph.api_server
        self.nodes = graph.nodes
        self.node_names = [n.name for n in self.nodes]
        self.kubeconfig_expiry, self.kubeconfig_renewal = graph.expiry, graph.renewal
        self.retired_steps = backend.retired_steps()
        record.keep([n.node.name for n in graph.servers], graph.nodes, graph.expiry, graph.renewal, self.retired_steps)
        graph.expiry.apply(lambda expiry: warn_if_expiring(expiry, self))
        self.register_outputs({"apiServer": self.api_server, "kubeconfig": self.kubeconfig, "nodes": self.node_names})
