"""Tier 2, crash safety (issue 23): the real Pulumi engine against systemd test hosts, where a
first install fails or a run dies inside an install's write-then-restart window.

- A join refused by the server (an agent whose token the cluster no longer accepts: the
  init server's token was rotated out of band with `k3s token rotate`, so the stack's token
  is refused, as K3s refuses it: the agent retries for ever and logs `401 Unauthorized`
  from the supervisor, pkg/agent/config): `pulumi up` fails quickly and says that the
  server refused the node's token (not "raise k3s.timeouts.nodeReady"), without showing a
  token. What the failed first install left on the host is then removed either by taking
  the node out of config (the server untouched) or by `pulumi destroy` (issue 23 items 2
  and 4: the `<node>-scripts` step's delete; a new stack has no `<node>-cleanup` step, which
  did it before 0.3.0).
- A run killed after the installer wrote K3s's files and before K3s was restarted (issue 23
  item 1): the installer STAND-IN's one-shot hook (/run/k3sr-kill-after-installer, in
  tests/real/standin/install.sh) SIGKILLs the install's whole process group, as a killed
  SSH session would. The README's recovery ("A failed or interrupted up") then restarts K3s
  exactly once, on the new version, and leaves nothing to change.

The K3s binary, its installer and the command provider are STAND-INs (tests/real/standin/,
tests/real/engine/command-standin/).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.real.engine_project import TOKEN, EngineProject, engine_bin, make_project
from tests.real.standin_k3s import standin_binary
from tests.real.test_engine_faults import assert_whole, nodes_ready, unit_state

pytestmark = pytest.mark.real

V1, V2 = "v1.33.5+k3s1", "v1.33.6+k3s1"
# The token the init server is given out of band (`k3s token rotate`): the stack's own token
# is then refused by the supervisor.
OUT_OF_BAND = "tier2-out-of-band-token-5a4b3c2d1e0f"
# nodeReady bounds the agent's wait for K3s to come up (the schema's minimum is 10 s): a
# refused join fails after it.
NODE_READY = 20
K3S = {"timeouts": {"nodeReady": NODE_READY, "clusterReady": 60, "drain": 10}}
KILL_HOOK = "/run/k3sr-kill-after-installer"
KILLED = "/run/k3sr-killed-after-installer"
RESTART_PENDING = "/var/lib/k3s-rancher/restart-pending"
REFUSED = "the server refused this node's token"
SLOW_HOST_HINT = "raise k3s.timeouts.nodeReady"


@dataclass
class Stack:
    project: EngineProject
    hosts: list[Any]
    tmp: Path
    binaries: dict[str, Path] = field(default_factory=dict)

    def binary(self, version: str) -> Path:
        if version not in self.binaries:
            directory = self.tmp / version
            directory.mkdir()
            self.binaries[version] = standin_binary(directory, version)
        return self.binaries[version]

    def configure(self, version: str = V1, agent: bool = False) -> None:
        """srv-1 on hosts[0]; with `agent`, agt-1 on hosts[1]."""
        hosts = self.hosts if agent else self.hosts[:1]
        self.project.configure(hosts, 1, version, self.binary(version), k3s=K3S)

    @property
    def server(self) -> Any:
        return self.hosts[0]

    @property
    def agent(self) -> Any:
        return self.hosts[1]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from tests.real.hosts import test_hosts

    bin_dir = engine_bin()
    tmp = tmp_path_factory.mktemp("crash")
    with test_hosts(2, kubernetes=True) as hosts:
        project = make_project(tmp, bin_dir)
        project.set_secret("token", TOKEN)
        project.set_secret("sshPrivateKey", hosts[0].private_key)
        try:
            yield Stack(project, list(hosts), tmp)
        finally:
            for host in hosts:
                host.exec(f"rm -f {KILL_HOOK}", check=False)
            project.kill_leftovers()
            project.pulumi("cancel", "--yes", check=False, timeout=120)
            project.pulumi("destroy", "--yes", "--skip-preview", check=False, timeout=600)


# --- helpers -----------------------------------------------------------------------------------


def resources(project: EngineProject) -> set[str]:
    """The names of the resources in the stack's state."""
    exported = json.loads(project.pulumi("stack", "export").stdout)
    return {r["urn"].rsplit("::", 1)[1] for r in exported["deployment"].get("resources") or []}


def locked(stack: Stack) -> bool:
    """The file backend's lock of the stack is there (a CLI that died without saving its end)."""
    locks = stack.tmp / "state" / ".pulumi" / "locks"
    return locks.exists() and any(p.is_file() for p in locks.rglob("*"))


def failing_up(project: EngineProject, timeout: float = 300) -> tuple[str, float]:
    """Run an `up` that must fail (bounded); return its output and how long it took."""
    start = time.monotonic()
    rc, lines = project.run_stamped("up", "--yes", "--skip-preview", timeout=timeout)
    took = time.monotonic() - start
    output = "\n".join(line for _, line in lines)
    assert rc != 0, f"pulumi up succeeded:\n{output[-4000:]}"
    return output, took


def refuse_the_stack_token(server: Any) -> None:
    """Rotate the init server's token to OUT_OF_BAND, out of band (as an operator would with
    `k3s token rotate`), once: K3s keeps running and from then on its supervisor refuses the
    stack's token (pkg/server/auth.go: 401)."""
    if server.exec("cat /var/lib/rancher/k3s/server/token").strip().endswith(f"::server:{OUT_OF_BAND}"):
        return
    server.exec('k3s token rotate --token "$(cat)" --new-token ' + OUT_OF_BAND, stdin=TOKEN)


def failed_first_join(stack: Stack) -> str:
    """srv-1 up, its token rotated out of band, then agt-1 added: its first install fails
    because the server refuses its token. Returns the failed up's output, checked."""
    stack.configure()
    stack.project.pulumi("up", "--yes", "--skip-preview")
    refuse_the_stack_token(stack.server)
    stack.configure(agent=True)
    output, took = failing_up(stack.project)

    # The host's K3s log (of this start: an earlier failed install's lines stay in the
    # journal) has what K3s logs for it: the supervisor's 401, retried.
    journal = stack.agent.exec(
        "journalctl --no-pager -o cat _SYSTEMD_INVOCATION_ID=$(systemctl show -p InvocationID --value k3s-agent)"
    )
    assert "401 Unauthorized" in journal, journal[-3000:]
    # The error says what happened, not that the host is slow...
    assert REFUSED in output, output[-4000:]
    assert SLOW_HOST_HINT not in output, output[-4000:]
    assert "agt-1-install" in output, output[-4000:]
    # ... and shows no token: not the stack's, not the one the cluster has now.
    assert TOKEN not in output and OUT_OF_BAND not in output, "a token is in the CLI output"
    # It fails once the agent's wait is over, not after a long retry.
    assert took < NODE_READY + 150, f"the failed up took {took:.0f}s"
    # What can uninstall the failed install (its `-scripts` step, deleted last on the host) is
    # in the state; the install is not. A new stack has no `-cleanup` step (retired in 0.3.0).
    state = resources(stack.project)
    assert "agt-1-scripts" in state and "agt-1-install" not in state, sorted(state)
    assert not [name for name in state if name.endswith("-cleanup")], sorted(state)
    # The failed install left K3s on the host (so there is something to clean up).
    assert stack.agent.exec_result("test -e /etc/systemd/system/k3s-agent.service")[0] == 0
    return output


def assert_no_k3s(host: Any, what: str) -> None:
    """Nothing of K3s or of k3s-rancher left on the host: units, binary, config, data, our
    directory (bundle, records, airgap copies), the staged airgap files, K3s processes."""
    for path in (
        "/etc/systemd/system/k3s.service",
        "/etc/systemd/system/k3s-agent.service",
        "/etc/systemd/system/k3s-agent.service.env",
        "/usr/local/bin/k3s",
        "/usr/local/bin/k3s-agent-uninstall.sh",
        "/usr/local/bin/k3s-killall.sh",
        "/etc/rancher",
        "/var/lib/rancher",
        "/var/lib/k3s-rancher",
        "/home/ubuntu/.k3s-rancher",
    ):
        rc, out, _ = host.exec_result(f"ls -ld {path}")
        assert rc != 0, f"{what}: {path} is still there: {out.strip()}"
    processes = host.exec("ps -e -o args=").splitlines()
    assert not [p for p in processes if "k3s" in p.split(" ", 1)[0]], f"{what}: K3s still runs: {processes}"
    assert host.exec("systemctl is-active k3s-agent k3s", check=False).split() == ["inactive", "inactive"]


def kubelet_version(server: Any, name: str) -> str:
    """The version the node's running K3s reports (the Node's kubeletVersion)."""
    return server.exec(f"k3s kubectl get node {name} -o jsonpath='{{.status.nodeInfo.kubeletVersion}}'").strip()


# --- tests (in this order: each starts from where the previous one left the hosts) --------------


def test_a_refused_join_then_the_node_removed_from_config_leaves_its_host_clean(stack: Stack) -> None:
    failed_first_join(stack)
    before = unit_state(stack.server, "k3s")
    assert before[:2] == ("enabled", "active"), before

    stack.configure()  # agt-1 taken out of config
    stack.project.pulumi("up", "--yes", "--skip-preview")

    assert_no_k3s(stack.agent, "agt-1's host after its removal")
    # The server was not touched: same process (InvocationID), still serving, nothing of
    # agt-1 left in the state.
    assert unit_state(stack.server, "k3s") == before
    nodes_ready(stack.server, ("srv-1",), timeout=60)
    assert not [r for r in resources(stack.project) if r.startswith("agt-1")]
    stack.project.pulumi("preview", "--expect-no-changes")


def test_a_refused_join_is_named_and_destroy_leaves_no_k3s(stack: Stack) -> None:
    failed_first_join(stack)

    destroy = stack.project.pulumi("destroy", "--yes", check=False, timeout=600)
    assert destroy.returncode == 0, destroy.stdout[-4000:] + destroy.stderr[-2000:]
    assert TOKEN not in destroy.stdout + destroy.stderr
    assert_no_k3s(stack.agent, "agt-1's host after destroy")
    assert_no_k3s(stack.server, "srv-1's host after destroy")


def test_a_run_killed_between_the_installers_writes_and_the_restart_restarts_k3s_once_on_the_rerun(
    stack: Stack,
) -> None:
    server = stack.server
    stack.configure(V1)
    stack.project.pulumi("up", "--yes", "--skip-preview")
    nodes_ready(server, ("srv-1",), timeout=60)
    assert kubelet_version(server, "srv-1") == V1
    starts = server.unit_starts("k3s")
    _, _, invocation = unit_state(server, "k3s")

    # The upgrade to V2, killed right after the installer wrote its files.
    server.exec(f"rm -f {KILLED} && touch {KILL_HOOK}")
    stack.configure(V2)
    output, _ = failing_up(stack.project)
    assert "srv-1-install" in output, output[-4000:]
    assert server.exec_result(f"test -e {KILL_HOOK}")[0] != 0, "the installer's kill hook never ran"
    killed = server.exec(f"cat {KILLED}")
    assert "sudo" in killed, f"the kill did not take the SSH command's process group:\n{killed}"
    # Inside the window: V2 on disk, K3s still running V1 (not restarted), the restart owed.
    assert V2 in server.exec("/usr/local/bin/k3s --version")
    assert unit_state(server, "k3s")[1:] == ("active", invocation)
    assert kubelet_version(server, "srv-1") == V1
    assert server.exec_result(f"test -f {RESTART_PENDING}")[0] == 0, "no restart-pending record"

    # The README's recovery: cancel only if locked, refresh only for pending creates, up.
    stack.project.kill_leftovers()
    if locked(stack):
        stack.project.pulumi("cancel", "--yes")
    if any(op["type"] == "creating" for op in stack.project.pending_operations()):
        stack.project.pulumi("refresh", "--yes", "--skip-preview", "--clear-pending-creates")
    rerun = stack.project.pulumi("up", "--yes", "--skip-preview").stdout
    # The restart comes from the record (every file was already as desired: the installer's
    # hashes alone would restart nothing).
    assert "an earlier run changed K3s's files and did not restart it" in rerun, rerun[-4000:]

    # K3s restarted exactly once more, and runs V2.
    assert server.unit_starts("k3s") == starts + 1, (starts, server.unit_starts("k3s"))
    enabled, active, now = unit_state(server, "k3s")
    assert (enabled, active) == ("enabled", "active") and now != invocation
    nodes_ready(server, ("srv-1",), timeout=60)
    assert kubelet_version(server, "srv-1") == V2
    assert server.exec_result(f"test -e {RESTART_PENDING}")[0] != 0, "the restart record was not cleared"
    assert_whole(server, "srv-1")
    stack.project.pulumi("preview", "--expect-no-changes")
