"""The docker topology's decisions, as pure functions: node names and fixed addresses, each
node's container spec (command, environment, files, ports, volumes), and the `docker exec`
text that runs a script in a node. components/backends/docker.py wires them to pulumi_docker
and pulumi_command.local; tests/real runs them against a real engine.

A node is its container, as k3d runs K3s: privileged, /run and /var/run on tmpfs, its data
(/var/lib/rancher/k3s) and identity (/etc/rancher/node) in named volumes and a fixed address
in docker.subnet, so that a replaced container (a new image: the upgrade) is the same node.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from .. import scripts
from ..settings import (
    API_PORT,
    DOCKER_AGENT_HOST,
    DOCKER_SERVER_HOST,
    DockerSettings,
    K3sSettings,
    Node,
    SshEndpoint,
    known,
)

LOOPBACK = "127.0.0.1"
DATA_DIR = "/var/lib/rancher/k3s"
IDENTITY_DIR = "/etc/rancher/node"
CONFIG_FILE = f"{scripts.CONF_DIR}/config.yaml"
REGISTRIES_FILE = f"{scripts.CONF_DIR}/registries.yaml"
DATASTORE_FILE = f"{scripts.CONF_DIR}/config.yaml.d/50-k3s-rancher-datastore.yaml"
INGRESS_PORTS = (80, 443)
LABEL = "io.k3s-rancher"
# Seconds a container gets to stop (K3s and etcd shut down cleanly) before it is removed.
STOP_GRACE_SECONDS = 30
# Inside a node container every command runs as root: no sudo.
EXEC_USER = "root"


def name_prefix(stack: str) -> str:
    """The stack name as the start of a DNS label (node names become Kubernetes node names)."""
    return re.sub(r"[^a-z0-9-]+", "-", stack.lower()).strip("-")[:40].strip("-") or "k3s"


def node_address(subnet: str, role: str, index: int) -> str:
    base = DOCKER_SERVER_HOST if role == "server" else DOCKER_AGENT_HOST
    return str(ipaddress.IPv4Network(subnet).network_address + base + index)


def docker_nodes(stack: str, d: DockerSettings) -> tuple[Node, ...]:
    """Servers then agents, named <stack>-server-<i> / <stack>-agent-<i>: docker nodes are
    counted, not listed, so an index is a stable name (removing one removes the last)."""
    nodes = []
    for role, count in (("server", d.servers), ("agent", d.agents)):
        for index in range(count):
            name = f"{name_prefix(stack)}-{role}-{index}"
            # The endpoint says how commands reach the node: `docker exec` as root.
            endpoint = SshEndpoint(host=name, port=0, user=EXEC_USER)
            nodes.append(Node(name=name, role=role, address=node_address(d.subnet, role, index), ssh=endpoint))
    return tuple(nodes)


def cluster_k3s(k3s: K3sSettings, d: DockerSettings) -> K3sSettings:
    """K3s settings as the containers see them: nodes join server[0] at its fixed address,
    and the API certificate also names 127.0.0.1/localhost, where the API port is published."""
    first = node_address(d.subnet, "server", 0)
    sans = tuple(dict.fromkeys((*k3s.tls_sans, LOOPBACK, "localhost")))
    return replace(k3s, api_address=first, tls_sans=sans)


def docker_identity(node: Node) -> list[str]:
    """What a docker node is: its name (which also says its role) and its address. The
    container itself is replaced on every upgrade (a new image): that is not a new node."""
    return [node.name, known(node.address)]


@dataclass(frozen=True)
class PortSpec:
    internal: int
    external: int
    ip: str = LOOPBACK


@dataclass(frozen=True)
class FileSpec:
    """A file written into the container before it starts (Docker's copy API, not a mount)."""

    path: str
    content: str
    mode: str = "0600"


@dataclass(frozen=True)
class ContainerSpec:
    """Everything about a node's container except its secrets, which are files (token_file,
    datastore_file) whose content only the component knows: never env or labels, which
    `docker inspect` shows."""

    node: Node
    command: tuple[str, ...]
    envs: tuple[str, ...]
    labels: Mapping[str, str]
    ports: tuple[PortSpec, ...]
    volumes: tuple[tuple[str, str], ...]  # (volume name, path in the container)
    tmpfs: Mapping[str, str]
    files: tuple[FileSpec, ...]
    token_file: str
    datastore_file: str | None

    @property
    def name(self) -> str:
        return self.node.name


def container_spec(
    node: Node, k3s: K3sSettings, d: DockerSettings, *, stack: str, publish_ingress: bool, first_server: bool
) -> ContainerSpec:
    """`k3s` as cluster_k3s gives it; `publish_ingress`: the ingress ports go to 127.0.0.1
    (unless Rancher's own container takes them)."""
    # The same config.yaml as on SSH hosts (serverConfig/agentConfig, tls-san, cluster-init or
    # server, token-file), written into the container instead of by an install script.
    files = [FileSpec(CONFIG_FILE, scripts.managed_yaml(scripts.node_config(node, k3s, first_server=first_server)))]
    if k3s.registries:
        files.append(FileSpec(REGISTRIES_FILE, scripts.managed_yaml(k3s.registries)))
    envs = [f"K3S_TOKEN_FILE={scripts.TOKEN_FILE}"]
    if node.role == "agent":
        envs.append(f"K3S_URL={k3s.server_url}")
    ports: list[PortSpec] = []
    if first_server:
        ports.append(PortSpec(API_PORT, d.api_port))
        if publish_ingress:
            ports += [PortSpec(inside, outside) for inside, outside in zip(INGRESS_PORTS, d.http_ports, strict=True)]
    external = node.role == "server" and k3s.datastore == "external"
    return ContainerSpec(
        node=node,
        command=(node.role, *(k3s.server_args if node.role == "server" else k3s.agent_args)),
        envs=tuple(envs),
        labels={f"{LABEL}.stack": stack, f"{LABEL}.role": node.role, f"{LABEL}.node": node.name},
        ports=tuple(ports),
        volumes=((f"{node.name}-data", DATA_DIR), (f"{node.name}-identity", IDENTITY_DIR)),
        tmpfs={"/run": "", "/var/run": ""},
        files=tuple(files),
        token_file=scripts.TOKEN_FILE,
        datastore_file=DATASTORE_FILE if external else None,
    )


def token_content(token: str) -> str:
    if not token or "\n" in token or "\r" in token:
        raise ValueError("the cluster token must be one non-empty line")
    return token + "\n"


def datastore_content(endpoint: str) -> str:
    return scripts.managed_yaml({"datastore-endpoint": endpoint})


def exec_command(container: str, script: scripts.Script | str, *, stdin: bool = False) -> str:
    """The local command that runs `script` (or its command text) as root inside `container`
    (no sudo there); with `stdin`, the command's stdin is passed on (`docker exec -i`)."""
    text = script if isinstance(script, str) else script.command
    return f"docker exec {'-i ' if stdin else ''}{shlex.quote(container)} {text}"


def node_hint(names: Sequence[str]) -> str:
    logs = "; ".join(f"docker logs {shlex.quote(n)}" for n in names)
    return f"See {logs} (and docker ps -a); raise k3s.timeouts if this machine is slow"
