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
        return ["no K3s (reimaged?)"]
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
            verdict.warnings.append(f"k3s.driftCheck: {node.name} not checked: {answer}")
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


def previous_repairs(outputs: Mapping[str, Any]) -> dict[str, int]:
    """The `driftRepairs` output of the previous run ({} without one)."""
    value = outputs.get(REPAIRS_OUTPUT)
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
