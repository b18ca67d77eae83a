"""A run killed inside an install's write-then-restart window converges on the next run, and a
rolled agent's update (RESTART=roll) decides on the host whether K3s must restart, and
restarts it, cordoned, only then (issue 23 item 1, issue 22 item 5). The kill is the installer
stand-in's test hook: SIGKILL to the whole command once every file is written, before anything
restarts K3s (as a killed `pulumi up` leaves it)."""

from __future__ import annotations

import dataclasses
import signal
import subprocess

import pytest

from components import scripts
from components.host_facts import KUBELET_KUBECONFIG
from components.settings import K3sSettings, Node
from tests.scripts.awkward import TOKEN, awkward_config, settings_for
from tests.scripts.sandbox import Sandbox, needs_sandbox, stdin, with_inputs

PENDING = "/var/lib/k3s-rancher/restart-pending"
NEW_TOKEN = "tok-new-0b5c2e7d41"


def _node(role: str = "server") -> tuple[Node, K3sSettings]:
    s = settings_for(awkward_config())
    return (s.servers[0] if role == "server" else s.agents[0]), s.k3s


def _killed(box: Sandbox, script: scripts.Script, secrets: str) -> subprocess.CompletedProcess[str]:
    (box.log / "kill-after-installer").write_text("")
    result = box.run(script, secrets)
    assert result.returncode == -signal.SIGKILL, (result.returncode, result.stderr)
    return result


def _restarts(box: Sandbox) -> int:
    return len(box.systemctl("restart"))


def _registered(box: Sandbox, agent: Node, k3s: K3sSettings) -> None:
    """The agent's Node, Ready at k3s.version, and its kubelet's kubeconfig (its own user)."""
    box.put(KUBELET_KUBECONFIG, f"# CN=system:node:{agent.name}\n", 0o600)
    box.set_state(nodes={agent.name: f"{k3s.version} True"})


def _changed(k3s: K3sSettings, what: str) -> K3sSettings:
    if what == "upgrade":
        return dataclasses.replace(k3s, version="v1.33.6+k3s1")
    return dataclasses.replace(k3s, server_config={**k3s.server_config, "kube-apiserver-arg": ["v=2"]})


@needs_sandbox
def test_a_config_change_killed_before_the_restart_restarts_k3s_on_the_next_run(box: Sandbox) -> None:
    node, k3s = _node()
    first = box.run(scripts.install_script(node, k3s, first_server=True), stdin())
    assert first.returncode == 0, first.stderr
    assert _restarts(box) == 1 and not box.path(PENDING).exists()
    changed = scripts.install_script(node, _changed(k3s, "config"), first_server=True)
    _killed(box, changed, stdin())
    assert "kube-apiserver-arg" in box.path(f"{scripts.CONF_DIR}/config.yaml").read_text()
    assert _restarts(box) == 1 and box.path(PENDING).exists()  # written, not restarted
    # The re-run finds every file as desired; the record says K3s does not run them yet.
    again = box.run(changed, stdin())
    assert again.returncode == 0, again.stderr
    assert "did not restart it; restarting now" in again.stderr
    assert _restarts(box) == 2 and not box.path(PENDING).exists()
    # And a run after that has nothing owed: no restart.
    assert box.run(changed, stdin()).returncode == 0
    assert _restarts(box) == 2


@needs_sandbox
def test_an_upgrade_killed_before_the_restart_restarts_k3s_on_the_next_run(box: Sandbox) -> None:
    node, k3s = _node()
    assert box.run(scripts.install_script(node, k3s, first_server=True), stdin()).returncode == 0
    upgrade = scripts.install_script(node, _changed(k3s, "upgrade"), first_server=True)
    _killed(box, upgrade, stdin())
    assert "v1.33.6+k3s1" in box.path("/usr/local/bin/k3s").read_text()  # the new binary is there
    assert _restarts(box) == 1
    again = box.run(upgrade, stdin())
    assert again.returncode == 0, again.stderr
    assert _restarts(box) == 2 and not box.path(PENDING).exists()


@needs_sandbox
def test_a_token_rotation_killed_before_the_restart_restarts_k3s_on_the_next_run(box: Sandbox) -> None:
    node, k3s = _node()
    script = scripts.install_script(node, k3s, first_server=True)
    assert box.run(script, stdin()).returncode == 0
    box.put("/var/lib/rancher/k3s/server/token", f"K10{'c' * 64}::server:{NEW_TOKEN}\n", 0o600)  # rotated
    rotating = scripts.install_stdin(NEW_TOKEN, None, rotated_from=TOKEN)
    _killed(box, script, rotating)
    assert box.path(scripts.TOKEN_FILE).read_text() == NEW_TOKEN + "\n" and _restarts(box) == 1
    again = box.run(script, rotating)
    assert again.returncode == 0, again.stderr
    assert _restarts(box) == 2 and not box.path(PENDING).exists()


def _roll(box: Sandbox, agent: Node, k3s: K3sSettings, repair: int = 0) -> subprocess.CompletedProcess[str]:
    """A rolled agent's update (RESTART=roll: sh/rollout.sh restarts K3s, cordoned, if it must)."""
    return box.run(scripts.install_script(agent, k3s, first_server=False, roll=True, repair=repair), stdin())


def _kubectl_verbs(box: Sandbox) -> list[str]:
    return [r["argv"][3] for r in box.records("k3s") if r["argv"][:1] == ["kubectl"]]


@needs_sandbox
def test_a_rolled_agents_update_restarts_k3s_only_when_something_changed(box: Sandbox) -> None:
    """The update of a rolled agent decides on the host whether K3s must restart: nothing
    changed, nothing restarts and nothing is cordoned; a real change restarts it once, between
    the cordon and the uncordon."""
    agent, k3s = _node("agent")
    created = box.run(scripts.install_script(agent, k3s, first_server=False), stdin())
    assert created.returncode == 0, created.stderr
    assert _restarts(box) == 1
    _registered(box, agent, k3s)
    # Nothing changed (a release of k3s-rancher, say): no restart owed, none done.
    same = _roll(box, agent, k3s)
    assert same.returncode == 0, same.stderr
    assert _restarts(box) == 1 and not box.path(PENDING).exists()
    assert "cordoned" not in box.state() and "cordon" not in _kubectl_verbs(box)
    # A real change: the files are written, then K3s restarts once, cordoned around it.
    upgraded = dataclasses.replace(k3s, version="v1.33.6+k3s1")
    _registered(box, agent, upgraded)
    changed = _roll(box, agent, upgraded)
    assert changed.returncode == 0, changed.stderr
    assert "v1.33.6+k3s1" in box.path("/usr/local/bin/k3s").read_text()
    assert _restarts(box) == 2 and not box.path(PENDING).exists()
    said = changed.stderr
    assert said.index("node w1 cordoned for its upgrade") < said.index("starting k3s-agent") < said.index("is back")
    assert box.state()["cordoned"] == []  # cordoned for the restart, uncordoned after it
    again = _roll(box, agent, upgraded)
    assert again.returncode == 0, again.stderr
    assert _restarts(box) == 2


@needs_sandbox
def test_a_rolled_update_killed_before_the_restart_restarts_k3s_on_the_next_run(box: Sandbox) -> None:
    """Killed between the writes and the restart (before any cordon): the restart stays owed,
    and the next rolled run, finding every file as desired, restarts K3s all the same, cordoned."""
    agent, k3s = _node("agent")
    assert box.run(scripts.install_script(agent, k3s, first_server=False), stdin()).returncode == 0
    upgraded = dataclasses.replace(k3s, version="v1.33.6+k3s1")
    _registered(box, agent, upgraded)
    _killed(box, scripts.install_script(agent, upgraded, first_server=False, roll=True), stdin())
    assert "v1.33.6+k3s1" in box.path("/usr/local/bin/k3s").read_text()  # the new binary is there
    assert _restarts(box) == 1 and box.path(PENDING).exists()  # written, not restarted
    assert "cordoned" not in box.state()
    again = _roll(box, agent, upgraded)
    assert again.returncode == 0, again.stderr
    assert "did not restart it; restarting now" in again.stderr
    assert "node w1 cordoned for its upgrade" in again.stderr
    assert _restarts(box) == 2 and not box.path(PENDING).exists()
    assert box.state()["cordoned"] == [] and "uncordon" in _kubectl_verbs(box)
    # And a run after that has nothing owed: no restart.
    assert _roll(box, agent, upgraded).returncode == 0
    assert _restarts(box) == 2


@needs_sandbox
def test_a_rolled_agent_whose_k3s_is_stopped_is_started_in_its_batch_without_a_drain(box: Sandbox) -> None:
    """Issue 25 item 2: an agent whose K3s was stopped (drift) has its kubelet down, so a drain
    could only wait out k3s.timeouts.drain: its rolled update starts K3s without a cordon or
    drain."""
    agent, k3s = _node("agent")
    assert box.run(scripts.install_script(agent, k3s, first_server=False), stdin()).returncode == 0
    box.set_state(services={"k3s-agent": {"state": "inactive"}})  # systemctl stop k3s-agent
    _registered(box, agent, k3s)
    started = _roll(box, agent, k3s, repair=1)
    assert started.returncode == 0, started.stderr
    assert "started without a cordon or drain" in started.stderr
    assert not {"cordon", "annotate", "create"} & set(_kubectl_verbs(box))
    assert _restarts(box) == 2 and not box.path(PENDING).exists()
    assert box.state()["services"]["k3s-agent"]["state"] == "active"


@needs_sandbox
def test_a_host_installed_before_the_restart_record_existed_needs_no_restart(box: Sandbox) -> None:
    """The migration from 0.1.0: a host with K3s running as desired and no record of ours
    (that release wrote none) is found as desired: no restart, no cordon."""
    agent, k3s = _node("agent")
    assert box.run(scripts.install_script(agent, k3s, first_server=False), stdin()).returncode == 0
    box.path(PENDING).unlink(missing_ok=True)
    _registered(box, agent, k3s)
    rolled = _roll(box, agent, k3s)
    assert rolled.returncode == 0, rolled.stderr
    assert _restarts(box) == 1 and not box.path(PENDING).exists()
    assert "cordon" not in _kubectl_verbs(box)


@needs_sandbox
def test_a_refused_token_is_named_not_taken_for_a_slow_host(box: Sandbox) -> None:
    """Issue 23 item 4: K3s's journal says 401 Unauthorized when the server refuses the token;
    the install says so instead of "raise k3s.timeouts.nodeReady"."""
    agent, k3s = _node("agent")
    k3s = dataclasses.replace(k3s, timeouts=dataclasses.replace(k3s.timeouts, node_ready=1))
    box.set_state(services={"k3s-agent": {"state": "inactive", "after_restart": "activating"}})
    (box.log / "journal.txt").write_text(
        'level=error msg="failed to get CA certs: https://10.0.0.11:6443/cacerts: 401 Unauthorized"\n'
    )
    result = box.run(scripts.install_script(agent, k3s, first_server=False), stdin())
    assert result.returncode != 0
    assert "the server refused this node's token (401 Unauthorized" in result.stderr
    assert "raise k3s.timeouts.nodeReady" not in result.stderr
    assert TOKEN not in result.stderr


@needs_sandbox
def test_two_installs_on_one_host_never_run_at_once(box: Sandbox) -> None:
    """Issue 23 item 5: a killed `up` leaves its provider finishing the command it had started;
    an install started meanwhile on the same host waits for it (bounded), then says why."""
    node, k3s = _node()
    script = with_inputs(scripts.install_script(node, k3s, first_server=True), LOCK_TIMEOUT="3")
    holder = subprocess.Popen(["sleep", "60"])  # a live process holding the lock
    try:
        box.put("/var/lib/k3s-rancher/lock/pid", f"{holder.pid}\n")
        box.put("/var/lib/k3s-rancher/lock/step", "install of cp1\n")
        blocked = box.run(script, stdin())
        assert blocked.returncode != 0
        assert "another k3s-rancher step ('install of cp1', process" in blocked.stderr
        assert "nothing was changed" in blocked.stderr
        assert not box.path(scripts.TOKEN_FILE).exists() and box.records("installer") == []
    finally:
        holder.kill()
        holder.wait()
    # The holder is gone: its lock is taken over, and released when the install ends.
    done = box.run(script, stdin())
    assert done.returncode == 0, done.stderr
    assert "taking over the lock" in done.stderr
    assert not box.path("/var/lib/k3s-rancher/lock").exists()


@needs_sandbox
@pytest.mark.parametrize("step", ["scripts-delete", "cleanup"])
def test_the_scripts_steps_delete_uninstalls_what_a_failed_first_install_left(box: Sandbox, step: str) -> None:
    """Issue 23 item 2: a first install that failed is not in the state, so its own delete never
    runs; the node's `-scripts` step (in the state before it, deleted after everything else on
    the host) uninstalls what it left, then removes the bundle. The `-cleanup` step it replaces
    (0.3.0; kept, retained, on stacks made before, until the record retires it) did the first half."""
    agent, k3s = _node("agent")
    k3s = dataclasses.replace(k3s, timeouts=dataclasses.replace(k3s.timeouts, node_ready=1))
    box.set_state(services={"k3s-agent": {"state": "inactive", "after_restart": "activating"}})
    failed = box.run(scripts.install_script(agent, k3s, first_server=False), stdin())
    assert failed.returncode != 0
    assert box.path("/etc/systemd/system/k3s-agent.service").exists()
    assert box.path(f"{scripts.CONF_DIR}/config.yaml").exists()
    delete = (
        scripts.remove_scripts_script(agent, k3s) if step == "scripts-delete" else scripts.cleanup_script(agent, k3s)
    )
    cleaned = box.run(delete)
    assert cleaned.returncode == 0, cleaned.stderr
    assert not box.path("/etc/systemd/system/k3s-agent.service").exists()
    assert not box.path("/usr/local/bin/k3s").exists() and not box.path("/etc/rancher").exists()
    assert not box.path(PENDING).exists()
    assert box.path("/var/lib/k3s-rancher").exists() == (step == "cleanup")
    if step == "scripts-delete":  # and with the bundle gone, again: nothing to do, no error
        again = box.run(delete)
        assert again.returncode == 0, again.stderr
        assert "no scripts bundle here" in again.stderr


@needs_sandbox
@pytest.mark.parametrize("step", ["scripts-delete", "cleanup"])
def test_the_leftovers_uninstall_leaves_a_node_of_the_other_role_alone(box: Sandbox, step: str) -> None:
    """A refused role change (an agent's host listed as a server) leaves the steps of the
    server that never installed: their deletes must not take the running agent's files."""
    agent, k3s = _node("agent")
    assert box.run(scripts.install_script(agent, k3s, first_server=False), stdin()).returncode == 0
    server = dataclasses.replace(agent, role="server")
    delete = (
        scripts.remove_scripts_script(server, k3s) if step == "scripts-delete" else scripts.cleanup_script(server, k3s)
    )
    result = box.run(delete)
    assert result.returncode == 0, result.stderr
    assert "runs K3s as the other role" in result.stderr
    assert box.path("/etc/systemd/system/k3s-agent.service").exists()
    assert box.path(scripts.TOKEN_FILE).read_text() == TOKEN + "\n"


@needs_sandbox
def test_the_leftovers_uninstall_leaves_a_completed_install_alone(box: Sandbox) -> None:
    """The leftovers uninstall is for a failed first install only: where an install of the node
    completed (a stack made before 0.3.0 leaving its `-cleanup` steps in a run without a
    record, its installs re-run first), K3s stays; after the node's own uninstall it runs."""
    agent, k3s = _node("agent")
    assert box.run(scripts.install_script(agent, k3s, first_server=False), stdin()).returncode == 0
    kept = box.run(scripts.cleanup_script(agent, k3s))
    assert kept.returncode == 0, kept.stderr
    assert "an install of this node completed here" in kept.stderr
    assert box.path("/etc/systemd/system/k3s-agent.service").exists() and box.path(scripts.TOKEN_FILE).exists()
    assert box.run(scripts.uninstall_script(agent, k3s)).returncode == 0
    assert not box.path("/var/lib/k3s-rancher/installed").exists()
    gone = box.run(scripts.remove_scripts_script(agent, k3s))
    assert gone.returncode == 0, gone.stderr
    assert "an install of this node completed here" not in gone.stderr
    assert not box.path("/var/lib/k3s-rancher").exists()
