"""k3s.driftCheck: what a host's read (sh/drift_probe.sh) says against what the stack last
applied, and the repair marker that makes `up` re-run a drifted node's install.

pulumi-command never reads a host back, so a stopped K3s, a hand-edited config.yaml or a
reimaged host is invisible to preview, refresh and up. With k3s.driftCheck the program reads
every node it installed before (components/drift_ssh.py, one SSH session each, in parallel)
and, for each drifted node, bumps that node's number in the `driftRepairs` output. The number
is an input of the node's install (and scripts step) while it is not 0, so the preview shows
those steps as updates and `up` runs them: the install rewrites the files, starts K3s, and the
node's normal path (servers one at a time, agents in their batches) follows. The number stays
what it was while nothing drifts, so a no-op stays a no-op.

It is the stack program's only (stack config, so plain addresses): it reads the hosts at
program start, before any resource exists, so it cannot reach a host whose address is an
Output. A library cluster on hosts made in the same program (components/inputs.py) passes
`repairs` from a check of its own, or none.

Everything here is pure; the reading is in components/drift_ssh.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import scripts
from .settings import Node

REPAIRS_OUTPUT = "driftRepairs"
# Per node, the repair number at which its host was found without K3s (reimaged): an input of
# its forget step, which then deletes its Node and node-password Secret before the install
# runs again, as a replacement does (K3s refuses a known name with a new password otherwise).
REIMAGED_OUTPUT = "driftReimaged"
REIMAGED = "no K3s (reimaged?)"
# The install's input that carries the marker (only while it is not 0).
REPAIR_INPUT = "DRIFT_REPAIR"


@dataclass(frozen=True)
class Probe:
    """One host's answer, parsed (sh/drift_probe.sh prints `key=value` lines)."""

    unit: bool
    state: str
    version: str
    bundle: bool
    applied: bool
    differs: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    # The init server's view: node name -> its Ready status; None when not read.
    registered: Mapping[str, str] | None = None


@dataclass(frozen=True)
class Verdict:
    """Per node: why it drifted (empty: it did not); warnings name hosts not checked."""

    reasons: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    # The hosts that did not answer (a subset of those the warnings name).
    unreachable: list[str] = field(default_factory=list)

    @property
    def reimaged(self) -> list[str]:
        """The drifted nodes whose host has no K3s at all."""
        return [name for name, found in self.reasons.items() if REIMAGED in found]


def probe_script(node: Node, *, init: bool) -> scripts.Script:
    """The read of one host, whole in the command text (a wiped host has no scripts bundle)."""
    return scripts.render_inline(
        "drift_probe",
        {"ROLE": node.role, "API": "1" if init else "0"},
        sudo=scripts.needs_sudo(node.ssh.user),
        root=False,
        helpers=False,
    )


def parse(stdout: str) -> Probe | None:
    """The probe's facts; None when its output is cut short (no `end=1`)."""
    values: dict[str, str] = {}
    differs: list[str] = []
    missing: list[str] = []
    nodes: dict[str, str] = {}
    for line in stdout.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key == "differs":
            differs.append(value)
        elif key == "missing":
            missing.append(value)
        elif key == "node":
            name, _, ready = value.partition(" ")
            nodes[name] = ready.strip() or "Unknown"
        else:
            values[key] = value
    if values.get("end") != "1":
        return None
    return Probe(
        unit=values.get("unit") == "yes",
        state=values.get("state", "unknown") or "unknown",
        version=values.get("version", ""),
        bundle=values.get("bundle") == "yes",
        applied=values.get("applied") == "yes",
        differs=tuple(differs),
        missing=tuple(missing),
        registered=nodes if values.get("api") == "yes" else None,
    )


def _file_name(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def reasons_for(node: Node, probe: Probe, applied_version: str | None) -> list[str]:
    """Why `node` drifted, from its own host's read (empty: it did not)."""
    service = "k3s" if node.role == "server" else "k3s-agent"
    if not probe.unit and not probe.version:
        return [REIMAGED]
    found: list[str] = []
    if not probe.unit:
        found.append(f"no {service} service unit")
    if probe.state != "active":
        found.append(f"{service} {probe.state}")
    if applied_version and probe.version and probe.version != applied_version:
        found.append(f"K3s {probe.version}, not the applied {applied_version}")
    elif not probe.version:
        found.append("no k3s binary")
    # A host without the record was installed by an older release: its files are unknown, not drift.
    if probe.applied:
        found += [f"{_file_name(p)} differs from the applied one" for p in probe.differs]
        found += [f"{_file_name(p)} is missing" for p in probe.missing]
        if not probe.bundle:
            found.append("the k3s-rancher scripts are missing")
    return found


def classify(
    nodes: Sequence[Node],
    answers: Mapping[str, Probe | str],
    init_server: str,
    applied_version: str | None,
) -> Verdict:
    """Each checked node's reasons (from its own read, and whether the init server's API lists
    it Ready) and a warning for each host that did not answer (a str: why). Unreachable is
    never drift."""
    verdict = Verdict()
    init = answers.get(init_server)
    registered = init.registered if isinstance(init, Probe) else None
    for node in nodes:
        answer = answers.get(node.name)
        if answer is None:
            continue
        if isinstance(answer, str):
            verdict.unreachable.append(node.name)
            verdict.warnings.append(
                f"k3s.driftCheck: {node.name} not checked: {answer}. Unreachable is not drift; nothing changes "
                f"for it, and only a step that must run on {node.name} fails (it cannot connect either)"
            )
            continue
        found = reasons_for(node, answer, applied_version)
        if found:
            verdict.reasons[node.name] = found
        elif registered is not None:
            # Its K3s runs what was applied: an install would change nothing, so not drift.
            if node.name not in registered:
                verdict.warnings.append(f"k3s.driftCheck: {node.name} is not registered in the API (its K3s is active)")
            elif registered[node.name] != "True":
                verdict.warnings.append(f"k3s.driftCheck: {node.name} is NotReady in the API (its K3s is active)")
    return verdict


def previous_repairs(outputs: Mapping[str, Any], name: str = REPAIRS_OUTPUT) -> dict[str, int]:
    """The `driftRepairs` (or `driftReimaged`) output of the previous run ({} without one)."""
    value = outputs.get(name)
    if not isinstance(value, Mapping):
        return {}
    return {str(k): int(v) for k, v in value.items() if isinstance(v, int | float) and int(v) > 0}


def next_repairs(previous: Mapping[str, int], drifted: Iterable[str], names: Iterable[str]) -> dict[str, int]:
    """Each current node's marker: the previous one, one more for a drifted node. Sticky: a
    node that does not drift keeps its number, so its install's inputs do not change."""
    drifted = set(drifted)
    result: dict[str, int] = {}
    for name in names:
        n = previous.get(name, 0) + (1 if name in drifted else 0)
        if n:
            result[name] = n
    return result


def checked_nodes(nodes: Sequence[Node], previous: Sequence[tuple[str, str, str]]) -> list[Node]:
    """The nodes the previous run installed, with the same role: a new node has nothing to drift from."""
    known = {(name, role) for name, role, _ in previous}
    return [n for n in nodes if (n.name, n.role) in known]


def next_reimaged(
    previous: Mapping[str, int], repairs: Mapping[str, int], reimaged: Iterable[str], names: Iterable[str]
) -> dict[str, int]:
    """Each current node's reimage marker: the repair number at which its host was last found
    without K3s. Sticky, like the repair number."""
    found = set(reimaged)
    result: dict[str, int] = {}
    for name in names:
        n = repairs.get(name, 0) if name in found else previous.get(name, 0)
        if n:
            result[name] = n
    return result


@dataclass(frozen=True)
class Markers:
    """What the graph gets (per node, its repair number and its reimage marker) and what the
    run says about drifted nodes."""

    repairs: dict[str, int] = field(default_factory=dict)
    reimaged: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def markers(
    verdict: Verdict | None,
    outputs: Mapping[str, Any],
    names: Sequence[str],
    init_server: str,
    servers: int,
) -> Markers:
    """The markers after `verdict` (None: the check is off, they stay as the previous run left
    them). The init server of several servers found reimaged is named, not repaired: its
    install would start a new cluster (cluster-init) beside the others. Only other nodes are
    forgotten on a reimage: the init server's API went with its host."""
    previous, previous_reimaged = previous_repairs(outputs), previous_repairs(outputs, REIMAGED_OUTPUT)
    if verdict is None:
        return Markers(next_repairs(previous, (), names), next_reimaged(previous_reimaged, {}, (), names))
    drifted = dict(verdict.reasons)
    said: list[str] = []
    if init_server in verdict.reimaged and servers > 1:
        del drifted[init_server]
        said.append(
            f"drift: {init_server}: {REIMAGED}; not repaired: it is the init server, whose install would start "
            "a new cluster. Set k3s.initServer to a server that runs, then run up again"
        )
    said += [
        f"drift: {name}: {'; '.join(found)} (up re-runs its install to repair it)" for name, found in drifted.items()
    ]
    repairs = next_repairs(previous, drifted, names)
    reimaged = [name for name in verdict.reimaged if name != init_server and name in drifted]
    return Markers(repairs, next_reimaged(previous_reimaged, repairs, reimaged, names), said)


# Said once per run with the check off (only for a stack with SSH nodes installed before).
OFF_NOTICE = (
    "k3s.driftCheck is off: the hosts were not read, so a stopped K3s, a hand-edited config or a "
    "reimaged host does not show in this plan (set k3s.driftCheck to true to read each node once per run)"
)
