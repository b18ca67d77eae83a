"""The shared pieces of the config tests: a valid base config, mutations, and the table of
bad configs, each with the exact key its problem must name (ConfigError.keys)."""

from __future__ import annotations

import base64
import warnings
from collections.abc import Callable
from typing import Any

import pytest

from components import compat
from components.config import parse_settings
from components.settings import NAMESPACE, ConfigError, Settings
from tests.harness import minimal_ssh_config

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


def messages(config: dict[str, Any], secrets: frozenset[str] = SSH_SECRETS) -> dict[str, str]:
    return dict(problems_of(config, secrets).problems)
