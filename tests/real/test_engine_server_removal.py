"""Tier 2, removing servers (issue 14 item 3), through the real engine on test hosts with the
STAND-IN k3s (etcd members, /db/info over TLS): 3 etcd servers and an agent; a config with one
server is refused before anything runs (quorum) and changes nothing; a config with two removes
the third: drained, its Node deleted, its etcd member gone from /db/info (checked by the
membership's delete before the uninstall), K3s uninstalled from its host."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.real.engine_project import TOKEN, EngineProject, stand_in_cluster

pytestmark = pytest.mark.real

V1 = "v1.33.5+k3s1"
ETCD = {"datastore": "etcd", "initServer": "srv-1"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EngineProject, list[Any], Path]]:
    # srv-1..3 and agt-1 (on hosts[3])
    with stand_in_cluster(tmp_path_factory.mktemp("removal"), 4, 3, V1, ETCD) as cluster:
        yield cluster


def members(init: Any) -> list[str]:
    """The etcd member names K3s lists at /db/info on the init server (TLS, server-ca.crt)."""
    out = init.exec(
        "curl -sS --fail --cacert /var/lib/rancher/k3s/server/tls/server-ca.crt -K - https://127.0.0.1:6443/db/info",
        stdin=f'user = "server:{TOKEN}"\n',
    )
    return sorted(m["name"] for m in json.loads(out)["members"])


def node_names(init: Any) -> list[str]:
    return init.exec("k3s kubectl get nodes -o jsonpath='{.items[*].metadata.name}'").split()


def test_three_to_one_is_refused_then_three_to_two_removes_the_member(
    cluster: tuple[EngineProject, list[Any], Path],
) -> None:
    project, hosts, binary = cluster
    init, second, third, agent = hosts
    before = members(init)
    assert [m.rsplit("-", 1)[0] for m in before] == ["srv-1", "srv-2", "srv-3"], before

    project.configure([init, agent], 1, V1, binary, k3s=ETCD)  # srv-1 and agt-1 only
    refused = project.pulumi("up", "--yes", "--skip-preview", check=False)
    assert refused.returncode != 0
    text = refused.stdout + refused.stderr
    assert "k3s-rancher:servers: removing 2 of 3 etcd servers in one update (srv-3, srv-2)" in text, text[-3000:]
    assert "up 1: without srv-3; up 2: without srv-2" in text
    assert members(init) == before  # nothing ran
    assert node_names(init) == ["agt-1", "srv-1", "srv-2", "srv-3"]
    assert third.exec("test -x /usr/local/bin/k3s && echo yes").strip() == "yes"

    project.configure([init, second, agent], 2, V1, binary, k3s=ETCD)
    steps = {s["urn"].rsplit("::", 1)[1]: s["op"] for s in project.preview_steps() if s["op"] != "same"}
    assert {name for name, op in steps.items() if op == "delete" and name.startswith("srv-3-")} >= {
        "srv-3-membership", "srv-3-install", "srv-3-forget", "srv-3-ready",
    }  # fmt: skip
    assert {name for name, op in steps.items() if op != "delete"} <= {"tier2-cluster-ready"}, steps
    # The plain preview, kept for the README's "Removing a server".
    (project.directory / "removal-preview.txt").write_text(project.pulumi("preview").stdout)
    up = project.pulumi("up", "--yes", "--skip-preview")
    assert "no etcd member of srv-3 is left" in up.stdout  # the membership's check ran
    after = members(init)
    assert after == [m for m in before if not m.startswith("srv-3-")], after
    assert node_names(init) == ["agt-1", "srv-1", "srv-2"]
    # K3s is gone from the removed server's host: binary, unit and data.
    gone = third.exec(
        "for p in /usr/local/bin/k3s /etc/systemd/system/k3s.service /var/lib/rancher/k3s /etc/rancher/k3s; do "
        '[ -e "$p" ] && echo "$p"; done; true'
    )
    assert gone.strip() == "", gone
