"""Tier 1: the rendered scripts, run over real SSH on throwaway systemd hosts (containers).

K3s cannot be downloaded here, so the hosts get the airgap path with the STAND-IN installer
and k3s binary (tests/real/standin/, tests/real/README.md): the installer writes the real
systemd units (/etc/systemd/system/k3s[-agent].service and .env), systemd runs the stand-in
k3s (Type=notify: "Started" only once it is ready), so restarts are counted from the journal
(TestHost.unit_starts). hosts[0] (first server, where waits, labels and drains run) and
hosts[2] (an agent) have RHEL's sudo secure_path: no /usr/local/bin on sudo's PATH.
With internet, the same scripts download and run the real installer.
"""

from __future__ import annotations

import json
import re
import shlex
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from components import bundle, registry_auth, scripts
from components.config import parse_settings
from components.host_facts import INSTALLED_FILE
from components.kubeconfig import rewrite_kubeconfig
from components.settings import Node, Settings
from tests.real.standin_k3s import INSTALL_SCRIPT, standin_binary

# Two servers on purpose (one initialises, one joins): no quorum advice needed here.
pytestmark = [pytest.mark.real, pytest.mark.filterwarnings("ignore:.*etcd servers tolerate")]

V1, V2 = "v1.33.5+k3s1", "v1.33.6+k3s1"
TOKEN = "tier1-token-0123456789abcdef"
NODE_READY = 25  # k3s.timeouts.nodeReady: the bound of the install's own wait for the service
K3S = "/usr/local/bin/k3s"  # by absolute path: hosts[0] has RHEL's secure_path
SRV1_LABELS = {"tier": "gold"}
AGT1_LABELS = {"pool": "a"}
AGT1_TAINTS = ["dedicated=x:NoSchedule"]


def settings_for(hosts: list[Any], tmp: Path, version: str, **k3s: Any) -> Settings:
    """Hosts[0] is the first server, hosts[1] a joining server, the rest agents."""

    def node(host: Any, name: str, **extra: Any) -> dict[str, Any]:
        return {"name": name, "address": host.address, "ssh": {"host": "127.0.0.1", "port": host.ssh_port}, **extra}

    raw = {
        "k3s": {
            "version": version,
            "airgap": {"installScript": str(INSTALL_SCRIPT), "binary": str(standin_binary(tmp, version))},
            "timeouts": {"nodeReady": NODE_READY, "clusterReady": 60, "drain": 10},
            "initServer": "srv-1",
            **k3s,
        },
        "servers": [node(hosts[0], "srv-1", labels=SRV1_LABELS), node(hosts[1], "srv-2")],
        "agents": [
            node(hosts[2], "agt-1", labels=AGT1_LABELS, taints=AGT1_TAINTS),
            *(node(h, f"agt-{i + 2}") for i, h in enumerate(hosts[3:])),
        ],
        "rancher": {"enabled": False},
    }
    return parse_settings(raw, {"sshPrivateKey"}, "tier1")


def ssh(host: Any, script: scripts.Script, stdin: str | None = None) -> tuple[int, str, str]:
    result: tuple[int, str, str] = host.run(script.command, stdin=stdin)
    return result


def deliver(host: Any, text: str | None = None) -> tuple[int, str, str]:
    """The `<node>-scripts` step, as the engine runs it: the delivery's command text (for this
    release's bundle) over SSH as the host's user, the bundle's text on stdin (`text` sends
    another stream instead, e.g. a tampered one)."""
    current = bundle.current_bundle()
    return ssh(host, scripts.deliver_scripts_script(host.user, current), current.text if text is None else text)


def deliver_all(hosts: list[Any]) -> None:
    """Every host gets the bundle before any node command runs there (each node command
    depends on its host's `-scripts` step)."""
    for host in hosts:
        rc, _, err = deliver(host)
        assert rc == 0, f"{host.name}: {err}"


def stage(host: Any, node: Node, settings: Settings, *, registration: bool = True) -> None:
    """What runs before the install: the registration drop-in (nodes with labels or taints;
    Pulumi re-runs it only when they change), the `<node>-airgap-stage` command (0700
    staging directory, as the SSH user), then CopyToRemote (SFTP as that user, the path
    relative to the home directory)."""
    if registration and (node.labels or node.taints):
        rc, _, err = ssh(host, scripts.registration_script(node, settings.k3s))
        assert rc == 0, err
    layout = scripts.airgap_layout(node, settings.k3s)
    assert layout is not None
    rc, _, err = ssh(host, scripts.stage_airgap_script(node, settings.k3s))
    assert rc == 0, err
    for target, (source, _) in layout.files.items():
        rc, _, err = host.run(f"cat > {shlex.quote(layout.stage)}/{target}", stdin=Path(source).read_text())
        assert rc == 0, err


def install(
    host: Any, node: Node, settings: Settings, *, first: bool, token: str = TOKEN, registration: bool = True
) -> tuple[int, str, str]:
    stage(host, node, settings, registration=registration)
    return ssh(host, scripts.install_script(node, settings.k3s, first_server=first), scripts.install_stdin(token, None))


def unit_of(node: Node) -> str:
    return "k3s" if node.role == "server" else "k3s-agent"


def wait(host: Any, names: list[str], settings: Settings, timeout: int = 60) -> tuple[int, str, str]:
    return ssh(host, scripts.wait_script(names, settings.k3s, timeout=timeout, waits_for="test", user="ubuntu"))


def node_json(host: Any, name: str, path: str) -> Any:
    """A field of the Node object, read with the admin kubeconfig on the first server."""
    out = host.exec(f"{K3S} kubectl get node {shlex.quote(name)} -o 'jsonpath={{{path}}}'").strip()
    return json.loads(out) if out else None


def taints(host: Any, name: str) -> list[str]:
    found = node_json(host, name, ".spec.taints") or []
    return sorted(f"{t['key']}={t.get('value', '')}:{t['effect']}" for t in found)


def main_argv(host: Any, unit: str) -> list[str]:
    """The running service's arguments after the k3s command word (the stand-in is a Python
    script, so argv starts with the interpreter)."""
    pid = host.exec(f"systemctl show -p MainPID --value {unit}").strip()
    argv = host.exec(f"tr '\\0' '\\n' < /proc/{pid}/cmdline").splitlines()
    return argv[argv.index(K3S) + 1 :]


def snapshot(host: Any, unit: str) -> str:
    """What a no-op re-run must leave alone: the content of our files, the unit, the env file
    and the binary, the mtimes of ours and of the binary (the installer rewrites its unit and
    env file at every run, as the real one does), and the service's process."""
    ours = f"/etc/rancher/k3s/* /etc/rancher/k3s/config.yaml.d/* {K3S}"
    files = f"{ours} /etc/systemd/system/{unit}.service*"
    return host.exec(
        f"sha256sum {files} 2>/dev/null; stat -c '%n %Y %a %U' {ours}; systemctl show -p MainPID --value {unit}"
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[Any], Path]]:
    from tests.real.hosts import test_hosts

    with test_hosts(4, secure_path=[0, 2], kubernetes=True) as hosts:
        deliver_all(hosts)
        yield list(hosts), tmp_path_factory.mktemp("tier1")


def bundle_state(host: Any) -> str:
    """Everything about the delivered scripts a change would touch: what the scripts directory
    holds, each entry of current/ with its mode, owner, group, inode and mtime, and the files'
    sha256 (not the scripts directory's own mtime: every delivery makes and removes its
    temporary stream file there)."""
    root, current = bundle.HOST_ROOT, bundle.CURRENT
    return host.exec(
        f"ls -A {root}; stat -c '%n %a %U %G %i' {root}; find {current} -printf '%p %m %U %G %i %T@\\n' | sort; "
        f"cd {current} && sha256sum * | sort"
    )


def test_the_scripts_step_delivers_a_root_owned_bundle_once_and_refuses_another_stream(
    cluster: tuple[list[Any], Path],
) -> None:
    """The `<node>-scripts` step's create (deliver_scripts.sh) and delete (remove_scripts.sh)
    on a real host, as the SSH user through sudo; and an entry point where no bundle is."""
    hosts, tmp = cluster
    host = hosts[3]  # agt-2: nothing installed yet
    current = bundle.current_bundle()
    settings = settings_for(hosts, tmp, V1)
    agent = settings.agents[1]
    # The step's delete (after every other step on the host): nothing of K3s to uninstall, the
    # bundle is gone, and so is k3s-rancher's directory (nothing else is in it yet).
    rc, _, err = ssh(host, scripts.remove_scripts_script(agent, settings.k3s))
    assert rc == 0, err
    assert "no k3s-agent-uninstall.sh" in err and "k3s-rancher's scripts removed" in err, err
    assert host.exec("ls -d /var/lib/k3s-rancher 2>/dev/null || true").strip() == ""
    # Again, now without the bundle: nothing to uninstall through, no error.
    rc, _, err = ssh(host, scripts.remove_scripts_script(agent, settings.k3s))
    assert rc == 0 and "no scripts bundle here" in err, err
    # A node command (a create, a delete) on a host without the bundle: exit 3, what to do,
    # and nothing ran.
    for script in (
        scripts.install_script(agent, settings.k3s, first_server=False),
        scripts.uninstall_script(agent, settings.k3s),
    ):
        rc, out, err = ssh(host, script, scripts.install_stdin(TOKEN, None))
        assert rc == 3, (script.name, rc, err)
        assert err == f"k3s-rancher: error: {scripts.MISSING_BUNDLE}\n" and out == ""
        assert "not on this host" in err
    assert host.exec("ls -d /etc/rancher/k3s /var/lib/k3s-rancher /usr/local/bin/k3s 2>/dev/null || true") == ""

    # Delivered: root-owned, directories 0755, files 0644, exactly the bundle's files (plus its
    # MANIFEST and digest), no temporary file left.
    rc, _, err = deliver(host)
    assert rc == 0, err
    assert "delivered to /var/lib/k3s-rancher/scripts/current" in err
    dirs = ("/var/lib/k3s-rancher", bundle.HOST_ROOT, bundle.CURRENT)
    assert host.exec(f"stat -c '%a %U %G' {' '.join(dirs)}").split("\n")[:3] == ["755 root root"] * 3
    listing = host.exec(f"cd {bundle.CURRENT} && stat -c '%n %a %U %G' *").splitlines()
    assert sorted(listing) == sorted(f"{name} 644 root root" for name in (*current.names, "BUNDLE_SHA256", "MANIFEST"))
    assert host.exec(f"ls -A {bundle.HOST_ROOT}").split() == ["current"]
    assert host.exec(f"cat {bundle.CURRENT}/BUNDLE_SHA256").strip() == current.sha256
    for name, text in current.files:
        assert host.exec(f"cat {bundle.CURRENT}/{name}") == text, name
    # The SSH user can read and run the code but not change it.
    rc, _, _ = host.run(f"touch {bundle.CURRENT}/lib.sh")
    assert rc != 0

    # Again: "already", nothing touched (same inodes and mtimes).
    before = bundle_state(host)
    rc, _, err = deliver(host)
    assert rc == 0, err
    assert "already in /var/lib/k3s-rancher/scripts/current" in err and "delivered" not in err
    assert bundle_state(host) == before

    # A stream that is not the one the program computed (one byte more, one line changed):
    # refused with both digests, nothing changed, no temporary file left.
    for tampered in (current.text + "\n", current.text.replace("log()", "log ()", 1)):
        assert tampered != current.text
        rc, _, err = deliver(host, tampered)
        assert rc == 1, err
        assert f"not {current.sha256}; nothing was changed" in err
        assert bundle_state(host) == before

    # And an entry point now finds its code: it runs, and stops for its own reason (no K3s
    # here yet; the install runs later in this module).
    rc, _, err = wait(host, ["nobody"], settings, timeout=1)
    assert rc == 1 and "K3s is not installed on this host" in err, err


def test_first_server_installs_as_a_sudo_user_and_becomes_ready(cluster: tuple[list[Any], Path]) -> None:
    hosts, tmp = cluster
    settings = settings_for(hosts, tmp, V1)
    host = hosts[0]
    rc, out, err = install(host, settings.servers[0], settings, first=True)
    assert rc == 0, err
    assert "installing K3s v1.33.5+k3s1 (server) on srv-1" in err
    assert "K3s v1.33.5+k3s1 installed on srv-1 (k3s active)" in err
    assert host.unit_starts("k3s") == 1
    assert host.exec("systemctl is-enabled k3s").strip() == "enabled"
    rc, _, err = wait(host, ["srv-1"], settings)
    assert rc == 0, err
    # Files that hold secrets are 0600 and root's; the token is the one sent on stdin.
    for path in (
        "/etc/rancher/k3s/config.yaml",
        "/etc/rancher/k3s/cluster-token",
        "/etc/rancher/k3s/k3s.yaml",
        scripts.REGISTRATION_FILE,
        "/etc/systemd/system/k3s.service.env",
    ):
        assert host.exec(f"stat -c '%a %U' {path}").strip() == "600 root", path
    assert host.exec("cat /etc/rancher/k3s/cluster-token").strip() == TOKEN
    config = host.exec("cat /etc/rancher/k3s/config.yaml")
    assert "cluster-init: true" in config and "node-name: srv-1" in config
    assert TOKEN not in out + err + host.exec("cat /etc/systemd/system/k3s.service.env")
    # The installer ran from the verified root-owned copy of this generation, not from the
    # SSH user's staging directory.
    layout = scripts.airgap_layout(settings.servers[0], settings.k3s)
    assert layout is not None
    gen = f"{scripts.AIRGAP_ROOT}/{layout.generation}"
    assert host.exec(f"stat -c '%a %U' {gen} {gen}/install.sh {gen}/k3s").split("\n")[0] == "700 root"
    assert set(host.exec(f"stat -c '%U' {gen}/install.sh {gen}/k3s").split()) == {"root"}
    assert host.exec("ls -d /etc/k3s-standin 2>/dev/null || true").strip() == ""
    # The labels of its first registration were on the Node from the start (no node_meta yet).
    assert node_json(host, "srv-1", ".metadata.labels")["tier"] == "gold"


def test_the_rhel_like_sudo_host_finds_no_k3s_on_its_path_yet_waits_work(cluster: tuple[list[Any], Path]) -> None:
    hosts, tmp = cluster
    settings = settings_for(hosts, tmp, V1)
    rc, _, err = hosts[0].run("sudo -n k3s --version")
    assert rc != 0 and "not found" in err  # the host really is RHEL-like
    rc, _, err = wait(hosts[0], ["srv-1"], settings, timeout=10)
    assert rc == 0, err


def test_running_the_install_again_changes_nothing_and_restarts_nothing(cluster: tuple[list[Any], Path]) -> None:
    hosts, tmp = cluster
    settings = settings_for(hosts, tmp, V1)
    before, starts = snapshot(hosts[0], "k3s"), hosts[0].unit_starts("k3s")
    home = hosts[0].exec("ls -A ~ubuntu")
    # As on a node a release before 0.3.0 installed: no record of a completed install yet.
    hosts[0].exec(f"rm {INSTALLED_FILE}")
    # The install alone: with unchanged labels Pulumi does not re-run the registration step.
    rc, _, err = install(hosts[0], settings.servers[0], settings, first=True, registration=False)
    assert rc == 0, err
    assert "starting k3s" not in err
    assert snapshot(hosts[0], "k3s") == before
    assert hosts[0].unit_starts("k3s") == starts
    # The run records the completed install (the `-scripts` step's leftovers uninstall then
    # leaves this node alone), and leaves nothing in the SSH user's directory, where it runs.
    assert hosts[0].exec(f"cat {INSTALLED_FILE}").strip() == "server"
    assert hosts[0].exec("ls -A ~ubuntu") == home


def test_a_wrong_token_fails_the_install_within_the_timeout_showing_the_journal(
    cluster: tuple[list[Any], Path],
) -> None:
    hosts, tmp = cluster
    settings = settings_for(hosts, tmp, V1)
    agent, host = settings.agents[1], hosts[3]
    stage(host, agent, settings)
    started = time.monotonic()
    rc, out, err = ssh(
        host,
        scripts.install_script(agent, settings.k3s, first_server=False),
        scripts.install_stdin("not-the-cluster-token", None),
    )
    elapsed = time.monotonic() - started
    assert rc != 0, err
    assert elapsed < NODE_READY + 15, f"took {elapsed:.0f}s"
    # The journal says why (the server's 401), so the error names the refused token instead of
    # "did not become active within 25s" (service.sh why_not_active).
    assert f"{agent.name}: the server refused this node's token (401 Unauthorized in the K3s log)" in err
    assert "did not become active" not in err
    assert "journalctl -u k3s-agent" in err
    # The journal's last lines, where the user sees why: the server refuses the token.
    journal = err.split("Last lines of its log", 1)[1]
    assert "401 Unauthorized" in journal, err
    assert "installed on" not in err and "not-the-cluster-token" not in out + err
    assert host.unit_starts("k3s-agent") == 0
    # K3s makes the node password only once the server accepted the token (k3s-io/k3s
    # pkg/agent/config/config.go get: getConfig, then getNodeNamedCrt -> ensureNodePassword),
    # so registration.sh still sees a node that never joined: the taints of its first
    # registration are written for the install that will join it.
    assert host.exec("ls /etc/rancher/node/password 2>/dev/null || true").strip() == ""
    tainted = Node(**{**agent.__dict__, "taints": ("dedicated=x:NoSchedule",)})
    rc, _, err = ssh(host, scripts.registration_script(tainted, settings.k3s))
    assert rc == 0 and f"first registration of {agent.name}: {scripts.REGISTRATION_FILE} written" in err, err
    # Never registered: the cluster does not know it.
    assert wait(hosts[0], [agent.name], settings, timeout=1)[0] != 0
    # A failed first install is not in the state (its own delete, the uninstall, never runs)
    # and it left K3s here, with no record of a completed install.
    for path in ("/etc/systemd/system/k3s-agent.service", "/etc/rancher/k3s/config.yaml", K3S):
        assert host.exec_result(f"test -e {path}")[0] == 0, path
    assert host.exec_result(f"test -e {INSTALLED_FILE}")[0] != 0
    # The node taken out of config (or pulumi destroy): its `-scripts` step's delete, last on
    # the host, uninstalls what the install left, then removes the bundle and our directory.
    rc, _, err = ssh(host, scripts.remove_scripts_script(agent, settings.k3s))
    assert rc == 0, err
    assert "K3s removed" in err and "k3s-rancher's scripts removed" in err, err
    leftovers = host.exec(
        "ls -d /etc/rancher /var/lib/rancher /etc/systemd/system/k3s-agent* /usr/local/bin/k3s* "
        "/var/lib/k3s-rancher ~ubuntu/.k3s-rancher 2>/dev/null || true"
    )
    assert leftovers.strip() == ""
    assert host.exec("systemctl is-active k3s-agent", check=False).strip() == "inactive"
    # Added again with the right token (test below): its `-scripts` step is created again.
    rc, _, err = deliver(host)
    assert rc == 0, err


def test_servers_and_agents_join_and_the_cluster_check_sees_them_all(cluster: tuple[list[Any], Path]) -> None:
    hosts, tmp = cluster
    settings = settings_for(hosts, tmp, V1)
    rc, _, err = install(hosts[1], settings.servers[1], settings, first=False)
    assert rc == 0, err
    assert f"server: https://{hosts[0].address}:6443" in hosts[1].exec("cat /etc/rancher/k3s/config.yaml")
    assert hosts[1].unit_starts("k3s") == 1
    rc, _, err = wait(hosts[1], ["srv-2"], settings)
    assert rc == 0, err
    for host, node in zip(hosts[2:], settings.agents, strict=True):
        rc, _, err = install(host, node, settings, first=False)
        assert rc == 0, err
        assert host.unit_starts("k3s-agent") == 1
        env = host.exec("cat /etc/systemd/system/k3s-agent.service.env")
        assert re.search(rf"^K3S_URL='?https://{re.escape(hosts[0].address)}:6443'?$", env, re.M), env
        assert "K3S_TOKEN_FILE" in env and TOKEN not in env  # the file, not the value
        assert host.exec("stat -c '%a %U' /etc/systemd/system/k3s-agent.service.env").strip() == "600 root"
    # The taint of agt-1's first registration was there when the Node appeared (the install
    # returns once the agent is up, i.e. registered; node_meta has not run).
    assert taints(hosts[0], "agt-1") == AGT1_TAINTS
    assert node_json(hosts[0], "agt-1", ".metadata.labels")["pool"] == "a"
    rc, _, err = wait(hosts[0], [n.name for n in settings.nodes], settings)
    assert rc == 0, err
    assert "Ready at v1.33.5+k3s1: srv-1 srv-2 agt-1 agt-2" in err


def test_the_scripts_steps_delete_leaves_a_completed_install_alone(cluster: tuple[list[Any], Path]) -> None:
    """The `-scripts` step's uninstall of a failed first install's leftovers leaves a node
    whose install completed (install_node.sh records it) as it is: that node's own delete,
    its install's uninstall, is what removes its K3s."""
    hosts, tmp = cluster
    settings = settings_for(hosts, tmp, V1)
    agent, host = settings.agents[1], hosts[3]  # agt-2, joined above
    assert host.exec(f"cat {INSTALLED_FILE}").strip() == "agent"
    before, starts = snapshot(host, "k3s-agent"), host.unit_starts("k3s-agent")
    rc, _, err = ssh(host, scripts.remove_scripts_script(agent, settings.k3s))
    assert rc == 0, err
    assert f"an install of this node completed here ({INSTALLED_FILE})" in err, err
    assert "K3s removed" not in err and "k3s-agent-uninstall.sh" not in err
    # K3s untouched (files, mtimes, process), the record kept; only the bundle is gone.
    assert snapshot(host, "k3s-agent") == before and host.unit_starts("k3s-agent") == starts
    assert host.exec("systemctl is-active k3s-agent").strip() == "active"
    assert host.exec_result(f"test -e {bundle.HOST_ROOT}")[0] != 0
    assert host.exec_result(f"test -f {INSTALLED_FILE}")[0] == 0
    assert wait(hosts[0], [agent.name], settings)[0] == 0
    rc, _, err = deliver(host)  # the replacement's create
    assert rc == 0, err


def test_kubeconfig_is_read_and_pointed_at_the_api_address(cluster: tuple[list[Any], Path]) -> None:
    hosts, tmp = cluster
    settings = settings_for(hosts, tmp, V1)
    rc, out, err = ssh(hosts[0], scripts.kubeconfig_script("ubuntu", "test"))
    assert rc == 0, err
    rewritten = rewrite_kubeconfig(out, settings.k3s.server_url, "k3s-rancher-tier1")
    assert f"server: https://{hosts[0].address}:6443" in rewritten
    assert "current-context: k3s-rancher-tier1" in rewritten


def test_label_and_taint_changes_go_through_the_api_and_survive_a_restart(cluster: tuple[list[Any], Path]) -> None:
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
    rc, _, err = ssh(hosts[0], scripts.node_meta_script(agent, "ubuntu"))  # adopts pool=a and the taint
    assert rc == 0, err
    changed = Node(**{**agent.__dict__, "labels": {"pool": "b"}, "taints": ()})
    # What `pulumi up` runs for changed labels: the registration step (the node has
    # registered: it removes its drop-in), then membership (node_meta) through the API.
    rc, _, err = ssh(hosts[2], scripts.registration_script(changed, settings.k3s))
    assert rc == 0, err
    assert hosts[2].exec(f"ls {scripts.REGISTRATION_FILE} 2>/dev/null || true").strip() == ""
    rc, _, err = ssh(hosts[0], scripts.node_meta_script(changed, "ubuntu"))
    assert rc == 0, err

    def check() -> None:
        labels = node_json(hosts[0], agent.name, ".metadata.labels")
        assert labels["pool"] == "b" and labels["team"] == "other" and "tier" not in labels
        assert taints(hosts[0], agent.name) == []

    check()
    # K3s merges --node-label at every start: nothing stale brings the old label back.
    hosts[2].exec("systemctl restart k3s-agent", timeout=60)
    assert wait(hosts[0], [agent.name], settings)[0] == 0
    check()


def config_args(host: Any) -> list[str]:
    """The flags K3s reads from /etc/rancher/k3s/config.yaml and its drop-ins, as the K3s
    stand-in on the host computes them (its port of k3s-io/k3s pkg/configfilearg/parser.go
    readConfigFile, which puts them before the command line's own)."""
    code = (
        "import importlib.machinery as m, importlib.util as u, json; "
        f"loader = m.SourceFileLoader('k3s_standin', {K3S!r}); "
        "module = u.module_from_spec(u.spec_from_loader(loader.name, loader)); loader.exec_module(module); "
        "print(json.dumps(module.config_file_args('/etc/rancher/k3s/config.yaml')))"
    )
    found: list[str] = json.loads(host.exec(f"python3 -c {shlex.quote(code)}"))
    return found


def test_hostile_values_stay_data(cluster: tuple[list[Any], Path]) -> None:
    """serverArgs reach K3s through config.yaml, each value byte for byte (issue 24 item 2:
    through the installer's arguments, which it re-splits, `a  b` arrived as `a b`)."""
    hosts, tmp = cluster
    hostile = [
        "--kubelet-arg=note=a  b",
        "--kube-apiserver-arg=$(touch /tmp/pwned)",
        "--etcd-arg=`touch /tmp/pwned2`",
        "--kube-proxy-arg=x'; touch /tmp/pwned3; '",
        '--kube-controller-manager-arg=quote="x" \\ y',
    ]
    settings = settings_for(hosts, tmp, V1, serverArgs=hostile)
    starts = hosts[0].unit_starts("k3s")
    rc, _, err = install(hosts[0], settings.servers[0], settings, first=True)
    assert rc == 0, err
    assert hosts[0].unit_starts("k3s") == starts + 1
    assert main_argv(hosts[0], "k3s") == ["server"]
    assert set(hostile) <= set(config_args(hosts[0]))
    assert hosts[0].exec("ls /tmp/pwned /tmp/pwned2 /tmp/pwned3 2>/dev/null || true").strip() == ""
    # Back to the plain config (a changed config.yaml restarts the service).
    settings = settings_for(hosts, tmp, V1)
    rc, _, err = install(hosts[0], settings.servers[0], settings, first=True)
    assert rc == 0, err
    assert main_argv(hosts[0], "k3s") == ["server"]
    assert not set(hostile) & set(config_args(hosts[0]))
    assert hosts[0].unit_starts("k3s") == starts + 2


def test_registry_credentials_land_in_a_0600_registries_file(cluster: tuple[list[Any], Path]) -> None:
    """Issue 24 item 6: the registryAuth secret's credentials, with k3s.registries, reach the
    host only on stdin and land in the 0600 /etc/rancher/k3s/registries.yaml; without them the
    file is k3s.registries alone again."""
    hosts, tmp = cluster
    host, password = hosts[0], "reg-pa\\ss  w$r'd\"x#1"
    registries = {
        "mirrors": {"docker.io": {"endpoint": ["https://registry.example.com:5000"]}},
        "configs": {"registry.example.com:5000": {"auth": {"username": "ci"}, "tls": {"insecure_skip_verify": True}}},
    }
    auth = json.dumps({"registry.example.com:5000": {"password": password}, "ghcr.io": {"identity_token": "tok-77"}})
    settings = settings_for(hosts, tmp, V1, registries=registries)
    node = settings.servers[0]
    stage(host, node, settings, registration=False)
    script = scripts.install_script(node, settings.k3s, first_server=True)
    starts = host.unit_starts("k3s")
    line = registry_auth.registries_file(settings.k3s.registries, auth)
    rc, out, err = ssh(host, script, scripts.install_stdin(TOKEN, None, registries=line))
    assert rc == 0, err
    assert host.unit_starts("k3s") == starts + 1  # K3s reads registries.yaml at its start
    path = "/etc/rancher/k3s/registries.yaml"
    assert host.exec(f"stat -c '%a %U' {path}").strip() == "600 root"
    written = yaml.safe_load(host.exec(f"cat {path}"))
    assert written == {
        "mirrors": registries["mirrors"],
        "configs": {
            "registry.example.com:5000": {
                "auth": {"username": "ci", "password": password},
                "tls": {"insecure_skip_verify": True},
            },
            "ghcr.io": {"auth": {"identity_token": "tok-77"}},
        },
    }
    for secret in (password, "tok-77"):
        assert secret not in script.command and secret not in out + err
    # The secret removed: the file is k3s.registries alone (no credential left), K3s restarts.
    rc, _, err = install(host, node, settings, first=True, registration=False)
    assert rc == 0, err
    assert yaml.safe_load(host.exec(f"cat {path}")) == registries
    assert host.exec(f"stat -c '%a' {path}").strip() == "600"
    assert host.unit_starts("k3s") == starts + 2
    # Back to the plain config for the tests after this one.
    settings = settings_for(hosts, tmp, V1)
    rc, _, err = install(host, node, settings, first=True, registration=False)
    assert rc == 0, err
    assert host.exec(f"ls {path} 2>/dev/null || true").strip() == ""
    assert wait(host, ["srv-1"], settings)[0] == 0


def test_the_pre_upgrade_snapshot_needs_the_running_k3s_and_then_saves_one(cluster: tuple[list[Any], Path]) -> None:
    """`k3s etcd-snapshot save` posts to the running server's /db/snapshot (k3s-io/k3s
    pkg/cli/etcdsnapshot/etcd_snapshot.go save): with K3s stopped on the init server the
    snapshot fails, the script says why and nothing is upgraded; with K3s back it saves one."""
    hosts, tmp = cluster
    settings = settings_for(hosts, tmp, V2)
    init, snapshots = hosts[0], "/var/lib/rancher/k3s/server/db/snapshots"
    listed = f"ls {snapshots} 2>/dev/null || true"
    before = init.exec(listed).split()
    init.exec("systemctl stop k3s", timeout=60)
    try:
        rc, _, err = ssh(init, scripts.pre_upgrade_snapshot_script(settings.k3s, "ubuntu"))
        assert rc != 0
        assert "K3s is not running on this server (k3s inactive)" in err, err
        assert "connection refused" in err and "nothing was upgraded" in err
        assert init.exec(listed).split() == before
        assert init.exec(f"{K3S} --version").startswith(f"k3s version {V1}")
    finally:
        init.exec("systemctl start k3s", timeout=60)
    assert wait(init, ["srv-1"], settings_for(hosts, tmp, V1))[0] == 0
    rc, _, err = ssh(init, scripts.pre_upgrade_snapshot_script(settings.k3s, "ubuntu"))
    assert rc == 0, err
    (taken,) = set(init.exec(listed).split()) - set(before)
    assert taken.rpartition("-")[0] == "pre-upgrade-v1.33.5-k3s1-to-v1.33.6-k3s1-srv-1"
    assert init.exec(f"stat -c '%a %U' {snapshots}/{taken}").strip() == "600 root"


def test_upgrade_restarts_each_node_once_onto_the_new_version(cluster: tuple[list[Any], Path]) -> None:
    hosts, tmp = cluster
    settings = settings_for(hosts, tmp, V2)
    nodes = [(hosts[0], settings.servers[0], True), (hosts[1], settings.servers[1], False)]
    nodes += [(host, node, False) for host, node in zip(hosts[2:], settings.agents, strict=True)]
    for host, node, first in nodes:
        before = host.unit_starts(unit_of(node))
        rc, _, err = install(host, node, settings, first=first)
        assert rc == 0, err
        assert host.unit_starts(unit_of(node)) == before + 1, node.name
        assert host.exec(f"{K3S} --version").startswith(f"k3s version {V2}")
        if node.role == "server":
            assert wait(host, [node.name], settings)[0] == 0
    rc, _, err = wait(hosts[0], [n.name for n in settings.nodes], settings)
    assert rc == 0, err
    assert "Ready at v1.33.6+k3s1" in err
    # The previous generation is gone from the root-owned place, and the staging area is empty:
    # the install removes the staged copies once it has checked the root-owned ones.
    layout = scripts.airgap_layout(settings.agents[1], settings.k3s)
    assert layout is not None
    assert hosts[3].exec(f"ls {scripts.AIRGAP_ROOT}").split() == [layout.generation]
    staged = hosts[3].exec(f"ls ~ubuntu/{scripts.AIRGAP_STAGE_PARENT} 2>/dev/null || true").split()
    assert staged == []


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
    assert "not registered (NotFound)" in err
    # Last on the host: its `-scripts` step's delete finds nothing left to uninstall and
    # removes the bundle (and our directory).
    rc, _, err = ssh(host, scripts.remove_scripts_script(agent, settings.k3s))
    assert rc == 0, err
    assert "no k3s-agent-uninstall.sh" in err, err
    rc, _, err = hosts[0].run(f"sudo -n {K3S} kubectl get node {agent.name}")
    assert rc != 0 and "NotFound" in err  # and stays gone: nothing runs there
    leftovers = host.exec(
        "ls -d /etc/rancher /var/lib/rancher /etc/systemd/system/k3s* /usr/local/bin/k3s* "
        "/usr/local/bin/kubectl /usr/local/bin/crictl /usr/local/bin/ctr /var/lib/k3s-rancher "
        "~ubuntu/.k3s-rancher 2>/dev/null || true"
    )
    assert leftovers.strip() == ""
    assert host.exec("systemctl list-units --all --no-legend --plain 'k3s*'").strip() == ""
    assert "k3s agent" not in host.exec("ps -eo args")
