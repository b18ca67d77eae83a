"""Tier 2 against a REAL Kubernetes API (issue 26): what drain does when the API server is real.

One server and two agents of the K3s stand-in through the real engine; their cluster's API is a
real kube-apiserver with its controllers (tests/real/host_api.py), so `kubectl drain` on the
init server evicts real pods (each node's kwok runs them) through the real Eviction API, which
refuses what a PodDisruptionBudget forbids; and a stopped K3s stops its kwok, so its Node goes
NotReady as with a stopped kubelet (what preview, refresh and up then say is recorded)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.real.controlplane import workload_manifest
from tests.real.engine_project import EngineProject, stand_in_cluster
from tests.real.standin_k3s import standin_binary

pytestmark = pytest.mark.real

V1, V2, V3 = "v1.33.5+k3s1", "v1.33.6+k3s1", "v1.33.7+k3s1"
# A drain that must finish gets room: kubectl retries a refused eviction every 5 s and waits for
# each replacement pod (kwok) to become Available, so evicting four pods one at a time took
# longer than 15 s on a loaded CI machine. Only the drain that must fail runs with the short one.
DRAIN, SHORT_DRAIN = 180, 15


def k3s(drain: int = DRAIN) -> dict[str, Any]:
    return {"upgrade": {"agentsAtOnce": 1}, "timeouts": {"nodeReady": 90, "clusterReady": 120, "drain": drain}}


K3S = k3s()
AGENTS = ["agt-1", "agt-2"]


def web(replicas: int, min_available: int) -> str:
    """A Deployment spread over the agents and its PDB. The spread is ScheduleAnyway: with
    DoNotSchedule a pod evicted from one of two agents finds no place (the other would hold
    too many), stays Pending, and the PDB then refuses every further eviction: a drain that
    can never finish, as on a real cluster."""
    labels = {"app": "web"}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "affinity": {
                        "nodeAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": {
                                "nodeSelectorTerms": [
                                    {
                                        "matchExpressions": [
                                            {"key": "kubernetes.io/hostname", "operator": "In", "values": AGENTS}
                                        ]
                                    }
                                ]
                            }
                        },
                    },
                    "topologySpreadConstraints": [
                        {
                            "maxSkew": 1,
                            "topologyKey": "kubernetes.io/hostname",
                            "whenUnsatisfiable": "ScheduleAnyway",
                            "labelSelector": {"matchLabels": labels},
                        }
                    ],
                    "containers": [{"name": "web", "image": "nginx"}],
                },
            },
        },
    }
    pdb = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "web-pdb", "namespace": "default"},
        "spec": {"minAvailable": min_available, "selector": {"matchLabels": labels}},
    }
    return yaml.safe_dump_all([deployment, pdb])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EngineProject, list[Any], Path]]:
    tmp = tmp_path_factory.mktemp("realapi")
    with stand_in_cluster(tmp, 3, 1, V1, K3S) as (project, hosts, _binary):
        yield project, hosts, tmp


def pods_by_node(api: Any) -> dict[str, str]:
    items = json.loads(api.kubectl("get", "pods", "-l", "app=web", "-o", "json"))["items"]
    live = [p for p in items if not p["metadata"].get("deletionTimestamp")]
    return {p["metadata"]["name"]: p["spec"].get("nodeName", "") for p in live}


def evictions(api: Any) -> list[tuple[str, int]]:
    """(pod, HTTP status) of every eviction the API server answered, in order (its audit log)."""
    out = []
    for event in api.audit_events():
        ref = event.get("objectRef") or {}
        if ref.get("subresource") == "eviction" and event.get("stage") == "ResponseComplete":
            out.append((ref.get("name", ""), event.get("responseStatus", {}).get("code", 0)))
    return out


def wait_available(api: Any, replicas: int, timeout: float = 90) -> None:
    api.kubectl("rollout", "status", "deployment/web", f"--timeout={int(timeout)}s", timeout=timeout + 15)
    end = time.monotonic() + timeout
    while len(pods_by_node(api)) != replicas and time.monotonic() < end:
        time.sleep(1)


def node_version(api: Any, name: str) -> str:
    return str(api.kubectl("get", "node", name, "-o", "jsonpath={.status.nodeInfo.kubeletVersion}"))


def unschedulable(api: Any) -> dict[str, bool]:
    items = json.loads(api.kubectl("get", "nodes", "-o", "json"))["items"]
    return {n["metadata"]["name"]: bool(n["spec"].get("unschedulable")) for n in items}


def test_an_agent_upgrade_evicts_pods_within_the_pdb_and_agents_come_back_uncordoned(
    cluster: tuple[EngineProject, list[Any], Path],
) -> None:
    project, hosts, tmp = cluster
    api = hosts[0].api
    api.kubectl("apply", "-f", "-", input=web(4, 3))  # at most one pod may be down at a time
    wait_available(api, 4)
    before = pods_by_node(api)
    assert sorted(set(before.values())) == AGENTS, before  # spread over both agents
    project.configure(hosts, 1, V2, standin_binary(tmp, V2), k3s=K3S)
    project.pulumi("up", "--yes", "--skip-preview", timeout=900)
    for host in hosts:
        assert V2 in host.exec("k3s --version")
    evicted = evictions(api)
    print("evictions (pod, status):", evicted)
    # Every pod that was on an agent was evicted through the Eviction API (201; a pod that
    # moved to agt-2 during agt-1's drain is evicted again in agt-2's), each refusal (429)
    # being the PDB holding a second pod back while one was down.
    assert set(before) <= {pod for pod, code in evicted if code == 201}, evicted
    assert unschedulable(api) == {"srv-1": False, "agt-1": False, "agt-2": False}
    wait_available(api, 4)


def test_a_pdb_that_can_never_be_satisfied_fails_the_upgrade_within_the_drain_timeout(
    cluster: tuple[EngineProject, list[Any], Path],
) -> None:
    project, hosts, tmp = cluster
    api = hosts[0].api
    api.kubectl("apply", "-f", "-", input=web(4, 4))  # no pod may ever go
    wait_available(api, 4)
    old = node_version(api, "agt-2")
    seen = len(api.cordon_log())
    project.configure(hosts, 1, V3, standin_binary(tmp, V3), k3s=k3s(SHORT_DRAIN))
    started = time.monotonic()
    result = project.pulumi("up", "--yes", "--skip-preview", check=False, timeout=900)
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    print(f"up with an unsatisfiable PDB: exit {result.returncode} after {elapsed:.0f}s")
    print(output[-3000:])
    assert result.returncode != 0
    assert f"drain of agt-1 did not finish within {SHORT_DRAIN}s" in output, output[-4000:]
    assert "agt-1 stays cordoned and was not upgraded" in output and "agt-1-install" in output, output[-4000:]
    # The pods still there, and why: the budget's refusal (a node may not read budgets, so the
    # API's 429 is what names it).
    assert "still on it: default/web-" in output and "disruption budget" in output, output[-4000:]
    # Nothing after the first batch ran: agt-2's install (the next batch) did not start, so its
    # K3s still runs the old version, the old binary is still the one on its disk, and it was
    # never cordoned. agt-1 stays cordoned, as the error says, and still runs the old K3s (its
    # install wrote the new binary and stopped before the restart).
    assert node_version(api, "agt-2") == old != V3
    assert V3 not in hosts[2].exec("k3s --version")
    assert V3 in hosts[1].exec("k3s --version") and node_version(api, "agt-1") == old
    # (each listing of the Node's pods is a `drain` record)
    assert {(r["node"], r["verb"]) for r in api.cordon_log()[seen:]} == {("agt-1", "cordon"), ("agt-1", "drain")}
    assert unschedulable(api) == {"srv-1": False, "agt-1": True, "agt-2": False}
    # Fixed (the budget allows one pod down): the next up finishes the upgrade.
    api.kubectl("apply", "-f", "-", input=web(4, 3))
    project.configure(hosts, 1, V3, standin_binary(tmp, V3), k3s=K3S)
    project.pulumi("up", "--yes", "--skip-preview", timeout=900)
    for host in hosts:
        assert V3 in host.exec("k3s --version")
    assert unschedulable(api) == {"srv-1": False, "agt-1": False, "agt-2": False}


def test_drain_keeps_daemonset_pods_and_evicts_pods_with_emptydir_volumes(
    cluster: tuple[EngineProject, list[Any], Path],
) -> None:
    """What README.md says of an agent's drain (self_drain.sh, which moves what kubectl drain
    --ignore-daemonsets --delete-emptydir-data --force moves): DaemonSet pods stay on the node,
    a pod with an emptyDir volume is evicted (its data is lost), and the upgrade goes on."""
    project, hosts, tmp = cluster
    api = hosts[0].api
    api.kubectl("delete", "deployment/web", "pdb/web-pdb", "--ignore-not-found")
    daemonset = workload_manifest("DaemonSet", "agentd", {"containers": [{"name": "d", "image": "busybox"}]})
    scratch_pods = {
        "nodeSelector": {"kubernetes.io/hostname": "agt-1"},
        "containers": [{"name": "s", "image": "busybox", "volumeMounts": [{"name": "tmp", "mountPath": "/x"}]}],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    }
    scratch = workload_manifest("Deployment", "scratch", scratch_pods, 2)
    api.kubectl("apply", "-f", "-", input=yaml.safe_dump_all([daemonset, scratch]))
    api.kubectl("rollout", "status", "daemonset/agentd", "--timeout=90s", timeout=105)
    api.kubectl("rollout", "status", "deployment/scratch", "--timeout=90s", timeout=105)

    def pods(app: str) -> dict[str, str]:
        items = json.loads(api.kubectl("get", "pods", "-l", f"app={app}", "-o", "json"))["items"]
        return {p["metadata"]["name"]: p["spec"].get("nodeName", "") for p in items}

    daemon_before, scratch_before = pods("agentd"), pods("scratch")
    assert set(scratch_before.values()) == {"agt-1"}, scratch_before
    seen = len(evictions(api))
    old = node_version(api, "agt-1")
    new = "v1.33.8+k3s1"
    project.configure(hosts, 1, new, standin_binary(tmp, new), k3s=K3S)
    project.pulumi("up", "--yes", "--skip-preview", timeout=900)
    assert node_version(api, "agt-1") == new != old
    evicted = {pod for pod, code in evictions(api)[seen:] if code == 201}
    print("evicted:", sorted(evicted))
    assert set(scratch_before) <= evicted  # the emptyDir pods were evicted (their data gone)
    assert not set(daemon_before) & evicted  # DaemonSet pods were left alone
    assert pods("agentd") == daemon_before  # the same DaemonSet pods, still there
    assert unschedulable(api) == {"srv-1": False, "agt-1": False, "agt-2": False}


# --- a stopped K3s on an agent (issue 26; what preview/refresh/up then say is input for issue 25)

NOT_READY_WAIT = 180  # the node lifecycle controller's 50 s grace, its 5 s period, a loaded machine


def ready_status(api: Any, name: str) -> str:
    template = '{.status.conditions[?(@.type=="Ready")].status}'
    return str(api.kubectl("get", "node", name, "-o", f"jsonpath={template}"))


def wait_ready_status(api: Any, name: str, status: str, timeout: float) -> float:
    """Seconds until the Node's Ready condition is `status` (bounded)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if ready_status(api, name) == status:
            return time.monotonic() - started
        time.sleep(2)
    node = api.kubectl("get", "node", name, "-o", "jsonpath={.status.conditions}")
    raise AssertionError(f"{name} not Ready={status} within {timeout:.0f}s: {node}")


def unit_state(host: Any, unit: str) -> str:
    return str(host.exec_result(f"systemctl is-active {unit}")[1].strip())


def resource_summary(output: str) -> dict[str, int]:
    """The 'Resources:' block of a pulumi command's output, e.g. {'to update': 2, 'unchanged': 22}."""
    counts: dict[str, int] = {}
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == "Resources:":
            for follow in lines[i + 1 :]:
                match = re.match(r"^\s+(?:[-+~]+\s*)?(\d+) ([a-z][a-z ]*?)\s*$", follow)
                if not match:
                    break
                counts[match.group(2)] = int(match.group(1))
    return counts


def set_drift_check(project: EngineProject, on: bool | None) -> None:
    """k3s.driftCheck in the stack's config (None: not set, the default: off)."""
    path = project.directory / "stacks" / f"Pulumi.{project.stack}.yaml"
    data = yaml.safe_load(path.read_text())
    settings = data["config"]["k3s-rancher:k3s"]
    if on is None:
        settings.pop("driftCheck", None)
    else:
        settings["driftCheck"] = on
    path.write_text(yaml.safe_dump(data))


def run_and_show(project: EngineProject, *args: str) -> tuple[str, float]:
    started = time.monotonic()
    result = project.pulumi(*args, timeout=900)
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    print(f"\n===== pulumi {' '.join(args)} (exit {result.returncode}, {elapsed:.0f}s) =====\n{output.strip()}")
    return output, elapsed


def stop_agent_until_not_ready(api: Any, agent: Any) -> None:
    assert ready_status(api, "agt-1") == "True"
    agent.exec("systemctl stop k3s-agent")
    waited = wait_ready_status(api, "agt-1", "Unknown", NOT_READY_WAIT)
    print(f"agt-1 Ready=Unknown {waited:.0f}s after `systemctl stop k3s-agent`")
    reason = api.kubectl("get", "node", "agt-1", "-o", 'jsonpath={.status.conditions[?(@.type=="Ready")].message}')
    assert reason == "Kubelet stopped posting node status.", reason
    assert unit_state(agent, "k3s-agent") == "inactive"


def test_a_stopped_agent_goes_notready_and_without_the_drift_check_preview_refresh_and_up_see_nothing(
    cluster: tuple[EngineProject, list[Any], Path],
) -> None:
    """A stopped K3s is a stopped kubelet: its Node goes NotReady (Unknown) in the real API.
    With k3s.driftCheck off (the default) pulumi-command never reads a host back: preview,
    refresh and up all answer "unchanged", exit 0 and leave K3s stopped. Started again by
    hand, the Node is Ready again."""
    project, hosts, _tmp = cluster
    api, agent = hosts[0].api, hosts[1]
    set_drift_check(project, None)
    try:
        stop_agent_until_not_ready(api, agent)
        for args in (("preview",), ("refresh", "--yes"), ("up", "--yes", "--skip-preview")):
            output, _ = run_and_show(project, *args)
            summary = resource_summary(output)
            assert set(summary) == {"unchanged"}, summary
            if args[0] != "refresh":  # refresh runs no program: no check, no notice either
                assert "k3s.driftCheck is off" in output  # the program says the hosts were not read
            assert unit_state(agent, "k3s-agent") == "inactive"
            assert ready_status(api, "agt-1") == "Unknown"
    finally:
        agent.exec("systemctl start k3s-agent")
    waited = wait_ready_status(api, "agt-1", "True", 120)
    print(f"agt-1 Ready again {waited:.0f}s after `systemctl start k3s-agent`")


def test_a_stopped_agent_is_named_by_the_drift_check_and_up_starts_it(
    cluster: tuple[EngineProject, list[Any], Path],
) -> None:
    """The same stop with k3s.driftCheck on (issue 25): preview names the node and why, up
    re-runs its install, which starts K3s, and the Node is Ready again."""
    project, hosts, _tmp = cluster
    api, agent = hosts[0].api, hosts[1]
    set_drift_check(project, True)
    try:
        stop_agent_until_not_ready(api, agent)
        output, _ = run_and_show(project, "preview")
        assert "agt-1: k3s-agent inactive" in output
        assert resource_summary(output).get("to update", 0) > 0, resource_summary(output)
        output, _ = run_and_show(project, "refresh", "--yes")  # recorded: refresh runs no program
        assert unit_state(agent, "k3s-agent") == "inactive"
        output, _ = run_and_show(project, "up", "--yes", "--skip-preview")
        assert "agt-1: k3s-agent inactive" in output
        assert unit_state(agent, "k3s-agent") == "active"
        waited = wait_ready_status(api, "agt-1", "True", 120)
        print(f"agt-1 Ready {waited:.0f}s after up finished")
        output, _ = run_and_show(project, "preview")  # repaired: nothing left to do
        assert "drift:" not in output and set(resource_summary(output)) == {"unchanged"}, output
    finally:
        set_drift_check(project, None)
        if unit_state(agent, "k3s-agent") != "active":
            agent.exec("systemctl start k3s-agent")
            wait_ready_status(api, "agt-1", "True", 120)
