"""The typed settings of a stack: frozen dataclasses and the constants other modules share.

No validation here: components/config.py builds these from the stack config and
components/validation/ checks them (K3sCluster and RancherDeployment check args built by hand
with the same validators). A field's default is the config schema's (components/
schema_defaults.py reads it once); a field the config derives (Rancher's host name and
replicas, the docker image) has none and comes first. Build them by keyword. Field names and
defaults are an interface the cluster graph, the backends and Rancher use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal

import pulumi

from . import checks, host_facts
from .schema_defaults import field as schema_field

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
    host: pulumi.Input[str]  # an Output too: a host created in the same program
    port: int
    user: str
    host_key: str | None = None


@dataclass(frozen=True)
class Node:
    name: str
    role: str  # "server" | "agent"
    address: pulumi.Input[str]  # an Output too: a host created in the same program
    ssh: SshEndpoint
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[str, ...] = ()


@dataclass(frozen=True)
class Timeouts:
    node_ready: int = schema_field("k3s.timeouts.nodeReady")
    cluster_ready: int = schema_field("k3s.timeouts.clusterReady")
    drain: int = schema_field("k3s.timeouts.drain")
    # k3s.timeouts.driftCheck: seconds to read one host (components/drift.py).
    drift_check: int = schema_field("k3s.timeouts.driftCheck")


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

    agents_at_once: int | str = schema_field("k3s.upgrade.agentsAtOnce")
    drain: bool = schema_field("k3s.upgrade.drain")

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
    node_addresses: tuple[pulumi.Input[str], ...] = ()


@dataclass(frozen=True)
class K3sSettings:
    # The address the API is reached at (tls-san, the joins' server URL, the kubeconfig): a
    # plain value or an Output (a host created in the same program); "" = the init server's.
    api_address: pulumi.Input[str] = ""
    version: str = schema_field("k3s.version")
    datastore: str = schema_field("k3s.datastore")
    tls_sans: tuple[str, ...] = schema_field("k3s.tlsSans")
    server_args: tuple[str, ...] = schema_field("k3s.serverArgs")
    agent_args: tuple[str, ...] = schema_field("k3s.agentArgs")
    server_config: Mapping[str, Any] = schema_field("k3s.serverConfig")
    agent_config: Mapping[str, Any] = schema_field("k3s.agentConfig")
    registries: Mapping[str, Any] | None = None
    install_script_url: str = schema_field("k3s.installScriptUrl")
    airgap: Airgap | None = None
    timeouts: Timeouts = Timeouts()
    # Name of the initialising server (cluster-init, default API address); "" without servers.
    init_server: str = ""
    install_script_sha256: str | None = None
    etcd_snapshots: EtcdSnapshots | None = None
    upgrade: UpgradeSettings = UpgradeSettings()
    proxy: Proxy | None = None
    # k3s.preflight: the host checks before a first install (components/sh/install_node.sh).
    preflight: bool = schema_field("k3s.preflight")
    # k3s.driftCheck: read every SSH host at program start (components/drift.py).
    drift_check: bool = schema_field("k3s.driftCheck")

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
        return f"https://{_bracket(known(self.api_address))}:{self.api_port}"


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
    user: str
    port: int = schema_field("ssh.bastion.port")
    host_key: str | None = None


@dataclass(frozen=True)
class SshSettings:
    user: str = schema_field("ssh.user")
    port: int = schema_field("ssh.port")
    use_agent: bool = schema_field("ssh.useAgent")
    host_keys: Mapping[str, str] = schema_field("ssh.hostKeys")
    bastion: Bastion | None = None
    dial_error_limit: int = schema_field("ssh.dialErrorLimit")
    per_dial_timeout: int = schema_field("ssh.perDialTimeout")


@dataclass(frozen=True)
class DockerSettings:
    image: str  # derived from k3s.version by config (rancher/k3s:<tag>)
    host: str = schema_field("docker.host")
    servers: int = schema_field("docker.servers")
    agents: int = schema_field("docker.agents")
    api_port: int = schema_field("docker.apiPort")
    http_ports: tuple[int, int] = schema_field("docker.httpPorts")
    network: str = schema_field("docker.network")
    subnet: str = schema_field("docker.subnet")


@dataclass(frozen=True)
class CertManagerSettings:
    version: str = schema_field("rancher.certManager.version")
    chart_repo: str = schema_field("rancher.certManager.chartRepo")
    values: Mapping[str, Any] = schema_field("rancher.certManager.values")


@dataclass(frozen=True)
class RancherSettings:
    # Derived by config: the given name, else sslip.io from an IP API address; replicas 1 with
    # one server, else 3.
    hostname: str
    replicas: int
    enabled: bool = schema_field("rancher.enabled")
    mode: str = schema_field("rancher.mode")
    version: str = schema_field("rancher.version")
    chart_repo: str = schema_field("rancher.chartRepo")
    tls: str = schema_field("rancher.tls")
    lets_encrypt_email: str | None = None
    lets_encrypt_environment: str = schema_field("rancher.letsEncryptEnvironment")
    tls_cert: str | None = None
    private_ca: str | None = None
    ingress_class_name: str = schema_field("rancher.ingressClassName")
    system_default_registry: str | None = None
    bootstrap: bool = schema_field("rancher.bootstrap")
    values: Mapping[str, Any] = schema_field("rancher.values")
    timeout: int = schema_field("rancher.timeout")
    ports: tuple[int, int] = schema_field("rancher.ports")
    cert_manager: CertManagerSettings = CertManagerSettings()
    # Host port of the ingress's HTTPS: 443 on real hosts; docker.httpPorts[1] on the docker
    # topology, which publishes the ingress on 127.0.0.1 only.
    https_port: int = 443

    @property
    def url(self) -> str:
        return f"https://{self.hostname}" + ("" if self.https_port == 443 else f":{self.https_port}")


@dataclass(frozen=True)
class SshSite:
    """topology ssh: machines listed by name, reached over SSH (the `servers`, `agents`,
    `agentPools` and `ssh` sections)."""

    ssh: SshSettings
    servers: tuple[Node, ...]
    agents: tuple[Node, ...] = ()
    # agentPools: groups of agents with their own settings (components/agent_pool.py).
    agent_pools: tuple[AgentPoolArgs, ...] = ()
    topology: Literal["ssh"] = "ssh"


@dataclass(frozen=True)
class DockerSite:
    """topology docker: nodes as containers of one Docker engine (the `docker` section); it
    lists no nodes of its own (components/backends/docker_spec.py derives them)."""

    docker: DockerSettings
    topology: Literal["docker"] = "docker"
    servers: ClassVar[tuple[Node, ...]] = ()
    agents: ClassVar[tuple[Node, ...]] = ()
    agent_pools: ClassVar[tuple[AgentPoolArgs, ...]] = ()


@dataclass(frozen=True)
class KubeconfigSite:
    """topology kubeconfig: a cluster given by its kubeconfig (a secret); no section of its own."""

    topology: Literal["kubeconfig"] = "kubeconfig"
    servers: ClassVar[tuple[Node, ...]] = ()
    agents: ClassVar[tuple[Node, ...]] = ()
    agent_pools: ClassVar[tuple[AgentPoolArgs, ...]] = ()


# Where the cluster runs: one variant per topology, tagged by `topology`, holding only that
# topology's sections (components/topologies is the registry of their behaviour).
Site = SshSite | DockerSite | KubeconfigSite


@dataclass(frozen=True)
class Settings:
    stack: str
    k3s: K3sSettings
    site: Site
    rancher: RancherSettings
    secrets_set: frozenset[str]

    @property
    def topology(self) -> str:
        return self.site.topology

    @property
    def servers(self) -> tuple[Node, ...]:
        return self.site.servers

    @property
    def agents(self) -> tuple[Node, ...]:
        return self.site.agents

    @property
    def agent_pools(self) -> tuple[AgentPoolArgs, ...]:
        return self.site.agent_pools

    @property
    def ssh(self) -> SshSettings:
        """The ssh section (topology ssh only)."""
        if not isinstance(self.site, SshSite):
            raise AttributeError(f"topology {self.site.topology} has no ssh settings")
        return self.site.ssh

    @property
    def docker(self) -> DockerSettings:
        """The docker section (topology docker only)."""
        if not isinstance(self.site, DockerSite):
            raise AttributeError(f"topology {self.site.topology} has no docker settings")
        return self.site.docker

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


# Here, beside RancherSettings: rancher.py and validation/rancher.py both read it.
def clears_cacerts(r: RancherSettings) -> bool:
    """Whether Rancher's chart starts Rancher with `--no-cacerts` for these settings: every TLS
    source but Rancher's own CA (tls rancher) and a private CA (privateCA), so for letsEncrypt in
    both environments and for tls secret without privateCa (rancher/rancher
    chart/templates/deployment.yaml, the "Public trusted CA - clear ca certs" branch). Rancher's
    `cacerts` setting is then empty."""
    return r.tls == "letsEncrypt" or (r.tls == "secret" and not r.private_ca)


def known(address: pulumi.Input[str]) -> str:
    """A plain address. One given as an Output (a host made in the same program) is rendered
    inside the apply of its value (components/inputs.py), never here."""
    if not isinstance(address, str):
        raise TypeError("an address given as an Output is rendered once known (components/inputs.py)")
    return address


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
