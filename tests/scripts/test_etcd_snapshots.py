"""The host side of issue 14 item 2, run in the sandbox: the etcd S3 keys from stdin land
only in a 0600 drop-in on servers (quoted, never in argv or logs), and the pre-upgrade
snapshot asks K3s for one named snapshot when the version really changes."""

from __future__ import annotations

import yaml

from components import scripts
from tests.scripts.awkward import TOKEN, awkward_config, settings_for
from tests.scripts.sandbox import Sandbox, mode, needs_sandbox

ACCESS = "AKIA-o'brien $(id)"
SECRET = "s3cr'et `id` \\ x"
DROP_IN = scripts.ETCD_S3_FILE


def s3_config() -> dict[str, object]:
    config = awkward_config()
    del config["k3s"]["serverConfig"]["etcd-snapshot-schedule-cron"]
    config["k3s"]["etcdSnapshots"] = {
        "scheduleCron": "0 */6 * * *",
        "s3": {"endpoint": "s3.example.com", "bucket": "b"},
    }
    return config


@needs_sandbox
def test_the_s3_keys_go_into_a_0600_drop_in_on_servers_only_and_a_change_restarts(box: Sandbox) -> None:
    s = settings_for(s3_config(), {"etcdS3AccessKey", "etcdS3SecretKey"})
    server = s.servers[0]
    with_keys = scripts.install_stdin(TOKEN, None, ACCESS, SECRET)
    result = box.run(scripts.install_script(server, s.k3s, first_server=True), with_keys)
    assert result.returncode == 0, result.stderr
    drop_in = box.path(DROP_IN)
    assert mode(drop_in) == 0o600
    assert yaml.safe_load(drop_in.read_text()) == {"etcd-s3-access-key": ACCESS, "etcd-s3-secret-key": SECRET}
    assert SECRET not in result.stdout + result.stderr
    assert all(SECRET not in " ".join(r["argv"]) for kind in ("installer", "k3s") for r in box.records(kind))
    config = yaml.safe_load(box.path(f"{scripts.CONF_DIR}/config.yaml").read_text())
    assert config["etcd-s3"] is True and "etcd-s3-secret-key" not in config

    restarts = len(box.systemctl("restart"))
    rotated = scripts.install_stdin(TOKEN, None, ACCESS, "new-secret")
    assert box.run(scripts.install_script(server, s.k3s, first_server=True), rotated).returncode == 0
    assert len(box.systemctl("restart")) == restarts + 1  # K3s reads the drop-in at start
    assert yaml.safe_load(drop_in.read_text())["etcd-s3-secret-key"] == "new-secret"

    # The keys removed (s3 off): the drop-in goes too.
    plain = settings_for(awkward_config())
    unset = scripts.install_stdin(TOKEN, None)
    assert box.run(scripts.install_script(server, plain.k3s, first_server=True), unset).returncode == 0
    assert not drop_in.exists()


@needs_sandbox
def test_an_agent_given_the_s3_keys_writes_no_drop_in(box: Sandbox) -> None:
    s = settings_for(s3_config(), {"etcdS3AccessKey", "etcdS3SecretKey"})
    with_keys = scripts.install_stdin(TOKEN, None, ACCESS, SECRET)
    result = box.run(scripts.install_script(s.agents[0], s.k3s, first_server=False), with_keys)
    assert result.returncode == 0, result.stderr
    assert not box.path(DROP_IN).exists()


@needs_sandbox
def test_the_pre_upgrade_snapshot_is_named_after_the_installed_and_the_new_version(box: Sandbox) -> None:
    s = settings_for(awkward_config())
    box.put_k3s("v1.33.5+k3s1")
    upgrade = settings_for({**awkward_config(), "k3s": {**awkward_config()["k3s"], "version": "v1.34.1+k3s1"}})
    result = box.run(scripts.pre_upgrade_snapshot_script(upgrade.k3s, "ubuntu"))
    assert result.returncode == 0, result.stderr
    saves = [r["argv"] for r in box.records("k3s") if r["argv"][:2] == ["etcd-snapshot", "save"]]
    assert saves == [["etcd-snapshot", "save", "--name", "pre-upgrade-v1.33.5-k3s1-to-v1.34.1-k3s1"]]

    # Already at the version (a re-run after the install went through, a moved init server):
    # nothing to save.
    result = box.run(scripts.pre_upgrade_snapshot_script(s.k3s, "ubuntu"))
    assert result.returncode == 0, result.stderr
    assert len([r for r in box.records("k3s") if r["argv"][:2] == ["etcd-snapshot", "save"]]) == 1


@needs_sandbox
def test_no_k3s_means_no_upgrade_goes_ahead(box: Sandbox) -> None:
    s = settings_for(awkward_config())
    result = box.run(scripts.pre_upgrade_snapshot_script(s.k3s, "root"))
    assert result.returncode != 0
    assert "K3s is not installed" in result.stderr


@needs_sandbox
def test_the_pre_upgrade_snapshot_needs_k3s_running_and_says_so(box: Sandbox) -> None:
    """`k3s etcd-snapshot save` asks the running server (POST /db/snapshot, pkg/cli/etcdsnapshot):
    with K3s stopped it fails, and the script says K3s must be running; nothing is upgraded."""
    box.put_k3s("v1.33.5+k3s1")
    box.set_state(api_down=True, services={"k3s": {"state": "inactive"}})
    upgrade = settings_for({**awkward_config(), "k3s": {**awkward_config()["k3s"], "version": "v1.34.1+k3s1"}})
    result = box.run(scripts.pre_upgrade_snapshot_script(upgrade.k3s, "ubuntu"))
    assert result.returncode != 0
    assert "connection refused" in result.stderr  # K3s's own error, shown
    assert "K3s is not running on this server (k3s inactive)" in result.stderr, result.stderr
    assert "systemctl start k3s" in result.stderr and "nothing was upgraded" in result.stderr
