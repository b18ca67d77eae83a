"""k3s.etcdSnapshots.directory exists on every server after its install: K3s creates only its
default snapshot directory (k3s-io/k3s pkg/etcd/snapshot.go snapshotDir), and a snapshot to a
missing one fails, the scheduled ones included."""

from __future__ import annotations

from components import scripts
from components.settings import Settings
from tests.scripts.awkward import TOKEN, awkward_config, settings_for
from tests.scripts.sandbox import Sandbox, mode, needs_sandbox

DIRECTORY = "/var/lib/k3s snapshots/etcd"


def _settings(directory: str | None) -> Settings:
    config = awkward_config()
    del config["k3s"]["serverConfig"]["etcd-snapshot-schedule-cron"]
    config["k3s"]["etcdSnapshots"] = {"scheduleCron": "0 */6 * * *"}
    if directory is not None:
        config["k3s"]["etcdSnapshots"]["directory"] = directory
    return settings_for(config)


@needs_sandbox
def test_a_server_install_creates_the_snapshot_directory_as_k3s_makes_its_own(box: Sandbox) -> None:
    s = _settings(DIRECTORY)
    result = box.run(scripts.install_script(s.servers[0], s.k3s, first_server=True), scripts.install_stdin(TOKEN, None))
    assert result.returncode == 0, result.stderr
    made = box.path(DIRECTORY)
    assert made.is_dir() and mode(made) == 0o700
    # A second run finds it and changes nothing (no restart).
    restarts = len(box.systemctl("restart"))
    again = box.run(scripts.install_script(s.servers[0], s.k3s, first_server=True), scripts.install_stdin(TOKEN, None))
    assert again.returncode == 0, again.stderr
    assert len(box.systemctl("restart")) == restarts


@needs_sandbox
def test_agents_and_servers_without_a_directory_get_no_such_input(box: Sandbox) -> None:
    s = _settings(DIRECTORY)
    agent = scripts.install_script(s.agents[0], s.k3s, first_server=False)
    assert "ETCD_SNAPSHOT_DIR" not in agent.command
    plain = _settings(None)
    server = scripts.install_script(plain.servers[0], plain.k3s, first_server=True)
    assert "ETCD_SNAPSHOT_DIR" not in server.command
