"""Tier 2, the kill-point matrix (issue 23): for an upgrade, a config change, a token rotation
and a server removal, the run is killed at each step boundary and inside each install's
write-then-restart window, and the README's recovery ("A failed or interrupted up":
`pulumi cancel`, `pulumi refresh --clear-pending-creates`, `pulumi up`) converges with K3s
running what the stack says.

One cluster (srv-1 and srv-2 on embedded etcd, agt-1), four changes in a row. For each change:

1. Inside each install's window: the installer stand-in's one-shot hook
   (/run/k3sr-kill-after-installer, tests/real/standin/install.sh) SIGKILLs the install's
   process group once the installer has written K3s's files and before anything restarts K3s,
   one host per run, in plan order; each run fails at that install and the next is the
   README's recovery. An agent's install (in its k3s.upgrade batch) also cordons, drains,
   restarts and uncordons it: for the upgrade, the k3s stand-in's one-shot hooks
   (/run/k3sr-kill-after-cordon, /run/k3sr-kill-before-uncordon, in its `kubectl`) kill it
   once it has cordoned the agent, and once K3s has restarted and before the uncordon.
2. At each step boundary: the command provider stand-in's test hook (K3SR_STANDIN_KILL,
   tests/real/engine/command-standin/killhook.go) SIGKILLs the engine right after a step's
   command ran on its host and before the engine recorded it: the host has changed and the
   state does not know (the worst moment at a boundary; killing before a step leaves state
   and hosts as a failed step does). The recovery after each kill is itself the run killed
   at the next step the plan still holds, so every recovery re-runs the step the kill before
   it interrupted, and every step still planned when its turn comes is killed once (a step
   the engine runs beside an earlier one, such as an airgap copy, may finish in that run).
3. A last `up` with no kill, then: every node Ready and schedulable, K3s on every host
   started after every file the install writes (so it runs what is on disk), no restart owed,
   what the stack says on disk (version, config, token), and `preview --expect-no-changes`.

The K3s binary, its installer and the command provider are STAND-INs (tests/real/standin/,
tests/real/engine/command-standin/).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.real.engine_project import EngineProject, stand_in_cluster
from tests.real.standin_k3s import standin_binary
from tests.real.test_engine_crash_safety import assert_no_k3s, kubelet_version
from tests.real.test_engine_faults import assert_whole, nodes_ready
from tests.real.test_engine_preview import documented_sidecar_fix
from tests.real.test_engine_server_removal import members, node_names

pytestmark = pytest.mark.real

V1, V2, V3, V4 = "v1.33.5+k3s1", "v1.33.6+k3s1", "v1.33.7+k3s1", "v1.33.8+k3s1"
NEW_TOKEN = "tier2-killpoints-new-token-6e5d4c3b2a19"
NEWER_TOKEN = "tier2-killpoints-newer-token-1a2b3c4d5e6f"
K3S = {"datastore": "etcd", "initServer": "srv-1", "timeouts": {"nodeReady": 60, "clusterReady": 90, "drain": 10}}
CONFIG_CHANGE = {
    "serverConfig": {"tls-san": ["kill-points.example.com"]},
    "agentConfig": {"kubelet-arg": ["max-pods=120"]},
}
CONFIG_CHANGE_2 = {
    **CONFIG_CHANGE,
    "agentConfig": {"kubelet-arg": ["max-pods=130"]},
    "serverConfig": {"tls-san": ["kill-points.example.com", "kp2.example.com"]},
}
NAMES = ("srv-1", "srv-2", "agt-1")
UNITS = {"srv-1": "k3s", "srv-2": "k3s", "agt-1": "k3s-agent"}
INSTALLER_HOOK = "/run/k3sr-kill-after-installer"
# The k3s stand-in's kubectl hooks (tests/real/standin/k3s kill_at_cordon_hook), by what the
# agent is when its install is killed.
CORDON_HOOKS = {"cordoned": "/run/k3sr-kill-after-cordon", "restarted": "/run/k3sr-kill-before-uncordon"}
INSTALLER_KILLED = "/run/k3sr-killed-after-installer"
RESTART_PENDING = "/var/lib/k3s-rancher/restart-pending"
TOKEN_FILE = "/etc/rancher/k3s/cluster-token"
# What an install writes that the running K3s reads at its start, and that is written only
# when its content changes (lib.sh put_file; the airgap binary). The installer rewrites the
# unit and its env file on every run, same content or not (install.sh
# create_systemd_service_file, create_env_file): those are checked by systemd's
# NeedDaemonReload instead.
K3S_FILES = (
    "/usr/local/bin/k3s",
    "/etc/rancher/k3s/config.yaml",
    "/etc/rancher/k3s/config.yaml.d",
    TOKEN_FILE,
)


@dataclass
class Matrix:
    project: EngineProject
    hosts: dict[str, Any]
    binary: Path
    tmp: Path
    version: str = V1
    k3s: dict[str, Any] = field(default_factory=lambda: dict(K3S))
    names: tuple[str, ...] = NAMES
    killed: list[str] = field(default_factory=list)  # every kill point, in order, for the report

    def configure(self) -> None:
        hosts = [self.hosts[n] for n in self.names]
        servers = sum(1 for n in self.names if n.startswith("srv-"))
        self.project.configure(hosts, servers, self.version, self.binary, k3s=self.k3s)

    @property
    def init(self) -> Any:
        return self.hosts["srv-1"]


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    tmp = tmp_path_factory.mktemp("killpoints")
    with stand_in_cluster(tmp, 3, 2, V1, K3S) as (project, hosts, binary):
        m = Matrix(project, dict(zip(NAMES, hosts, strict=True)), binary, tmp)
        try:
            yield m
        finally:
            for host in hosts:
                host.exec(f"rm -f {INSTALLER_HOOK} {' '.join(CORDON_HOOKS.values())}", check=False)
            project.kill_leftovers()
            project.pulumi("cancel", "--yes", check=False, timeout=120)


# --- the runs ---------------------------------------------------------------------------------


def planned(project: EngineProject) -> list[str]:
    """The commands the next `up` would run (create, update, replace or delete), in the order
    `pulumi preview --json` lists them (the engine's)."""
    names: list[str] = []
    for step in project.preview_steps():
        kind = step["urn"].split("::")[2].rsplit("$", 1)[-1]
        name = step["urn"].rsplit("::", 1)[1]
        if step["op"] != "same" and kind.startswith("command:") and name not in names:
            names.append(name)
    return names


def recover(project: EngineProject) -> None:
    """The README's recovery after a killed `up` (its orphaned plugins killed first, as a
    CI job's teardown does): remove a metadata sidecar the kill left empty (the file
    backend's default URL writes them in place; see test_engine_preview.py), cancel the
    stale lock, drop pending creates. The next `up` is the caller's."""
    project.kill_leftovers()
    state = project.env["PULUMI_BACKEND_URL"].removeprefix("file://").split("?", 1)[0]
    subprocess.run(["bash", "-c", documented_sidecar_fix()], env={**project.env, "STATE_DIR": state}, check=True)
    project.pulumi("cancel", "--yes", check=False, timeout=120)
    project.pulumi("refresh", "--yes", "--skip-preview", "--clear-pending-creates", timeout=600)


def up(project: EngineProject, env: dict[str, str] | None = None) -> tuple[int, str]:
    saved = project.env
    project.env = {**saved, **(env or {})}
    try:
        result = project.pulumi("up", "--yes", "--skip-preview", check=False, timeout=900)
    finally:
        project.env = saved
    return result.returncode, result.stdout + result.stderr


def window_kills(m: Matrix) -> None:
    """Kill each install of the plan inside its write-then-restart window, one per run."""
    installs = [n for n in planned(m.project) if n.endswith("-install") and n.rsplit("-", 1)[0] in m.hosts]
    for install in installs:
        node = install.removesuffix("-install")
        host = m.hosts[node]
        host.exec(f"rm -f {INSTALLER_KILLED} && touch {INSTALLER_HOOK}")
        rc, output = up(m.project)
        fired = host.exec_result(f"test -e {INSTALLER_HOOK}")[0] != 0
        host.exec(f"rm -f {INSTALLER_HOOK}")
        if not fired:  # the install did not run the installer this time (nothing to do there)
            assert rc == 0, output[-4000:]
            continue
        assert rc != 0 and install in output, f"{install}: the killed install did not fail the up:\n{output[-4000:]}"
        assert host.exec_result(f"test -f {RESTART_PENDING}")[0] == 0, f"{install}: no restart owed after the kill"
        m.killed.append(f"window:{install}")
        recover(m.project)


def cordon_kills(m: Matrix, agent: str) -> None:
    """Kill `agent`'s install once it has cordoned the agent (K3s not restarted yet), then, in
    the recovery's run, once K3s runs the new files and before the uncordon: each run fails at
    that install and leaves the agent cordoned."""
    host = m.hosts[agent]
    for when, hook in CORDON_HOOKS.items():
        host.exec(f"touch {hook}")
        rc, output = up(m.project)
        fired = host.exec_result(f"test -e {hook}")[0] != 0
        host.exec(f"rm -f {hook}")
        install = f"{agent}-install"
        assert fired and rc != 0 and install in output, f"{hook}: the install was not killed:\n{output[-4000:]}"
        cordoned = m.init.exec(f"k3s kubectl get node {agent} -o jsonpath='{{.spec.unschedulable}}'").strip()
        assert cordoned == "true", f"{hook}: {agent} is not cordoned after the kill"
        owed = host.exec_result(f"test -f {RESTART_PENDING}")[0] == 0
        assert owed == (when == "cordoned"), f"{hook}: restart owed: {owed}"
        running = kubelet_version(m.init, agent)
        assert (running == m.version) == (when == "restarted"), f"{hook}: {agent} runs {running}"
        m.killed.append(f"{when}:{install}")
        recover(m.project)


def boundary_kills(m: Matrix) -> None:
    """Kill the engine right after each planned step ran on its host, one step per run, each
    run being the recovery of the one before."""
    marker = m.tmp / "standin-killed"
    done: set[str] = set()
    for _ in range(60):  # bounded: every step of a plan is killed once
        todo = [n for n in planned(m.project) if n not in done]
        if not todo:
            return
        target = todo[0]
        done.add(target)
        marker.unlink(missing_ok=True)
        rc, output = up(m.project, {"K3SR_STANDIN_KILL": f"after:{target}", "K3SR_STANDIN_KILLED": str(marker)})
        if not marker.exists():
            # The step did not run (an earlier re-run already did its work, so the engine
            # found nothing to change): the run went to its end.
            assert rc == 0, f"{target}: not killed, and the up failed:\n{output[-4000:]}"
            continue
        assert rc != 0, f"{target}: the engine was killed and the up exited 0"
        m.killed.append(f"after:{target}:{marker.read_text().split()[-1]}")
        recover(m.project)
    raise AssertionError(f"the plan never emptied; killed {m.killed}")


def at_every_boundary(m: Matrix, change: Callable[[], None]) -> list[str]:
    """Apply `change`, kill the runs at every step boundary, then a last `up`."""
    change()
    m.configure()
    start = len(m.killed)
    boundary_kills(m)
    rc, output = up(m.project)
    assert rc == 0, output[-4000:]
    return m.killed[start:]


def in_every_window(m: Matrix, change: Callable[[], None]) -> list[str]:
    """Apply `change`, kill each install inside its window, then a last `up`."""
    change()
    m.configure()
    start = len(m.killed)
    window_kills(m)
    rc, output = up(m.project)
    assert rc == 0, output[-4000:]
    return m.killed[start:]


# --- what the stack says, on the hosts --------------------------------------------------------


def started_at(host: Any, unit: str) -> int:
    """When the unit's running process started (epoch seconds)."""
    return int(host.exec(f'date -d "$(systemctl show -p ExecMainStartTimestamp --value {unit})" +%s').strip())


def newest_write(host: Any) -> tuple[int, str]:
    """The newest modification (epoch seconds) among the files K3s reads at its start."""
    paths = " ".join(K3S_FILES)
    out = host.exec(f"find {paths} -maxdepth 1 -printf '%T@ %p\\n' 2>/dev/null || true")
    stamps = [(float(line.split()[0]), line.split()[1]) for line in out.splitlines() if line.strip()]
    stamp, path = max(stamps)
    return int(stamp), path


def converged(m: Matrix) -> None:
    nodes_ready(m.init, m.names, timeout=120)
    for name in m.names:
        host, unit = m.hosts[name], UNITS[name]
        assert_whole(host, name, unit)
        written, path = newest_write(host)
        assert started_at(host, unit) >= written, f"{name}: {unit} started before {path} was last written"
        reload = host.exec(f"systemctl show -p NeedDaemonReload --value {unit}").strip()
        assert reload == "no", f"{name}: {unit}'s unit file changed and systemd did not reload it"
        assert host.exec_result(f"test -e {RESTART_PENDING}")[0] != 0, f"{name}: a restart is still owed"
        assert kubelet_version(m.init, name) == m.version, name
        assert m.version in host.exec("/usr/local/bin/k3s --version")
        unschedulable = m.init.exec(f"k3s kubectl get node {name} -o jsonpath='{{.spec.unschedulable}}'").strip()
        assert unschedulable in ("", "false"), f"{name} is left cordoned"
    assert node_names(m.init) == sorted(m.names)
    assert [member.rsplit("-", 1)[0] for member in members(m.init)] == [n for n in m.names if n.startswith("srv-")]
    m.project.pulumi("preview", "--expect-no-changes")


# --- tests (in this order: each starts from where the one before left the cluster) -------------


def upgrade_to(m: Matrix, version: str) -> Callable[[], None]:
    def change() -> None:
        (m.tmp / version).mkdir()
        m.version, m.binary = version, standin_binary(m.tmp / version, version)

    return change


def test_an_upgrade_killed_at_every_point_converges(matrix: Matrix) -> None:
    killed = at_every_boundary(matrix, upgrade_to(matrix, V2))
    print("upgrade, boundaries:", killed)
    # Every step of the upgrade: per server the install and its ready check, per agent its
    # install (which, in the agent's batch, also cordons, drains, restarts K3s, waits for Ready
    # and uncordons), then the cluster's checks; each node's install killed after its update ran.
    assert {f"after:{n}-install:update" for n in NAMES} <= set(killed), killed
    assert {f"after:{n}-ready:update" for n in ("srv-1", "srv-2")} <= set(killed), killed
    converged(matrix)

    killed = in_every_window(matrix, upgrade_to(matrix, V3))
    print("upgrade, windows:", killed)
    assert killed == [f"window:{n}-install" for n in NAMES], killed
    converged(matrix)

    # The agent's install killed while it holds the agent cordoned, before and after the restart.
    upgrade_to(matrix, V4)()
    matrix.configure()
    start = len(matrix.killed)
    cordon_kills(matrix, "agt-1")
    rc, output = up(matrix.project)
    assert rc == 0, output[-4000:]
    print("upgrade, cordoned:", matrix.killed[start:])
    assert matrix.killed[start:] == ["cordoned:agt-1-install", "restarted:agt-1-install"], matrix.killed
    converged(matrix)


def test_a_config_change_killed_at_every_point_converges(matrix: Matrix) -> None:
    killed = at_every_boundary(matrix, lambda: matrix.k3s.update(CONFIG_CHANGE))
    print("config, boundaries:", killed)
    assert {f"after:{n}-install:update" for n in NAMES} <= set(killed), killed
    converged(matrix)
    for name in ("srv-1", "srv-2"):
        assert "kill-points.example.com" in matrix.hosts[name].exec("cat /etc/rancher/k3s/config.yaml")
    assert "max-pods=120" in matrix.hosts["agt-1"].exec("cat /etc/rancher/k3s/config.yaml")

    killed = in_every_window(matrix, lambda: matrix.k3s.update(CONFIG_CHANGE_2))
    print("config, windows:", killed)
    assert killed == [f"window:{n}-install" for n in NAMES], killed
    converged(matrix)
    assert "max-pods=130" in matrix.hosts["agt-1"].exec("cat /etc/rancher/k3s/config.yaml")


def rotate_to(m: Matrix, token: str) -> Callable[[], None]:
    return lambda: m.project.set_secret("newToken", token)


def tidy_up(m: Matrix, token: str) -> None:
    """After a rotation: token := the new one, newToken removed; changes nothing on hosts."""
    m.project.set_secret("token", token)
    m.project.pulumi("config", "rm", "k3s-rancher:newToken")
    m.project.pulumi("up", "--yes", "--skip-preview")
    converged(m)


def assert_token(m: Matrix, token: str) -> None:
    for name in m.names:
        assert m.hosts[name].exec(f"cat {TOKEN_FILE}").strip() == token, name
    assert m.init.exec("cat /var/lib/rancher/k3s/server/token").strip().endswith(f"::server:{token}")


def test_a_token_rotation_killed_at_every_point_converges(matrix: Matrix) -> None:
    killed = at_every_boundary(matrix, rotate_to(matrix, NEW_TOKEN))
    print("rotation, boundaries:", killed)
    assert "after:tier2-token-rotation:create" in killed, killed
    converged(matrix)
    assert_token(matrix, NEW_TOKEN)
    tidy_up(matrix, NEW_TOKEN)

    killed = in_every_window(matrix, rotate_to(matrix, NEWER_TOKEN))
    print("rotation, windows:", killed)
    assert killed == [f"window:{n}-install" for n in NAMES], killed
    converged(matrix)
    assert_token(matrix, NEWER_TOKEN)
    tidy_up(matrix, NEWER_TOKEN)


def test_a_server_removal_killed_at_every_point_converges(matrix: Matrix) -> None:
    removed = matrix.hosts["srv-2"]

    def change() -> None:
        matrix.names = ("srv-1", "agt-1")

    killed = at_every_boundary(matrix, change)
    print("removal, boundaries:", killed)
    # Its steps are deletes: the etcd member's removal, the uninstall, the Node's drain and
    # delete (forget). (The bundle's removal runs beside them: it is killed only when it is
    # still planned when its turn comes.)
    for step in ("membership", "install", "forget"):
        assert f"after:srv-2-{step}:delete" in killed, killed
    converged(matrix)
    assert_no_k3s(removed, "srv-2's host after its removal")
