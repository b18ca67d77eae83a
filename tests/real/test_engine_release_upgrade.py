"""Tier 2, upgrading k3s-rancher itself (issue 22 items 5 and 6): a cluster made by the last
release from before the scripts bundle (releases.toml: 0.1.0, commit 35e7bbc) is taken over by
this checkout's program, on the same stack, state backend and test hosts (1 server, 2 agents,
k3s.upgrade one agent at a time), through the real engine with the STAND-IN k3s.

In order, on one cluster (each test needs the one before):
(b) the migration's preview plans only updates, the `<node>-scripts` creates (and the
    `-cleanup` ones, retained: see (c)) and the deletes of the steps releases.toml retires:
    nothing is replaced;
(c) its up restarts no K3s (the units' InvocationIDs), cordons and drains nothing (the
    stand-in's record of every cordon, uncordon and drain), leaves the bundle on every host
    (the agents' -cordon, -upgrade and -rejoin steps, which 0.3.0 retires, are deleted and run
    nothing); a second preview plans only the deletes of the `-cleanup` steps it registered,
    retained, and once that up ran (restarting nothing) a third plans nothing;
(d) a code-only change (a line appended to lib.sh) plans only the `-scripts` updates, and its
    up restarts nothing;
(e) a real change (an agent flag) runs on the new code: each agent's install restarts K3s
    once, in its own batch, cordoned and drained while it restarts and uncordoned after.

K3SR_RELEASE_UPGRADE_RECORD=<file> writes the migration's preview (its counts per operation
and the plain `pulumi preview` a user sees) and each phase's wall time there.
"""

from __future__ import annotations

import collections
import json
import subprocess
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from components import bundle
from tests.real.engine_project import ROOT, EngineProject, program_copy, stand_in_cluster, timed, write_record

pytestmark = pytest.mark.real

V1 = "v1.33.5+k3s1"
UPGRADE = {"upgrade": {"agentsAtOnce": 1}}  # two batches: agt-1, then agt-2
AGENT_FLAG = "--kubelet-arg=max-pods=120"
NODES = ("srv-1", "agt-1", "agt-2")  # hosts[0..2]
UNITS = ("k3s", "k3s-agent", "k3s-agent")
CORDON_MARK = "k3s-rancher.io/cordoned-for-upgrade"
# An agent's own rollout steps before 0.3.0 (its install does their work since).
ROLLOUT_STEPS = ("-cordon", "-upgrade", "-rejoin")
# Operations that would touch a node beyond running a command again.
FORBIDDEN = {"replace", "create-replacement", "delete-replaced", "delete", "discard", "read-replacement"}
# Used when releases.toml is not there: the first release (issue 22).
FIRST_RELEASE = ("0.1.0", "35e7bbc89cca8927ffb8fe6183f4ac4a3780cc76")


def releases() -> list[dict[str, Any]]:
    """releases.toml's releases, newest first ([] without the file)."""
    path = ROOT / "releases.toml"
    return list(tomllib.loads(path.read_text()).get("release", [])) if path.exists() else []


def previous_release() -> tuple[str, str]:
    """(version, commit) of the newest release in releases.toml from before the scripts bundle
    (its commit has no components/bundle.py): the migration this file proves is the one from
    such a release. Else the first release. Releases made since go through the same graph
    checks under mocks (tests/test_releases.py) and through (d) here."""
    for release in releases():
        commit = str(release.get("commit") or "")
        if not commit:
            continue
        has_bundle = subprocess.run(
            ["git", "-C", str(ROOT), "cat-file", "-e", f"{commit}:components/bundle.py"], capture_output=True
        )
        if has_bundle.returncode != 0:
            return str(release["version"]), commit
    return FIRST_RELEASE


def allowed_creates(previous: str, key: str = "creates") -> set[str]:
    """Name suffixes of what the upgrade from `previous` may create on an existing stack: the
    `creates` of every release after it (releases.toml), and the `-scripts` steps; with `key`
    "retires", what it may delete (commands without a delete: nothing runs for them)."""
    suffixes = {"-scripts"} if key == "creates" else set()
    for release in releases():
        if release.get("version") == previous:
            break
        suffixes |= set(release.get(key, []))
    return suffixes


def export_program(commit: str, directory: Path) -> Path:
    """The program files of `commit` (git archive), or a failure that says how to get them."""
    known = subprocess.run(
        ["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=ROOT, capture_output=True, check=False
    )
    if known.returncode != 0:
        pytest.fail(
            f"release commit {commit} is not in this clone (a shallow checkout? fetch the history: "
            "git fetch --unshallow, or actions/checkout with fetch-depth: 0)",
            pytrace=False,
        )
    directory.mkdir(parents=True)
    # schema/: where releases before 0.3.0 kept the config schema (now components/data/).
    paths = [
        path
        for path in ("__main__.py", "Pulumi.yaml", "components", "schema")
        if subprocess.run(["git", "cat-file", "-e", f"{commit}:{path}"], cwd=ROOT, capture_output=True).returncode == 0
    ]
    archive = subprocess.run(
        ["git", "archive", "--format=tar", commit, *paths],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=60,
    )
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive.stdout, check=True, timeout=60)
    return directory


@dataclass
class Upgrade:
    previous: EngineProject  # the stack, run with the previous release's program
    head: EngineProject  # the same stack, this checkout's program
    hosts: list[Any]
    tmp: Path
    binary: Path
    release: tuple[str, str]
    invocations: list[str]  # after the previous release's up
    starts: list[int]
    record: dict[str, Any] = field(default_factory=dict)
    code_only: EngineProject | None = None


def invocations(hosts: list[Any]) -> list[str]:
    """Each host's K3s unit's InvocationID: systemd gives a new one at every (re)start."""
    return [h.exec(f"systemctl show -p InvocationID --value {u}").strip() for h, u in zip(hosts, UNITS, strict=True)]


def starts(hosts: list[Any]) -> list[int]:
    return [h.unit_starts(u) for h, u in zip(hosts, UNITS, strict=True)]


def cordon_log(hosts: list[Any]) -> list[dict[str, Any]]:
    """Every kubectl cordon, uncordon and drain the cluster's real API server has seen (its
    audit log, tests/real/host_api.py cordon_log)."""
    log: list[dict[str, Any]] = hosts[0].api.cordon_log()
    return log


def node_states(hosts: list[Any]) -> dict[str, tuple[bool, str | None]]:
    """Node name -> (unschedulable, k3s-rancher's cordon annotation), from the API."""
    items = json.loads(hosts[0].exec("k3s kubectl get nodes -o json"))["items"]
    return {
        n["metadata"]["name"]: (bool(n["spec"].get("unschedulable")), n["metadata"]["annotations"].get(CORDON_MARK))
        for n in items
    }


def planned(project: EngineProject) -> tuple[dict[str, str], dict[str, Any]]:
    """`pulumi preview --json`: (resource name -> op, the whole answer). Its steps list leaves
    out the resources that stay the same (but the stack): look names up with .get(name, "same")."""
    answer: dict[str, Any] = json.loads(project.pulumi("preview", "--json", timeout=600).stdout)
    return {s["urn"].rsplit("::", 1)[1]: s["op"] for s in answer.get("steps", [])}, answer


def changes(ops: dict[str, str]) -> dict[str, str]:
    return {name: op for name, op in ops.items() if op != "same"}


def step_logs(project: EngineProject) -> dict[str, str]:
    """Each command's output in the state (stdout then stderr of its last run); secret
    outputs as the state holds them (ciphertext)."""
    deployment = json.loads(project.pulumi("stack", "export", timeout=120).stdout)["deployment"]
    logs = {}
    for resource in deployment.get("resources", []):
        outputs = resource.get("outputs") or {}
        if resource["type"].startswith("command:remote:"):
            logs[resource["urn"].rsplit("::", 1)[1]] = f"{outputs.get('stdout', '')}\n{outputs.get('stderr', '')}"
    return logs


def bundle_on(host: Any) -> str:
    """The digest of the bundle in current/, after checking it is root's and whole."""
    current = bundle.CURRENT
    owners = set(host.exec(f"stat -c '%U %G' {current} {current}/*").split("\n")[:-1])
    assert owners == {"root root"}, owners
    assert host.exec(f"cd {current} && sha256sum -c --quiet MANIFEST && echo whole").strip() == "whole"
    return host.exec(f"cat {current}/BUNDLE_SHA256").strip()


def window(host: Any) -> tuple[float, float]:
    """(old K3s stopped, new K3s running) of the agent's last restart, in s of CLOCK_MONOTONIC."""
    props = ("InactiveEnterTimestampMonotonic", "ActiveEnterTimestampMonotonic")
    values = dict(
        line.split("=", 1) for line in host.exec(f"systemctl show -p {props[0]} -p {props[1]} k3s-agent").split()
    )
    return int(values[props[0]]) / 1e6, int(values[props[1]]) / 1e6


@pytest.fixture(scope="module")
def upgrade(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upgrade]:
    """(a) `pulumi up` of the previous release's program: the cluster as its users have it."""
    tmp = tmp_path_factory.mktemp("release-upgrade")
    release = previous_release()
    old_tree = export_program(release[1], tmp / "previous-release")
    record: dict[str, Any] = {"previous release": f"{release[0]} ({release[1]})"}
    started = time.perf_counter()
    with stand_in_cluster(tmp, 3, 1, V1, UPGRADE, source=old_tree) as (previous, hosts, binary):
        record["wall seconds"] = {"(a) hosts + up with the previous release": round(time.perf_counter() - started, 1)}
        assert not (hosts[0].exec(f"ls -d {bundle.HOST_ROOT} 2>/dev/null || true").strip())  # no bundle then
        head = program_copy(previous, ROOT, tmp / "head")
        state = Upgrade(previous, head, hosts, tmp, binary, release, invocations(hosts), starts(hosts), record)
        assert all(state.invocations), state.invocations
        assert cordon_log(hosts) == []  # a first up cordons nothing
        try:
            yield state
        finally:
            write_record(record, "K3SR_RELEASE_UPGRADE_RECORD")


def test_b_the_migration_preview_updates_node_commands_and_creates_the_scripts_steps(upgrade: Upgrade) -> None:
    ops, answer = timed(upgrade.record, "(b) preview --json with HEAD", lambda: planned(upgrade.head))
    counts = collections.Counter(ops.values())
    upgrade.record["(b) migration preview: changeSummary (resources per operation)"] = answer.get("changeSummary")
    upgrade.record["(b) migration preview: changed resources"] = dict(sorted(changes(ops).items()))
    plain = upgrade.head.pulumi("preview", timeout=600).stdout
    upgrade.record["(b) migration preview: what pulumi preview prints"] = plain
    # Deletes: only the steps releases.toml retires (tests/test_releases.py: none has a delete).
    retired = allowed_creates(upgrade.release[0], "retires")
    deleted = {name for name, op in ops.items() if op == "delete"}
    assert {name for name in deleted if not any(name.endswith(s) for s in retired)} == set(), deleted
    assert not FORBIDDEN - {"delete"} & set(counts), counts
    # Creates: each node's `-scripts` step, and only what releases.toml says an upgrade from
    # the previous release creates.
    created = {name for name, op in ops.items() if op == "create"}
    allowed = allowed_creates(upgrade.release[0])
    upgrade.record["(b) creates releases.toml allows"] = sorted(allowed)
    assert {f"{n}-scripts" for n in NODES} <= created
    assert {name for name in created if not any(name.endswith(s) for s in allowed)} == set(), created
    # Every node's install updates (its text is now an entry point); the installs are what runs
    # during the migration. The agents' -cordon, -upgrade and -rejoin steps go (0.3.0: the
    # agent's install does their work, in its batch): deletes, and nothing else of theirs.
    for node in NODES:
        assert ops[f"{node}-install"] == "update", node
    rollout_steps = {name: op for name, op in ops.items() if name.endswith(ROLLOUT_STEPS)}
    assert rollout_steps == {f"{a}{step}": "delete" for a in NODES[1:] for step in ROLLOUT_STEPS}, rollout_steps


def test_c_the_migration_up_restarts_cordons_and_replaces_nothing(upgrade: Upgrade) -> None:
    hosts = upgrade.hosts
    out = timed(
        upgrade.record, "(c) up with HEAD (the migration)", lambda: upgrade.head.pulumi("up", "--yes", "--skip-preview")
    )
    upgrade.record["(c) migration up: its summary"] = out.stdout[out.stdout.rfind("Resources:") :]
    assert invocations(hosts) == upgrade.invocations  # no K3s restarted
    assert starts(hosts) == upgrade.starts
    assert cordon_log(hosts) == []  # nothing cordoned, drained or uncordoned, even briefly
    # What the steps said: every install found its node as desired.
    logs = step_logs(upgrade.head)
    upgrade.record["(c) migration up: what the install steps said"] = {
        name: [line for line in text.splitlines() if line.startswith("k3s-rancher")]
        for name, text in sorted(logs.items())
        if name.endswith("-install")
    }
    for node in NODES:
        assert "starting k3s" not in logs[f"{node}-install"], logs[f"{node}-install"]
        assert f"installed on {node}" in logs[f"{node}-install"], logs[f"{node}-install"]
    for agent in NODES[1:]:
        assert "cordon" not in logs[f"{agent}-install"], logs[f"{agent}-install"]
    assert not [name for name in logs if name.endswith(ROLLOUT_STEPS)], sorted(logs)
    assert node_states(hosts) == {n: (False, None) for n in NODES}
    expected = bundle.make_bundle(upgrade.head.directory / "components" / "sh").sha256
    assert [bundle_on(h) for h in hosts] == [expected] * 3
    assert [h.exec("ls /var/lib/k3s-rancher/restart-pending 2>/dev/null || true").strip() for h in hosts] == [""] * 3
    # The migration registered each node's `-cleanup` step (a stack of 0.1.0 or 0.2.0: the
    # program cannot tell them apart), retained from the start, and recorded it retired: the
    # next run drops them, and their leaving runs nothing (tests/real/test_engine_retired_steps.py).
    ops, _ = timed(upgrade.record, "(c) second preview", lambda: planned(upgrade.head))
    assert changes(ops) == {f"{n}-cleanup": "delete" for n in NODES}
    timed(upgrade.record, "(c) second up", lambda: upgrade.head.pulumi("up", "--yes", "--skip-preview"))
    assert invocations(hosts) == upgrade.invocations
    assert [bundle_on(h) for h in hosts] == [expected] * 3
    timed(upgrade.record, "(c) third preview", lambda: upgrade.head.pulumi("preview", "--expect-no-changes"))


def test_d_a_code_only_change_updates_only_the_scripts_steps_and_restarts_nothing(upgrade: Upgrade) -> None:
    hosts = upgrade.hosts
    code = program_copy(upgrade.previous, ROOT, upgrade.tmp / "code-only")
    with (code.directory / "components" / "sh" / "lib.sh").open("a") as lib:
        lib.write("\n# A harmless line (tests/real/test_engine_release_upgrade.py): a code-only change.\n")
    upgrade.code_only = code
    ops, _ = timed(upgrade.record, "(d) preview --json, code-only change", lambda: planned(code))
    upgrade.record["(d) code-only change: changed resources"] = dict(sorted(changes(ops).items()))
    assert changes(ops) == {f"{n}-scripts": "update" for n in NODES}
    timed(upgrade.record, "(d) up, code-only change", lambda: code.pulumi("up", "--yes", "--skip-preview"))
    assert invocations(hosts) == upgrade.invocations
    assert starts(hosts) == upgrade.starts
    assert cordon_log(hosts) == []
    expected = bundle.make_bundle(code.directory / "components" / "sh").sha256
    assert [bundle_on(h) for h in hosts] == [expected] * 3
    assert "a code-only change" in hosts[1].exec(f"tail -n 1 {bundle.CURRENT}/lib.sh")


def test_e_a_real_change_runs_the_new_code_one_agent_batch_at_a_time(upgrade: Upgrade) -> None:
    hosts = upgrade.hosts
    code = upgrade.code_only
    assert code is not None, "needs the code-only change's program (test_d)"
    code.configure(hosts, 1, V1, upgrade.binary, k3s={**UPGRADE, "agentArgs": [AGENT_FLAG]})
    ops, _ = timed(upgrade.record, "(e) preview --json, agentArgs added", lambda: planned(code))
    upgrade.record["(e) real change: changed resources"] = dict(sorted(changes(ops).items()))
    assert not FORBIDDEN & set(ops.values()), ops
    for agent in NODES[1:]:
        assert ops[f"{agent}-install"] == "update", agent
    assert ops.get("srv-1-install", "same") == "same" and not any(n.endswith("-scripts") for n in changes(ops))
    assert not [name for name in ops if name.endswith(ROLLOUT_STEPS)], ops
    before = cordon_log(hosts)
    timed(upgrade.record, "(e) up, agentArgs added", lambda: code.pulumi("up", "--yes", "--skip-preview"))
    now = invocations(hosts)
    assert now[0] == upgrade.invocations[0]  # the server: untouched
    assert all(now[i] != upgrade.invocations[i] for i in (1, 2)), now
    assert starts(hosts) == [upgrade.starts[0], upgrade.starts[1] + 1, upgrade.starts[2] + 1]  # once each
    for host in hosts[1:]:
        # In config.yaml, as `kubelet-arg+: [max-pods=120]` (not the installer's arguments).
        assert "max-pods=120" in host.exec("cat /etc/rancher/k3s/config.yaml")
        assert "max-pods" not in host.exec("cat /etc/systemd/system/k3s-agent.service")
        assert host.exec("ls /var/lib/k3s-rancher/restart-pending 2>/dev/null || true").strip() == ""
    # (each listing of the agent's pods is a `drain` record: one run of them counts as one)
    seen = cordon_log(hosts)[len(before) :]
    pairs = [(r["node"], r["verb"]) for r in seen]
    log = [r for i, r in enumerate(seen) if i == 0 or pairs[i] != pairs[i - 1]]
    assert [(r["node"], r["verb"]) for r in log] == [
        ("agt-1", "cordon"), ("agt-1", "drain"), ("agt-1", "uncordon"),
        ("agt-2", "cordon"), ("agt-2", "drain"), ("agt-2", "uncordon"),
    ]  # fmt: skip
    # Each agent's K3s stopped after its cordon and ran again before its uncordon; the second
    # batch began only once the first agent was back.
    for index, host in ((0, hosts[1]), (3, hosts[2])):
        stopped, running = window(host)
        assert log[index]["monotonic"] < stopped < running < log[index + 2]["monotonic"], (log, stopped, running)
    assert log[2]["monotonic"] < log[3]["monotonic"]
    assert node_states(hosts) == {n: (False, None) for n in NODES}
    logs = step_logs(code)
    for agent in NODES[1:]:
        said = logs[f"{agent}-install"]
        for line in (f"node {agent} cordoned for its upgrade", f"{agent}: K3s (k3s-agent) restarted"):
            assert line in said, said
        assert f"node {agent} is back: Ready at {V1} and uncordoned" in said, said
