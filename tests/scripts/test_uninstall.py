"""uninstall_node.sh: runs the K3s uninstaller, finishes from any partial state, fails on real errors."""

from __future__ import annotations

import pytest

from components import scripts
from tests.scripts.awkward import awkward_config, settings_for
from tests.scripts.sandbox import Sandbox, install, needs_sandbox


@needs_sandbox
def test_uninstall_runs_the_k3s_uninstaller_and_removes_the_config(box: Sandbox) -> None:
    s = settings_for(awkward_config())
    assert install(box, awkward_config()).returncode == 0
    box.put("/etc/rancher/node/password", "x", 0o600)
    box.put(scripts.REGISTRATION_FILE, "x", 0o600)
    result = box.run(scripts.uninstall_script(s.servers[0], s.k3s))
    assert result.returncode == 0, result.stderr
    assert [r["argv"] for r in box.records("uninstall")] == [["k3s"]]
    assert len(box.records("killall")) == 1
    # The killall exited 127 (no iptables here, as on most hosts: its last line's
    # ip6tables-restore is not found); the K3s uninstall script goes on, and so does ours.
    assert "ip6tables-restore: not found" in result.stderr
    assert not box.path("/etc/rancher").exists() and not box.path("/usr/local/bin/k3s").exists()
    assert not box.path("/etc/systemd/system/k3s.service").exists()
    again = box.run(scripts.uninstall_script(s.servers[0], s.k3s))  # safe to run twice
    assert again.returncode == 0, again.stderr


@needs_sandbox
@pytest.mark.parametrize("partial", ["nothing", "binary", "killall", "uninstaller"])
def test_uninstall_finishes_from_any_partial_state(box: Sandbox, partial: str) -> None:
    """Item 10 (issue item 16): nothing installed, binary gone, killall gone (the K3s
    uninstall script still calls it), uninstall script gone: it finishes and removes ours."""
    s = settings_for(awkward_config())
    if partial != "nothing":
        assert install(box, awkward_config()).returncode == 0
        box.put(scripts.REGISTRATION_FILE, "x", 0o600)
        gone = {"binary": "k3s", "killall": "k3s-killall.sh", "uninstaller": "k3s-uninstall.sh"}[partial]
        box.path(f"/usr/local/bin/{gone}").unlink()
    result = box.run(scripts.uninstall_script(s.servers[0], s.k3s))
    assert result.returncode == 0, result.stderr
    assert not box.path("/etc/rancher").exists()
    assert not box.path("/etc/systemd/system/k3s.service").exists()
    assert not box.path("/etc/systemd/system/k3s.service.env").exists()
    if partial != "nothing":
        assert box.systemctl("stop")  # the service was stopped, killall or not


@needs_sandbox
def test_uninstall_still_fails_on_errors_other_than_already_gone(box: Sandbox) -> None:
    s = settings_for(awkward_config())
    assert install(box, awkward_config()).returncode == 0
    box.path("/usr/local/bin/k3s-uninstall.sh").unlink()
    (box.log / "daemon-reload-fails").write_text("")
    result = box.run(scripts.uninstall_script(s.servers[0], s.k3s))
    assert result.returncode != 0
    assert "daemon-reload failed" in result.stderr
