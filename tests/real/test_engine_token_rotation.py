"""Tier 2, newToken (issue 14 item 4): rotating the cluster token of 2 servers and 2 agents
through the real engine on test hosts. Setting newToken runs `k3s token rotate` on the init
server, then every node takes the new token and restarts K3s exactly once (starts counted
from each host's journal: systemd logs "Started <unit>" each time a Type=notify unit is
up; an agent's install cordons it before and uncordons it after, in its k3s.upgrade batch);
the supervisor then refuses the old token, as a join with it would be refused. The
tidy-up (token := the new one, newToken removed) re-runs the installs and restarts nothing.
The K3s here is the STAND-IN (tests/real/standin/k3s: token rotate, PUT /v1-k3s/token)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.real.engine_project import TOKEN, EngineProject, stand_in_cluster

pytestmark = pytest.mark.real

V1 = "v1.33.5+k3s1"
NEW = "tier2-rotated-token-9f8e7d6c5b4a"
K3S = {"initServer": "srv-1"}
SERVERS = 2
TOKEN_FILE = "/etc/rancher/k3s/cluster-token"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EngineProject, list[Any], Path]]:
    tmp = tmp_path_factory.mktemp("rotation")
    with stand_in_cluster(tmp, 4, SERVERS, V1, K3S) as (project, hosts, _binary):
        yield project, hosts, tmp


def unit(index: int) -> str:
    return "k3s" if index < SERVERS else "k3s-agent"


def starts(hosts: list[Any]) -> list[int]:
    return [h.unit_starts(unit(i)) for i, h in enumerate(hosts)]


def supervisor_answer(host: Any, server: Any, token: str) -> str:
    """The HTTP status a joining server gets from the init server's supervisor with `token`
    (GET /v1-k3s/server-bootstrap, basic auth server:<token>: pkg/server/auth.go). The token
    goes through a 0600 netrc file, not curl's arguments."""
    return host.exec(
        "umask 077 && f=$(mktemp) && IFS= read -r t && printf 'machine %s login server password %s\\n' "
        f'{server.address} "$t" > "$f" && curl -s -o /dev/null -w \'%{{http_code}}\' --netrc-file "$f" '
        f'http://{server.address}:6443/v1-k3s/server-bootstrap; rm -f "$f"',
        stdin=token + "\n",
    )


def ops(project: EngineProject) -> dict[str, str]:
    """resource name -> planned op, for the remote commands."""
    steps = project.preview_steps()
    return {s["urn"].rsplit("::", 1)[1]: s["op"] for s in steps if s["urn"].split("::")[2].endswith("remote:Command")}


def test_new_token_rotates_once_and_every_node_restarts_once(cluster: tuple[EngineProject, list[Any], Path]) -> None:
    project, hosts, _ = cluster
    before = starts(hosts)
    assert supervisor_answer(hosts[-1], hosts[0], TOKEN) == "200"

    project.set_secret("newToken", NEW)
    print(project.pulumi("preview").stdout)  # the README's preview of a rotation (pytest -s)
    steps = ops(project)
    assert steps["tier2-token-rotation"] == "create"
    assert {steps[f"srv-{i}-install"] for i in (1, 2)} == {"update"}
    # The agents' installs take the new token on stdin and restart K3s in their batches.
    assert {steps[f"agt-{i}-install"] for i in (1, 2)} == {"update"}
    assert not [name for name, op in steps.items() if op in ("replace", "delete", "delete-replaced")], steps
    project.pulumi("up", "--yes", "--skip-preview", timeout=900)

    for host in hosts:
        assert host.exec(f"cat {TOKEN_FILE}").strip() == NEW, host
    assert hosts[0].exec("cat /var/lib/rancher/k3s/server/token").strip().endswith(f"::server:{NEW}")
    assert starts(hosts) == [n + 1 for n in before], (before, starts(hosts))
    ready = {
        name: hosts[0]
        .exec(f"k3s kubectl get node {name} -o 'jsonpath={{.status.conditions[?(@.type==\"Ready\")].status}}'")
        .strip()
        for name in ("srv-1", "srv-2", "agt-1", "agt-2")
    }
    assert set(ready.values()) == {"True"}, ready
    # The agents restarted cordoned and drained, and none is left cordoned.
    log = hosts[0].api.cordon_log()
    for agent in ("agt-1", "agt-2"):
        verbs = [r["verb"] for r in log if r["node"] == agent and r["verb"] != "drain"]
        assert verbs == ["cordon", "uncordon"], (agent, log)
    unschedulable = hosts[0].exec("k3s kubectl get nodes -o jsonpath='{.items[*].spec.unschedulable}'").split()
    assert set(unschedulable) <= {"false"}, unschedulable
    # The old token no longer joins; the new one does.
    assert supervisor_answer(hosts[-1], hosts[0], TOKEN) == "401"
    assert supervisor_answer(hosts[-1], hosts[0], NEW) == "200"

    # Nothing left to do: the same config plans no command (the JSON lists no unchanged step).
    assert set(ops(project).values()) <= {"same"}, ops(project)


def test_the_tidy_up_reruns_the_installs_and_restarts_nothing(cluster: tuple[EngineProject, list[Any], Path]) -> None:
    project, hosts, _ = cluster
    assert hosts[0].exec(f"cat {TOKEN_FILE}").strip() == NEW, "runs after the rotation above"
    before, cordons = starts(hosts), len(hosts[0].api.cordon_log())
    project.set_secret("token", NEW)
    project.pulumi("config", "rm", "k3s-rancher:newToken")
    steps = ops(project)
    assert steps["tier2-token-rotation"] == "delete"
    assert {steps[f"srv-{i}-install"] for i in (1, 2)} == {"update"}
    assert not [name for name, op in steps.items() if op in ("replace", "create", "delete-replaced")], steps
    project.pulumi("up", "--yes", "--skip-preview", timeout=900)
    assert starts(hosts) == before
    assert hosts[0].api.cordon_log()[cordons:] == []  # nor cordons or drains anything
    for host in hosts:
        assert host.exec(f"cat {TOKEN_FILE}").strip() == NEW, host
