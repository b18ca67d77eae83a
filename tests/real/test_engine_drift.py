"""Tier 2, k3s.driftCheck (issue 25): drift on the hosts as an operator makes it, through the
real engine on test hosts (one server and two agents of the K3s stand-in, a real Kubernetes
API). Each test drifts one thing, reads what `pulumi preview` says, runs `up`, checks the
host, and ends with a no-op preview, so the tests run in file order on one cluster:

- nothing drifted: a no-op `up` that opens one SSH session per node (sshd's journal);
- the check off: nothing read (no SSH session), one notice that it is off;
- `systemctl stop k3s-agent` on an agent, `systemctl stop k3s` on the server;
- config.yaml edited by hand: restored, K3s restarted once;
- a wiped agent (K3s uninstalled, /etc/rancher and our record gone): installed again, its
  new node password accepted (its Node and node-password Secret deleted first);
- an unreachable agent (`docker stop`): a warning and exit 0; `up` fails only when it must
  change that agent.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.real.engine_project import EngineProject, stand_in_cluster
from tests.real.test_engine_real_api import ready_status, unit_state

pytestmark = pytest.mark.real

V1 = "v1.33.5+k3s1"
K3S: dict[str, Any] = {"driftCheck": True, "upgrade": {"agentsAtOnce": 1}}
NODES = ("srv-1", "agt-1", "agt-2")
OFF_NOTICE = "k3s.driftCheck is off"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EngineProject, list[Any], Path]]:
    tmp = tmp_path_factory.mktemp("drift")
    with stand_in_cluster(tmp, 3, 1, V1, K3S) as (project, hosts, binary):
        yield project, hosts, binary


def plan(project: EngineProject) -> tuple[set[str], list[str]]:
    """What `pulumi preview` plans: the names of the steps that change, and its warnings."""
    digest = json.loads(project.pulumi("preview", "--json").stdout)
    changed = {s["urn"].rsplit("::", 1)[1] for s in digest.get("steps", []) if s["op"] != "same"}
    # A message may carry the CLI's colour tags and its "warning: " prefix: compare by substring.
    warnings = [d["message"].strip() for d in digest.get("diagnostics", []) if d.get("severity") == "warning"]
    return changed, warnings


def said(warnings: list[str], text: str) -> bool:
    return any(text in w for w in warnings)


def owners(changed: set[str]) -> set[str]:
    """The nodes whose steps are among `changed`."""
    return {node for node in NODES for name in changed if name.startswith(f"{node}-")}


def named_in_preview(project: EngineProject, node: str, reason: str, steps: AbstractSet[str] = frozenset()) -> None:
    """The preview warns `drift: <node>: <reason>` and changes `steps` (at least), all of them `node`'s."""
    changed, warnings = plan(project)
    assert said(warnings, f"drift: {node}: {reason} (up re-runs its install to repair it)"), warnings
    assert steps <= changed, changed
    assert owners(changed) == {node}, changed


def sessions(host: Any) -> int:
    """SSH sessions sshd accepted on `host` since it booted (its journal)."""
    out = host.exec("journalctl --no-pager -o cat _COMM=sshd 2>/dev/null || true")
    return sum(1 for line in out.splitlines() if line.startswith("Accepted publickey for "))


def step_stderr(project: EngineProject, name: str) -> str:
    """The stderr the last run of step `name` left in the state (its script's log lines)."""
    resources = json.loads(project.pulumi("stack", "export").stdout)["deployment"]["resources"]
    for r in resources:
        if r["urn"].endswith(f"::{name}"):
            return str((r.get("outputs") or {}).get("stderr", ""))
    raise AssertionError(f"no step {name} in the state")


def set_labels(project: EngineProject, agent: str, labels: dict[str, str] | None) -> None:
    """Give (None: take away) `agent`'s labels in the stack's config file."""
    path = project.directory / "stacks" / f"Pulumi.{project.stack}.yaml"
    stack = yaml.safe_load(path.read_text())
    for node in stack["config"]["k3s-rancher:agents"]:
        if node["name"] == agent:
            if labels is None:
                node.pop("labels", None)
            else:
                node["labels"] = labels
    path.write_text(yaml.safe_dump(stack))


def test_nothing_drifted_up_changes_nothing_and_opens_one_session_per_node(
    cluster: tuple[EngineProject, list[Any], Path],
) -> None:
    """Also with its preview: the update takes the preview's read (components/drift_reuse.py)."""
    project, hosts, _ = cluster
    for args in (("--skip-preview",), ()):
        before = [sessions(h) for h in hosts]
        result = project.pulumi("up", "--yes", *args, "--expect-no-changes")
        assert "drift:" not in result.stdout, result.stdout
        assert [sessions(h) - b for h, b in zip(hosts, before, strict=True)] == [1, 1, 1], args


def test_check_off_reads_no_host_and_says_so_once(cluster: tuple[EngineProject, list[Any], Path]) -> None:
    project, hosts, binary = cluster
    project.configure(hosts, 1, V1, binary, k3s={**K3S, "driftCheck": False})
    hosts[1].exec("systemctl stop k3s-agent")
    try:
        before = [sessions(h) for h in hosts]
        project.pulumi("preview", "--expect-no-changes")  # today's behaviour: blind to it
        digest = json.loads(project.pulumi("preview", "--json").stdout)
        assert [sessions(h) for h in hosts] == before
        notices = [d for d in digest.get("diagnostics", []) if OFF_NOTICE in d["message"]]
        assert len(notices) == 1 and notices[0]["severity"] == "info", notices
        assert not [d for d in digest.get("diagnostics", []) if "drift:" in d["message"]]
    finally:
        hosts[1].exec("systemctl start k3s-agent")
        project.configure(hosts, 1, V1, binary, k3s=K3S)
    project.pulumi("preview", "--expect-no-changes")


def test_a_stopped_agent_is_named_in_preview_and_started_by_up_without_a_drain(
    cluster: tuple[EngineProject, list[Any], Path],
) -> None:
    project, hosts, _ = cluster
    srv, agt = hosts[0], hosts[1]
    agt.exec("systemctl stop k3s-agent")
    print(project.pulumi("preview").stdout)  # the README's example
    named_in_preview(project, "agt-1", "k3s-agent inactive", {"agt-1-install", "agt-1-scripts"})
    seen = len(srv.api.cordon_log())
    project.pulumi("up", "--yes", "--skip-preview")
    assert unit_state(agt, "k3s-agent") == "active"
    assert ready_status(srv.api, "agt-1") == "True"
    # Its K3s was stopped: its install, in its batch, started it without a cordon or drain
    # (the API server saw neither).
    assert srv.api.cordon_log()[seen:] == []
    install_log = step_stderr(project, "agt-1-install")
    assert "K3s (k3s-agent) is inactive; it is started without a cordon or drain" in install_log, install_log
    assert "cordoned" not in install_log, install_log
    project.pulumi("preview", "--expect-no-changes")


def test_a_stopped_server_is_named_in_preview_and_started_by_up(
    cluster: tuple[EngineProject, list[Any], Path],
) -> None:
    project, hosts, _ = cluster
    srv = hosts[0]
    srv.exec("systemctl stop k3s")
    named_in_preview(project, "srv-1", "k3s inactive", {"srv-1-install", "srv-1-scripts"})
    project.pulumi("up", "--yes", "--skip-preview")
    assert unit_state(srv, "k3s") == "active"
    assert ready_status(srv.api, "srv-1") == "True"
    project.pulumi("preview", "--expect-no-changes")


def test_a_hand_edited_config_is_restored_and_k3s_restarts_once(
    cluster: tuple[EngineProject, list[Any], Path],
) -> None:
    project, hosts, _ = cluster
    agt = hosts[2]
    config = "/etc/rancher/k3s/config.yaml"
    applied = agt.exec(f"sha256sum {config}")
    starts = agt.unit_starts("k3s-agent")
    agt.exec(f"echo '# edited by hand' >> {config}")
    named_in_preview(project, "agt-2", "config.yaml differs from the applied one")
    project.pulumi("up", "--yes", "--skip-preview")
    assert agt.exec(f"sha256sum {config}") == applied
    assert agt.unit_starts("k3s-agent") == starts + 1
    assert unit_state(agt, "k3s-agent") == "active"
    project.pulumi("preview", "--expect-no-changes")


def test_a_wiped_agent_is_installed_again_and_joins_with_its_new_node_password(
    cluster: tuple[EngineProject, list[Any], Path],
) -> None:
    project, hosts, _ = cluster
    srv, agt = hosts[0], hosts[1]
    old_password = agt.exec("cat /etc/rancher/node/password")
    # A reimaged host: K3s's uninstall, which leaves /etc/rancher/node (the node password) in
    # place, then what a new OS disk would not have either.
    agt.exec("/usr/local/bin/k3s-agent-uninstall.sh >/dev/null 2>&1; rm -rf /var/lib/k3s-rancher /etc/rancher")
    assert agt.exec_result("test -e /usr/local/bin/k3s")[0] != 0
    named_in_preview(project, "agt-1", "no K3s (reimaged?)", {"agt-1-forget", "agt-1-install", "agt-1-membership"})
    project.pulumi("up", "--yes", "--skip-preview")
    assert unit_state(agt, "k3s-agent") == "active"
    assert agt.exec("cat /etc/rancher/node/password") != old_password  # a new host's password, accepted
    assert ready_status(srv.api, "agt-1") == "True"
    assert "forgotten before its reimaged host is installed again" in step_stderr(project, "agt-1-forget")
    project.pulumi("preview", "--expect-no-changes")


def test_an_unreachable_agent_is_a_warning_and_fails_up_only_when_it_must_change(
    cluster: tuple[EngineProject, list[Any], Path],
) -> None:
    project, hosts, _ = cluster
    agt = hosts[2]
    agt.stop()  # connections to its SSH port are refused
    try:
        changed, warnings = plan(project)  # exit 0
        assert not changed
        assert said(warnings, "k3s.driftCheck: agt-2 not checked: no answer"), warnings
        assert not said(warnings, "drift: agt-2")
        project.pulumi("up", "--yes", "--skip-preview", "--expect-no-changes")  # nothing on agt-2 to do
        set_labels(project, "agt-2", {"tier": "edge"})  # a step on agt-2 must run now
        failed = project.pulumi("up", "--yes", "--skip-preview", check=False)
        assert failed.returncode != 0
        print(failed.stdout[-3000:])
        assert "agt-2-registration" in failed.stdout and "agt-2 not checked" in failed.stdout
    finally:
        set_labels(project, "agt-2", None)
        agt.start()
    deadline = time.monotonic() + 90
    while unit_state(agt, "k3s-agent") != "active" and time.monotonic() < deadline:  # it boots with the host
        time.sleep(1)
    project.pulumi("preview", "--expect-no-changes")
