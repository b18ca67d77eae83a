"""Every config key is validated before anything is registered.

The table of bad configs (tests/config_cases.py), each with the exact key its problem must
name (ConfigError.keys); one error lists every problem; good configs come back with the
schema's defaults applied. K3s flag names and other value checks: test_config_k3s_flags.py,
test_config_values.py.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from components import checks
from components.config import parse_settings
from components.schema import load_schema
from tests.config_cases import (
    BAD,
    NS,
    SSH_SECRETS,
    TWO_SERVERS,
    _mutated,
    base,
    host_key,
    parse,
    problems_of,
)
from tests.harness import load_stack_config


def test_the_config_every_bad_case_starts_from_is_valid() -> None:
    """Each bad case changes one thing in base(): its error then comes from that change."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not even a warning
        settings = parse_settings(base(), SSH_SECRETS, "test")
    assert [n.name for n in settings.nodes] == ["cp1", "w1"]


@pytest.mark.parametrize(("case", "mutation", "key", "secrets"), BAD, ids=[case for case, *_ in BAD])
def test_a_bad_value_is_refused_naming_its_key(
    case: str, mutation: Callable[[dict[str, Any]], None], key: str, secrets: frozenset[str]
) -> None:
    error = problems_of(_mutated(mutation), secrets)
    assert NS + key in error.keys, f"{case}: {error}"
    for problem_key, message in error.problems:
        assert problem_key.startswith(NS)
        assert message.strip()
        assert f"  - {problem_key}: {message}" in str(error)


def test_one_error_lists_every_problem_structural_and_not() -> None:
    config = base()
    config["ssh"] = {"port": 0}  # structural (schema)
    config["k3s"]["serverArgs"] = ["--token=abc"]  # value
    config["agents"][0]["labels"] = {"pool": "a b"}  # value
    config["agents"][0]["taints"] = ["gpu:NoRun"]  # value
    config["rancher"] = {"hostname": "bad_host"}  # value
    error = problems_of(config)
    for key in ("ssh.port", "k3s.serverArgs[0]", "agents[0].labels.pool", "agents[0].taints[0]", "rancher.hostname"):
        assert NS + key in error.keys, error


def test_a_structural_problem_is_not_repeated_as_a_value_problem() -> None:
    config = base()
    config["k3s"]["version"] = "stable"
    error = problems_of(config)
    assert error.keys.count(NS + "k3s.version") == 1
    assert not [k for k in error.keys if k.startswith(NS + "rancher")], error


@pytest.mark.parametrize(
    "case",
    [
        "topology-unknown",
        "api-address-bad",
        "node-address-bad",
        "server-arg-token",
        "config-key-typo",
        "agent-config-server-only",
        "arg-data-dir",
        "traefik-disabled-arg",
        "ipv6-server-no-cidrs",
        "k3s-minor-unsupported",
        "tls-cert-missing-file-tls-rancher",
    ],
)
def test_a_bad_value_is_one_problem_not_a_cascade(case: str) -> None:
    """A wrong value is reported once, at its key; what merely follows from it is not."""
    (mutation, key, secrets) = next((m, k, sec) for c, m, k, sec in BAD if c == case)
    assert problems_of(_mutated(mutation), secrets).keys == [NS + key]


def test_unknown_keys_suggest_the_known_one() -> None:
    config = base()
    config["k3s"]["verison"] = "v1.33.5+k3s1"
    config["k3s"]["registries"] = {"mirrors": {"docker.io": {"endpoints": []}}}
    config["servers"][0]["adress"] = "10.0.0.11"
    messages = dict(problems_of(config).problems)
    assert "did you mean 'version'" in messages[NS + "k3s.verison"]
    assert "did you mean 'endpoint'" in messages[NS + "k3s.registries.mirrors.docker.io.endpoints"]
    assert "did you mean 'address'" in messages[NS + "servers[0].adress"]


def test_an_even_number_of_etcd_servers_is_allowed_with_a_warning() -> None:
    config = base()
    TWO_SERVERS(config)
    config["k3s"]["initServer"] = "cp1"
    with pytest.warns(UserWarning, match=r"k3s-rancher:servers: 2 etcd servers"):
        settings = parse_settings(config, SSH_SECRETS)
    assert len(settings.servers) == 2
    config["servers"].append({"name": "cp3", "address": "10.0.0.13"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parse_settings(config, SSH_SECRETS)


def _default(*path: str) -> Any:
    node: Any = load_schema()
    for part in path:
        node = node["properties"][part]
    return node["default"]


def test_a_minimal_config_gets_the_schema_defaults() -> None:
    settings = parse({"servers": [{"name": "cp1", "address": "10.0.0.11"}]})
    k3s, ssh, rancher = settings.k3s, settings.ssh, settings.rancher
    assert settings.topology == _default("topology")
    assert k3s.version == _default("k3s", "version")
    assert k3s.datastore == _default("k3s", "datastore")
    assert k3s.install_script_url == _default("k3s", "installScriptUrl")
    assert (k3s.server_args, k3s.agent_args, k3s.tls_sans) == ((), (), ())
    assert (k3s.server_config, k3s.agent_config, k3s.registries, k3s.airgap) == ({}, {}, None, None)
    assert k3s.timeouts.node_ready == _default("k3s", "timeouts", "nodeReady")
    assert k3s.timeouts.cluster_ready == _default("k3s", "timeouts", "clusterReady")
    assert k3s.timeouts.drain == _default("k3s", "timeouts", "drain")
    assert k3s.api_address == "10.0.0.11"  # the first server's address
    assert k3s.server_url == "https://10.0.0.11:6443"
    assert ssh.user == _default("ssh", "user") and ssh.port == _default("ssh", "port")
    assert ssh.use_agent is False and ssh.host_keys == {} and ssh.bastion is None
    node = settings.servers[0]
    assert (node.role, node.ssh.host, node.ssh.port, node.ssh.user, node.ssh.host_key) == (
        "server",
        "10.0.0.11",
        22,
        "ubuntu",
        None,
    )
    assert rancher.enabled is True and rancher.mode == "helm" and rancher.tls == "rancher"
    assert rancher.hostname == "10.0.0.11.sslip.io"
    assert rancher.replicas == 1  # one server
    assert rancher.version == _default("rancher", "version")
    assert rancher.cert_manager.version == _default("rancher", "certManager", "version")


def test_three_servers_default_to_three_rancher_replicas_and_an_ipv6_api_gets_a_bracketed_url() -> None:
    config = base()
    config["servers"] = [{"name": f"cp{i}", "address": f"fd00::1{i}"} for i in range(1, 4)]
    config["agents"] = []
    config["k3s"]["initServer"] = "cp1"
    config["k3s"]["serverConfig"] = {"cluster-cidr": "fd42::/56", "service-cidr": "fd43::/112"}
    settings = parse(config)
    assert settings.rancher.replicas == 3
    assert settings.k3s.server_url == "https://[fd00::11]:6443"
    assert settings.rancher.hostname == "fd00--11.sslip.io"


def test_a_full_config_with_every_kind_of_setting_is_accepted(tmp_path: Path) -> None:
    for name in ("install.sh", "k3s", "images.tar.zst"):
        (tmp_path / name).write_text("x")
    key = host_key()
    config = {
        "topology": "ssh",
        "k3s": {
            "version": "v1.32.9+k3s1",
            "datastore": "etcd",
            "apiAddress": "k3s.example.com",
            "tlsSans": ["10.0.0.10", "k3s.internal"],
            "serverArgs": ["--disable=traefik", "--kube-apiserver-arg", "audit-log-path=/var/log/a b.log"],
            "agentArgs": ["--node-external-ip=203.0.113.9"],
            "serverConfig": {
                "disable": ["servicelb"],
                "tls-san": ["extra.example.com"],
                "kubelet-arg+": ["max-pods=200"],
            },
            "agentConfig": {"kubelet-arg": ["max-pods=150"], "protect-kernel-defaults": True},
            "registries": {
                "mirrors": {"docker.io": {"endpoint": ["https://mirror.example.com:5000"]}, "*": {}},
                "configs": {
                    "mirror.example.com:5000": {"auth": {"username": "puller"}, "tls": {"ca_file": "/etc/ca.pem"}}
                },
            },
            "airgap": {
                "installScript": str(tmp_path / "install.sh"),
                "binary": str(tmp_path / "k3s"),
                "images": str(tmp_path / "images.tar.zst"),
            },
            "timeouts": {"nodeReady": 900, "clusterReady": 1200, "drain": 0},
        },
        "ssh": {
            "user": "deploy.user",
            "port": 2222,
            "hostKeys": {"10.0.0.11": key, "w1.example.com": host_key("ecdsa-sha2-nistp256")},
            "bastion": {"host": "jump.example.com", "user": "jump", "hostKey": key},
        },
        "servers": [
            {"name": "cp1", "address": "10.0.0.11", "taints": ["node-role.kubernetes.io/control-plane:NoSchedule"]},
        ],
        "agents": [
            {
                "name": "w1.example.com",
                "address": "10.0.0.21",
                "ssh": {"host": "w1.example.com", "port": 22, "user": "root"},
                "labels": {"example.com/pool": "general", "tier": "", "node-role.kubernetes.io/worker": "true"},
                "taints": ["gpu=true:NoSchedule", "gpu=true:NoExecute"],
            }
        ],
        "rancher": {
            "hostname": "rancher.example.com",
            "version": "2.11.3",
            "tls": "letsEncrypt",
            "letsEncryptEmail": "ops@example.com",
            "systemDefaultRegistry": "mirror.example.com:5000",
            "ingressClassName": "nginx",  # serverArgs disable the bundled Traefik
        },
    }
    settings = parse(config)
    assert settings.agents[0].ssh.host_key is not None  # from hostKeys by ssh.host
    assert settings.ssh.bastion is not None and settings.ssh.bastion.host_key == key
    assert settings.k3s.server_args[2] == "audit-log-path=/var/log/a b.log"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_example_stacks_are_valid(stack: str) -> None:
    config, secrets = load_stack_config(stack)
    settings = parse(config, frozenset(secrets) | SSH_SECRETS)
    assert settings.servers


def test_host_key_check_accepts_every_real_key_type() -> None:
    for kind in checks.HOST_KEY_TYPES:
        assert checks.host_key_error(host_key(kind)) is None, kind
    assert checks.host_key_error(host_key().rsplit(" ", 1)[0]) is None  # without comment


def test_k3s_args_allow_a_value_after_a_flag_only() -> None:
    assert checks.k3s_args_problems(["--disable", "traefik", "--flannel-backend=wireguard-native"]) == []
    assert [i for i, _ in checks.k3s_args_problems(["--disable=traefik", "traefik"])] == [1]


def test_the_config_is_never_changed_by_validation() -> None:
    config = base()
    config["k3s"]["serverConfig"] = {"disable": ["servicelb"]}
    before = copy.deepcopy(config)
    parse(config)
    assert config == before


def test_the_init_server_is_named_not_positional() -> None:
    config = base()
    config["servers"] = [{"name": f"cp{i}", "address": f"10.0.0.1{i}"} for i in (1, 2, 3)]
    config["k3s"]["initServer"] = "cp2"
    forward = parse(config)
    config["servers"].reverse()
    backward = parse(config)
    for settings in (forward, backward):
        assert settings.init_node.name == "cp2"
        assert settings.k3s.api_address == "10.0.0.12"
    assert parse(base()).k3s.init_server == base()["servers"][0]["name"]  # one server: that one
