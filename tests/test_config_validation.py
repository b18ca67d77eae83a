"""Issue 5: every config key is validated before anything is registered.

One table of bad configs, each with the exact key its problem must name (ConfigError.keys);
one error lists every problem; good configs come back with the schema's defaults applied.
"""

from __future__ import annotations

import base64
import copy
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from components import checks, compat, k3s_flags
from components.config import parse_settings
from components.schema import load_schema
from components.settings import NAMESPACE, ConfigError, Settings
from tests.harness import load_stack_config, minimal_ssh_config

NS = f"{NAMESPACE}:"
SSH_SECRETS = frozenset({"sshPrivateKey"})


def host_key(kind: str = "ssh-ed25519", body: bytes = b"k" * 32) -> str:
    """A well-formed public key line (the blob repeats the type, as real keys do)."""
    name = kind.encode()
    blob = len(name).to_bytes(4, "big") + name + len(body).to_bytes(4, "big") + body
    return f"{kind} {base64.b64encode(blob).decode()} root@host"


def base() -> dict[str, Any]:
    """A valid ssh-topology config: one server, one agent, Rancher on."""
    return minimal_ssh_config()


def parse(config: dict[str, Any], secrets: frozenset[str] = SSH_SECRETS) -> Settings:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return parse_settings(config, secrets, "test")


def problems_of(config: dict[str, Any], secrets: frozenset[str] = SSH_SECRETS) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse(config, secrets)
    return caught.value


def setting(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A mutation that sets `path` (dots; [i] for list items) to `value`."""

    def apply(config: dict[str, Any]) -> None:
        node: Any = config
        parts = path.replace("[", ".[").split(".")
        for part in parts[:-1]:
            key: Any = int(part[1:-1]) if part.startswith("[") else part
            if isinstance(key, str) and key not in node:
                node[key] = {}
            node = node[key]
        last = parts[-1]
        node[int(last[1:-1]) if last.startswith("[") else last] = value

    return apply


def removing(path: str, key: str) -> Callable[[dict[str, Any]], None]:
    def apply(config: dict[str, Any]) -> None:
        node: Any = config
        for part in path.replace("[", ".[").split("."):
            node = node[int(part[1:-1])] if part.startswith("[") else node[part]
        del node[key]

    return apply


def both(*mutations: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def apply(config: dict[str, Any]) -> None:
        for mutation in mutations:
            mutation(config)

    return apply


TWO_SERVERS = setting("servers", [{"name": "cp1", "address": "10.0.0.11"}, {"name": "cp2", "address": "10.0.0.12"}])
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

# (case id, mutation of base(), the key the problem must name, secrets set)
BAD: list[tuple[str, Callable[[dict[str, Any]], None], str, frozenset[str]]] = [
    ("topology-unknown", setting("topology", "kubernetes"), "topology", SSH_SECRETS),
    ("top-level-typo", setting("server", []), "server", SSH_SECRETS),
    ("k3s-key-typo", setting("k3s.verison", "v1.33.5+k3s1"), "k3s.verison", SSH_SECRETS),
    ("version-channel", setting("k3s.version", "stable"), "k3s.version", SSH_SECRETS),
    ("version-no-v", setting("k3s.version", "1.33.5+k3s1"), "k3s.version", SSH_SECRETS),
    ("version-no-build", setting("k3s.version", "v1.33.5"), "k3s.version", SSH_SECRETS),
    ("datastore-unknown", setting("k3s.datastore", "mysql"), "k3s.datastore", SSH_SECRETS),
    ("sqlite-two-servers", both(TWO_SERVERS, setting("k3s.datastore", "sqlite")), "k3s.datastore", SSH_SECRETS),
    ("init-server-missing-with-two-servers", TWO_SERVERS, "k3s.initServer", SSH_SECRETS),
    ("init-server-not-a-server", both(TWO_SERVERS, setting("k3s.initServer", "cp9")), "k3s.initServer", SSH_SECRETS),
    ("installer-sha256-not-hex", setting("k3s.installScriptSha256", "x"), "k3s.installScriptSha256", SSH_SECRETS),
    ("external-no-endpoint", setting("k3s.datastore", "external"), "datastoreEndpoint", SSH_SECRETS),
    ("api-address-bad", setting("k3s.apiAddress", "api server"), "k3s.apiAddress", SSH_SECRETS),
    ("api-address-bad-ip", setting("k3s.apiAddress", "10.0.0.300"), "k3s.apiAddress", SSH_SECRETS),
    ("tls-san-bad", setting("k3s.tlsSans", ["k3s.example.com", "bad host"]), "k3s.tlsSans[1]", SSH_SECRETS),
    ("server-arg-not-flag", setting("k3s.serverArgs", ["server"]), "k3s.serverArgs[0]", SSH_SECRETS),
    ("server-arg-token", setting("k3s.serverArgs", ["--token=abc"]), "k3s.serverArgs[0]", SSH_SECRETS),
    (
        "server-arg-datastore",
        setting("k3s.serverArgs", ["--disable=traefik", "--datastore-endpoint", "mysql://x"]),
        "k3s.serverArgs[1]",
        SSH_SECRETS,
    ),
    ("agent-arg-owned", setting("k3s.agentArgs", ["--node-name", "x"]), "k3s.agentArgs[0]", SSH_SECRETS),
    ("agent-arg-newline", setting("k3s.agentArgs", ["--node-external-ip=1.2.3.4\n"]), "k3s.agentArgs[0]", SSH_SECRETS),
    ("arg-two-values", setting("k3s.serverArgs", ["--disable", "a", "b"]), "k3s.serverArgs[2]", SSH_SECRETS),
    ("arg-not-a-list", setting("k3s.serverArgs", "--disable=traefik"), "k3s.serverArgs", SSH_SECRETS),
    ("config-token", setting("k3s.serverConfig", {"token": "x"}), "k3s.serverConfig.token", SSH_SECRETS),
    (
        "config-kubeconfig-mode",
        setting("k3s.serverConfig", {"write-kubeconfig-mode": "0644"}),
        "k3s.serverConfig.write-kubeconfig-mode",
        SSH_SECRETS,
    ),
    ("config-key-not-flag", setting("k3s.agentConfig", {"Node Label": "x"}), "k3s.agentConfig.Node Label", SSH_SECRETS),
    (
        "config-value-nested",
        setting("k3s.serverConfig", {"kubelet-arg": {"max-pods": 200}}),
        "k3s.serverConfig.kubelet-arg",
        SSH_SECRETS,
    ),
    (
        "registry-endpoint-scheme",
        setting("k3s.registries", {"mirrors": {"docker.io": {"endpoint": ["ftp://mirror.example.com"]}}}),
        "k3s.registries.mirrors.docker.io.endpoint[0]",
        SSH_SECRETS,
    ),
    (
        "registry-key-typo",
        setting("k3s.registries", {"mirrors": {"docker.io": {"endpoints": ["https://m.example.com"]}}}),
        "k3s.registries.mirrors.docker.io.endpoints",
        SSH_SECRETS,
    ),
    (
        "registry-password",
        setting("k3s.registries", {"configs": {"reg.example.com": {"auth": {"username": "u", "password": "p"}}}}),
        "k3s.registries.configs.reg.example.com.auth.password",
        SSH_SECRETS,
    ),
    (
        "registry-relative-ca",
        setting("k3s.registries", {"configs": {"reg.example.com:5000": {"tls": {"ca_file": "ca.pem"}}}}),
        "k3s.registries.configs.reg.example.com:5000.tls.ca_file",
        SSH_SECRETS,
    ),
    (
        "registry-name-bad",
        setting("k3s.registries", {"mirrors": {"https://docker.io": {"endpoint": []}}}),
        "k3s.registries.mirrors.https://docker.io",
        SSH_SECRETS,
    ),
    ("registry-top-typo", setting("k3s.registries", {"mirror": {}}), "k3s.registries.mirror", SSH_SECRETS),
    ("install-url-http", setting("k3s.installScriptUrl", "http://get.k3s.io"), "k3s.installScriptUrl", SSH_SECRETS),
    ("install-url-space", setting("k3s.installScriptUrl", "https://get k3s.io"), "k3s.installScriptUrl", SSH_SECRETS),
    ("timeout-too-small", setting("k3s.timeouts.nodeReady", 5), "k3s.timeouts.nodeReady", SSH_SECRETS),
    ("timeout-string", setting("k3s.timeouts.clusterReady", "600"), "k3s.timeouts.clusterReady", SSH_SECRETS),
    (
        "airgap-missing-file",
        setting("k3s.airgap", {"installScript": __file__, "binary": "/nonexistent/k3s"}),
        "k3s.airgap.binary",
        SSH_SECRETS,
    ),
    ("airgap-incomplete", setting("k3s.airgap", {"installScript": __file__}), "k3s.airgap", SSH_SECRETS),
    ("ssh-port-zero", setting("ssh.port", 0), "ssh.port", SSH_SECRETS),
    ("ssh-user-shell", setting("ssh.user", "root;rm -rf /"), "ssh.user", SSH_SECRETS),
    ("ssh-use-agent-string", setting("ssh.useAgent", "yes"), "ssh.useAgent", SSH_SECRETS),
    ("ssh-key-missing", setting("ssh.port", 22), "sshPrivateKey", frozenset()),
    ("host-key-garbage", setting("ssh.hostKeys", {"10.0.0.11": "not a key"}), "ssh.hostKeys.10.0.0.11", SSH_SECRETS),
    (
        "host-key-truncated",
        setting("ssh.hostKeys", {"10.0.0.11": host_key()[:30]}),
        "ssh.hostKeys.10.0.0.11",
        SSH_SECRETS,
    ),
    (
        "host-key-type-mismatch",
        setting("ssh.hostKeys", {"10.0.0.11": "ssh-rsa " + host_key().split()[1]}),
        "ssh.hostKeys.10.0.0.11",
        SSH_SECRETS,
    ),
    ("host-key-unused-host", setting("ssh.hostKeys", {"10.9.9.9": host_key()}), "ssh.hostKeys.10.9.9.9", SSH_SECRETS),
    ("bastion-host-bad", setting("ssh.bastion", {"host": "jump host"}), "ssh.bastion.host", SSH_SECRETS),
    ("bastion-no-host", setting("ssh.bastion", {"user": "jump"}), "ssh.bastion", SSH_SECRETS),
    (
        "bastion-user-bad",
        setting("ssh.bastion", {"host": "jump.example.com", "user": "a b"}),
        "ssh.bastion.user",
        SSH_SECRETS,
    ),
    (
        "bastion-host-key-bad",
        setting("ssh.bastion", {"host": "jump.example.com", "hostKey": "ssh-ed25519 AAAA"}),
        "ssh.bastion.hostKey",
        SSH_SECRETS,
    ),
    ("no-servers", setting("servers", []), "servers", SSH_SECRETS),
    ("node-name-upper", setting("servers[0].name", "CP_1"), "servers[0].name", SSH_SECRETS),
    ("node-name-long", setting("agents[0].name", "w" * 254), "agents[0].name", SSH_SECRETS),
    ("node-name-twice", setting("agents[0].name", "cp1"), "agents[0].name", SSH_SECRETS),
    ("node-address-bad", setting("servers[0].address", "10.0.0.300"), "servers[0].address", SSH_SECRETS),
    (
        "node-address-twice",
        setting("agents[0]", {"name": "w1", "address": "10.0.0.11", "ssh": {"host": "w1.example.com"}}),
        "agents[0].address",
        SSH_SECRETS,
    ),
    ("node-host-twice", setting("agents[0].ssh", {"host": "10.0.0.11"}), "agents[0].ssh", SSH_SECRETS),
    ("node-no-address", removing("servers[0]", "address"), "servers[0]", SSH_SECRETS),
    ("node-key-typo", setting("servers[0].sshh", {"port": 2222}), "servers[0].sshh", SSH_SECRETS),
    ("node-ssh-port", setting("servers[0].ssh", {"port": 70000}), "servers[0].ssh.port", SSH_SECRETS),
    ("node-ssh-user", setting("servers[0].ssh", {"user": "$(id)"}), "servers[0].ssh.user", SSH_SECRETS),
    ("node-ssh-host", setting("servers[0].ssh", {"host": "-oProxyCommand=x"}), "servers[0].ssh.host", SSH_SECRETS),
    ("node-host-key", setting("agents[0].ssh", {"hostKey": "AAAAC3Nza"}), "agents[0].ssh.hostKey", SSH_SECRETS),
    ("label-key-dash", setting("agents[0].labels", {"-pool": "a"}), "agents[0].labels.-pool", SSH_SECRETS),
    ("label-name-64", setting("agents[0].labels", {"x" * 64: "a"}), f"agents[0].labels.{'x' * 64}", SSH_SECRETS),
    (
        "label-prefix-upper",
        setting("agents[0].labels", {"Example.com/pool": "a"}),
        "agents[0].labels.Example.com/pool",
        SSH_SECRETS,
    ),
    ("label-value-64", setting("agents[0].labels", {"pool": "v" * 64}), "agents[0].labels.pool", SSH_SECRETS),
    ("label-value-space", setting("agents[0].labels", {"pool": "a b"}), "agents[0].labels.pool", SSH_SECRETS),
    ("label-value-number", setting("agents[0].labels", {"pool": 1}), "agents[0].labels.pool", SSH_SECRETS),
    ("taint-no-effect", setting("agents[0].taints", ["gpu=true"]), "agents[0].taints[0]", SSH_SECRETS),
    ("taint-bad-effect", setting("agents[0].taints", ["gpu=true:NoRun"]), "agents[0].taints[0]", SSH_SECRETS),
    ("taint-bad-key", setting("agents[0].taints", ["g pu:NoSchedule"]), "agents[0].taints[0]", SSH_SECRETS),
    (
        "taint-twice",
        setting("agents[0].taints", ["gpu=a:NoSchedule", "gpu=b:NoSchedule"]),
        "agents[0].taints[1]",
        SSH_SECRETS,
    ),
    ("rancher-hostname-bad", setting("rancher.hostname", "rancher_example.com"), "rancher.hostname", SSH_SECRETS),
    ("rancher-hostname-ip", setting("rancher.hostname", "10.0.0.11"), "rancher.hostname", SSH_SECRETS),
    ("rancher-hostname-needed", setting("k3s.apiAddress", "k3s.example.com"), "rancher.hostname", SSH_SECRETS),
    ("lets-encrypt-no-email", setting("rancher.tls", "letsEncrypt"), "rancher.letsEncryptEmail", SSH_SECRETS),
    ("tls-secret-no-cert", setting("rancher.tls", "secret"), "rancher.tlsCert", SSH_SECRETS),
    (
        "tls-secret-no-key",
        both(setting("rancher.tls", "secret"), setting("rancher.tlsCert", PEM)),
        "rancherTlsKey",
        SSH_SECRETS,
    ),
    ("rancher-version-short", setting("rancher.version", "2.12"), "rancher.version", SSH_SECRETS),
    ("rancher-k3s-incompatible", setting("rancher.version", "2.9.3"), "rancher.version", SSH_SECRETS),
    ("rancher-docker-on-ssh", setting("rancher.mode", "docker"), "rancher.mode", SSH_SECRETS),
    ("rancher-replicas-zero", setting("rancher.replicas", 0), "rancher.replicas", SSH_SECRETS),
    (
        "rancher-registry-url",
        setting("rancher.systemDefaultRegistry", "https://reg.example.com"),
        "rancher.systemDefaultRegistry",
        SSH_SECRETS,
    ),
    ("rancher-ingress-class", setting("rancher.ingressClassName", "Traefik!"), "rancher.ingressClassName", SSH_SECRETS),
    (
        "rancher-chart-repo",
        setting("rancher.chartRepo", "https://charts example.com"),
        "rancher.chartRepo",
        SSH_SECRETS,
    ),
    (
        "rancher-le-env",
        setting("rancher.letsEncryptEnvironment", "prod"),
        "rancher.letsEncryptEnvironment",
        SSH_SECRETS,
    ),
    ("rancher-key-typo", setting("rancher.hostName", "r.example.com"), "rancher.hostName", SSH_SECRETS),
    ("docker-with-servers", setting("topology", "docker"), "servers", frozenset()),
    # K3s's own flag names (components/data/k3s-flags.json), per role
    (
        "config-key-typo",
        setting("k3s.serverConfig", {"cluster-cidrs": "10.42.0.0/16"}),
        "k3s.serverConfig.cluster-cidrs",
        SSH_SECRETS,
    ),
    (
        "agent-config-typo",
        setting("k3s.agentConfig", {"kubelet-args": ["a=b"]}),
        "k3s.agentConfig.kubelet-args",
        SSH_SECRETS,
    ),
    (
        "agent-config-server-only",
        setting("k3s.agentConfig", {"cluster-cidr": "10.42.0.0/16"}),
        "k3s.agentConfig.cluster-cidr",
        SSH_SECRETS,
    ),
    (
        "agent-config-server-only-append",
        setting("k3s.agentConfig", {"kube-apiserver-arg+": ["a=b"]}),
        "k3s.agentConfig.kube-apiserver-arg+",
        SSH_SECRETS,
    ),
    ("server-arg-typo", setting("k3s.serverArgs", ["--flannel-backnd=none"]), "k3s.serverArgs[0]", SSH_SECRETS),
    (
        "agent-arg-server-only",
        setting("k3s.agentArgs", ["--node-external-ip=203.0.113.9", "--etcd-expose-metrics"]),
        "k3s.agentArgs[1]",
        SSH_SECRETS,
    ),
    # the scripts assume K3s's default config file and data directory
    (
        "config-data-dir",
        setting("k3s.serverConfig", {"data-dir": "/data/k3s"}),
        "k3s.serverConfig.data-dir",
        SSH_SECRETS,
    ),
    ("agent-config-data-dir", setting("k3s.agentConfig", {"data-dir": "/d"}), "k3s.agentConfig.data-dir", SSH_SECRETS),
    ("config-config", setting("k3s.agentConfig", {"config": "/etc/k3s.yaml"}), "k3s.agentConfig.config", SSH_SECRETS),
    ("arg-data-dir", setting("k3s.serverArgs", ["--data-dir", "/data/k3s"]), "k3s.serverArgs[0]", SSH_SECRETS),
    ("arg-data-dir-short", setting("k3s.agentArgs", ["-d", "/data/k3s"]), "k3s.agentArgs[0]", SSH_SECRETS),
    ("arg-config", setting("k3s.serverArgs", ["--config=/etc/k3s.yaml"]), "k3s.serverArgs[0]", SSH_SECRETS),
    # Rancher's default ingress class is the bundled Traefik
    (
        "traefik-disabled-config",
        setting("k3s.serverConfig", {"disable": ["traefik"]}),
        "k3s.serverConfig.disable",
        SSH_SECRETS,
    ),
    (
        "traefik-disabled-config-text",
        setting("k3s.serverConfig", {"disable+": "servicelb,traefik"}),
        "k3s.serverConfig.disable+",
        SSH_SECRETS,
    ),
    ("traefik-disabled-arg", setting("k3s.serverArgs", ["--disable=traefik"]), "k3s.serverArgs[0]", SSH_SECRETS),
    (
        "traefik-disabled-arg-value",
        setting("k3s.serverArgs", ["--disable-network-policy", "--disable", "traefik"]),
        "k3s.serverArgs[1]",
        SSH_SECRETS,
    ),
    # IPv6 addresses need IPv6 cluster/service CIDRs
    ("ipv6-server-no-cidrs", setting("servers[0].address", "fd00::11"), "servers[0].address", SSH_SECRETS),
    (
        "ipv6-agent-no-service-cidr",
        both(setting("agents[0].address", "fd00::21"), setting("k3s.serverConfig", {"cluster-cidr": ["fd42::/56"]})),
        "agents[0].address",
        SSH_SECRETS,
    ),
    ("ipv6-api-address", setting("k3s.apiAddress", "fd00::10"), "k3s.apiAddress", SSH_SECRETS),
    ("k3s-minor-unsupported", setting("k3s.version", "v1.36.0+k3s1"), "k3s.version", SSH_SECRETS),
    ("k3s-minor-too-old", setting("k3s.version", "v1.26.15+k3s1"), "k3s.version", SSH_SECRETS),
    # Rancher's PEM files: a config error, never a traceback
    (
        "tls-cert-missing-file",
        both(setting("rancher.tls", "secret"), setting("rancher.tlsCert", "/nonexistent/tls.crt")),
        "rancher.tlsCert",
        SSH_SECRETS | {"rancherTlsKey"},
    ),
    (
        "tls-cert-missing-file-tls-rancher",
        setting("rancher.tlsCert", "/nonexistent/tls.crt"),
        "rancher.tlsCert",
        SSH_SECRETS,
    ),
    ("tls-cert-a-directory", setting("rancher.tlsCert", "/"), "rancher.tlsCert", SSH_SECRETS),
    ("tls-cert-not-pem", setting("rancher.tlsCert", compat.__file__), "rancher.tlsCert", SSH_SECRETS),
    (
        "private-ca-missing-file",
        both(
            setting("rancher.tls", "secret"),
            setting("rancher.tlsCert", PEM),
            setting("rancher.privateCa", "/no/ca.pem"),
        ),
        "rancher.privateCa",
        SSH_SECRETS | {"rancherTlsKey"},
    ),
]


def _mutated(mutation: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    config = base()
    mutation(config)
    return config


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


# --- K3s flag names (issue 12 item 10) ----------------------------------------------------


def messages(config: dict[str, Any], secrets: frozenset[str] = SSH_SECRETS) -> dict[str, str]:
    return dict(problems_of(config, secrets).problems)


def test_a_mistyped_k3s_flag_is_refused_with_the_flag_it_resembles() -> None:
    config = base()
    config["k3s"]["serverConfig"] = {"cluster-cidrs": "10.42.0.0/16", "kube-apiserver-arg+": ["a=b"]}
    config["k3s"]["agentArgs"] = ["--kubelet-arg=max-pods=150", "--node-labl", "a=b"]
    found = messages(config)
    assert set(found) == {NS + "k3s.serverConfig.cluster-cidrs", NS + "k3s.agentArgs[1]"}
    assert "did you mean 'cluster-cidr'" in found[NS + "k3s.serverConfig.cluster-cidrs"]
    assert "did you mean 'node-label'" in found[NS + "k3s.agentArgs[1]"]
    assert "K3s 1.33" in found[NS + "k3s.agentArgs[1]"]  # the minor of k3s.version


def test_a_server_only_flag_on_agents_is_refused_saying_where_it_belongs() -> None:
    config = base()
    config["k3s"]["agentConfig"] = {"disable": ["servicelb"]}
    message = messages(config)[NS + "k3s.agentConfig.disable"]
    assert "server flag" in message and "serverConfig" in message
    config["k3s"]["agentConfig"] = {}
    config["k3s"]["serverConfig"] = {"disable": ["servicelb"]}
    assert parse(config).k3s.server_config == {"disable": ["servicelb"]}


def test_real_flags_of_each_role_are_accepted_in_config_and_args() -> None:
    config = base()
    config["k3s"]["serverConfig"] = {
        "flannel-backend": "wireguard-native",
        "etcd-snapshot-schedule-cron": "0 */6 * * *",
        "etcd-s3": True,
        "secrets-encryption": True,
        "kubelet-arg+": ["max-pods=200"],  # an agent flag servers have too
        "disable": ["servicelb", "metrics-server"],
        "embedded-registry": True,
        "secrets-encryption-provider": "secretbox",  # a newer release's flag
    }
    config["k3s"]["agentConfig"] = {
        "protect-kernel-defaults": True,
        "node-external-ip": ["203.0.113.9"],
        "nonroot-devices": True,
    }
    config["k3s"]["serverArgs"] = ["--cluster-domain", "k8s.internal", "--debug", "-l", "/var/log/k3s.log"]
    config["k3s"]["agentArgs"] = ["--disable-apiserver-lb", "--kube-proxy-arg=metrics-bind-address=0.0.0.0"]
    settings = parse(config)
    assert settings.k3s.agent_args[0] == "--disable-apiserver-lb"


def test_flag_lists_cover_every_supported_minor_and_name_their_source() -> None:
    assert set(k3s_flags.known_minors()) == set(compat.K3S_MINORS)
    described = load_schema()["properties"]["k3s"]["properties"]["version"]["description"]
    assert f"1.{compat.K3S_MINORS[0]} to 1.{compat.K3S_MINORS[-1]}" in described  # the README says the same
    data = k3s_flags.load_data()
    assert set(data["minors"].values()) == set(data["sets"])  # no set without a minor
    for minor in compat.K3S_MINORS:
        flags = k3s_flags.flag_set(minor)
        assert flags is not None
        source = data["sets"][flags.name]["source"]
        assert source["repository"] == "k3s-io/k3s" and source["files"]
        # Every flag this program refuses or owns is a real K3s flag (else the refusal means nothing).
        refused = {*checks.SECRET_FLAGS, *checks.OWNED_FLAGS, *checks.DEFAULT_PATH_FLAGS}
        assert not {flags.long_name(n) for n in refused} - flags.server, minor
        assert {"cluster-init", "disable", "cluster-cidr", "tls-san"} <= flags.server - flags.agent
        assert {"node-ip", "kubelet-arg", "token-file", "server", "data-dir"} <= flags.agent & flags.server


def test_a_k3s_minor_outside_the_supported_ones_is_one_problem_with_or_without_rancher() -> None:
    config = base()
    config["k3s"]["version"] = "v1.36.0+k3s1"
    config["k3s"]["serverConfig"] = {"cluster-cidr": "10.42.0.0/16"}
    assert problems_of(config).keys == [NS + "k3s.version"]
    config["rancher"] = {"enabled": False}
    assert "1.27 to 1.35" in messages(config)[NS + "k3s.version"]


# Go source in both urfave/cli styles K3s has used (written for this test, not copied).
GO_SERVER = """package cmds
var (
	DataDirFlag = &cli.StringFlag{Name: "data-dir,d", Usage: "a {brace} in text"}
	Shared = &cli.StringFlag{
		Name:    "node-ip",
		Aliases: []string{"i"},
	}
)
// OldFlag = &cli.BoolFlag{Name: "commented-out"}
var ServerFlags = []cli.Flag{
	DataDirFlag,
	&cli.BoolFlag{Name: "cluster-init"},
	Shared,
	/* &cli.BoolFlag{Name: "also-commented"}, */
}
"""
GO_AGENT = """package cmds
func NewAgentCommand(action func(*cli.Context) error) *cli.Command {
	return &cli.Command{
		Name:  "agent",
		Flags: []cli.Flag{
			Shared,
			&cli.StringFlag{Name: "server", Aliases: []string{"s"}, EnvVars: []string{"K3S_URL"}},
		},
	}
}
"""


def test_the_refresh_parser_reads_k3s_flag_definitions_in_both_cli_styles(tmp_path: Path) -> None:
    server, agent, aliases = k3s_flags.parse_flags({"server.go": GO_SERVER, "agent.go": GO_AGENT})
    assert server == ["cluster-init", "data-dir", "node-ip"]
    assert agent == ["node-ip", "server"]
    assert aliases == {"d": "data-dir", "i": "node-ip", "s": "server"}
    with pytest.raises(ValueError, match="Unknown"):
        k3s_flags.parse_flags({"server.go": GO_SERVER.replace("Shared,\n\t/*", "Unknown,\n\t/*"), "agent.go": GO_AGENT})
    cmds = tmp_path / "pkg" / "cli" / "cmds"
    cmds.mkdir(parents=True)
    (cmds / "server.go").write_text(GO_SERVER)
    (cmds / "agent.go").write_text(GO_AGENT)
    data = {"sets": {"old": {}}, "minors": {"33": "old"}}
    updated = k3s_flags.refresh(tmp_path, "v1.33.9+k3s1", data)
    assert updated["minors"] == {"33": "v1.33.9+k3s1"} and list(updated["sets"]) == ["v1.33.9+k3s1"]
    assert updated["sets"]["v1.33.9+k3s1"]["source"]["tag"] == "v1.33.9+k3s1"
    assert data["minors"] == {"33": "old"}  # the input is not changed


# --- Traefik, IP families, PEM files -------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"rancher": {"ingressClassName": "nginx"}},
        {"rancher": {"enabled": False}},
        {"topology": "docker", "rancher": {"mode": "docker"}},
    ],
    ids=["another-ingress-class", "rancher-disabled", "rancher-docker-mode"],
)
def test_disabling_traefik_is_accepted_when_rancher_does_not_need_it(change: dict[str, Any]) -> None:
    config = base()
    config["k3s"]["serverConfig"] = {"disable": ["traefik"]}
    if change.get("topology") == "docker":
        config = {"topology": "docker", "k3s": {"serverConfig": {"disable": ["traefik"]}}}
        secrets: frozenset[str] = frozenset()
    else:
        secrets = SSH_SECRETS
    config.update({k: v for k, v in change.items() if k != "topology"})
    assert parse(config, secrets).k3s.server_config["disable"] == ["traefik"]


def test_disabling_traefik_under_rancher_says_what_to_do() -> None:
    config = base()
    config["k3s"]["serverArgs"] = ["--disable=servicelb,traefik"]
    message = messages(config)[NS + "k3s.serverArgs[0]"]
    assert "rancher.ingressClassName" in message and "keep traefik" in message


@pytest.mark.parametrize(
    ("server_config", "server_args"),
    [
        ({"cluster-cidr": "fd42::/56", "service-cidr": "fd43::/112"}, []),
        ({"cluster-cidr": ["10.42.0.0/16", "fd42::/56"], "service-cidr": "10.43.0.0/16,fd43::/112"}, []),
        ({}, ["--cluster-cidr=fd42::/56", "--service-cidr", "fd43::/112"]),
    ],
    ids=["ipv6-only", "dual-stack", "as-args"],
)
def test_ipv6_addresses_are_accepted_with_ipv6_cidrs(server_config: dict[str, Any], server_args: list[str]) -> None:
    config = base()
    config["servers"][0]["address"] = "fd00::11"
    config["agents"][0]["address"] = "fd00::21"
    config["k3s"].update(serverConfig=server_config, serverArgs=server_args, apiAddress="fd00::10")
    settings = parse(config)
    assert settings.k3s.server_url == "https://[fd00::10]:6443"


def test_an_ipv6_address_without_ipv6_cidrs_names_every_such_address() -> None:
    config = base()
    config["servers"][0]["address"] = "fd00::11"
    config["agents"][0]["address"] = "fd00::21"
    config["k3s"]["serverConfig"] = {"service-cidr": "fd43::/112"}
    found = messages(config)
    assert set(found) == {NS + "servers[0].address", NS + "agents[0].address"}
    assert "cluster-cidr (k3s.serverConfig) has no IPv6 range" in found[NS + "agents[0].address"]


def test_rancher_disabled_never_reads_its_certificate_paths() -> None:
    config = base()
    config["rancher"] = {"enabled": False, "tls": "secret", "tlsCert": "/nonexistent/tls.crt", "privateCa": "/no/ca"}
    settings = parse(config)  # no traceback, no problem: nothing will use them
    assert (settings.rancher.tls_cert, settings.rancher.private_ca) == (None, None)


def test_rancher_enabled_reads_its_certificate_files(tmp_path: Path) -> None:
    (tmp_path / "tls.crt").write_text(PEM)
    (tmp_path / "ca.crt").write_text(PEM.replace("MIIB", "MIIC"))
    config = base()
    config["rancher"] = {"tls": "secret", "tlsCert": str(tmp_path / "tls.crt"), "privateCa": str(tmp_path / "ca.crt")}
    settings = parse(config, SSH_SECRETS | {"rancherTlsKey"})
    assert settings.rancher.tls_cert == PEM
    assert settings.rancher.private_ca is not None and "MIIC" in settings.rancher.private_ca


def test_flag_and_address_checks_still_run_when_the_structure_is_wrong_elsewhere() -> None:
    config = base()
    config["ssh"] = {"port": 0}  # structural
    config["k3s"]["agentConfig"] = {"cluster-cidr": "10.42.0.0/16"}
    config["k3s"]["serverArgs"] = ["--disable=traefik"]
    config["agents"][0]["address"] = "fd00::21"
    keys = problems_of(config).keys
    for key in ("ssh.port", "k3s.agentConfig.cluster-cidr", "k3s.serverArgs[0]", "agents[0].address"):
        assert NS + key in keys, keys
