"""Tier 2, k3s.upgrade (issue 14 item 1): a version change of 1 server and 4 agents with
agentsAtOnce 2, through the real engine on test hosts, takes the agents down two at a time:
each agent's install update cordons it, restarts K3s and uncordons it, and the second batch's
installs start only once the first batch is back (the API server's record of each cordon and
uncordon), so that never more than two agents are between their old K3s stopping and their
new one running. A fifth agent added in the same `up` is installed at once, beside the first
batch, not behind the batches (its install depends on no batch; its K3s runs before the
second batch is cordoned).

The times come from the hosts' systemd and the API server's audit log (monotonic clock: the
test hosts share this machine's kernel). The STAND-IN k3s starts in a fraction of a second, so
restarts of one batch could miss each other by chance: each old agent's unit gets a drop-in
that makes its start take 4 s, as a slow real start would, so that agents restarted together
overlap for certain."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.real.engine_project import TOKEN, EngineProject, engine_bin, make_project
from tests.real.standin_k3s import standin_binary

pytestmark = pytest.mark.real

V1, V2 = "v1.33.5+k3s1", "v1.33.6+k3s1"
UPGRADE = {"upgrade": {"agentsAtOnce": 2}}
BATCHES = (("agt-1", "agt-2"), ("agt-3", "agt-4"))  # the agents of the first up, in batches
NEW = "agt-5"  # added with the version change
DROP_INS = "/etc/systemd/system/k3s-agent.service.d"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EngineProject, list[Any], Path]]:
    """srv-1 and agt-1..agt-4 made by a first `up`; a sixth host, not in the stack yet."""
    from tests.real.hosts import test_hosts

    tmp = tmp_path_factory.mktemp("batches")
    with test_hosts(6, kubernetes=True) as hosts:
        project = make_project(tmp, engine_bin())
        project.set_secret("token", TOKEN)
        project.set_secret("sshPrivateKey", hosts[0].private_key)
        project.configure(hosts[:5], 1, V1, standin_binary(tmp, V1), k3s=UPGRADE)
        project.pulumi("up", "--yes", "--skip-preview")
        try:
            for host in hosts[1:5]:
                host.exec(
                    f"mkdir -p {DROP_INS} && printf '[Service]\\nExecStartPre=/bin/sleep 4\\n' > {DROP_INS}/slow.conf"
                )
                host.exec("systemctl daemon-reload")
            yield project, list(hosts), tmp
        finally:
            project.pulumi("destroy", "--yes", check=False, timeout=600)


def window(host: Any) -> tuple[int, int]:
    """(old K3s stopped, new K3s running) of the agent's last (re)start, in µs of CLOCK_MONOTONIC."""
    props = ("InactiveEnterTimestampMonotonic", "ActiveEnterTimestampMonotonic")
    out = host.exec(f"systemctl show -p {props[0]} -p {props[1]} k3s-agent")
    values = dict(line.split("=", 1) for line in out.split())
    return int(values[props[0]]), int(values[props[1]])


def dependencies(project: EngineProject) -> dict[str, set[str]]:
    """Resource name -> the names of what it depends on, as the state records them."""
    resources = json.loads(project.pulumi("stack", "export").stdout)["deployment"]["resources"]
    return {r["urn"].rsplit("::", 1)[1]: {d.rsplit("::", 1)[1] for d in r.get("dependencies") or []} for r in resources}


def test_agents_go_two_at_a_time_each_batch_after_the_previous_one_is_back_and_a_new_agent_waits_for_none(
    cluster: tuple[EngineProject, list[Any], Path],
) -> None:
    project, hosts, tmp = cluster
    agents, new = hosts[1:5], hosts[5]
    api = hosts[0].api
    project.configure(hosts, 1, V2, standin_binary(tmp, V2), k3s=UPGRADE)
    steps = {s["urn"].rsplit("::", 1)[1]: s["op"] for s in project.preview_steps()}
    assert {steps[f"{a}-install"] for batch in BATCHES for a in batch} == {"update"}
    assert steps[f"{NEW}-install"] == "create"
    seen = len(api.cordon_log())
    project.pulumi("up", "--yes", "--skip-preview", timeout=900)
    for host in hosts:
        assert V2 in host.exec("k3s --version")

    windows = [window(h) for h in agents]
    for stopped, running in windows:
        assert 0 < stopped < running, windows  # each agent restarted during this up
    first, second = windows[:2], windows[2:]
    assert max(running for _, running in first) < min(stopped for stopped, _ in second), windows
    # At no moment are more than two agents between stopping and running again.
    for moment in itertools.chain.from_iterable(windows):
        down = sum(1 for stopped, running in windows if stopped <= moment < running)
        assert down <= 2, windows

    # What the API server saw: each old agent cordoned, then uncordoned, once; the second batch
    # cordoned only after both agents of the first were uncordoned; the new agent never.
    log = api.cordon_log()[seen:]
    at: dict[tuple[str, str], list[float]] = {}
    for r in log:
        at.setdefault((r["node"], r["verb"]), []).append(r["monotonic"])
    for agent, (stopped, running) in zip(itertools.chain.from_iterable(BATCHES), windows, strict=True):
        assert len(at[(agent, "cordon")]) == len(at[(agent, "uncordon")]) == 1, (agent, log)
        # Its K3s stopped after its cordon and ran again before its uncordon.
        assert at[(agent, "cordon")][0] < stopped / 1e6 < running / 1e6 < at[(agent, "uncordon")][0], (agent, log)
    back = max(at[(a, "uncordon")][0] for a in BATCHES[0])
    second_cordoned = min(at[(a, "cordon")][0] for a in BATCHES[1])
    assert back < second_cordoned, log
    assert not [r for r in log if r["node"] == NEW], log

    # The new agent was not held behind the batches: its install depends on no other agent's
    # step and no batch, where the second batch's waits for the first (its batch step)...
    depends = dependencies(project)
    assert not {d for d in depends[f"{NEW}-install"] if d.startswith("agt-") and not d.startswith(f"{NEW}-")}
    assert not {d for d in depends[f"{NEW}-install"] if "-upgrade-batch-" in d}, depends[f"{NEW}-install"]
    for agent in BATCHES[1]:
        assert "tier2-upgrade-batch-1" in depends[f"{agent}-install"], depends[f"{agent}-install"]
    # ... and its K3s ran (its first start) before the second batch was cordoned.
    _, new_running = window(new)
    print(f"{NEW} ran {second_cordoned - new_running / 1e6:.1f}s before the second batch's first cordon")
    assert new.unit_starts("k3s-agent") == 1
    assert new_running / 1e6 < second_cordoned, (new_running, log)

    # Every agent is schedulable again at the end, and nothing is left to do.
    nodes = hosts[0].exec(
        "k3s kubectl get nodes -o jsonpath='{range .items[*]}{.metadata.name}={.spec.unschedulable} {end}'"
    )
    assert len(nodes.split()) == 6, nodes
    assert all(entry.endswith("=") or entry.endswith("=false") for entry in nodes.split()), nodes
    project.pulumi("preview", "--expect-no-changes")
