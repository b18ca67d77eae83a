"""Tier 2, a retired step with a delete (issue 27): the `<node>-cleanup` steps of a cluster made
by release 0.2.0 (the release whose `creates` in releases.toml lists them; their delete runs the
uninstall of what a failed first install left) leave the stack without running that delete, on
the real Pulumi engine with the STAND-IN k3s and command provider. 1 server, 1 agent.

In order, on one cluster (each test needs the one before):
(a) the first up with this checkout's program registers each `-cleanup` unchanged but with
    retain_on_delete (the preview plans no change of theirs), records `retiredSteps:
    ["-cleanup"]`, and uninstalls nothing (K3s not even restarted); each install runs once
    more (0.3.0 touches nodes) and records its completion, which the `-scripts` steps'
    leftovers uninstall, the retired step's work, respects from then on;
(b) the next preview plans the cleanups' deletes and nothing else;
(c) that up drops them from the state and runs nothing on the hosts (K3s keeps running, its
    config stays); a preview after it plans nothing;
(d) destroy leaves no K3s and nothing of k3s-rancher on the hosts (the `-scripts` steps'
    deletes, which now also do the retired step's work).

K3SR_RETIRED_STEPS_RECORD=<file> writes the plans seen (plain `pulumi preview` output) and
each phase's wall time there.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from components.host_facts import INSTALLED_FILE
from tests.real.engine_project import ROOT, EngineProject, program_copy, stand_in_cluster, timed, write_record
from tests.real.test_engine_crash_safety import assert_no_k3s
from tests.real.test_engine_release_upgrade import changes, export_program, planned, releases, step_logs

pytestmark = pytest.mark.real

V1 = "v1.33.5+k3s1"
CLEANUP = "-cleanup"
NODES = ("srv-1", "agt-1")  # hosts[0], hosts[1]
UNITS = ("k3s", "k3s-agent")
CLEANUPS = {f"{n}{CLEANUP}" for n in NODES}
CONFIG = "/etc/rancher/k3s/config.yaml"


def cleanup_release() -> tuple[str, str]:
    """(version, commit) of the release that made the `-cleanup` steps (releases.toml)."""
    for release in releases():
        if CLEANUP in release.get("creates", []) and release.get("commit"):
            return str(release["version"]), str(release["commit"])
    pytest.fail(f"releases.toml names no released version that creates {CLEANUP} steps", pytrace=False)


@dataclass
class Retirement:
    head: EngineProject  # the stack made by the release, run with this checkout's program
    hosts: list[Any]
    invocations: list[str]  # after the release's up
    record: dict[str, Any] = field(default_factory=dict)


def invocations(hosts: list[Any]) -> list[str]:
    """Each host's K3s unit's InvocationID: systemd gives a new one at every (re)start."""
    return [h.exec(f"systemctl show -p InvocationID --value {u}").strip() for h, u in zip(hosts, UNITS, strict=True)]


def state(project: EngineProject) -> dict[str, dict[str, Any]]:
    """The stack's resources by name (pulumi stack export)."""
    deployment = json.loads(project.pulumi("stack", "export", timeout=120).stdout)["deployment"]
    return {r["urn"].rsplit("::", 1)[1]: r for r in deployment.get("resources") or []}


def cleanups(project: EngineProject) -> dict[str, bool]:
    """Each `-cleanup` resource in the state -> whether it is retained on delete."""
    return {name: bool(r.get("retainOnDelete")) for name, r in state(project).items() if name.endswith(CLEANUP)}


def retired_output(project: EngineProject) -> Any:
    return json.loads(project.pulumi("stack", "output", "--json").stdout).get("retiredSteps")


def assert_k3s_untouched(retirement: Retirement, what: str) -> None:
    """K3s runs on every host as the release's up left it: never restarted (so never
    uninstalled and installed again), its config in place."""
    hosts = retirement.hosts
    assert invocations(hosts) == retirement.invocations, what
    for host, unit in zip(hosts, UNITS, strict=True):
        assert host.exec(f"systemctl is-active {unit}", check=False).strip() == "active", (what, host.name)
        assert host.exec_result(f"test -f {CONFIG}")[0] == 0, (what, host.name)
    nodes = hosts[0].exec("k3s kubectl get nodes -o jsonpath='{.items[*].metadata.name}'").split()
    assert sorted(nodes) == sorted(NODES), (what, nodes)


@pytest.fixture(scope="module")
def retirement(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Retirement]:
    """`pulumi up` of the release's program: the cluster as its users have it, with cleanups."""
    tmp = tmp_path_factory.mktemp("retired-steps")
    version, commit = cleanup_release()
    old_tree = export_program(commit, tmp / "release")
    record: dict[str, Any] = {"release": f"{version} ({commit})"}
    started = time.perf_counter()
    with stand_in_cluster(tmp, len(NODES), 1, V1, source=old_tree) as (previous, hosts, _):
        record["wall seconds"] = {"hosts + up with the release": round(time.perf_counter() - started, 1)}
        # What the release left: a cleanup per node, not retained, and no record of retirement.
        assert cleanups(previous) == dict.fromkeys(CLEANUPS, False)
        assert retired_output(previous) is None
        head = program_copy(previous, ROOT, tmp / "head")
        retirement = Retirement(head, list(hosts), invocations(hosts), record)
        assert all(retirement.invocations), retirement.invocations
        try:
            yield retirement
        finally:
            write_record(record, "K3SR_RETIRED_STEPS_RECORD")


def test_a_the_first_up_retains_each_cleanup_and_uninstalls_nothing(retirement: Retirement) -> None:
    head, record = retirement.head, retirement.record
    ops, _ = timed(record, "(a) preview --json", lambda: planned(head))
    record["(a) first preview: changed resources"] = dict(sorted(changes(ops).items()))
    # retain_on_delete is no input: registering it changes nothing the engine plans.
    assert {name: ops.get(name, "same") for name in CLEANUPS} == dict.fromkeys(CLEANUPS, "same")
    assert not {"replace", "create-replacement", "delete-replaced"} & set(ops.values()), ops
    timed(record, "(a) up", lambda: head.pulumi("up", "--yes", "--skip-preview"))
    # The state keeps each cleanup, now retained (the engine wrote the changed option).
    assert cleanups(head) == dict.fromkeys(CLEANUPS, True)
    assert retired_output(head) == [CLEANUP]
    assert_k3s_untouched(retirement, "after the first up")


def test_a2_each_install_ran_again_and_recorded_its_completion(retirement: Retirement) -> None:
    """0.3.0 touches nodes: each install ran once more, and recorded its completion, so that
    from now on the `-scripts` steps' leftovers uninstall leaves these nodes alone; nothing
    was written in the SSH user's directory (where the commands run)."""
    logs = step_logs(retirement.head)
    for host, node in zip(retirement.hosts, NODES, strict=True):
        assert f"installed on {node}" in logs[f"{node}-install"], logs[f"{node}-install"]
        assert host.exec(f"cat {INSTALLED_FILE}").strip() == ("server" if node.startswith("srv") else "agent")
        assert host.exec("ls ~ubuntu").split() == [], (node, host.exec("ls -la ~ubuntu"))


def test_b_the_next_preview_plans_only_the_cleanups_deletes(retirement: Retirement) -> None:
    head, record = retirement.head, retirement.record
    ops, answer = timed(record, "(b) preview --json", lambda: planned(head))
    record["(b) second preview: changeSummary"] = answer.get("changeSummary")
    record["(b) second preview: what pulumi preview prints"] = head.pulumi("preview", timeout=600).stdout
    assert changes(ops) == dict.fromkeys(CLEANUPS, "delete")


def test_c_their_leaving_runs_nothing_and_then_nothing_is_left_to_do(retirement: Retirement) -> None:
    head, record = retirement.head, retirement.record
    out = timed(record, "(c) up", lambda: head.pulumi("up", "--yes", "--skip-preview")).stdout
    record["(c) up: its summary"] = out[out.rfind("Resources:") :]
    assert cleanups(head) == {}
    assert retired_output(head) == [CLEANUP]
    assert_k3s_untouched(retirement, "after the cleanups left")
    timed(record, "(c) preview --expect-no-changes", lambda: head.pulumi("preview", "--expect-no-changes"))


def test_d_destroy_leaves_the_hosts_clean(retirement: Retirement) -> None:
    timed(retirement.record, "(d) destroy", lambda: retirement.head.pulumi("destroy", "--yes", "--skip-preview"))
    for host, node in zip(retirement.hosts, NODES, strict=True):
        assert_no_k3s(host, f"{node}'s host after destroy")
