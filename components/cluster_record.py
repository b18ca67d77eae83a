"""What a cluster compares with its previous run, and the guards that use it: its servers in
join order (the quorum guard, components/validation/quorum.py), its nodes' names, roles and
addresses (the role-change guard, components/validation/roles.py; which agents wait for their
k3s.upgrade batch), the admin kubeconfig's expiry and renewal marker (the kubeconfig renewal,
components/kubeconfig.py) and the steps a completed run retired (`retiredSteps`: a step with a
delete leaves the graph only in the run after one that registered it with retain_on_delete).

The record lives in the stack's outputs (read back synchronously: components/previous_run.py),
one per cluster component, so that two clusters in one program never share one:

- `ComponentRecord` (a library user's cluster, the default): one output named after the
  component, `k3s-rancher:<name>`, which the component exports itself.
- `STACK_RECORD` (the stack program's cluster): the program's own outputs `nodes`,
  `kubeconfigExpiry`, `kubeconfigRenewal` and `retiredSteps`, which components/program.py
  exports, as every release before records were kept per component did.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

import pulumi

from .kubeconfig import renewal_marker
from .previous_run import own_previous_outputs
from .settings import NAMESPACE, ConfigError, Node
from .validation.quorum import previous_servers, quorum_error
from .validation.roles import previous_nodes, role_change_errors

EXPIRY_OUTPUT = "kubeconfigExpiry"
RENEWAL_OUTPUT = "kubeconfigRenewal"
RETIRED_OUTPUT = "retiredSteps"


@dataclass(frozen=True)
class Previous:
    """What the previous run recorded (None: nothing, as on a first run)."""

    servers: list[str] | None = None
    expiry: str | None = None
    renewal: str | None = None
    # (name, role, address) of each node (validation/roles.py previous_nodes); [] for none.
    nodes: list[tuple[str, str, str]] = field(default_factory=list)
    # The name suffixes of steps the previous run registered with retain_on_delete, for every
    # node it had (retired_steps): this run may leave them out, and their delete runs nothing.
    retired: frozenset[str] = frozenset()


def _retired(value: object) -> frozenset[str]:
    return frozenset(str(v) for v in value) if isinstance(value, list) else frozenset()


class ClusterRecord(Protocol):
    @property
    def label(self) -> str:
        """Said before a refusal's message ("" for the stack's one cluster)."""
        ...

    def previous(self, outputs: Mapping[str, Any]) -> Previous: ...

    def keep(
        self,
        servers: Sequence[str],
        nodes: Sequence[Node],
        expiry: pulumi.Output[str],
        renewal: pulumi.Output[str],
        retired: pulumi.Output[list[str]],
    ) -> None: ...


@dataclass(frozen=True)
class ComponentRecord:
    """One stack output per cluster component, named after it, exported by the component."""

    cluster: str

    @property
    def output(self) -> str:
        return f"{NAMESPACE}:{self.cluster}"

    @property
    def label(self) -> str:
        return f"cluster {self.cluster}: "

    def previous(self, outputs: Mapping[str, Any]) -> Previous:
        value = outputs.get(self.output)
        if not isinstance(value, dict):
            return Previous()
        servers = value.get("servers")
        expiry, renewal = value.get(EXPIRY_OUTPUT), value.get(RENEWAL_OUTPUT)
        return Previous(
            servers=[str(s) for s in servers] if isinstance(servers, list) else None,
            expiry=expiry if isinstance(expiry, str) else None,
            renewal=renewal if isinstance(renewal, str) else None,
            nodes=previous_nodes({"nodes": value.get("nodes")}),
            retired=_retired(value.get(RETIRED_OUTPUT)),
        )

    def keep(
        self,
        servers: Sequence[str],
        nodes: Sequence[Node],
        expiry: pulumi.Output[str],
        renewal: pulumi.Output[str],
        retired: pulumi.Output[list[str]],
    ) -> None:
        names, listed = list(servers), list(nodes)
        # An address may be an Output (a host made in the same program): kept once known.
        addresses = pulumi.Output.all(*(n.address for n in listed))
        pulumi.export(
            self.output,
            pulumi.Output.all(expiry, renewal, addresses, retired).apply(
                lambda v: {
                    "servers": names,
                    "nodes": [
                        {"name": n.name, "role": n.role, "address": str(a)} for n, a in zip(listed, v[2], strict=True)
                    ],
                    EXPIRY_OUTPUT: v[0],
                    RENEWAL_OUTPUT: v[1],
                    RETIRED_OUTPUT: v[3],
                }
            ),
        )


@dataclass(frozen=True)
class StackRecord:
    """The stack program's outputs (components/program.py exports them: nothing to keep here)."""

    label: str = ""

    def previous(self, outputs: Mapping[str, Any]) -> Previous:
        expiry, renewal = outputs.get(EXPIRY_OUTPUT), outputs.get(RENEWAL_OUTPUT)
        return Previous(
            servers=previous_servers(outputs),
            expiry=expiry if isinstance(expiry, str) else None,
            renewal=renewal if isinstance(renewal, str) else None,
            nodes=previous_nodes(outputs),
            retired=_retired(outputs.get(RETIRED_OUTPUT)),
        )

    def keep(
        self,
        servers: Sequence[str],
        nodes: Sequence[Node],
        expiry: pulumi.Output[str],
        renewal: pulumi.Output[str],
        retired: pulumi.Output[list[str]],
    ) -> None:
        return None


STACK_RECORD = StackRecord()


def check_quorum(record: ClusterRecord, servers: Sequence[str], datastore: str, key: str) -> None:
    """Refuse, by `key`, a removal of servers that would leave embedded etcd without quorum,
    compared with what `record` kept from the previous run. Called before the cluster
    registers anything."""
    if datastore != "etcd":
        return
    previous = record.previous(own_previous_outputs()).servers
    if error := quorum_error(previous, list(servers), datastore):
        raise ConfigError([(key, record.label + error)])


def check_roles(record: ClusterRecord, nodes: Sequence[Node]) -> None:
    """Refuse, by key, a node that changes role (agent <-> server) in one up, compared with the
    nodes `record` kept from the previous run. Called before the cluster registers anything,
    where a node whose address is an Output (not known yet) is matched by its name only, and
    again once every address is known (components/inputs.py resolved)."""
    previous = record.previous(own_previous_outputs()).nodes
    known = [n if isinstance(n.address, str) else replace(n, address="") for n in nodes]
    if errors := role_change_errors(previous, known):
        raise ConfigError([(key, record.label + message) for key, message in errors])


def read_previous(record: ClusterRecord) -> Previous:
    """What `record` kept from the previous run (one read of the stack's outputs through the
    engine: a cluster reads it once and hands it to what needs it)."""
    return record.previous(own_previous_outputs())


def renewal(previous: Previous) -> str:
    """The renewal marker for this run: the previous run's and today's date (UTC)."""
    return renewal_marker(previous.expiry, previous.renewal, datetime.now(UTC).date())


def retired_before(previous: Previous, step: str) -> bool:
    """Whether this run may leave `step` (a name suffix) out: the previous run retired it
    (Previous.retired), or there was none (a first run: nothing was made before). A stack
    whose earlier ups all failed has no record either; for the one step retired so far
    (`-cleanup`), its leaving then runs its delete with this run's bundle, whose leftovers
    uninstall leaves a host alone once an install of the node completed there (the installs
    of this run complete before the deletes at its end)."""
    return previous.servers is None or step in previous.retired


def agents_that_ran_before(previous: Previous) -> frozenset[str]:
    """The agents of the previous run: their in-place changes wait for their k3s.upgrade
    batch, while a new agent is installed at once (none on a first run: creation stays flat).
    An agent whose first up failed before the record was written counts as new once more."""
    return frozenset(name for name, role, _ in previous.nodes if role == "agent")


def warn_if_expiring(expiry: str, resource: pulumi.Resource) -> None:
    if renewal_marker(expiry, None, datetime.now(UTC).date()):
        pulumi.log.warn(
            f"the kubeconfig's client certificate expires {expiry}: K3s renews certificates within 90 days of "
            "expiry when it starts. Restart K3s on the init server (systemctl restart k3s), then run pulumi up "
            "(tomorrow, or today with --replace on the kubeconfig read) to read the renewed kubeconfig",
            resource=resource,
        )
