"""install_node.sh's preflight: what it refuses (a changed token, the other role, another
cluster's data, a downgrade, SELinux without k3s-selinux, nm-cloud-setup) before it writes
anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from components import scripts
from tests.scripts.awkward import TOKEN, awkward_config, settings_for
from tests.scripts.sandbox import Sandbox, airgap_setup, install, needs_sandbox, stdin


def nothing_written(box: Sandbox, before: dict[str, str]) -> bool:
    """No file changed under /etc, /usr/local, /var/lib since `before`, and no installer run."""
    return snapshot(box) == before and not box.records("installer")


def snapshot(box: Sandbox) -> dict[str, str]:
    out = {}
    for part in ("upper_etc", "upper_usr_local", "var_lib"):
        for path in sorted((box.root / part).rglob("*")) if (box.root / part).exists() else []:
            if path.is_file():
                out[str(path)] = path.read_text(errors="replace")
    return out


@needs_sandbox
def test_a_changed_token_is_refused_before_anything_is_written(box: Sandbox) -> None:
    """Item 5: servers with data refuse a new token and agents hang; the install says how to rotate."""
    assert install(box, awkward_config()).returncode == 0
    box.put("/var/lib/rancher/k3s/agent/client-kubelet.crt", "joined", 0o600)  # K3s: the node joined
    before = snapshot(box)
    box.records("installer").clear()
    (box.log / "installer.jsonl").unlink()
    s = settings_for(awkward_config())
    script = scripts.install_script(s.servers[0], s.k3s, first_server=True)
    other = "tok-a-completely-different-one"
    result = box.run(script, stdin(token=other))
    assert result.returncode != 0
    assert "different token" in result.stderr and "k3s token rotate" in result.stderr
    assert "README" in result.stderr and "nothing was changed" in result.stderr
    assert other not in result.stderr and TOKEN not in result.stderr
    assert nothing_written(box, before)


@needs_sandbox
def test_a_token_that_never_joined_is_replaced_not_refused(box: Sandbox) -> None:
    """An install with a wrong token failed (the node never joined): the right token must go
    through, not be refused as a rotation."""
    s = settings_for(awkward_config())
    agent = s.agents[0]
    script = scripts.install_script(agent, s.k3s, first_server=False)
    box.put(scripts.TOKEN_FILE, "the-wrong-token-of-a-failed-install", 0o600)
    result = box.run(script, stdin())
    assert result.returncode == 0, result.stderr
    assert box.path(scripts.TOKEN_FILE).read_text().strip() == TOKEN
    box.put("/var/lib/rancher/k3s/agent/client-kubelet.crt", "joined", 0o600)  # now it has joined
    refused = box.run(script, stdin(token="tok-a-completely-different-one"))
    assert refused.returncode != 0 and "different token" in refused.stderr


@needs_sandbox
def test_install_refuses_a_host_that_runs_k3s_in_the_other_role(box: Sandbox) -> None:
    """Item 6: an agent host moved to `servers` (or back) is refused with the safe procedure."""
    assert install(box, awkward_config(), node="w1").returncode == 0
    before = snapshot(box)
    (box.log / "installer.jsonl").unlink()
    result = install(box, awkward_config(), node="cp1")
    assert result.returncode != 0
    assert "cp1 is already a K3s agent (found /etc/systemd/system/k3s-agent.service)" in result.stderr
    assert "remove it from 'agents', run pulumi up" in result.stderr and "add it to 'servers'" in result.stderr
    assert nothing_written(box, before)


@needs_sandbox
def test_install_refuses_k3s_data_of_another_cluster(box: Sandbox) -> None:
    box.put("/var/lib/rancher/k3s/server/token", "K10abc::server:someone-elses-token\n", 0o600)
    before = snapshot(box)
    result = install(box, awkward_config())
    assert result.returncode != 0
    assert "K3s data of another cluster" in result.stderr and "/var/lib/rancher/k3s/server/token" in result.stderr
    assert "someone-elses-token" not in result.stderr
    assert nothing_written(box, before)
    box.put("/var/lib/rancher/k3s/server/token", f"K10abc::server:{TOKEN}\n", 0o600)  # ours, token file lost
    assert install(box, awkward_config()).returncode == 0


@needs_sandbox
@pytest.mark.parametrize(
    ("installed", "problem"),
    [
        ("v1.34.1+k3s1", "would be a downgrade"),
        ("v1.33.6+k3s1", "would be a downgrade"),
        ("v1.31.9+k3s1", "skips a minor"),
    ],
)
def test_install_refuses_a_downgrade_or_a_skipped_minor(box: Sandbox, installed: str, problem: str) -> None:
    """Item 6 (issue item 10): K3s upgrades one minor at a time, upward; the installed
    version is on the host."""
    box.put_k3s(installed)
    box.put("/var/lib/rancher/k3s/server/token", f"K10abc::server:{TOKEN}\n", 0o600)
    before = snapshot(box)
    result = install(box, awkward_config())  # v1.33.5+k3s1
    assert result.returncode != 0
    assert f"cp1 runs K3s {installed}; v1.33.5+k3s1 {problem}" in result.stderr
    assert nothing_written(box, before)


@needs_sandbox
@pytest.mark.parametrize("installed", ["v1.32.9+k3s1", "v1.33.5+k3s1", "v1.33.4+k3s2"])
def test_install_accepts_the_same_version_or_one_minor_up(box: Sandbox, installed: str) -> None:
    box.put_k3s(installed)
    box.put("/var/lib/rancher/k3s/server/token", f"K10abc::server:{TOKEN}\n", 0o600)
    result = install(box, awkward_config())
    assert result.returncode == 0, result.stderr


@needs_sandbox
def test_an_airgap_install_on_selinux_enforcing_without_k3s_selinux_is_refused(box: Sandbox, tmp_path: Path) -> None:
    """Item 9 (issue item 11): INSTALL_K3S_SKIP_DOWNLOAD skips the k3s-selinux RPM."""
    _, a = airgap_setup(box, tmp_path)
    box.set_state(selinux="Enforcing")
    result = box.run(scripts.install_script(a.node, a.settings.k3s, first_server=True), stdin())
    assert result.returncode != 0
    assert "SELinux is enforcing on" in result.stderr and "k3s-selinux" in result.stderr
    assert "container-selinux" in result.stderr
    assert not box.records("installer")
    box.set_state(selinux="Permissive")
    assert box.run(scripts.install_script(a.node, a.settings.k3s, first_server=True), stdin()).returncode == 0


@needs_sandbox
def test_nm_cloud_setup_is_refused_and_firewalld_warned_about(box: Sandbox) -> None:
    box.set_state(enabled=["nm-cloud-setup"])
    refused = install(box, awkward_config())
    assert refused.returncode != 0
    assert "nm-cloud-setup.service is enabled on cp1" in refused.stderr
    assert "systemctl disable nm-cloud-setup.service nm-cloud-setup.timer && reboot" in refused.stderr
    assert not box.records("installer")
    box.set_state(enabled=[], services={"firewalld": {"state": "active"}})
    warned = install(box, awkward_config())
    assert warned.returncode == 0, warned.stderr
    assert "warning: firewalld is active on cp1" in warned.stderr
    assert "6443/tcp" in warned.stderr and "8472/udp" in warned.stderr and "10.42.0.0/16" in warned.stderr
