"""The typed settings of a stack: frozen dataclasses and the constants other modules share.

No validation and no IO here: components/config.py builds these from the stack config and
components/validation/ checks them. Field names, order and defaults are an interface the
cluster graph, the backends and Rancher use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from . import checks, host_facts

NAMESPACE = "k3s-rancher"
K3S_KEY = f"{NAMESPACE}:k3s"
SECRET_KEYS = (
    "token",
    "newToken",
    "sshPrivateKey",
    "sshPrivateKeyPassword",
    "datastoreEndpoint",
    "proxyCredentials",
    "rancherBootstrapPassword",
    "rancherTlsKey",
    "kubeconfig",
    "etcdS3AccessKey",
    "etcdS3SecretKey",
    "registryAuth",
)
API_PORT = host_facts.K3S_API_PORT  # K3s's default; a cluster's own is K3sSettings.api_port
# Addresses of docker nodes in docker.subnet: server i at host SERVER_HOST + i, agent i at
# AGENT_HOST + i (the schema bounds servers to 7 and agents to 50).
DOCKER_SERVER_HOST = 10
DOCKER_AGENT_HOST = 20


class ConfigError(ValueError):
    """Every problem found in a stack's config, each as (key, what is wrong and what is valid)."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        lines = [f"  - {key}: {message}" for key, message in problems]
        super().__init__("invalid stack config:\n" + "\n".join(lines))

    @property
    def keys(self) -> list[str]:
        return [key for key, _ in self.problems]


@dataclass(frozen=True)
class SshEndpoint:
    host: str
    port: int
    user: str
    host_key: str | None = None


@dataclass(frozen=True)
class Node:
    name: str
    role: str  # "server" | "agent"
    address: str
    ssh: SshEndpoint
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[str, ...] = ()


@dataclass(frozen=True)
class Timeouts:
    node_ready: int
    cluster_ready: int
    drain: int
    # k3s.timeouts.driftCheck: seconds to read one host (components/drift.py).
    drift_check: int = 10


@dataclass(frozen=True)
class Airgap:
    install_script: str
    binary: str
    images: str | None


@dataclass(frozen=True)
class EtcdS3:
    """Where K3s uploads etcd snapshots (etcd-s3-*); the keys are the etcdS3AccessKey and
    etcdS3SecretKey secrets, never here."""

    endpoint: str
    bucket: str
    folder: str | None
    region: str | None
    insecure: bool
    skip_ssl_verify: bool


@dataclass(frozen=True)
class EtcdSnapshots:
    """k3s.etcdSnapshots: K3s's scheduled snapshots (embedded etcd only); None = K3s defaults."""

    schedule_cron: str | None
    retention: int | None
    directory: str | None
    s3: EtcdS3 | None


@dataclass(frozen=True)
class UpgradeSettings:
    """How agents take an in-place change (a new k3s.version, new settings): in batches of
    `agents_at_once` (a count, or "N%" of the agents, at least 1), each cordoned (and drained
    with `drain`) first and uncordoned once Ready again."""

    agents_at_once: int | str = "10%"
    drain: bool = True

    def batch_size(self, agents: int) -> int:
        if isinstance(self.agents_at_once, int):
            return max(1, self.agents_at_once)
        percent = int(self.agents_at_once.rstrip("%"))
        return max(1, -(-agents * percent // 100))  # rounded up


@dataclass(frozen=True)
class Proxy:
    """k3s.proxy: the proxy URLs (no credentials: those are the proxyCredentials secret), the
    user's noProxy entries, and the addresses of every node and of the API, which config adds
    so that NO_PROXY reaches them directly (components/proxy.py builds the final list)."""

    http_proxy: str | None
    https_proxy: str | None
    no_proxy: tuple[str, ...]
    node_addresses: tuple[str, ...] = ()


@dataclass(frozen=True)
class K3sSettings:
    version: str
    datastore: str
    api_address: str
    tls_sans: tuple[str, ...]
    server_args: tuple[str, ...]
    agent_args: tuple[str, ...]
    server_config: Mapping[str, Any]
    agent_config: Mapping[str, Any]
    registries: Mapping[str, Any] | None
    install_script_url: str
    airgap: Airgap | None
    timeouts: Timeouts
    # Name of the initialising server (cluster-init, default API address); "" without servers.
    init_server: str = ""
    install_script_sha256: str | None = None
    etcd_snapshots: EtcdSnapshots | None = None
    upgrade: UpgradeSettings = UpgradeSettings()
    proxy: Proxy | None = None
    # k3s.preflight: the host checks before a first install (components/sh/install_node.sh).
    preflight: bool = True
    # k3s.driftCheck: read every SSH host at program start (components/drift.py).
    drift_check: bool = False

    @property
    def minor(self) -> int:
        parsed = checks.parse_k3s_version(self.version)
        assert parsed is not None  # validated
        return parsed[1]

    @property
    def api_port(self) -> int:
        """The servers' API port: the last https-listen-port of serverConfig/serverArgs (as K3s
        reads them), else K3s's default."""
        values = [value for _, value in server_flag_values(self, "https-listen-port") if value]
        return int(values[-1]) if values and values[-1].isdigit() else API_PORT

    @property
    def server_url(self) -> str:
        return f"https://{_bracket(self.api_address)}:{self.api_port}"


@dataclass(frozen=True)
class AgentPoolArgs:
    """One pool: its name, its agents (role "agent") and the settings it adds to the cluster's
    (components/agent_pool.py says how they combine)."""

    name: str
    nodes: Sequence[Node]
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[str, ...] = ()
    agent_args: tuple[str, ...] = ()
    agent_config: Mapping[str, Any] = field(default_factory=dict)
    # None: k3s.registries.
    registries: Mapping[str, Any] | None = None
    # None: k3s.upgrade.
    upgrade: UpgradeSettings | None = None

    def k3s(self, cluster: K3sSettings) -> K3sSettings:
        """The K3s settings this pool's agents are installed with."""
        return replace(
            cluster,
            agent_args=(*cluster.agent_args, *self.agent_args),
            agent_config={**cluster.agent_config, **self.agent_config},
            registries=cluster.registries if self.registries is None else self.registries,
            upgrade=self.upgrade or cluster.upgrade,
        )

    def members(self) -> list[Node]:
        """The pool's agents with the pool's labels and taints combined with their own."""
        return [
            replace(node, labels={**self.labels, **node.labels}, taints=combine_taints(self.taints, node.taints))
            for node in self.nodes
        ]


def combine_taints(pool: Sequence[str], own: Sequence[str]) -> tuple[str, ...]:
    """The pool's taints, less those an agent's own replaces (same key and effect), then its own."""
    owned = {taint_identity(t) for t in own}
    return (*(t for t in pool if taint_identity(t) not in owned), *own)


def taint_identity(taint: str) -> str:
    """key:effect of `key[=value]:effect` (one value per key and effect on a node)."""
    body, _, effect = taint.rpartition(":")
    return f"{body.partition('=')[0]}:{effect}"


@dataclass(frozen=True)
class Bastion:
    host: str
    port: int
    user: str
    host_key: str | None


@dataclass(frozen=True)
class SshSettings:
    user: str
    port: int
    use_agent: bool
    host_keys: Mapping[str, str]
    bastion: Bastion | None
    dial_error_limit: int
    per_dial_timeout: int


@dataclass(frozen=True)
class DockerSettings:
    host: str
    image: str
    servers: int
    agents: int
    api_port: int
    http_ports: tuple[int, int]
    network: str
    subnet: str


@dataclass(frozen=True)
class CertManagerSettings:
    version: str
    chart_repo: str
    values: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RancherSettings:
    enabled: bool
    mode: str
    hostname: str
    version: str
    chart_repo: str
    replicas: int
    tls: str
    lets_encrypt_email: str | None
    lets_encrypt_environment: str
    tls_cert: str | None
    private_ca: str | None
    ingress_class_name: str
    system_default_registry: str | None
    bootstrap: bool
    values: Mapping[str, Any]
    timeout: int
    ports: tuple[int, int]
    cert_manager: CertManagerSettings
    # Host port of the ingress's HTTPS: 443 on real hosts; docker.httpPorts[1] on the docker
    # topology, which publishes the ingress on 127.0.0.1 only.
    https_port: int = 443

    @property
    def url(self) -> str:
        return f"https://{self.hostname}" + ("" if self.https_port == 443 else f":{self.https_port}")


@dataclass(frozen=True)
class Settings:
    stack: str
    topology: str
    k3s: K3sSettings
    ssh: SshSettings
    servers: tuple[Node, ...]
    agents: tuple[Node, ...]
    docker: DockerSettings
    rancher: RancherSettings
    secrets_set: frozenset[str]
    # agentPools (ssh): groups of agents with their own settings (components/agent_pool.py).
    agent_pools: tuple[AgentPoolArgs, ...] = ()

    @property
    def pool_agents(self) -> tuple[Node, ...]:
        """Every pool's agents, with the pool's labels and taints combined with their own."""
        return tuple(n for pool in self.agent_pools for n in pool.members())

    @property
    def nodes(self) -> tuple[Node, ...]:
        return self.servers + self.agents + self.pool_agents

    @property
    def init_node(self) -> Node:
        """The server that initialised the cluster: named by k3s.initServer, never by position."""
        return next(n for n in self.servers if n.name == self.k3s.init_server)


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


# The values a K3s server flag gets from k3s.serverConfig and k3s.serverArgs: here, beside
# K3sSettings, so that proxy.py, scripts.py and validation/ all read flags from the one module
# they already import (no import circle among them).
def server_flag_values(k3s: K3sSettings, flag: str) -> list[tuple[str, str]]:
    """(key, value) for each value a server flag gets from serverConfig (`flag`, `flag+`) and
    serverArgs (`--flag=v`, `--flag v`); comma-separated values split, as K3s splits them."""
    found: list[tuple[str, str]] = []
    for name in (flag, f"{flag}+"):
        value = k3s.server_config.get(name)
        for item in value if isinstance(value, list) else ([] if value is None else [value]):
            found += [(f"{K3S_KEY}.serverConfig.{name}", part.strip()) for part in str(item).split(",")]
    args = list(k3s.server_args)
    for i, arg in enumerate(args):
        name, has_value, value = arg.lstrip("-").partition("=")
        if not arg.startswith("-") or name != flag:
            continue
        if not has_value:
            if i + 1 >= len(args) or args[i + 1].startswith("-"):
                continue
            value = args[i + 1]
        found += [(f"{K3S_KEY}.serverArgs[{i}]", part.strip()) for part in value.split(",")]
    return found
