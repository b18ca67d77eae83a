"""The local topology: K3s nodes as privileged containers on one Docker engine, as k3d runs them.

The graph is the SSH path's (components/k3s.py):
server[0] container -> server[0] ready -> server[1] container -> ... -> last server ready
-> agent containers (in parallel) -> cluster ready (one `docker exec` on server[0]) ->
kubeconfig -> kubernetes.Provider.

A node is its container. The Docker provider replaces a container whenever one of its inputs
changes, so a new image (k3s.version) is the upgrade: containers are replaced in graph order,
servers one at a time (each after the previous one is Ready again), then the agents. Named
volumes keep each node's data (/var/lib/rancher/k3s) and identity (/etc/rancher/node), and
fixed addresses in docker.subnet keep etcd members valid, across the replacement.

The pure half (names, addresses, `container_spec`, the `docker exec` command text, the engine
check) holds the decisions; tests/real runs it against a real engine. The components below
only wire it to pulumi_docker and pulumi_command.local.
"""

from __future__ import annotations

import functools
import http.client
import ipaddress
import os
import re
import shlex
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

import pulumi
import pulumi_command.local as local
import pulumi_docker as docker

from components import scripts
from components.config import (
    API_PORT,
    DOCKER_AGENT_HOST,
    DOCKER_SERVER_HOST,
    NAMESPACE,
    ConfigError,
    K3sSettings,
    Node,
    Settings,
    SshEndpoint,
)
from components.k3s import context_name, kubernetes_provider, user_kubeconfig

CLUSTER_TYPE = "k3s-rancher:index:DockerCluster"
SERVER_TYPE = "k3s-rancher:index:DockerServer"
AGENT_TYPE = "k3s-rancher:index:DockerAgent"

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
ENGINE_CHECK_TIMEOUT = 5.0


# --- pure: names, addresses, container specs ------------------------------------------------


def name_prefix(stack: str) -> str:
    """The stack name as the start of a DNS label (node names become Kubernetes node names)."""
    return re.sub(r"[^a-z0-9-]+", "-", stack.lower()).strip("-")[:40].strip("-") or "k3s"


def node_address(subnet: str, role: str, index: int) -> str:
    base = DOCKER_SERVER_HOST if role == "server" else DOCKER_AGENT_HOST
    return str(ipaddress.IPv4Network(subnet).network_address + base + index)


def docker_nodes(settings: Settings) -> tuple[Node, ...]:
    """Servers then agents, named <stack>-server-<i> / <stack>-agent-<i>: docker nodes are
    counted, not listed, so an index is a stable name (removing one removes the last)."""
    d = settings.docker
    nodes = []
    for role, count in (("server", d.servers), ("agent", d.agents)):
        for index in range(count):
            name = f"{name_prefix(settings.stack)}-{role}-{index}"
            # The endpoint says how commands reach the node: `docker exec` as root.
            endpoint = SshEndpoint(host=name, port=0, user=EXEC_USER)
            nodes.append(Node(name=name, role=role, address=node_address(d.subnet, role, index), ssh=endpoint))
    return tuple(nodes)


def cluster_k3s(settings: Settings) -> K3sSettings:
    """K3s settings as the containers see them: nodes join server[0] at its fixed address,
    and the API certificate also names 127.0.0.1/localhost, where the API port is published."""
    k3s = settings.k3s
    first = node_address(settings.docker.subnet, "server", 0)
    sans = tuple(dict.fromkeys((*k3s.tls_sans, LOOPBACK, "localhost")))
    return replace(k3s, api_address=first, tls_sans=sans)


def docker_identity(node: Node) -> list[str]:
    """What a docker node is: its name (which also says its role) and its address. The
    container itself is replaced on every upgrade (a new image): that is not a new node."""
    return [node.name, node.address]


def publishes_ingress(settings: Settings) -> bool:
    """The ingress ports are published unless Rancher's own container takes the stage."""
    return not (settings.rancher.enabled and settings.rancher.mode == "docker")


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


def container_spec(node: Node, settings: Settings, *, first_server: bool) -> ContainerSpec:
    k3s = cluster_k3s(settings)
    d = settings.docker
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
        if publishes_ingress(settings):
            ports += [PortSpec(inside, outside) for inside, outside in zip(INGRESS_PORTS, d.http_ports, strict=True)]
    external = node.role == "server" and k3s.datastore == "external"
    return ContainerSpec(
        node=node,
        command=(node.role, *(k3s.server_args if node.role == "server" else k3s.agent_args)),
        envs=tuple(envs),
        labels={f"{LABEL}.stack": settings.stack, f"{LABEL}.role": node.role, f"{LABEL}.node": node.name},
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


def exec_command(container: str, script: scripts.Script) -> str:
    """The local command that runs `script` as root inside `container` (no sudo there)."""
    return f"docker exec {shlex.quote(container)} {script.command}"


def node_hint(names: Sequence[str]) -> str:
    logs = "; ".join(f"docker logs {shlex.quote(n)}" for n in names)
    return f"See {logs} (and docker ps -a); raise k3s.timeouts if this machine is slow"


# --- the engine check ------------------------------------------------------------------------


def engine_problem(host: str, timeout: float = ENGINE_CHECK_TIMEOUT) -> str | None:
    """Why the Docker engine at `host` cannot be used, or None. unix:// sockets are pinged
    (GET /_ping); tcp:// is only connected to (it may need TLS); ssh:// and npipe:// are left
    to the Docker provider."""
    url = urlsplit(host)
    start = "start Docker (Docker Desktop, or `sudo systemctl start docker`), or set docker.host"
    if url.scheme == "unix":
        path = url.path
        if not os.path.exists(path):
            return f"no Docker engine at {host}: {path} does not exist; {start}"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(path)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            response = http.client.HTTPResponse(sock)
            response.begin()
            status = response.status
        except PermissionError:
            return (
                f"permission denied on {path}: add your user to the docker group "
                "(sudo usermod -aG docker $USER, then log in again), or set docker.host"
            )
        except (OSError, http.client.HTTPException) as error:
            return f"the Docker engine at {host} does not answer ({error}); {start}"
        finally:
            sock.close()
        if status != 200:
            return f"the Docker engine at {host} answered /_ping with HTTP {status}"
        return None
    if url.scheme == "tcp":
        try:
            socket.create_connection((url.hostname or "localhost", url.port or 2375), timeout=timeout).close()
        except OSError as error:
            return f"cannot reach the Docker engine at {host} ({error}); {start}"
    return None


def check_engine(settings: Settings) -> None:
    """Stop before anything is created when `pulumi up` could not reach the engine. In preview
    (which creates nothing, and CI may run without Docker) it is a warning."""
    problem = engine_problem(settings.docker.host)
    if problem is None:
        return
    if pulumi.runtime.is_dry_run():
        pulumi.log.warn(f"{NAMESPACE}:docker.host: {problem}")
        return
    raise ConfigError([(f"{NAMESPACE}:docker.host", problem)])


# --- components ------------------------------------------------------------------------------


def local_command(
    name: str, command: pulumi.Input[str], host: str, opts: pulumi.ResourceOptions, **extra: Any
) -> local.Command:
    """A command on this machine against the engine at `host` (DOCKER_HOST for the CLI)."""
    # add_previous_output_in_env=False: nothing reads it, and no output should travel further.
    return local.Command(
        name,
        create=command,
        update=command,
        environment={"DOCKER_HOST": host},
        add_previous_output_in_env=False,
        opts=opts,
        **extra,
    )


class DockerNode(pulumi.ComponentResource):
    """One node: its two volumes and its container; a server also has `ready`, which completes
    when it is Ready at k3s.version and re-runs whenever its container is replaced."""

    ready: local.Command | None

    def __init__(
        self,
        spec: ContainerSpec,
        settings: Settings,
        *,
        provider: docker.Provider,
        network: docker.Network,
        image: docker.RemoteImage,
        token: pulumi.Output[str],
        datastore_endpoint: pulumi.Output[str] | None,
        after: Sequence[pulumi.Resource],
        forget: tuple[str, Sequence[pulumi.Resource]] | None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        node = spec.node
        super().__init__(SERVER_TYPE if node.role == "server" else AGENT_TYPE, node.name, None, opts)
        self.spec = spec
        on_engine = pulumi.ResourceOptions(parent=self, provider=provider)
        # As on SSH hosts: once the container is removed, its Node object is deleted through
        # the first server (`forget`, a delete-only command the container depends on, so it is
        # deleted after it); the still-running node would otherwise register it again after
        # the drain. The first server has none: it is removed last, with the cluster. It
        # waits only for the first server's container (it runs there; its create does
        # nothing): off the critical path.
        self.forget: local.Command | None = None
        if forget is not None:
            forget_command, forget_after = forget
            self.forget = local.Command(
                f"{node.name}-forget",
                delete=forget_command,
                environment={"DOCKER_HOST": settings.docker.host},
                triggers=docker_identity(node),
                add_previous_output_in_env=False,
                opts=pulumi.ResourceOptions(parent=self, depends_on=list(forget_after), delete_before_replace=True),
            )
        labels = [docker.VolumeLabelArgs(label=k, value=v) for k, v in spec.labels.items()]
        self.volumes = [docker.Volume(volume, name=volume, labels=labels, opts=on_engine) for volume, _ in spec.volumes]
        uploads = [docker.ContainerUploadArgs(file=f.path, content=f.content, permissions=f.mode) for f in spec.files]
        uploads.append(
            docker.ContainerUploadArgs(
                file=spec.token_file, content=pulumi.Output.secret(token.apply(token_content)), permissions="0600"
            )
        )
        if spec.datastore_file:
            if datastore_endpoint is None:
                raise ValueError("datastore external needs the datastoreEndpoint secret")
            uploads.append(
                docker.ContainerUploadArgs(
                    file=spec.datastore_file,
                    content=pulumi.Output.secret(datastore_endpoint.apply(datastore_content)),
                    permissions="0600",
                )
            )
        self.container = docker.Container(
            f"{node.name}-container",
            name=node.name,
            hostname=node.name,
            image=image.image_id,
            command=list(spec.command),
            envs=list(spec.envs),
            labels=[docker.ContainerLabelArgs(label=k, value=v) for k, v in spec.labels.items()],
            privileged=True,
            restart="unless-stopped",
            must_run=True,
            destroy_grace_seconds=STOP_GRACE_SECONDS,
            tmpfs=dict(spec.tmpfs),
            ports=[docker.ContainerPortArgs(internal=p.internal, external=p.external, ip=p.ip) for p in spec.ports],
            volumes=[
                docker.ContainerVolumeArgs(volume_name=volume.name, container_path=path)
                for volume, (_, path) in zip(self.volumes, spec.volumes, strict=True)
            ],
            networks_advanced=[
                docker.ContainerNetworksAdvancedArgs(name=network.name, ipv4_address=node.address, aliases=[node.name])
            ],
            uploads=uploads,
            # A fixed name: the old container must be gone before its replacement is created.
            opts=pulumi.ResourceOptions(
                parent=self,
                provider=provider,
                depends_on=[*after, *([self.forget] if self.forget else [])],
                delete_before_replace=True,
                additional_secret_outputs=["uploads"],
            ),
        )
        # What the ready checks wait for: this container's settings and its id, so that a
        # replaced container (new id) re-runs every check that waits on it.
        self.waits_for: pulumi.Output[str] = self.container.id.apply(
            lambda cid: f"{scripts.fingerprint(repr(spec), settings.docker.image)}/{cid[:12]}"
        )
        self.ready = None
        if node.role == "server":
            k3s = settings.k3s
            self.ready = local_command(
                f"{node.name}-ready",
                self.waits_for.apply(
                    lambda waits_for: exec_command(
                        node.name,
                        scripts.wait_script(
                            [node.name],
                            k3s,
                            timeout=k3s.timeouts.node_ready,
                            waits_for=waits_for,
                            user=EXEC_USER,
                            hint=node_hint([node.name]),
                        ),
                    )
                ),
                settings.docker.host,
                pulumi.ResourceOptions(parent=self, depends_on=[self.container]),
            )
        self.register_outputs({"container": self.container.id})


class DockerCluster(pulumi.ComponentResource):
    """The whole cluster on one Docker engine, handed on as a Ready kubernetes Provider: the
    same api_server, kubeconfig (secret), provider, ready and nodes as K3sCluster."""

    def __init__(
        self,
        name: str,
        settings: Settings,
        *,
        token: pulumi.Output[str],
        datastore_endpoint: pulumi.Output[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(CLUSTER_TYPE, name, None, opts)
        d = settings.docker
        # disable_docker_daemon_check: a preview (CI) needs no engine; `up` checked it already.
        self.docker_provider = docker.Provider(
            f"{name}-docker", host=d.host, disable_docker_daemon_check=True, opts=pulumi.ResourceOptions(parent=self)
        )
        on_engine = pulumi.ResourceOptions(parent=self, provider=self.docker_provider)
        self.network = docker.Network(
            f"{name}-network",
            name=d.network,
            driver="bridge",
            ipam_configs=[docker.NetworkIpamConfigArgs(subnet=d.subnet)],
            labels=[docker.NetworkLabelArgs(label=f"{LABEL}.stack", value=settings.stack)],
            opts=pulumi.ResourceOptions.merge(on_engine, pulumi.ResourceOptions(delete_before_replace=True)),
        )
        # The container's `image` must be an image id (the provider reads ids back); the image
        # stays on the engine after destroy (keep_locally), as other stacks may use it.
        self.image = docker.RemoteImage(f"{name}-image", name=d.image, keep_locally=True, opts=on_engine)

        self.nodes = docker_nodes(settings)
        servers = [n for n in self.nodes if n.role == "server"]
        agents = [n for n in self.nodes if n.role == "agent"]
        first = servers[0]

        k3s = settings.k3s
        on_first = functools.partial(exec_command, first.name)

        def node(spec: ContainerSpec, after: Sequence[pulumi.Resource]) -> DockerNode:
            forget = None
            if spec.node != first:
                forget = (on_first(scripts.forget_script(spec.name, EXEC_USER)), [self.servers[0].container])
            return DockerNode(
                spec,
                settings,
                provider=self.docker_provider,
                network=self.network,
                image=self.image,
                token=token,
                datastore_endpoint=datastore_endpoint,
                after=after,
                forget=forget,
                opts=pulumi.ResourceOptions(parent=self),
            )

        self.servers: list[DockerNode] = []
        previous: list[pulumi.Resource] = []
        for index, server in enumerate(servers):
            member = node(container_spec(server, settings, first_server=index == 0), previous)
            assert member.ready is not None
            self.servers.append(member)
            previous = [member.ready]
        self.agents = [node(container_spec(agent, settings, first_server=False), previous) for agent in agents]
        members = [*self.servers, *self.agents]

        self.ready = local_command(
            f"{name}-cluster-ready",
            pulumi.Output.all(*(m.waits_for for m in members)).apply(
                lambda parts: on_first(
                    scripts.wait_script(
                        [n.name for n in self.nodes],
                        k3s,
                        timeout=k3s.timeouts.cluster_ready,
                        waits_for=scripts.fingerprint(*parts),
                        user=EXEC_USER,
                        hint=node_hint([n.name for n in self.nodes]),
                    )
                )
            ),
            d.host,
            pulumi.ResourceOptions(parent=self, depends_on=[*previous, *(m.container for m in members)]),
        )
        # On removal from the cluster (a smaller docker.agents/servers), the Node object goes
        # too, or a later node of that name is rejected ("node password rejected").
        memberships = [
            local_command(
                f"{m.spec.name}-membership",
                on_first(scripts.node_meta_script(m.spec.node, EXEC_USER)),
                d.host,
                pulumi.ResourceOptions(parent=m, depends_on=[self.ready, m.container], delete_before_replace=True),
                triggers=docker_identity(m.spec.node),
                **(
                    {}
                    if m.spec.node == first
                    else {"delete": on_first(scripts.drain_script(m.spec.name, k3s.timeouts.drain, EXEC_USER))}
                ),
            )
            for m in members
        ]

        self.api_server = f"https://{LOOPBACK}:{d.api_port}"
        read = local_command(
            f"{name}-kubeconfig",
            self.servers[0].waits_for.apply(lambda after: on_first(scripts.kubeconfig_script(EXEC_USER, after))),
            d.host,
            pulumi.ResourceOptions(
                parent=self, depends_on=[self.ready], additional_secret_outputs=["stdout", "stderr"]
            ),
            logging=local.Logging.NONE,
        )
        self.kubeconfig = user_kubeconfig(read.stdout, self.api_server, context_name(settings.stack))
        self.provider = kubernetes_provider(
            f"{name}-k8s",
            self.kubeconfig,
            settings.stack,
            pulumi.ResourceOptions(parent=self, depends_on=[self.ready, *memberships]),
        )
        self.node_names = [n.name for n in self.nodes]
        self.register_outputs({"apiServer": self.api_server, "kubeconfig": self.kubeconfig, "nodes": self.node_names})
