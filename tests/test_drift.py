"""k3s.driftCheck under mocks: what the preview shows for each kind of drift, the no-drift
no-op, the sticky repair marker, unreachable hosts, and the docker topology's refusal. The
hosts' reads are faked at the edge (components/drift_ssh.read_hosts)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from unittest import mock

import pulumi
import pytest

from components import drift, drift_ssh
from components.settings import ConfigError, Node
from tests.harness import Run, minimal_ssh_config, run_program

SECRETS = {"token": "t0ken-SECRET", "sshPrivateKey": "KEY-SECRET"}
PREVIOUS = {
    "nodes": [
        {"name": "cp1", "role": "server", "address": "10.0.0.11"},
        {"name": "w1", "role": "agent", "address": "10.0.0.21"},
    ],
    "k3sVersion": "v1.33.5+k3s1",
}
HEALTHY = "unit=yes\nstate=active\nversion=v1.33.5+k3s1\nbundle=yes\napplied=yes\n"
API = "api=yes\nnode=cp1 True\nnode=w1 True\n"


def config(on: bool = True) -> dict[str, Any]:
    c = minimal_ssh_config()
    c["rancher"] = {"enabled": False}
    c["k3s"] = {**c["k3s"], "driftCheck": on}
    return c


def answers(**reads: str) -> Any:
    """A fake read_hosts: each node's probe output (HEALTHY unless given; "" = no answer)."""

    def fake(
        targets: Sequence[tuple[Node, bool]], ssh: Any, creds: Any, timeout: int
    ) -> Mapping[str, drift.Probe | str]:
        result: dict[str, drift.Probe | str] = {}
        for node, init in targets:
            text = reads.get(node.name, HEALTHY + (API if init else ""))
            parsed = drift.parse(text + "end=1\n") if text else None
            result[node.name] = parsed or f"no answer within {timeout}s (k3s.timeouts.driftCheck)"
        return result

    return fake


def preview(
    cfg: dict[str, Any],
    previous: Mapping[str, Any] = PREVIOUS,
    reads: Mapping[str, str] | None = None,
    said: list[str] | None = None,
) -> tuple[Run, list[str], mock.MagicMock]:
    """The preview's run, its warnings, and the fake read; `said` collects its info messages."""
    warned: list[str] = []
    fake = mock.MagicMock(side_effect=answers(**(reads or {})))
    with (
        mock.patch.object(drift_ssh, "read_hosts", fake),
        mock.patch.object(pulumi.log, "warn", side_effect=lambda msg, *a, **k: warned.append(msg)),
        mock.patch.object(
            pulumi.log, "info", side_effect=lambda msg, *a, **k: (said if said is not None else []).append(msg)
        ),
    ):
        run = run_program(cfg, SECRETS, preview=True, previous_outputs=previous)
    return run, warned, fake


def commands(run: Run) -> dict[str, Any]:
    return {r.name: r.plain().get("create") for r in run.of_type("command:remote:Command")}


def test_nothing_drifted_changes_no_input_and_reads_each_host_once() -> None:
    on, warned, fake = preview(config(True))
    off, _, _ = preview(config(False))
    assert commands(on) == commands(off)
    assert {r.name: r.plain() for r in on.registrations} == {r.name: r.plain() for r in off.registrations}
    assert drift.REPAIRS_OUTPUT not in on.outputs
    assert not [w for w in warned if "drift" in w]
    fake.assert_called_once()
    assert sorted(n.name for n, _ in fake.call_args.args[0]) == ["cp1", "w1"]


def test_check_off_reads_no_host() -> None:
    _, _, fake = preview(config(False))
    fake.assert_not_called()


@pytest.mark.parametrize(
    ("node", "read", "reason"),
    [
        ("w1", HEALTHY.replace("state=active", "state=inactive"), "w1: k3s-agent inactive"),
        ("cp1", HEALTHY.replace("state=active", "state=failed") + API, "cp1: k3s failed"),
        ("w1", HEALTHY + "differs=/etc/rancher/k3s/config.yaml\n", "w1: config.yaml differs from the applied one"),
        ("w1", "unit=no\nstate=inactive\nversion=\nbundle=no\napplied=no\n", "w1: no K3s (reimaged?)"),
    ],
)
def test_a_drifted_node_is_named_and_its_install_and_scripts_step_change(node: str, read: str, reason: str) -> None:
    clean, _, _ = preview(config(True))
    run, warned, _ = preview(config(True), reads={node: read})
    assert [w for w in warned if w.startswith("drift: ")] == [f"drift: {reason} (up re-runs its install to repair it)"]
    before, after = commands(clean), commands(run)
    changed = sorted(name for name in after if after[name] != before.get(name))
    assert f"{node}-install" in changed and f"{node}-scripts" in changed
    assert "DRIFT_REPAIR=1" in after[f"{node}-install"]
    other = "w1" if node == "cp1" else "cp1"
    assert f"{other}-install" not in changed
    assert run.outputs[drift.REPAIRS_OUTPUT] == {node: 1}


def test_the_marker_is_sticky_while_nothing_drifts_and_bumps_on_new_drift() -> None:
    previous = {**PREVIOUS, drift.REPAIRS_OUTPUT: {"w1": 1}}
    repaired, warned, _ = preview(config(True), previous)
    assert "DRIFT_REPAIR=1" in commands(repaired)["w1-install"]
    assert repaired.outputs[drift.REPAIRS_OUTPUT] == {"w1": 1}
    assert not [w for w in warned if w.startswith("drift: ")]
    # Turning the check off keeps the marker: no install changes.
    off, _, _ = preview(config(False), previous)
    assert commands(off) == commands(repaired)
    again, _, _ = preview(config(True), previous, {"w1": HEALTHY.replace("state=active", "state=inactive")})
    assert "DRIFT_REPAIR=2" in commands(again)["w1-install"]


def test_an_unreachable_host_is_a_warning_not_drift() -> None:
    clean, _, _ = preview(config(True))
    run, warned, _ = preview(config(True), reads={"w1": ""})
    assert commands(run) == commands(clean)
    assert any(w.startswith("k3s.driftCheck: w1 not checked: no answer within 10s") for w in warned)
    assert drift.REPAIRS_OUTPUT not in run.outputs


def test_a_host_installed_before_the_record_is_unknown_not_drift() -> None:
    run, warned, _ = preview(
        config(True), reads={"w1": HEALTHY.replace("applied=yes", "applied=no").replace("bundle=yes", "")}
    )
    assert not [w for w in warned if w.startswith("drift: ")]
    assert drift.REPAIRS_OUTPUT not in run.outputs


def test_a_new_node_is_not_read() -> None:
    _, _, fake = preview(config(True), {**PREVIOUS, "nodes": PREVIOUS["nodes"][:1]})
    assert [n.name for n, _ in fake.call_args.args[0]] == ["cp1"]


def test_docker_topology_refuses_the_check_by_key() -> None:
    with pytest.raises(ConfigError) as error:
        run_program({"topology": "docker", "k3s": {"version": "v1.33.5+k3s1", "driftCheck": True}}, {"token": "t"})
    assert any(key == "k3s-rancher:k3s.driftCheck" for key, _ in error.value.problems)


def test_the_probe_carries_no_secret_and_needs_no_bundle() -> None:
    node = Node("cp1", "server", "10.0.0.11", drift_ssh_endpoint())
    text = drift.probe_script(node, init=True).command
    assert "K3SR_SCRIPTS" not in text and "t0ken" not in text
    assert text.startswith("sudo -n sh -c ")


def drift_ssh_endpoint() -> Any:
    from components.settings import SshEndpoint

    return SshEndpoint("10.0.0.11", 22, "ubuntu")


def plain(run: Run) -> dict[str, dict[str, Any]]:
    return {r.name: r.plain() for r in run.of_type("command:remote:Command")}


def test_a_wiped_agent_is_forgotten_before_its_install_and_gets_its_labels_again() -> None:
    """A reimaged host makes a new node password, which K3s refuses for a name it knows: the
    node's forget step (on the init server, before its install) deletes its Node and
    node-password Secret, and its membership applies its labels and taints again."""
    wiped = "unit=no\nstate=inactive\nversion=\nbundle=no\napplied=no\n"
    clean, _, _ = preview(config(True))
    run, warned, _ = preview(config(True), reads={"w1": wiped})
    assert "drift: w1: no K3s (reimaged?) (up re-runs its install to repair it)" in warned
    before, after = plain(clean), plain(run)
    assert before["w1-forget"].get("update") is None
    forget = after["w1-forget"]["update"]
    assert "forget_reimaged" in forget and "DRIFT_REIMAGED=1" in forget
    assert after["w1-forget"]["triggers"] == before["w1-forget"]["triggers"]  # updated, never replaced
    assert "DRIFT_REIMAGED=1" in after["w1-membership"]["create"]
    assert after["w1-membership"]["triggers"] == before["w1-membership"]["triggers"]
    assert run.depends_on("w1-install", "w1-forget")
    changed = {n for n in after if after[n] != before.get(n)}
    assert not {n for n in changed if n.startswith("cp1-")}, changed
    assert run.outputs[drift.REIMAGED_OUTPUT] == {"w1": 1}
    # Sticky: the next run, with nothing drifted, changes none of it.
    previous = {**PREVIOUS, drift.REPAIRS_OUTPUT: {"w1": 1}, drift.REIMAGED_OUTPUT: {"w1": 1}}
    again, _, _ = preview(config(True), previous)
    assert plain(again) == after
    # A later drift of another kind bumps the repair, not the reimage marker.
    stopped, _, _ = preview(config(True), previous, {"w1": HEALTHY.replace("state=active", "state=inactive")})
    assert plain(stopped)["w1-forget"] == after["w1-forget"]
    assert stopped.outputs[drift.REIMAGED_OUTPUT] == {"w1": 1}


def test_a_stopped_agent_is_not_forgotten() -> None:
    clean, _, _ = preview(config(True))
    run, _, _ = preview(config(True), reads={"w1": HEALTHY.replace("state=active", "state=inactive")})
    assert plain(run)["w1-forget"] == plain(clean)["w1-forget"]
    assert plain(run)["w1-membership"] == plain(clean)["w1-membership"]
    assert drift.REIMAGED_OUTPUT not in run.outputs


def test_a_wiped_init_server_of_several_is_named_and_not_reinstalled() -> None:
    """Its install would start a new cluster (cluster-init) beside the others."""
    cfg = config(True)
    cfg["servers"] = [{"name": "cp1", "address": "10.0.0.11"}, {"name": "cp2", "address": "10.0.0.12"}]
    cfg["k3s"] = {**cfg["k3s"], "initServer": "cp1"}
    previous = {**PREVIOUS, "nodes": [*PREVIOUS["nodes"], {"name": "cp2", "role": "server", "address": "10.0.0.12"}]}
    wiped = "unit=no\nstate=inactive\nversion=\nbundle=no\napplied=no\n"
    clean, _, _ = preview(cfg, previous)
    run, warned, _ = preview(cfg, previous, {"cp1": wiped})
    assert [w for w in warned if w.startswith("drift: ")] == [
        "drift: cp1: no K3s (reimaged?); not repaired: it is the init server, whose install would start a new "
        "cluster. Set k3s.initServer to a server that runs, then run up again"
    ]
    assert plain(run) == plain(clean)
    assert drift.REPAIRS_OUTPUT not in run.outputs


def test_the_check_off_is_said_once_and_only_for_a_stack_with_installed_ssh_nodes() -> None:
    said: list[str] = []
    _, warned, fake = preview(config(False), said=said)
    fake.assert_not_called()
    assert [m for m in said if "k3s.driftCheck" in m] == [drift.OFF_NOTICE]
    assert not [w for w in warned if "k3s.driftCheck" in w]
    first: list[str] = []  # a first up: nothing installed to read
    preview(config(False), {}, said=first)
    assert not [m for m in first if "k3s.driftCheck" in m]
    on: list[str] = []
    preview(config(True), said=on)
    assert not [m for m in on if "k3s.driftCheck" in m]


def test_an_unreachable_host_is_named_with_what_up_does_then() -> None:
    """Unreachable is not drift: nothing of that node changes, so `up` runs no step on it and
    goes through; a step that must run there (another change) fails as it cannot connect."""
    _, warned, _ = preview(config(True), reads={"w1": ""})
    (warning,) = [w for w in warned if "w1 not checked" in w]
    assert "only a step that must run on w1 fails" in warning


def test_only_a_reimaged_host_gets_its_airgap_files_copied_again(tmp_path: Any) -> None:
    """The install keeps each airgap generation in a root-owned place (sh/airgap.sh): a repair
    of a host that still has it (a stopped K3s, an edited file) re-runs the install from there
    and copies nothing; a reimaged host has lost it, and its files are staged and copied again."""
    files = {}
    for name in ("install.sh", "k3s"):
        (tmp_path / name).write_text(f"#!/bin/sh\n# {name}\n")
        files[name] = str(tmp_path / name)
    cfg = config(True)
    cfg["k3s"] = {**cfg["k3s"], "airgap": {"installScript": files["install.sh"], "binary": files["k3s"]}}

    def staging(run: Run) -> dict[str, Any]:
        copies = {r.name: r.plain()["triggers"] for r in run.of_type("command:remote:CopyToRemote")}
        return {**copies, "stage": plain(run)["w1-airgap-stage"]["create"]}

    clean, _, _ = preview(cfg)
    assert {"w1-airgap-k3s", "w1-airgap-install-sh"} <= set(staging(clean))
    stopped, _, _ = preview(cfg, reads={"w1": HEALTHY.replace("state=active", "state=inactive")})
    assert "DRIFT_REPAIR=1" in plain(stopped)["w1-install"]["create"]
    assert staging(stopped) == staging(clean)
    wiped, _, _ = preview(cfg, reads={"w1": "unit=no\nstate=inactive\nversion=\nbundle=no\napplied=no\n"})
    changed = {name for name, value in staging(wiped).items() if value != staging(clean)[name]}
    assert changed == {"w1-airgap-k3s", "w1-airgap-install-sh", "stage"}
