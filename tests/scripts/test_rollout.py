"""A rolled agent's `-upgrade` step (sh/rollout.sh), on the agent, with the node's own
credentials: cordon, drain through the Eviction API, restart, Ready at the version, uncordon,
only when its install left a restart owed; an operator's cordon is never lifted, a budget that
allows no disruption stops it before the restart, and a run killed half-way is finished by the
next one. The sandbox's kubectl answers as K3s's API server answers a node (standins.py)."""

from __future__ import annotations

import dataclasses
from typing import Any

from components import scripts
from components.host_facts import KUBELET_KUBECONFIG, RESTART_PENDING_FILE
from components.settings import K3sSettings, Node
from tests.scripts.awkward import TOKEN, awkward_config, settings_for
from tests.scripts.sandbox import Sandbox, needs_sandbox, stdin

MARK = "k3s-rancher.io/cordoned-for-upgrade"


def _agent(box: Sandbox, *, owed: bool = True, state: str = "active", **k3s_changes: Any) -> tuple[Node, K3sSettings]:
    """Agent w1 of the awkward config, its K3s running (or `state`) at the version, with a
    restart owed by its install (`owed`) and three pods: a Deployment's, a DaemonSet's and a
    static pod's mirror."""
    s = settings_for(awkward_config())
    agent, k3s = s.agents[0], s.k3s
    if k3s_changes:
        k3s = dataclasses.replace(k3s, **k3s_changes)
    box.put_k3s()
    box.put(KUBELET_KUBECONFIG, f"# client-kubelet.crt: CN=system:node:{agent.name}\n", 0o600)
    if owed:
        box.put(RESTART_PENDING_FILE, "")
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


def _calls(box: Sandbox) -> list[list[str]]:
    """Each kubectl call's arguments, after asserting it used the node's own kubeconfig."""
    records = box.records("k3s")
    assert all(r["argv"][:3] == ["kubectl", "--kubeconfig", KUBELET_KUBECONFIG] for r in records), records
    return [r["argv"][3:] for r in records]


def _restarts(box: Sandbox) -> int:
    return len(box.systemctl("restart"))


@needs_sandbox
def test_an_owed_restart_is_cordoned_drained_restarted_and_uncordoned_with_the_nodes_own_credentials(
    box: Sandbox,
) -> None:
    agent, k3s = _agent(box)
    result = box.run(scripts.rollout_script(agent, k3s, "0123abcd"), stdin())
    assert result.returncode == 0, result.stderr
    calls = _calls(box)
    verbs = [c[0] for c in calls]
    # Mark and cordon before the drain; uncordon and unmark after the restart.
    assert verbs.index("annotate") < verbs.index("cordon") < verbs.index("create")
    assert verbs[-2:] == ["uncordon", "annotate"]
    # Only its Deployment pod was evicted: DaemonSet and static pods stay, another node's too.
    assert box.state()["evicted"] == ["shop/web-1"]
    assert {p["name"] for p in box.state()["pods"]} == {"svclb-1", "static-w1", "web-2"}
    assert _restarts(box) == 1 and not box.path(RESTART_PENDING_FILE).exists()
    assert box.state()["cordoned"] == [] and box.state()["marks"][agent.name] == {}
    assert "node w1 is back: Ready at" in result.stderr
    assert TOKEN not in result.stderr + result.stdout


@needs_sandbox
def test_nothing_owed_cordons_drains_and_restarts_nothing_and_keeps_an_operators_cordon(box: Sandbox) -> None:
    agent, k3s = _agent(box, owed=False)
    box.set_state(cordoned=[agent.name])  # cordoned by hand
    result = box.run(scripts.rollout_script(agent, k3s, "0123abcd"), stdin())
    assert result.returncode == 0, result.stderr
    assert "nothing to restart" in result.stderr
    assert [c[0] for c in _calls(box)] == ["get"]  # only: is there a cordon of ours to finish?
    assert _restarts(box) == 0 and "evicted" not in box.state()
    assert box.state()["cordoned"] == [agent.name]


@needs_sandbox
def test_an_operators_cordon_survives_an_upgrade(box: Sandbox) -> None:
    """A node cordoned by hand is drained and restarted, but not marked, so not uncordoned."""
    agent, k3s = _agent(box)
    box.set_state(cordoned=[agent.name])
    result = box.run(scripts.rollout_script(agent, k3s, "0123abcd"), stdin())
    assert result.returncode == 0, result.stderr
    assert "already cordoned (not by k3s-rancher)" in result.stderr
    assert "annotate" not in [c[0] for c in _calls(box)]
    assert box.state()["evicted"] == ["shop/web-1"] and _restarts(box) == 1
    assert box.state()["cordoned"] == [agent.name]
    assert "nothing to uncordon" in result.stderr


@needs_sandbox
def test_a_budget_that_allows_no_disruption_stops_the_agent_cordoned_before_its_restart(box: Sandbox) -> None:
    s = settings_for(awkward_config())
    agent, k3s = _agent(box, timeouts=dataclasses.replace(s.k3s.timeouts, drain=1))
    pods = box.state()["pods"]
    pods[0]["budget_blocks"] = True
    box.set_state(pods=pods)
    result = box.run(scripts.rollout_script(agent, k3s, "0123abcd"), stdin())
    assert result.returncode != 0
    assert "drain of w1 did not finish within 1s (k3s.timeouts.drain): still on it: shop/web-1" in result.stderr
    assert "would violate the pod's disruption budget" in result.stderr
    assert "w1 stays cordoned and was not upgraded, nor was any agent after it" in result.stderr
    assert _restarts(box) == 0 and box.path(RESTART_PENDING_FILE).exists()
    assert box.state()["cordoned"] == [agent.name] and box.state()["marks"][agent.name] == {MARK: "true"}
    # The budget lets go: the next run drains, restarts and uncordons.
    pods[0]["budget_blocks"] = False
    box.set_state(pods=pods)
    again = box.run(scripts.rollout_script(agent, k3s, "0123abcd"), stdin())
    assert again.returncode == 0, again.stderr
    assert _restarts(box) == 1 and box.state()["cordoned"] == []


@needs_sandbox
def test_an_agent_that_never_comes_back_stays_cordoned_and_says_so(box: Sandbox) -> None:
    s = settings_for(awkward_config())
    agent, k3s = _agent(box, timeouts=dataclasses.replace(s.k3s.timeouts, node_ready=1))
    box.set_state(nodes={agent.name: "v1.32.0+k3s1 True"})  # still the old version
    result = box.run(scripts.rollout_script(agent, k3s, "0123abcd"), stdin())
    assert result.returncode != 0
    assert f"w1 is not Ready at {k3s.version} after 1s (v1.32.0+k3s1 True)" in result.stderr
    assert "stays cordoned and the next agents wait" in result.stderr
    assert "uncordon" not in [c[0] for c in _calls(box)]
    assert box.state()["cordoned"] == [agent.name]


@needs_sandbox
def test_a_run_killed_after_the_restart_is_finished_by_the_next_one(box: Sandbox) -> None:
    """The restart record is gone (K3s runs what was written), but the Node still carries our
    cordon: the next run waits until it is Ready and uncordons it, restarting nothing."""
    agent, k3s = _agent(box, owed=False)
    box.set_state(cordoned=[agent.name], marks={agent.name: {MARK: "true"}})
    result = box.run(scripts.rollout_script(agent, k3s, "0123abcd"), stdin())
    assert result.returncode == 0, result.stderr
    assert _restarts(box) == 0 and "evicted" not in box.state()
    assert box.state()["cordoned"] == [] and box.state()["marks"][agent.name] == {}


@needs_sandbox
def test_drain_false_cordons_only_and_an_unregistered_node_is_restarted_without_a_cordon(box: Sandbox) -> None:
    s = settings_for(awkward_config())
    agent, k3s = _agent(box, upgrade=dataclasses.replace(s.k3s.upgrade, drain=False))
    assert box.run(scripts.rollout_script(agent, k3s, "0123abcd"), stdin()).returncode == 0
    assert "create" not in [c[0] for c in _calls(box)] and "evicted" not in box.state()
    assert _restarts(box) == 1 and box.state()["cordoned"] == []
    box.put(RESTART_PENDING_FILE, "")
    box.set_state(nodes={"w2": box.state()["nodes"]["w2"]})
    quick = dataclasses.replace(k3s, timeouts=dataclasses.replace(k3s.timeouts, node_ready=1))
    gone = box.run(scripts.rollout_script(agent, quick, "0123abcd"), stdin())
    # Restarted all the same; then it waits for its Node, which never registers here.
    assert "w1 is not registered (NotFound); nothing to cordon" in gone.stderr
    assert gone.returncode != 0 and "(not registered)" in gone.stderr
    assert _restarts(box) == 2


@needs_sandbox
def test_a_stopped_k3s_is_started_without_a_cordon_or_drain(box: Sandbox) -> None:
    """Issue 25 item 2: its kubelet is down, so a drain could only wait out k3s.timeouts.drain."""
    agent, k3s = _agent(box, owed=False, state="inactive")
    result = box.run(scripts.rollout_script(agent, k3s, "0123abcd"), stdin())
    assert result.returncode == 0, result.stderr
    assert "started without a cordon or drain" in result.stderr
    assert not {"cordon", "create", "annotate"} & {c[0] for c in _calls(box)}
    assert _restarts(box) == 1 and box.state()["services"]["k3s-agent"]["state"] == "active"


@needs_sandbox
def test_the_nodes_credentials_cannot_touch_another_node(box: Sandbox) -> None:
    """The stand-in's Node authorizer: what the script never needs is refused, as on K3s."""
    agent, k3s = _agent(box, owed=False)
    other = dataclasses.replace(agent, name="w2")
    result = box.run(scripts.rollout_script(other, k3s, "0123abcd"), stdin())
    # w2's step run on w1's host (a misrouted command): its Node is not w1's to read.
    assert result.returncode == 0, result.stderr
    assert 'User "system:node:w1" cannot get resource "nodes"' in result.stderr
    box.put(RESTART_PENDING_FILE, "")
    refused = box.run(scripts.rollout_script(other, k3s, "0123abcd"), stdin())
    assert refused.returncode != 0 and "cannot tell whether node w2 is registered" in refused.stderr
    assert _restarts(box) == 0
