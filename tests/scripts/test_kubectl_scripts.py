"""The scripts that call k3s kubectl on an installed node: wait_node, node_meta,
read_kubeconfig, drain_delete (drain and forget); k3s found by absolute path under sudo's
secure_path, and a missing binary is an error."""

from __future__ import annotations

import pytest

from components import scripts
from tests.scripts.awkward import AWKWARD, awkward_config, settings_for
from tests.scripts.sandbox import Sandbox, mode, needs_sandbox


@needs_sandbox
def test_node_meta_removes_only_what_it_managed_before(box: Sandbox) -> None:
    s = settings_for(awkward_config())
    node = s.agents[0]  # labels: node-role.kubernetes.io/worker, tier; taints gpu:NoExecute, gpu=true:NoSchedule
    box.put_k3s()
    previous = "label:old-pool\nlabel:tier\ntaint:gone:NoSchedule\ntaint:gpu:NoExecute"
    box.set_state(nodes={node.name: "v1.33.5+k3s1 True"}, annotation=previous)
    result = box.run(scripts.node_meta_script(node, "ubuntu"))
    assert result.returncode == 0, result.stderr
    calls = [r["argv"][3:] for r in box.records("k3s")]
    writes = [c for c in calls if c[0] in ("label", "taint", "annotate")]
    assert ["label", "node", "w1", "old-pool-"] in writes  # managed before, gone from config
    assert ["taint", "node", "w1", "gone:NoSchedule-"] in writes
    assert ["label", "node", "w1", "tier-"] not in writes  # still configured: kept
    assert ["label", "node", "w1", "--overwrite", "node-role.kubernetes.io/worker=true"] in writes
    assert ["label", "node", "w1", "--overwrite", "tier="] in writes
    assert ["taint", "node", "w1", "--overwrite", "gpu:NoExecute"] in writes
    assert ["taint", "node", "w1", "--overwrite", "gpu=true:NoSchedule"] in writes
    removals = [c for c in writes if c[-1].endswith("-") and "--overwrite" not in c]
    assert len(removals) == 2  # nothing it did not manage (labels set by others) is touched
    assert box.state()["annotation"] == "\n".join(scripts.managed_entries(node))


@needs_sandbox
def test_node_meta_stops_when_the_node_is_not_registered(box: Sandbox) -> None:
    s = settings_for(awkward_config())
    box.put_k3s()
    box.set_state(nodes={})
    result = box.run(scripts.node_meta_script(s.agents[0], "root"))
    assert result.returncode != 0 and "node w1 is not registered" in result.stderr


@needs_sandbox
def test_wait_succeeds_at_the_expected_version_and_gives_up_with_the_hint(box: Sandbox) -> None:
    s = settings_for(awkward_config())
    box.put_k3s()
    box.set_state(nodes={"cp1": "v1.33.5+k3s1 True", "w1": "v1.33.5+k3s1 True"})
    ok = box.run(scripts.wait_script(["cp1", "w1"], s.k3s, timeout=10, waits_for="x", user="ubuntu"))
    assert ok.returncode == 0, ok.stderr
    box.set_state(nodes={"cp1": "v1.33.4+k3s1 True"})
    late = box.run(scripts.wait_script(["cp1", "w1"], s.k3s, timeout=0, waits_for="x", user="ubuntu", hint=AWKWARD))
    assert late.returncode != 0
    assert "not Ready at v1.33.5+k3s1 after 0s" in late.stderr
    assert "cp1(v1.33.4+k3s1 True)" in late.stderr and "w1(not registered)" in late.stderr
    assert late.stderr.rstrip().endswith(AWKWARD)  # the hint, as data


@needs_sandbox
@pytest.mark.parametrize("where", ["/usr/local/bin", "/opt/bin"])
def test_rhel_sudo_secure_path_still_finds_k3s_by_absolute_path(box: Sandbox, where: str) -> None:
    """Item 2: sudo's secure_path (the sudo stand-in) has no /usr/local/bin; the scripts call
    k3s where the installer put it, /usr/local/bin or /opt/bin (read-only /usr/local)."""
    s = settings_for(awkward_config())
    box.put_k3s(where=where)
    if where == "/opt/bin":
        (box.root / "usr-local-read-only").write_text("")
    box.set_state(nodes={"cp1": "v1.33.5+k3s1 True", "w1": "v1.33.5+k3s1 True"})
    box.put("/etc/rancher/k3s/k3s.yaml", "apiVersion: v1\n", 0o600)
    for script in (
        scripts.wait_script(["cp1", "w1"], s.k3s, timeout=0, waits_for="x", user="ubuntu"),
        scripts.node_meta_script(s.agents[0], "ubuntu"),
        scripts.kubeconfig_script("ubuntu", "x"),
        scripts.drain_script("w1", 30, "ubuntu"),
    ):
        result = box.run(script)
        assert result.returncode == 0, f"{script.name}: {result.stderr}"
    assert box.records("k3s")
    assert "w1" not in box.state()["nodes"]  # the drain really deleted it


@needs_sandbox
def test_scripts_that_need_k3s_fail_clearly_when_the_binary_is_missing(box: Sandbox) -> None:
    """Item 2: a missing binary is an error, never "nothing to do" (drain, forget) or a
    misleading "/readyz failing" (wait)."""
    s = settings_for(awkward_config())
    box.set_state(nodes={"w1": "v1.33.5+k3s1 True"})
    for script in (
        scripts.drain_script("w1", 30, "ubuntu"),
        scripts.forget_script("w1", "root"),
        scripts.wait_script(["w1"], s.k3s, timeout=0, waits_for="x", user="ubuntu"),
        scripts.node_meta_script(s.agents[0], "ubuntu"),
        scripts.kubeconfig_script("ubuntu", "x"),
    ):
        result = box.run(script)
        assert result.returncode != 0, script.name
        assert "K3s is not installed on this host" in result.stderr, script.name
    assert "w1" in box.state()["nodes"]


@needs_sandbox
def test_the_kubeconfig_is_printed_and_kept_0600(box: Sandbox) -> None:
    box.put_k3s()
    kubeconfig = "apiVersion: v1\nkind: Config\n"
    box.put("/etc/rancher/k3s/k3s.yaml", kubeconfig, 0o644)
    result = box.run(scripts.kubeconfig_script("ubuntu", "x"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == kubeconfig
    assert mode(box.path("/etc/rancher/k3s/k3s.yaml")) == 0o600
    box.path("/etc/rancher/k3s/k3s.yaml").unlink()
    missing = box.run(scripts.kubeconfig_script("root", "x"))
    assert missing.returncode != 0 and "is K3s running" in missing.stderr


@needs_sandbox
def test_drain_cordons_drains_and_deletes_the_node(box: Sandbox) -> None:
    box.put_k3s()
    box.set_state(nodes={"w1": "v1.33.5+k3s1 True"})
    result = box.run(scripts.drain_script("w1", 30, "ubuntu"))
    assert result.returncode == 0, result.stderr
    verbs = [r["argv"][3] for r in box.records("k3s")]
    assert verbs == ["get", "cordon", "drain", "delete"]
    drain = box.records("k3s")[2]["argv"]
    assert "--timeout=30s" in drain and "--ignore-daemonsets" in drain


@needs_sandbox
def test_drain_and_forget_succeed_only_on_not_found_and_fail_when_the_api_is_unreachable(box: Sandbox) -> None:
    """Item 4: only NotFound means "not registered"; anything else fails with the reason."""
    box.put_k3s()
    box.set_state(nodes={})
    for script in (scripts.drain_script("w1", 30, "ubuntu"), scripts.forget_script("w1", "ubuntu")):
        gone = box.run(script)
        assert gone.returncode == 0, gone.stderr
        assert "not registered (NotFound)" in gone.stderr
    box.set_state(nodes={"w1": "v1.33.5+k3s1 True"}, api_down=True)
    for script in (scripts.drain_script("w1", 30, "ubuntu"), scripts.forget_script("w1", "ubuntu")):
        down = box.run(script)
        assert down.returncode != 0
        assert "cannot tell whether node w1 is registered" in down.stderr
        assert "connection to the server 127.0.0.1:6443 was refused" in down.stderr


@needs_sandbox
def test_a_reimaged_nodes_forget_deletes_its_node_then_its_node_password_secret(box: Sandbox) -> None:
    """Issue 25: before a wiped host's install runs again, its Node and its node-password
    Secret go, so that K3s accepts the new host's password; a Node already gone is no error,
    an unreachable API is."""
    box.put_k3s()
    box.set_state(nodes={"w1": "v1.33.5+k3s1 False"})
    script = scripts.forget_reimaged_script("w1", "ubuntu", 2)
    result = box.run(script)
    assert result.returncode == 0, result.stderr
    calls = [r["argv"][3:] for r in box.records("k3s")]
    assert calls[0][:3] == ["delete", "node", "w1"] and "--wait=true" in calls[0]
    assert calls[1][:5] == ["-n", "kube-system", "delete", "secret", "w1.node-password.k3s"]
    assert "w1" not in box.state()["nodes"]
    assert box.run(script).returncode == 0  # nothing left to delete
    box.set_state(api_down=True)
    down = box.run(script)
    assert down.returncode != 0 and "could not delete node w1 before its reinstall" in down.stderr
