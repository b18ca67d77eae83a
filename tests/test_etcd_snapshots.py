"""k3s.etcdSnapshots and the pre-upgrade snapshot (issue 14 item 2), under Pulumi's mocks:
the flags in the servers' config.yaml, refusals by key, the S3 keys on stdin of servers
only, and the snapshot command: nothing on creation, its update before the init server's
install update when k3s.version changes."""

from __future__ import annotations

import shlex
from typing import Any

import pytest
import yaml

from components import scripts
from components.config import parse_settings
from components.settings import ConfigError
from policy.shell_inputs import parse as parse_inputs
from tests.harness import (
    TEST_SSH_KEY,
    Run,
    load_stack_config,
    node_script,
    prod_config,
    run_program,
    stdin_values,
)

SECRETS = {"sshPrivateKey": TEST_SSH_KEY, "token": "a-fixed-token-for-snapshots"}
S3_KEYS = {"etcdS3AccessKey": "AKIA-test-access", "etcdS3SecretKey": "s3-secret-'quoted'-value"}
SNAPSHOTS = {
    "scheduleCron": "0 */6 * * *",
    "retention": 14,
    "directory": "/srv/etcd-snapshots",
    "s3": {"endpoint": "s3.example.com", "bucket": "k3s-snaps", "folder": "prod", "region": "eu-west-1"},
}
SNAPSHOT = "prod-pre-upgrade-snapshot"


def run(config: dict[str, Any], secrets: dict[str, str] | None = None) -> Run:
    return run_program(config, {**SECRETS, **(secrets or {})}, stack="prod")


def with_snapshots(**extra: Any) -> dict[str, Any]:
    config = prod_config()
    config["k3s"]["serverConfig"].pop("etcd-snapshot-schedule-cron")  # one place per value
    config["k3s"]["etcdSnapshots"] = {**SNAPSHOTS, **extra}
    return config


def config_yaml(r: Run, node: str) -> dict[str, Any]:
    inputs = parse_inputs(_body(r.by_name(f"{node}-install").plain()["create"]))
    assert inputs is not None
    data: dict[str, Any] = yaml.safe_load(inputs.variables["CONFIG_YAML"])
    return data


def _body(command: str) -> str:
    return shlex.split(command.removeprefix("sudo -n "))[2]


def refused_keys(config: dict[str, Any], secrets: set[str]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_settings(config, {"sshPrivateKey", *secrets}, "prod")
    return caught.value.keys


def test_the_snapshot_settings_land_in_every_servers_config_yaml_by_flag_name_and_nowhere_else() -> None:
    r = run(with_snapshots(), S3_KEYS)
    for server in ("prod-cp1", "prod-cp2", "prod-cp3"):
        data = config_yaml(r, server)
        assert data["etcd-snapshot-schedule-cron"] == "0 */6 * * *"
        assert data["etcd-snapshot-retention"] == 14
        assert data["etcd-snapshot-dir"] == "/srv/etcd-snapshots"
        assert data["etcd-s3"] is True
        assert (data["etcd-s3-endpoint"], data["etcd-s3-bucket"]) == ("s3.example.com", "k3s-snaps")
        assert (data["etcd-s3-folder"], data["etcd-s3-region"]) == ("prod", "eu-west-1")
        assert "etcd-s3-access-key" not in data and "etcd-s3-secret-key" not in data
    agent = config_yaml(r, "prod-w1")
    assert not [key for key in agent if key.startswith("etcd-")]


def test_the_s3_keys_reach_only_the_servers_stdin_as_their_named_entries() -> None:
    r = run(with_snapshots(), S3_KEYS)
    server_stdin = r.by_name("prod-cp2-install").plain()["stdin"]
    assert stdin_values(server_stdin) == {
        "TOKEN": "a-fixed-token-for-snapshots",
        "S3_ACCESS_KEY": S3_KEYS["etcdS3AccessKey"],
        "S3_SECRET_KEY": S3_KEYS["etcdS3SecretKey"],
    }
    assert "stdin" in r.by_name("prod-cp2-install").secret_paths()
    agent_stdin = r.by_name("prod-w1-install").plain()["stdin"]
    assert agent_stdin == "TOKEN=a-fixed-token-for-snapshots\n"  # the S3 keys stay on the servers


def test_without_s3_keys_stdin_names_none() -> None:
    """An S3 key that is not set (or empty) is not sent: adding the keys changes only the
    servers' stdin."""
    assert scripts.install_stdin("tok", None) == "TOKEN=tok\n"
    assert scripts.install_stdin("tok", None, "", "") == "TOKEN=tok\n"
    assert (
        scripts.install_stdin("tok", "pg://x", "a", "b")
        == "TOKEN=tok\nDATASTORE_ENDPOINT=pg://x\nS3_ACCESS_KEY=a\nS3_SECRET_KEY=b\n"
    )


@pytest.mark.parametrize(
    ("change", "secrets", "expected"),
    [
        (lambda c: c["k3s"].update(datastore="external"), {"datastoreEndpoint"}, ["k3s-rancher:k3s.etcdSnapshots"]),
        (
            lambda c: c["k3s"]["serverConfig"].update({"etcd-snapshot-retention": 3}),
            set(),
            ["k3s-rancher:k3s.serverConfig.etcd-snapshot-retention"],
        ),
        (
            lambda c: c["k3s"].update(serverArgs=["--etcd-s3-bucket=other"]),
            set(),
            ["k3s-rancher:k3s.serverArgs[0]"],
        ),
        (
            lambda c: c["k3s"]["serverConfig"].update({"etcd-s3-secret-key": "plain"}),
            set(),
            ["k3s-rancher:k3s.serverConfig.etcd-s3-secret-key"],
        ),
        (lambda c: None, {"etcdS3AccessKey"}, ["k3s-rancher:etcdS3SecretKey"]),
        (lambda c: c["k3s"]["etcdSnapshots"].pop("s3"), set(S3_KEYS), sorted(f"k3s-rancher:{k}" for k in S3_KEYS)),
    ],
    ids=["not-etcd", "serverConfig-twice", "serverArgs-twice", "plain-s3-secret", "one-s3-secret", "keys-without-s3"],
)
def test_refusals_name_the_key(change: Any, secrets: set[str], expected: list[str]) -> None:
    config = with_snapshots()
    change(config)
    assert sorted(refused_keys(config, secrets)) == expected


def test_the_docker_topology_refuses_s3_by_key() -> None:
    config, _ = load_stack_config("local")
    config.setdefault("k3s", {})["etcdSnapshots"] = {"s3": {"endpoint": "s3.example.com", "bucket": "b"}}
    with pytest.raises(ConfigError) as caught:
        parse_settings(config, set(), "local")
    assert caught.value.keys == ["k3s-rancher:k3s.etcdSnapshots.s3"]


def test_the_pre_upgrade_snapshot_runs_nothing_on_creation_and_the_init_install_waits_for_it() -> None:
    r = run(prod_config())
    snapshot = r.by_name(SNAPSHOT).plain()
    assert "create" not in snapshot or snapshot["create"] is None  # creation keeps its critical path
    assert "delete" not in snapshot or snapshot["delete"] is None
    assert "K3S_VERSION=v1.33.5+k3s1" in snapshot["update"]
    command = node_script(snapshot["update"])
    assert command.name == "pre_upgrade_snapshot" and "etcd-snapshot save --name" in command.effective
    assert r.depends_on(SNAPSHOT, "prod-cp1-scripts")  # it runs the init server's bundle
    assert r.by_name(SNAPSHOT).parent.endswith("K3sCluster::prod")
    assert r.depends_on("prod-cp1-install", SNAPSHOT)
    # Only the init server's install: the other servers follow it anyway, agents stay flat.
    assert [x.name for x in r.registrations if r.urn(SNAPSHOT) in x.dependencies] == ["prod-cp1-install"]


def test_a_version_change_updates_the_snapshot_command_before_any_server() -> None:
    before = run(prod_config())
    config = prod_config()
    config["k3s"]["version"] = "v1.33.6+k3s1"
    after = run(config)
    old, new = before.by_name(SNAPSHOT).plain(), after.by_name(SNAPSHOT).plain()
    assert old["update"] != new["update"] and "K3S_VERSION=v1.33.6+k3s1" in new["update"]
    assert old.get("triggers") == new.get("triggers")  # an update (runs `update`), not a replacement
    # Every server install is reached through the init server's install, which waits for it.
    for server in ("prod-cp1", "prod-cp2", "prod-cp3"):
        assert after.reaches(f"{server}-install", SNAPSHOT)


def test_other_changes_leave_the_snapshot_command_alone() -> None:
    before = run(prod_config())
    config = prod_config()
    config["k3s"]["agentArgs"] = []
    config["k3s"]["etcdSnapshots"] = {"retention": 3}
    after = run(config)
    assert before.by_name(SNAPSHOT).plain() == after.by_name(SNAPSHOT).plain()


@pytest.mark.parametrize("datastore", ["sqlite", "external"])
def test_no_snapshot_command_without_embedded_etcd(datastore: str) -> None:
    config = prod_config()
    config["k3s"]["datastore"] = datastore
    config["servers"] = config["servers"][:1]
    secrets = {"datastoreEndpoint": "postgres://x"} if datastore == "external" else {}
    r = run(config, secrets)
    assert not [n for n in r.names() if n.endswith("pre-upgrade-snapshot")]


def test_the_docker_topology_opts_out_of_the_pre_upgrade_snapshot() -> None:
    config, _ = load_stack_config("local")
    r = run_program(config, {}, stack="local")
    assert not [n for n in r.names() if "snapshot" in n]
