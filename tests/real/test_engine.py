"""Tier 2: the real Pulumi engine (CLI, Python language host, command and kubernetes
providers built from Go modules) runs the program against tier-1 test hosts.

preview, up, a second up with no changes, an in-place version upgrade, removing an agent,
and destroy, on hosts that boot systemd (tests/real/hosts.py) with the STAND-IN installer
and k3s (tests/real/standin/) and the STAND-IN command provider
(tests/real/engine/command-standin/): this checks the engine's handling of our graph and
scripts, and the units they leave, not K3s itself.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.real.engine_project import TOKEN, EngineProject, engine_bin, make_project
from tests.real.standin_k3s import standin_binary

pytestmark = pytest.mark.real

V1, V2 = "v1.33.5+k3s1", "v1.33.6+k3s1"
CLEAN = (
    "ls -d /etc/rancher /var/lib/rancher /usr/local/bin/k3s* /opt/bin/k3s* /tmp/k3s-rancher-airgap-* "
    "/etc/systemd/system/k3s.service* /etc/systemd/system/k3s-agent.service* 2>/dev/null || true"
)
UNITS = ("k3s", "k3s-agent", "k3s-agent")  # per host: srv-1, agt-1, agt-2


def invocations(hosts: list[Any]) -> list[str]:
    """Each host's K3s unit's InvocationID: systemd gives a new one at every (re)start."""
    return [h.exec(f"systemctl show -p InvocationID --value {u}").strip() for h, u in zip(hosts, UNITS, strict=False)]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EngineProject, list[Any], Path]]:
    from tests.real.hosts import test_hosts

    bin_dir = engine_bin()
    tmp = tmp_path_factory.mktemp("tier2")
    # agt-1 has RHEL's sudo secure_path (no /usr/local/bin): K3s must be called by path.
    with test_hosts(3, secure_path=(1,), kubernetes=True) as hosts:
        project = make_project(tmp, bin_dir)
        project.set_secret("token", TOKEN)
        project.set_secret("sshPrivateKey", hosts[0].private_key)
        yield project, list(hosts), tmp
        project.pulumi("destroy", "--yes", check=False, timeout=600)


def ops(steps: list[dict[str, Any]]) -> dict[str, str]:
    """resource name -> planned op, for the remote commands."""
    return {s["urn"].rsplit("::", 1)[1]: s["op"] for s in steps if s["urn"].split("::")[2].endswith("remote:Command")}


def test_preview_then_up_builds_the_cluster(engine: tuple[EngineProject, list[Any], Path]) -> None:
    project, hosts, tmp = engine
    project.configure(hosts, 1, V1, standin_binary(tmp, V1))
    planned = ops(project.preview_steps())
    assert planned == {name: "create" for name in planned}
    assert {
        "srv-1-install",
        "srv-1-ready",
        "agt-1-install",
        "agt-2-install",
        "tier2-cluster-ready",
        "tier2-kubeconfig",
        "tier2-pre-upgrade-snapshot",  # a create that runs nothing
    } <= set(planned)
    # A new stack never gets the `-cleanup` steps 0.3.0 retired (the `-scripts` steps' deletes
    # do their work).
    assert {"srv-1-scripts", "agt-1-scripts", "agt-2-scripts"} <= set(planned)
    assert not [name for name in planned if name.endswith("-cleanup")], sorted(planned)
    project.pulumi("up", "--yes", "--skip-preview")
    outputs = project.pulumi("stack", "output", "--json").stdout
    assert f'"apiServer": "https://{hosts[0].address}:6443"' in outputs
    assert '"kubeconfig": "[secret]"' in outputs
    assert json.loads(outputs)["retiredSteps"] == ["-cleanup"]  # the next run registers none either
    # k3s.yaml's admin client certificate (the real API's, tests/real/host_api.py) lasts 365
    # days, as K3s's: its notAfter, in plain text.
    cert = (hosts[0].api.directory / "admin.crt").read_text()
    end = subprocess.run(["openssl", "x509", "-noout", "-enddate"], input=cert, capture_output=True, text=True)
    expected = datetime.strptime(end.stdout.strip().split("=", 1)[1], "%b %d %H:%M:%S %Y %Z")
    assert f'"kubeconfigExpiry": "{expected.strftime("%Y-%m-%dT%H:%M:%SZ")}"' in outputs
    assert "agt-2" in hosts[0].exec("k3s kubectl get nodes")


def test_a_second_up_changes_nothing(engine: tuple[EngineProject, list[Any], Path]) -> None:
    project, hosts, _ = engine
    before = invocations(hosts)
    assert all(before), before
    project.pulumi("preview", "--expect-no-changes")
    result = project.pulumi("up", "--yes", "--skip-preview")
    assert "unchanged" in result.stdout
    assert not any(word in result.stdout for word in ("created", "updated", "replaced", "deleted"))
    assert invocations(hosts) == before  # no K3s restarted


def test_a_version_change_updates_nodes_in_place(engine: tuple[EngineProject, list[Any], Path]) -> None:
    project, hosts, tmp = engine
    project.configure(hosts, 1, V2, standin_binary(tmp, V2))
    planned = ops(project.preview_steps())
    assert "replace" not in planned.values() and "delete" not in planned.values()
    assert planned["srv-1-install"] == "update" and planned["agt-1-install"] == "update"
    assert planned["srv-1-ready"] == "update" and planned["tier2-cluster-ready"] == "update"
    assert planned["tier2-pre-upgrade-snapshot"] == "update"
    before = invocations(hosts)
    project.pulumi("up", "--yes", "--skip-preview")
    for host, old, new in zip(hosts, before, invocations(hosts), strict=True):
        assert V2 in host.exec("k3s --version")
        assert new != old  # restarted on the new binary
    # One snapshot, named after the versions, taken before the server was restarted on V2.
    names = hosts[0].exec("ls /var/lib/rancher/k3s/server/db/snapshots").split()
    (snapshot,) = [n for n in names if n.startswith("pre-upgrade-")]
    prefix, _, taken = snapshot.rpartition("-")
    assert prefix == f"pre-upgrade-{V1}-to-{V2}-srv-1".replace("+", "-")
    started = hosts[0].exec('date -d "$(systemctl show -p ActiveEnterTimestamp --value k3s)" +%s').strip()
    assert int(taken) <= int(started)


def test_removing_an_agent_drains_and_uninstalls_it(engine: tuple[EngineProject, list[Any], Path]) -> None:
    project, hosts, tmp = engine
    project.configure(hosts[:2], 1, V2, standin_binary(tmp, V2))
    planned = ops(project.preview_steps())
    assert {planned.get(f"agt-2-{step}") for step in ("install", "membership", "forget")} == {"delete"}
    project.pulumi("up", "--yes", "--skip-preview")
    assert "agt-2" not in hosts[0].exec("k3s kubectl get nodes")
    assert hosts[2].exec(CLEAN).strip() == ""


def test_destroy_leaves_every_host_as_it_was(engine: tuple[EngineProject, list[Any], Path]) -> None:
    project, hosts, _ = engine
    project.pulumi("destroy", "--yes", "--skip-preview")
    for host in hosts:
        assert host.exec(CLEAN).strip() == ""


# The command STAND-IN against pulumi-command 1.x, where the program's safety depends on it
# (remote.go names the source lines): a program with the provider's defaults, on one host.
CONTRACT = """
import pulumi
from pulumi_command import remote

cfg = pulumi.Config()
conn = remote.ConnectionArgs(host="127.0.0.1", port=cfg.require_int("port"), user="ubuntu",
                             private_key=cfg.require_secret("key"), dial_error_limit=2, per_dial_timeout=5)
run = cfg.require("run")
remote.Command("defaults", connection=conn, create=f"echo run-{run} >> contract.log; echo out-{run}")
remote.Command("quiet", connection=conn, create=f"echo quiet-{run}", logging=remote.Logging.NONE)
remote.CopyToRemote("relative", connection=conn, source=pulumi.FileAsset(cfg.require("file")), remote_path="copied.txt")
if cfg.get_bool("environment"):
    remote.Command("environment", connection=conn, create="echo environment >> contract.log", environment={"A": "b"})
if cfg.get_bool("deep"):
    remote.CopyToRemote("deep", connection=conn, source=pulumi.FileAsset(cfg.require("file")),
                        remote_path="no-such-dir/copied.txt")
"""


def test_the_command_standin_keeps_pulumi_commands_contract(tmp_path: Path) -> None:
    from tests.real.hosts import test_hosts

    bin_dir = engine_bin()
    (tmp_path / "file.txt").write_text("copied\n")
    with test_hosts(1, kubernetes=True) as (host,):
        project = make_project(tmp_path, bin_dir, program=CONTRACT)
        for key, value in {"port": str(host.ssh_port), "run": "1", "file": str(tmp_path / "file.txt")}.items():
            project.set_config(f"contract:{key}", value)
        project.set_config("contract:key", host.private_key, secret=True)
        first = project.pulumi("up", "--yes", "--skip-preview")
        # Output is logged unless logging is none; a relative remotePath is in the home.
        assert "out-1" in first.stdout and "quiet-1" not in first.stdout
        assert host.exec("cat /home/ubuntu/copied.txt") == "copied\n"

        # An update with addPreviousOutputInEnv left at true: the refused setenv of the
        # previous output is a warning, and the command runs.
        project.set_config("contract:run", "2")
        second = project.pulumi("up", "--yes", "--skip-preview")
        assert "Unable to set 'PULUMI_COMMAND_STDOUT'" in second.stdout
        assert host.exec("cat /home/ubuntu/contract.log").split() == ["run-1", "run-2"]

        # A refused `environment` variable fails the command before it runs.
        project.set_config("contract:environment", "true")
        third = project.pulumi("up", "--yes", "--skip-preview", check=False)
        assert third.returncode != 0 and 'could not set environment variable "A"' in third.stdout
        assert "environment" not in host.exec("cat /home/ubuntu/contract.log")

        # CopyToRemote creates no parent directory (SFTP create).
        project.set_config("contract:environment", "false")
        project.set_config("contract:deep", "true")
        fourth = project.pulumi("up", "--yes", "--skip-preview", check=False)
        assert fourth.returncode != 0 and "failed to create remote file no-such-dir/copied.txt" in fourth.stdout
        assert host.exec("ls /home/ubuntu/no-such-dir 2>/dev/null || echo absent").strip() == "absent"
