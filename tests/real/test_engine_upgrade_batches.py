"""Tier 2, k3s.upgrade (issue 14 item 1): a version change of 1 server and 4 agents with
agentsAtOnce 2, through the real engine on test hosts, takes the agents down two at a time:
the second batch's K3s stops only once the first batch is back, and never more than two
agents are between their old K3s stopping and their new one running. The times come from
the hosts' systemd (monotonic clock: the test hosts share this machine's kernel). The
STAND-IN k3s starts in a fraction of a second, so restarts of one batch could miss each
other by chance: each agent's unit gets a drop-in that makes its start take 4 s, as a slow
real start would, so that agents restarted together overlap for certain."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.real.engine_project import EngineProject, stand_in_cluster
from tests.real.standin_k3s import standin_binary

pytestmark = pytest.mark.real

V1, V2 = "v1.33.5+k3s1", "v1.33.6+k3s1"
UPGRADE = {"upgrade": {"agentsAtOnce": 2}}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EngineProject, list[Any], Path]]:
    tmp = tmp_path_factory.mktemp("batches")
    with stand_in_cluster(tmp, 5, 1, V1, UPGRADE) as (project, hosts, _binary):
        for host in hosts[1:]:
            host.exec(
                "mkdir -p /etc/systemd/system/k3s-agent.service.d && printf '[Service]\\nExecStartPre=/bin/sleep 4\\n' "
                "> /etc/systemd/system/k3s-agent.service.d/slow-start.conf && systemctl daemon-reload"
            )
        yield project, hosts, tmp


def window(host: Any) -> tuple[int, int]:
    """(old K3s stopped, new K3s running) of the agent's last restart, in µs of CLOCK_MONOTONIC."""
    props = ("InactiveEnterTimestampMonotonic", "ActiveEnterTimestampMonotonic")
    out = host.exec(f"systemctl show -p {props[0]} -p {props[1]} k3s-agent")
    values = dict(line.split("=", 1) for line in out.split())
    return int(values[props[0]]), int(values[props[1]])


def test_agents_go_two_at_a_time_each_batch_after_the_previous_one_is_back(
    cluster: tuple[EngineProject, list[Any], Path],
) -> None:
    project, hosts, tmp = cluster
    agents = hosts[1:]  # agt-1 .. agt-4: batches (agt-1, agt-2), (agt-3, agt-4)
    project.configure(hosts, 1, V2, standin_binary(tmp, V2), k3s=UPGRADE)
    steps = {s["urn"].rsplit("::", 1)[1]: s["op"] for s in project.preview_steps()}
    assert {steps[f"agt-{i}-upgrade"] for i in range(1, 5)} == {"update"}
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
    # Every agent is schedulable again at the end.
    nodes = hosts[0].exec(
        "k3s kubectl get nodes -o jsonpath='{range .items[*]}{.metadata.name}={.spec.unschedulable} {end}'"
    )
    assert all(entry.endswith("=") or entry.endswith("=false") for entry in nodes.split()), nodes
