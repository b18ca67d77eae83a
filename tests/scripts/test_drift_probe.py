"""sh/drift_probe.sh (k3s.driftCheck's read of a host) and sh/applied.sh (the record the
install leaves) run in the sandbox: after an install the probe finds nothing; a hand-edited
config.yaml, a stopped service and a wiped host are each what it reports, and its output
never holds a secret."""

from __future__ import annotations

import shutil

from components import drift
from tests.scripts.awkward import TOKEN, awkward_config, settings_for
from tests.scripts.sandbox import Sandbox, install, mode, needs_sandbox


def probe(box: Sandbox, name: str = "cp1") -> tuple[drift.Probe | None, str]:
    s = settings_for(awkward_config())
    node = next(n for n in s.nodes if n.name == name)
    result = box.run(drift.probe_script(node, init=False))
    assert result.returncode == 0, result.stderr
    return drift.parse(result.stdout), result.stdout


@needs_sandbox
def test_after_an_install_the_probe_finds_what_was_applied(box: Sandbox) -> None:
    assert install(box, awkward_config()).returncode == 0
    applied = box.path("/var/lib/k3s-rancher/applied")
    assert mode(applied) == 0o600
    assert "/etc/rancher/k3s/config.yaml" in applied.read_text()
    assert "/etc/rancher/k3s/cluster-token" in applied.read_text()
    assert TOKEN not in applied.read_text()
    found, out = probe(box)
    assert found is not None and TOKEN not in out
    assert found.unit and found.applied and found.bundle and found.state == "active"
    assert not found.differs and not found.missing


@needs_sandbox
def test_a_hand_edited_config_and_a_removed_token_file_are_reported(box: Sandbox) -> None:
    assert install(box, awkward_config()).returncode == 0
    config = box.path("/etc/rancher/k3s/config.yaml")
    config.write_text(config.read_text() + "debug: true\n")
    box.path("/etc/rancher/k3s/cluster-token").unlink()
    found, out = probe(box)
    assert found is not None
    assert found.differs == ("/etc/rancher/k3s/config.yaml",)
    assert found.missing == ("/etc/rancher/k3s/cluster-token",)
    assert "debug" not in out


@needs_sandbox
def test_the_install_again_restores_the_file_and_the_record_matches(box: Sandbox) -> None:
    assert install(box, awkward_config()).returncode == 0
    config = box.path("/etc/rancher/k3s/config.yaml")
    config.write_text(config.read_text() + "node-label+: [edited=by-hand]\n")
    before = config.read_text()
    restarts = len(box.systemctl("restart"))
    assert install(box, awkward_config()).returncode == 0
    assert len(box.systemctl("restart")) == restarts + 1  # restored, and K3s restarted once
    assert "edited=by-hand" not in config.read_text() != before
    found, _ = probe(box)
    assert found is not None and not found.differs


@needs_sandbox
def test_a_wiped_host_has_no_k3s_and_no_bundle(box: Sandbox) -> None:
    shutil.rmtree(box.path("/var/lib/k3s-rancher"))
    found, _ = probe(box)
    assert found is not None
    assert not found.unit and not found.bundle and not found.applied and found.version == ""
