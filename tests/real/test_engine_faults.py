"""Tier 2 faults: the real Pulumi engine (CLI v3.274.1, file backend) against systemd test
hosts when things go wrong. Each case must converge with nothing left half-done.

- a `pulumi up` killed mid-install (SIGINT, then SIGKILL, then the job's leftovers killed):
  the documented recovery (README, Lifecycle rules, "A failed or interrupted up") converges;
- a host unreachable during `up`: a clear error naming the node, within the SSH dial
  limits; once the host is back, `up` converges;
- a host rebooted after `up`: K3s comes back by itself and the next `up` changes nothing.

The command provider is our STAND-IN (tests/real/engine/command-standin/, behaviours and
the pulumi-command lines they imitate listed in remote.go); the k3s binary and installer
on the hosts are STAND-INs too (tests/real/standin/). The reboot case and the checks of
units need hosts that boot systemd (tests/real/hosts.py: `reboot`, `stop`, `start`): on
hosts without them those tests are skipped with that reason.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.real.engine_project import TOKEN, EngineProject, engine_bin, make_project
from tests.real.standin_k3s import standin_binary

pytestmark = pytest.mark.real

V1, V2, V3 = "v1.33.5+k3s1", "v1.33.6+k3s1", "v1.33.7+k3s1"
# Small SSH dial limits for the unreachable-host case: at most DIAL_LIMIT + 1 dials of at
# most PER_DIAL seconds each, plus the retry delays (0.1 s growing 1.5x: < 1 s for 3 dials).
DIAL_LIMIT, PER_DIAL = 2, 5
SSH = {"dialErrorLimit": DIAL_LIMIT, "perDialTimeout": PER_DIAL}
NAMES = ("srv-1", "agt-1")
UNITS = {"srv-1": "k3s", "agt-1": "k3s-agent"}


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EngineProject, list[Any], Path]]:
    from tests.real.hosts import test_hosts

    bin_dir = engine_bin()
    tmp = tmp_path_factory.mktemp("faults")
    with test_hosts(2, kubernetes=True) as hosts:
        project = make_project(tmp, bin_dir)
        project.set_secret("token", TOKEN)
        project.set_secret("sshPrivateKey", hosts[0].private_key)
        try:
            yield project, list(hosts), tmp
        finally:
            project.kill_leftovers()
            project.pulumi("cancel", "--yes", check=False, timeout=120)
            project.pulumi("destroy", "--yes", "--skip-preview", check=False, timeout=900)


def systemd_hosts(hosts: list[Any]) -> None:
    if not all(hasattr(h, "reboot") and hasattr(h, "stop") for h in hosts):
        pytest.skip("needs the systemd test hosts (tests/real/hosts.py reboot/stop/start): not on this branch yet")


def unit_state(host: Any, unit: str) -> tuple[str, str, str]:
    """(is-enabled, is-active, InvocationID): the last changes at every (re)start."""
    enabled = host.exec(f"systemctl is-enabled {unit}", check=False).strip()
    active = host.exec(f"systemctl is-active {unit}", check=False).strip()
    invocation = host.exec(f"systemctl show -p InvocationID --value {unit}", check=False).strip()
    return enabled, active, invocation


def assert_whole(host: Any, name: str, unit: str | None = None) -> None:
    """One K3s service, the one of the node's role (`unit`, else this module's UNITS),
    enabled and running; config.yaml complete and no temporary copy of it left behind."""
    unit = unit or UNITS[name]
    units = host.exec("ls /etc/systemd/system | grep -E '^k3s(-agent)?\\.service$' || true").split()
    assert units == [f"{unit}.service"], f"{name}: K3s units {units}"
    enabled, active, _ = unit_state(host, unit)
    assert (enabled, active) == ("enabled", "active"), f"{name}: {unit} is {enabled}/{active}"
    files = host.exec("ls -A /etc/rancher/k3s").split()
    assert "config.yaml" in files, f"{name}: no config.yaml"
    # put_file's temporary copies (mktemp DEST.XXXXXX) of config.yaml or a drop-in
    leftovers = host.exec("find /etc/rancher/k3s -name '*.yaml.??????'").split()
    assert not leftovers, f"{name}: half-written copies left: {leftovers}"
    config = host.exec("cat /etc/rancher/k3s/config.yaml")
    assert config.endswith("\n") and config.strip(), f"{name}: config.yaml is not whole:\n{config}"


def nodes_ready(server: Any, names: tuple[str, ...], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    out = ""
    while time.monotonic() < deadline:
        rc, out, _ = server.exec_result("k3s kubectl get nodes --no-headers", timeout=30)
        ready = {line.split()[0] for line in out.splitlines() if len(line.split()) > 1 and line.split()[1] == "Ready"}
        if rc == 0 and set(names) <= ready:
            return
        time.sleep(2)
    raise AssertionError(f"nodes {names} not Ready within {timeout}s:\n{out}")


def assert_no_changes(project: EngineProject) -> None:
    project.pulumi("preview", "--expect-no-changes")
    result = project.pulumi("up", "--yes", "--skip-preview")
    assert not re.search(r"\b(created|updated|replaced|deleted)\b", result.stdout), result.stdout[-3000:]


def wait_for(path: Path, pattern: str, proc: subprocess.Popen[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if re.search(pattern, path.read_text()):
            return
        if proc.poll() is not None:
            raise AssertionError(f"pulumi ended ({proc.returncode}) before {pattern!r}:\n{path.read_text()[-4000:]}")
        time.sleep(0.2)
    raise AssertionError(f"no {pattern!r} within {timeout}s:\n{path.read_text()[-4000:]}")


def test_a_killed_up_converges_with_the_documented_sequence(
    faults: tuple[EngineProject, list[Any], Path],
) -> None:
    project, hosts, tmp = faults
    systemd_hosts(hosts)
    project.configure(hosts, 1, V1, standin_binary(tmp, V1), ssh=SSH)
    log = tmp / "killed-up.log"
    up = project.start("up", "--yes", "--skip-preview", log=log)
    try:
        # The agent's install runs once the server is Ready: interrupt it half-way.
        wait_for(log, r"agt-1-install creating", up, timeout=600)
        up.send_signal(signal.SIGINT)  # the first ^C: the CLI waits for what is running
        time.sleep(1)
        up.send_signal(signal.SIGKILL)  # then a CI timeout, a closed laptop
        assert up.wait(timeout=30) == -signal.SIGKILL, "pulumi ended by itself before the kill"
    finally:
        if up.poll() is None:
            up.kill()
    assert "^C received; cancelling" in log.read_text()
    # The job's teardown: the orphaned plugins (and their SSH sessions) die too.
    project.kill_leftovers()

    # 1. The file backend's lock is still there: the next up is refused and says why.
    refused = project.pulumi("up", "--yes", "--skip-preview", check=False)
    assert refused.returncode != 0
    assert "the stack is currently locked" in refused.stdout + refused.stderr
    assert "pulumi cancel" in refused.stdout + refused.stderr
    # 2. `pulumi cancel` removes the lock (file backend: nothing else to cancel).
    project.pulumi("cancel", "--yes")
    # 3. What was running is recorded as pending ("interrupted while creating"); refresh
    #    with --clear-pending-creates drops it (the up below runs those creates again).
    pending = {op["resource"]["urn"].rsplit("::", 1)[1]: op["type"] for op in project.pending_operations()}
    assert pending.get("agt-1-install") == "creating", pending
    project.pulumi("refresh", "--yes", "--skip-preview", "--clear-pending-creates")
    assert project.pending_operations() == []
    # 4. up converges; nothing is half-done on any host.
    project.pulumi("up", "--yes", "--skip-preview")
    nodes_ready(hosts[0], NAMES)
    for host, name in zip(hosts, NAMES, strict=True):
        assert_whole(host, name)
    assert_no_changes(project)


def test_a_rebooted_host_comes_back_and_up_changes_nothing(
    faults: tuple[EngineProject, list[Any], Path],
) -> None:
    project, hosts, _ = faults
    systemd_hosts(hosts)
    before = [unit_state(h, UNITS[n]) for h, n in zip(hosts, NAMES, strict=True)]
    for host in hosts:
        host.reboot()
    # K3s starts by itself (enabled unit), once per boot.
    nodes_ready(hosts[0], NAMES)
    for host, name, (_, _, old_invocation) in zip(hosts, NAMES, before, strict=True):
        enabled, active, invocation = unit_state(host, UNITS[name])
        assert (enabled, active) == ("enabled", "active")
        assert invocation != old_invocation, f"{name}: {UNITS[name]} did not start again"
        assert_whole(host, name)
    after = [unit_state(h, UNITS[n]) for h, n in zip(hosts, NAMES, strict=True)]
    assert_no_changes(project)
    # ... and the up restarted nothing.
    assert [unit_state(h, UNITS[n]) for h, n in zip(hosts, NAMES, strict=True)] == after


def test_an_unreachable_host_fails_naming_it_then_up_converges(
    faults: tuple[EngineProject, list[Any], Path],
) -> None:
    project, hosts, tmp = faults
    systemd_hosts(hosts)
    agent = hosts[1]
    project.configure(hosts, 1, V2, standin_binary(tmp, V2), ssh=SSH)
    agent.stop()  # powered off: connections to its SSH port are refused
    try:
        output, took = failing_up(project)
    finally:
        agent.start()
    assert "Connection refused" in output
    # The error comes alone: no KeyboardInterrupt traceback from the program the engine
    # interrupted when it shut its plugins down (__main__.py, exit_quietly_on_interrupt).
    assert "Traceback" not in output and "KeyboardInterrupt" not in output
    # Refused dials fail at once: within the dial limits.
    assert max(took.values()) <= (DIAL_LIMIT + 1) * PER_DIAL + 10, took
    # Once the agent is back, up converges: both nodes at the new version.
    converges(project, hosts, V2)


def test_a_host_that_stops_answering_fails_within_the_dial_timeouts(
    faults: tuple[EngineProject, list[Any], Path],
) -> None:
    project, hosts, tmp = faults
    systemd_hosts(hosts)
    agent = hosts[1]
    project.configure(hosts, 1, V3, standin_binary(tmp, V3), ssh=SSH)
    agent.pause()  # gone from the network: its port accepts, nothing answers
    try:
        output, took = failing_up(project)
    finally:
        agent.unpause()
    assert "timed out" in output
    # Each of the DIAL_LIMIT + 1 dials waited perDialTimeout, and no longer.
    assert (DIAL_LIMIT + 1) * PER_DIAL - 1 <= max(took.values()) <= (DIAL_LIMIT + 1) * PER_DIAL + 10, took
    converges(project, hosts, V3)


def failing_up(project: EngineProject) -> tuple[str, dict[str, float]]:
    """Run an `up` that must fail; return its output and, per failed agt-1 step, the seconds
    from the step's first progress line to its failure."""
    rc, lines = project.run_stamped("up", "--yes", "--skip-preview")
    output = "\n".join(line for _, line in lines)
    assert rc != 0, output[-4000:]
    took = {}
    for stamp, line in lines:
        if match := re.search(r"command:remote:\w+ (agt-1-[\w-]+) \**\w+ failed", line):
            name = match.group(1)
            first = next(t for t, text in lines if re.search(rf"\b{re.escape(name)}\b", text))
            took[name] = stamp - first
    assert took, f"no failed step of agt-1 in:\n{output[-4000:]}"
    # The error names the node's resource and says the host could not be reached.
    assert re.search(r"command:remote:(Command|CopyToRemote) \(agt-1-[\w-]+\):", output), output[-4000:]
    assert f"after {DIAL_LIMIT} failed attempts" in output, output[-4000:]
    return output, took


def converges(project: EngineProject, hosts: list[Any], version: str) -> None:
    project.pulumi("up", "--yes", "--skip-preview")
    for host in hosts:
        assert version in host.exec("k3s --version")
    nodes_ready(hosts[0], NAMES)
    for host, name in zip(hosts, NAMES, strict=True):
        assert_whole(host, name)
    assert_no_changes(project)
