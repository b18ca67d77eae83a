"""A rolled agent's in-place update: its install's update (install_script(..., roll=True),
RESTART=roll), which writes the files, then runs sh/rollout.sh (sourced by sh/install_node.sh)
on the agent, with the node's own credentials: cordon, drain through the Eviction API,
restart, Ready at the version, uncordon, only when a restart is owed (its files changed, or
an earlier run left one owed); an operator's cordon is never lifted, a budget that allows no
disruption stops it before the restart, and a run killed half-way is finished by the next
one. The sandbox's kubectl answers as K3s's API server answers a node (standins.py)."""

from __future__ import annotations

import dataclasses
import subprocess
from typing import Any

from components import scripts
from components.host_facts import KUBELET_KUBECONFIG, RESTART_PENDING_FILE
from components.settings import K3sSettings, Node
from tests.scripts.awkward import TOKEN, awkward_config, settings_for
from tests.scripts.sandbox import Sandbox, needs_sandbox, stdin

MARK = "k3s-rancher.io/cordoned-for-upgrade"
UPGRADED = "v1.33.6+k3s1"  # one patch after awkward_config's k3s.version


def _agent(
    box: Sandbox, *, owed: bool = True, state: str = "active", config: dict[str, Any] | None = None, **k3s_changes: Any
) -> tuple[Node, K3sSettings]:
    """Agent w1 of the awkward config (or `config`), installed at its k3s.version, and the
    settings its rolled update runs with: k3s.version one patch newer when `owed` (a new binary:
    the update owes a restart), else as installed, with `k3s_changes`. Its K3s is active (or
    `state`), its kubelet's kubeconfig in place and its Node Ready at the update's version, with
    three pods: a Deployment's, a DaemonSet's and a static pod's mirror (and another node's).
    The first install's kubectl and systemctl calls are left out of the records."""
    s = settings_for(config or awkward_config())
    agent = s.agents[0]
    installed = box.run(scripts.install_script(agent, s.k3s, first_server=False), stdin())
    assert installed.returncode == 0, installed.stderr
    assert not box.path(RESTART_PENDING_FILE).exists()
    k3s = dataclasses.replace(s.k3s, version=UPGRADED if owed else s.k3s.version, **k3s_changes)
    box.put(KUBELET_KUBECONFIG, f"# client-kubelet.crt: CN=system:node:{agent.name}\n", 0o600)
    for kind in ("k3s", "systemctl"):
        (box.log / f"{kind}.jsonl").unlink(missing_ok=True)
    box.set_state(
        nodes={agent.name: f"{k3s.version} True", "w2": f"{k3s.version} True"},
        services={"k3s-agent": {"state": state}},
        pods=[
            {"namespace": "shop", "name": "web-1", "node": agent.name, "owner": "ReplicaSet"},
            {"namespace": "kube-system", "name": "svclb-1", "node": agent.name, "owner": "DaemonSet"},
            {"namespace": "kube-system", "name": "static-w1", "node": agent.name, "mirror": "abc123"},
            {"namespace": "shop", "name": "web-2", "node": "w2", "owner": "ReplicaSet"},
        ],
    )
    return agent, k3s


def _roll(box: Sandbox, agent: Node, k3s: K3sSettings) -> subprocess.CompletedProcess[str]:
    """The agent's rolled update, as its install's update runs it."""
    return box.run(scripts.install_script(agent, k3s, first_server=False, roll=True), stdin())


def _calls(box: Sandbox) -> list[list[str]]:
    """Each kubectl call's arguments, after asserting it used the node's own kubeconfig (the
    install's `k3s --version`, its upgrade-path check, aside)."""
    records = [r for r in box.records("k3s") if r["argv"] != ["--version"]]
    assert all(r["argv"][:3] == ["kubectl", "--kubeconfig", KUBELET_KUBECONFIG] for r in records), records
    return [r["argv"][3:] for r in records]


def _restarts(box: Sandbox) -> int:
    return len(box.systemctl("restart"))


def _in_order(text: str, *lines: str) -> bool:
    """Each of `lines` is in `text`, in this order."""
    at = [text.find(line) for line in lines]
    return -1 not in at and at == sorted(at)


@needs_sandbox
def test_an_owed_restart_is_cordoned_drained_restarted_and_uncordoned_with_the_nodes_own_credentials(
    box: Sandbox,
) -> None:
    agent, k3s = _agent(box)
    result = _roll(box, agent, k3s)
    assert result.returncode == 0, result.stderr
    assert UPGRADED in box.path("/usr/local/bin/k3s").read_text()  # the files first
    calls = _calls(box)
    verbs = [c[0] for c in calls]
    # Mark and cordon before the drain; uncordon and unmark after the restart.
    assert verbs.index("annotate") < verbs.index("cordon") < verbs.index("create")
    assert verbs[-2:] == ["uncordon", "annotate"]
    assert _in_order(
        result.stderr,
        "node w1 cordoned for its upgrade",
        "node w1 drained",
        "starting k3s-agent on w1",
        f"node w1 is back: Ready at {UPGRADED} and uncordoned",
        f"K3s {UPGRADED} installed on w1",
    )
    # Only its Deployment pod was evicted: DaemonSet and static pods stay, another node's too.
    assert box.state()["evicted"] == ["shop/web-1"]
    assert {p["name"] for p in box.state()["pods"]} == {"svclb-1", "static-w1", "web-2"}
    assert _restarts(box) == 1 and not box.path(RESTART_PENDING_FILE).exists()
    assert box.state()["cordoned"] == [] and box.state()["marks"][agent.name] == {}
    assert TOKEN not in result.stderr + result.stdout


@needs_sandbox
def test_nothing_owed_cordons_drains_and_restarts_nothing_and_keeps_an_operators_cordon(box: Sandbox) -> None:
    agent, k3s = _agent(box, owed=False)
    box.set_state(cordoned=[agent.name])  # cordoned by hand
    result = _roll(box, agent, k3s)
    assert result.returncode == 0, result.stderr
    assert [c[0] for c in _calls(box)] == ["get"]  # only: is there a cordon of ours to finish?
    assert _restarts(box) == 0 and "evicted" not in box.state()
    assert "starting k3s-agent" not in result.stderr and "cordon" not in result.stderr
    assert box.state()["cordoned"] == [agent.name] and not box.path(RESTART_PENDING_FILE).exists()


@needs_sandbox
def test_an_operators_cordon_survives_an_upgrade(box: Sandbox) -> None:
    """A node cordoned by hand is drained and restarted, but not marked, so not uncordoned."""
    agent, k3s = _agent(box)
    box.set_state(cordoned=[agent.name])
    result = _roll(box, agent, k3s)
    assert result.returncode == 0, result.stderr
    assert "already cordoned (not by k3s-rancher)" in result.stderr
    assert not {"annotate", "cordon", "uncordon"} & {c[0] for c in _calls(box)}
    assert box.state()["evicted"] == ["shop/web-1"] and _restarts(box) == 1
    assert box.state()["cordoned"] == [agent.name]
    assert "nothing to uncordon" in result.stderr


@needs_sandbox
def test_a_budget_that_allows_no_disruption_stops_the_agent_cordoned_before_its_restart(box: Sandbox) -> None:
    s = settings_for(awkward_config())
    # 3 s: time for the first eviction (a 1 s deadline may pass while the pods are listed).
    agent, k3s = _agent(box, timeouts=dataclasses.replace(s.k3s.timeouts, drain=3))
    pods = box.state()["pods"]
    pods[0]["budget_blocks"] = True
    box.set_state(pods=pods)
    result = _roll(box, agent, k3s)
    assert result.returncode != 0
    assert "drain of w1 did not finish within 3s (k3s.timeouts.drain): still on it: shop/web-1" in result.stderr
    assert "would violate the pod's disruption budget" in result.stderr
    assert "w1 stays cordoned and was not upgraded, nor was any agent after it" in result.stderr
    # The files are written, the restart is still owed.
    assert UPGRADED in box.path("/usr/local/bin/k3s").read_text()
    assert _restarts(box) == 0 and box.path(RESTART_PENDING_FILE).exists()
    assert box.state()["cordoned"] == [agent.name] and box.state()["marks"][agent.name] == {MARK: "true"}
    # The budget lets go: the next run finds the files as desired, the restart owed, and
    # drains, restarts and uncordons.
    pods[0]["budget_blocks"] = False
    box.set_state(pods=pods)
    again = _roll(box, agent, k3s)
    assert again.returncode == 0, again.stderr
    assert "did not restart it; restarting now" in again.stderr
    assert box.state()["evicted"] == ["shop/web-1"]
    assert _restarts(box) == 1 and not box.path(RESTART_PENDING_FILE).exists()
    assert box.state()["cordoned"] == [] and box.state()["marks"][agent.name] == {}


@needs_sandbox
def test_an_agent_that_never_comes_back_stays_cordoned_and_says_so(box: Sandbox) -> None:
    config = awkward_config()
    config["k3s"]["serverConfig"]["https-listen-port"] = 7443  # the hint names the API port
    s = settings_for(config)
    assert s.k3s.api_port == 7443
    agent, k3s = _agent(box, config=config, timeouts=dataclasses.replace(s.k3s.timeouts, node_ready=1))
    box.set_state(nodes={agent.name: f"{s.k3s.version} True"})  # still the old version
    result = _roll(box, agent, k3s)
    assert result.returncode != 0
    assert f"w1 is not Ready at {UPGRADED} after 1s ({s.k3s.version} True)" in result.stderr
    assert "stays cordoned and the next agents wait" in result.stderr
    assert scripts.ssh_wait_hint(7443) in result.stderr and "firewall ports 7443/tcp" in result.stderr
    assert "uncordon" not in [c[0] for c in _calls(box)]
    assert box.state()["cordoned"] == [agent.name] and _restarts(box) == 1
    # K3s runs the new files (restarted): nothing is owed. Once the node is Ready at the
    # version, the next run lifts the cordon without another restart.
    assert not box.path(RESTART_PENDING_FILE).exists()
    box.set_state(nodes={agent.name: f"{UPGRADED} True"})
    again = _roll(box, agent, k3s)
    assert again.returncode == 0, again.stderr
    assert "an earlier run cordoned it and did not finish; finishing now" in again.stderr
    assert _restarts(box) == 1 and box.state()["cordoned"] == []


@needs_sandbox
def test_a_run_killed_after_the_restart_is_finished_by_the_next_one(box: Sandbox) -> None:
    """The restart record is gone (K3s runs what was written), but the Node still carries our
    cordon: the next run waits until it is Ready and uncordons it, restarting nothing."""
    agent, k3s = _agent(box, owed=False)
    box.set_state(cordoned=[agent.name], marks={agent.name: {MARK: "true"}})
    result = _roll(box, agent, k3s)
    assert result.returncode == 0, result.stderr
    assert "an earlier run cordoned it and did not finish; finishing now" in result.stderr
    assert _restarts(box) == 0 and "evicted" not in box.state()
    assert "cordon" not in [c[0] for c in _calls(box)]
    assert box.state()["cordoned"] == [] and box.state()["marks"][agent.name] == {}


@needs_sandbox
def test_drain_false_cordons_only_and_an_unregistered_node_is_restarted_without_a_cordon(box: Sandbox) -> None:
    s = settings_for(awkward_config())
    agent, k3s = _agent(box, upgrade=dataclasses.replace(s.k3s.upgrade, drain=False))
    result = _roll(box, agent, k3s)
    assert result.returncode == 0, result.stderr
    verbs = [c[0] for c in _calls(box)]
    assert "cordon" in verbs and "uncordon" in verbs
    assert "create" not in verbs and "evicted" not in box.state()
    assert _restarts(box) == 1 and box.state()["cordoned"] == []
    # A restart owed (a killed run) on a node whose Node is gone.
    box.put(RESTART_PENDING_FILE, "")
    box.set_state(nodes={"w2": box.state()["nodes"]["w2"]})
    quick = dataclasses.replace(k3s, timeouts=dataclasses.replace(k3s.timeouts, node_ready=1))
    gone = _roll(box, agent, quick)
    # Restarted all the same; then it waits for its Node, which never registers here.
    assert "w1 is not registered (NotFound); nothing to cordon" in gone.stderr
    assert gone.returncode != 0 and "(not registered)" in gone.stderr
    assert _restarts(box) == 2 and box.state()["cordoned"] == []


@needs_sandbox
def test_a_stopped_k3s_is_started_without_a_cordon_or_drain(box: Sandbox) -> None:
    """Issue 25 item 2: its kubelet is down, so a drain could only wait out k3s.timeouts.drain."""
    agent, k3s = _agent(box, owed=False, state="inactive")
    result = _roll(box, agent, k3s)
    assert result.returncode == 0, result.stderr
    assert "K3s (k3s-agent) is inactive; it is started without a cordon or drain" in result.stderr
    assert not {"cordon", "create", "annotate"} & {c[0] for c in _calls(box)}
    assert _restarts(box) == 1 and box.state()["services"]["k3s-agent"]["state"] == "active"
    assert "evicted" not in box.state() and not box.path(RESTART_PENDING_FILE).exists()


@needs_sandbox
def test_the_nodes_credentials_cannot_touch_another_node(box: Sandbox) -> None:
    """The stand-in's Node authorizer: what the script never needs is refused, as on K3s."""
    agent, k3s = _agent(box, owed=False)
    other = dataclasses.replace(agent, name="w2")
    # w2's update run on w1's host (a misrouted command): its Node is not w1's to read.
    refused = _roll(box, other, k3s)
    assert refused.returncode != 0 and "cannot tell whether node w2 is registered" in refused.stderr
    assert 'User "system:node:w1" cannot get resource "nodes"' in refused.stderr
    assert _restarts(box) == 0 and box.path(RESTART_PENDING_FILE).exists()
    assert not {"cordon", "create", "annotate"} & {c[0] for c in _calls(box)}
