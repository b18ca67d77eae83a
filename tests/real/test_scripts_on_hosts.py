"""Tier 1: the rendered scripts, run over real SSH on throwaway Debian hosts (containers).

K3s cannot be downloaded here, so the hosts get the airgap path with a STAND-IN k3s binary
and install script (tests/real/standin/): they check our scripts' plumbing (sudo, quoting,
files and modes, idempotence, join order, readiness waits, drain, uninstall), not K3s.
With internet, the same scripts download and run the real installer.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from components import scripts
from components.config import Node, Settings, parse_settings
from components.kubeconfig import rewrite_kubeconfig
from tests.real.standin_k3s import INSTALL_SCRIPT, standin_binary

# Two servers on purpose (one initialises, one joins): no quorum advice needed here.
pytestmark = [pytest.mark.real, pytest.mark.filterwarnings("ignore:.*etcd servers tolerate")]

V1, V2 = "v1.33.5+k3s1", "v1.33.6+k3s1"
TOKEN = "tier1-token-0123456789abcdef"


def settings_for(hosts: list[Any], tmp: Path, version: str, **k3s: Any) -> Settings:
    """Hosts[0] is the first server, hosts[1] a joining server, the rest agents."""

    def node(host: Any, name: str) -> dict[str, Any]:
        return {"name": name, "address": host.address, "ssh": {"host": "127.0.0.1", "port": host.ssh_port}}

    raw = {
        "k3s": {
            "version": version,
            "airgap": {"installScript": str(INSTALL_SCRIPT), "binary": str(standin_binary(tmp, version))},
            "timeouts": {"nodeReady": 60, "clusterReady": 60, "drain": 10},
            "initServer": "srv-1",
            **k3s,
        },
        "servers": [node(hosts[0], "srv-1"), node(hosts[1], "srv-2")],
        "agents": [node(h, f"agt-{i + 1}") for i, h in enumerate(hosts[2:])],
        "rancher": {"enabled": False},
    }
    return parse_settings(raw, {"sshPrivateKey"}, "tier1")


def stage(host: Any, node: Node, settings: Settings) -> None:
    """What CopyToRemote does: copy the airgap files as the SSH user, without sudo."""
    airgap = settings.k3s.airgap
    assert airgap is not None
    stage_dir = f"{scripts.AIRGAP_STAGING}-{node.name}"
    for target, source in (("install.sh", airgap.install_script), ("k3s", airgap.binary)):
        rc, _, err = host.run(f"mkdir -p {stage_dir} && cat > {stage_dir}/{target}", stdin=Path(source).read_text())
        assert rc == 0, err


def ssh(host: Any, script: scripts.Script, stdin: str | None = None) -> tuple[int, str, str]:
    result: tuple[int, str, str] = host.run(script.command, stdin=stdin)
    return result


def install(host: Any, node: Node, settings: Settings, *, first: bool, token: str = TOKEN) -> tuple[int, str, str]:
    stage(host, node, settings)
    return ssh(host, scripts.install_script(node, settings.k3s, first_server=first), scripts.install_stdin(token, None))


def starts(host: Any) -> int:
    out = host.exec("cat /var/log/k3s-standin-starts.log 2>/dev/null || true")
    return len([line for line in out.splitlines() if line.strip()])


def wait(host: Any, names: list[str], settings: Settings, timeout: int = 60) -> tuple[int, str, str]:
    return ssh(host, scripts.wait_script(names, settings.k3s, timeout=timeout, waits_for="test", user="ubuntu"))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[Any], Path]]:
    from tests.real.hosts import test_hosts

    with test_hosts(4) as hosts:
        yield list(hosts), tmp_path_factory.mktemp("tier1")


def test_first_server_installs_as_a_sudo_user_and_becomes_ready(cluster: tuple[list[Any], Path]) -> None:
    hosts, tmp = cluster
    settings = settings_for(hosts, tmp, V1)
    rc, out, err = install(hosts[0], settings.servers[0], settings, first=True)
    assert rc == 0, err
    assert "installing K3s v1.33.5+k3s1 (server) on srv-1" in err
    rc, _, err = wait(hosts[0], ["srv-1"], settings)
    assert rc == 0, err
    # Files that hold secrets are 0600 and root's; the token is the one sent on stdin.
    for path in (
        "/etc/rancher/k3s/config.yaml",
        "/etc/rancher/k3s/cluster-token",
        "/etc/rancher/k3s/k3s.yaml",
        "/etc/k3s-standin/k3s.env",
    ):
        assert hosts[0].exec(f"stat -c '%a %U' {path}").strip() == "600 root", path
    assert hosts[0].exec("cat /etc/rancher/k3s/cluster-token").strip() == TOKEN
    config = hosts[0].exec("cat /etc/rancher/k3s/config.yaml")
    assert "cluster-init: true" in config and "node-name: srv-1" in config
    assert TOKEN not in out + err


def test_running_the_install_again_changes_nothing(cluster: tuple[list[Any], Path]) -> None:
    hosts, tmp = cluster
    settings = settings_for(hosts, tmp, V1)
    before = starts(hosts[0])
    rc, _, err = install(hosts[0], settings.servers[0], settings, first=True)
    assert rc == 0, err
    assert "No change detected" in err
    assert starts(hosts[0]) == before


def test_servers_and_agents_join_and_the_cluster_check_sees_them_all(cluster: tuple[list[Any], Path]) -> None:
    hosts, tmp = cluster
    settings = settings_for(hosts, tmp, V1)
    rc, _, err = install(hosts[1], settings.servers[1], settings, first=False)
    assert rc == 0, err
    assert f"server: https://{hosts[0].address}:6443" in hosts[1].exec("cat /etc/rancher/k3s/config.yaml")
    rc, _, err = wait(hosts[1], ["srv-2"], settings)
    assert rc == 0, err
    for host, node in zip(hosts[2:], settings.agents, strict=True):
        rc, _, err = install(host, node, settings, first=False)
        assert rc == 0, err
        assert f"K3S_URL=https://{hosts[0].address}:6443" in host.exec("cat /etc/k3s-standin/k3s-agent.env")
        assert TOKEN not in host.exec("cat /etc/k3s-standin/k3s-agent.env")  # the file, not the value
    rc, _, err = wait(hosts[0], [n.name for n in settings.nodes], settings)
    assert rc == 0, err
    assert "Ready at v1.33.5+k3s1: srv-1 srv-2 agt-1 agt-2" in err


def test_kubeconfig_is_read_and_pointed_at_the_api_address(cluster: tuple[list[Any], Path]) -> None:
    hosts, tmp = cluster
    settings = settings_for(hosts, tmp, V1)
    rc, out, err = ssh(hosts[0], scripts.kubeconfig_script("ubuntu", "test"))
    assert rc == 0, err
    rewritten = rewrite_kubeconfig(out, settings.k3s.server_url, "k3s-rancher-tier1")
    assert f"server: https://{hosts[0].address}:6443" in rewritten
    assert "current-context: k3s-rancher-tier1" in rewritten


def test_labels_and_taints_follow_the_config_through_the_api(cluster: tuple[list[Any], Path]) -> None:
    hosts, tmp = cluster
    settings = settings_for(hosts, tmp, V1)
    agent = settings.agents[0]
    # Someone else's label stays; ours are added, then the one we drop is removed.
    rc, _, err = ssh(
        hosts[0],
        scripts.render(
            "node_meta", {"NODE_NAME": agent.name, "LABELS": "team=other", "TAINTS": "", "MANAGED": ""}, sudo=True
        ),
    )
    assert rc == 0, err
    first = Node(**{**agent.__dict__, "labels": {"pool": "a", "tier": "gold"}, "taints": ("dedicated=x:NoSchedule",)})
    assert ssh(hosts[0], scripts.node_meta_script(first, "ubuntu"))[0] == 0
    second = Node(**{**agent.__dict__, "labels": {"pool": "b"}, "taints": ()})
    rc, _, err = ssh(hosts[0], scripts.node_meta_script(second, "ubuntu"))
    assert rc == 0, err
    listing = hosts[0].exec("k3s kubectl get nodes")
    line = next(line for line in listing.splitlines() if line.startswith("agt-1 "))
    assert '"pool": "b"' in line and '"team": "other"' in line and "tier" not in line


def test_hostile_values_stay_data(cluster: tuple[list[Any], Path]) -> None:
    hosts, tmp = cluster
    hostile = [
        "--kubelet-arg=note=a b",
        "--kube-apiserver-arg=$(touch /tmp/pwned)",
        "--etcd-arg=`touch /tmp/pwned2`",
        "--kube-proxy-arg=x'; touch /tmp/pwned3; '",
    ]
    settings = settings_for(hosts, tmp, V1, serverArgs=hostile)
    rc, _, err = install(hosts[0], settings.servers[0], settings, first=True)
    assert rc == 0, err
    unit = hosts[0].exec("cat /etc/k3s-standin/k3s.unit").splitlines()
    assert unit == ["server", *hostile]
    assert hosts[0].exec("ls /tmp/pwned /tmp/pwned2 /tmp/pwned3 2>/dev/null || true").strip() == ""
    # Back to the plain config (a changed unit restarts the service).
    settings = settings_for(hosts, tmp, V1)
    assert install(hosts[0], settings.servers[0], settings, first=True)[0] == 0


def test_a_wrong_token_never_becomes_ready_and_the_wait_says_which_node(cluster: tuple[list[Any], Path]) -> None:
    hosts, tmp = cluster
    settings = settings_for(hosts, tmp, V1)
    agent = settings.agents[1]
    rc, _, err = install(hosts[3], agent, settings, first=False, token="not-the-cluster-token")
    assert rc == 0, err  # the service starts; it just cannot register
    ssh(hosts[0], scripts.drain_script(agent.name, 0, "ubuntu"))  # forget the earlier registration
    rc, _, err = wait(hosts[0], [agent.name], settings, timeout=12)
    assert rc != 0
    assert f"not Ready at {V1} after 12s: {agent.name}(not registered)" in err
    rc, _, err = install(hosts[3], agent, settings, first=False)  # the right token: a restart fixes it
    assert rc == 0, err
    assert wait(hosts[0], [agent.name], settings)[0] == 0


def test_upgrade_restarts_each_node_on_the_new_version(cluster: tuple[list[Any], Path]) -> None:
    hosts, tmp = cluster
    settings = settings_for(hosts, tmp, V2)
    for host, node, first in ((hosts[0], settings.servers[0], True), (hosts[1], settings.servers[1], False)):
        before = starts(host)
        rc, _, err = install(host, node, settings, first=first)
        assert rc == 0, err
        assert starts(host) == before + 1
        assert wait(host, [node.name], settings)[0] == 0
    for host, node in zip(hosts[2:], settings.agents, strict=True):
        assert install(host, node, settings, first=False)[0] == 0
    rc, _, err = wait(hosts[0], [n.name for n in settings.nodes], settings)
    assert rc == 0, err
    assert "Ready at v1.33.6+k3s1" in err


def test_removing_an_agent_drains_deletes_and_leaves_the_host_clean(cluster: tuple[list[Any], Path]) -> None:
    hosts, tmp = cluster
    settings = settings_for(hosts, tmp, V2)
    agent, host = settings.agents[0], hosts[2]
    # The order Pulumi deletes in: membership (drain), install (uninstall), forget.
    rc, _, err = ssh(hosts[0], scripts.drain_script(agent.name, 10, "ubuntu"))
    assert rc == 0, err
    assert f"node {agent.name} removed" in err
    for _ in range(2):  # twice is safe
        rc, _, err = ssh(host, scripts.uninstall_script(agent, settings.k3s))
        assert rc == 0, err
    rc, _, err = ssh(hosts[0], scripts.forget_script(agent.name, "ubuntu"))
    assert rc == 0, err
    assert agent.name not in hosts[0].exec("k3s kubectl get nodes")  # and stays gone: nothing runs there
    leftovers = host.exec(
        "ls -d /etc/rancher /var/lib/rancher /usr/local/bin/k3s* /usr/local/bin/kubectl "
        f"{shlex.quote(scripts.AIRGAP_STAGING)}-{agent.name} 2>/dev/null || true"
    )
    assert leftovers.strip() == ""
    assert "k3s agent" not in host.exec("ps -eo args")
