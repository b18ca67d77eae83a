"""K3s nodes as containers on one Docker engine: the `docker` topology's backend and
DockerCluster.

A node's install is its container (with its two named volumes); commands run in a node
with `docker exec` from this machine (pulumi_command.local). The Docker provider replaces a
container whenever one of its inputs changes, so a new image (k3s.version) is the upgrade:
containers are replaced in the graph's order, servers one at a time, each after the previous
one is Ready again, then the agents. The decisions (names, addresses, container specs) are
the pure functions of docker_spec.py; the graph around the containers is components/cluster.py's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_command.local as local
import pulumi_docker as docker

from .. import bundle, scripts
from ..cluster import GraphCluster, Installed, render_text
from ..cluster_record import ClusterRecord, ComponentRecord, check_quorum, read_previous
from ..naming import ChildNames
from ..settings import NAMESPACE, DockerSettings, DockerSite, K3sSettings, Node
from ..validation import args as validate_args
from ..validation import by_topology
from .docker_spec import (
    LABEL,
    LOOPBACK,
    STOP_GRACE_SECONDS,
    cluster_k3s,
    container_spec,
    datastore_content,
    docker_identity,
    docker_nodes,
    exec_command,
    node_hint,
    token_content,
)

CLUSTER_TYPE = "k3s-rancher:index:DockerCluster"
SERVER_TYPE = "k3s-rancher:index:DockerServer"
AGENT_TYPE = "k3s-rancher:index:DockerAgent"


@dataclass(frozen=True)
class DockerClusterArgs:
    """What DockerCluster needs: the engine and node counts, the K3s settings, the token (and
    the external datastore's endpoint), both secret."""

    docker: DockerSettings
    k3s: K3sSettings
    token: pulumi.Input[str]
    datastore_endpoint: pulumi.Input[str] | None = None
    # Publish the first server's ingress (80/443) on docker.httpPorts of 127.0.0.1; off when
    # Rancher's own container takes those ports.
    publish_ingress: bool = True
    # Prefixes container names (<name>-server-0), labels them, and names the kubeconfig's
    # context; the component's name when unset.
    cluster_name: str | None = None
    # Where the cluster keeps what its next run compares with (components/cluster_record.py);
    # None: its own stack output, `k3s-rancher:<name>`.
    record: ClusterRecord | None = None
    # True: parse_settings built and checked these (the stack program). False: the component
    # runs the docker topology's validators on them (components/validation/args.py).
    checked: bool = False


def local_command(
    name: str,
    command: pulumi.Input[str] | None,
    host: str,
    opts: pulumi.ResourceOptions,
    update: pulumi.Input[str] | None = None,
    **extra: Any,
) -> local.Command:
    """A command on this machine against the engine at `host` (DOCKER_HOST for the CLI);
    `command` also serves as update unless `update` is given."""
    # add_previous_output_in_env=False: nothing reads it, and no output should travel further.
    return local.Command(
        name,
        create=command,
        update=update if update is not None else command,
        environment={"DOCKER_HOST": host},
        add_previous_output_in_env=False,
        opts=opts,
        **extra,
    )


class DockerBackend:
    """components/cluster.py's Backend for nodes as containers on one engine."""

    cluster_type = CLUSTER_TYPE
    server_type = SERVER_TYPE
    agent_type = AGENT_TYPE
    # The first container always initialises: the init role cannot move.
    forget_init = False
    # An upgrade replaces containers, servers one at a time, then the agents (no batches).
    rolls_agents = False
    # The rancher/k3s image has no curl to ask /db/info with: a removed server's Node delete
    # waits for K3s's member removal (its finalizer) instead.
    checks_etcd_members = False
    # Docker agents are a count (docker.agents): no pools.
    pools: tuple[()] = ()
    # A new token or endpoint is a new file in the container: a new container, a new generation.
    check_stdin = None
    # The token cannot change here (validation refuses newToken): no rotation step.
    token_rotation = None
    # No prefix: the nodes are named after the cluster already (<cluster>-server-0), and so
    # are their children, in every program.
    names = ChildNames()

    def __init__(
        self,
        args: DockerClusterArgs,
        cluster_name: str,
        *,
        provider: docker.Provider,
        network: docker.Network,
        image: docker.RemoteImage,
    ) -> None:
        self.args = args
        self.cluster_name = cluster_name
        self.provider, self.network, self.image = provider, network, image
        self.k3s = cluster_k3s(args.k3s, args.docker)
        nodes = docker_nodes(cluster_name, args.docker)
        self.servers = [n for n in nodes if n.role == "server"]
        self.agents = [n for n in nodes if n.role == "agent"]
        self.api_server = f"https://{LOOPBACK}:{args.docker.api_port}"
        self._bundle = bundle.current_bundle()
        self._scripts: dict[str, local.Command] = {}

    def identity(self, node: Node) -> list[str]:
        return docker_identity(node)

    def prepare(self, parent: pulumi.Resource, node: Node, after: Sequence[pulumi.Resource]) -> None:
        """Nothing before the container: its scripts step follows it (see install)."""

    def _scripts_step(self, parent: pulumi.Resource, node: Node, container: docker.Container) -> local.Command:
        """Put this release's scripts bundle into the node's container (`docker exec -i`, the
        bundle on stdin, checked against the digest computed here). It is in the container's
        own filesystem, so a replaced container (a new id in the triggers) gets it again; no
        delete: the container's removal takes it."""
        scripts_bundle = self._bundle
        step = local_command(
            f"{node.name}-scripts",
            exec_command(node.name, scripts.deliver_scripts_script("root", scripts_bundle), stdin=True),
            self.args.docker.host,
            pulumi.ResourceOptions(parent=parent, depends_on=[container], delete_before_replace=True),
            stdin=scripts_bundle.text,
            triggers=[container.id],
        )
        self._scripts[node.name] = step
        return step

    def _after_scripts(self, on: Node, opts: pulumi.ResourceOptions) -> pulumi.ResourceOptions:
        """`opts` plus a dependency on `on`'s scripts step (a command there runs its code)."""
        step = self._scripts.get(on.name)
        if step is None:
            return opts
        return pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[step]))

    def reimaged(self, node: Node) -> int:
        return 0  # no drift check on docker

    def retired_steps(self) -> pulumi.Output[list[str]]:
        return pulumi.Output.from_input([])  # nothing it registered before is gone

    def wait_hint(self, names: Sequence[str]) -> str | None:
        return node_hint(names)

    def command(
        self,
        name: str,
        on: Node,
        *,
        opts: pulumi.ResourceOptions,
        create: pulumi.Input[str] | None = None,
        update: pulumi.Input[str] | None = None,
        delete: pulumi.Input[str] | None = None,
        stdin: pulumi.Input[str] | None = None,
        triggers: Sequence[pulumi.Input[str]] | None = None,
    ) -> local.Command:
        def in_node(text: str) -> str:
            return exec_command(on.name, text)

        extra: dict[str, Any] = {}
        if delete is not None:
            extra["delete"] = render_text(delete, in_node)
        if stdin is not None:
            extra["stdin"] = stdin
        if triggers is not None:
            extra["triggers"] = list(triggers)
        command = render_text(create, in_node) if create is not None else None
        changed = render_text(update, in_node) if update is not None else None
        return local_command(
            name, command, self.args.docker.host, self._after_scripts(on, opts), update=changed, **extra
        )

    def upgrade_command(self, name: str, on: Node, *, update: pulumi.Input[str], opts: pulumi.ResourceOptions) -> None:
        """None: a new k3s.version replaces the containers (their volumes keep etcd's data);
        no pre-upgrade snapshot here."""
        return None

    def install(
        self,
        parent: pulumi.Resource,
        node: Node,
        *,
        first_server: bool,
        after: Sequence[pulumi.Resource],
        forget: pulumi.Resource | None,
        rolled: bool = False,
    ) -> Installed:
        args = self.args
        spec = container_spec(
            node,
            self.k3s,
            args.docker,
            stack=self.cluster_name,
            publish_ingress=args.publish_ingress,
            first_server=first_server,
        )
        on_engine = pulumi.ResourceOptions(parent=parent, provider=self.provider)
        labels = [docker.VolumeLabelArgs(label=k, value=v) for k, v in spec.labels.items()]
        volumes = [docker.Volume(volume, name=volume, labels=labels, opts=on_engine) for volume, _ in spec.volumes]
        uploads = [docker.ContainerUploadArgs(file=f.path, content=f.content, permissions=f.mode) for f in spec.files]
        token = pulumi.Output.from_input(args.token)
        uploads.append(
            docker.ContainerUploadArgs(
                file=spec.token_file, content=pulumi.Output.secret(token.apply(token_content)), permissions="0600"
            )
        )
        if spec.datastore_file:
            if args.datastore_endpoint is None:
                raise ValueError("datastore external needs the datastoreEndpoint secret")
            endpoint = pulumi.Output.from_input(args.datastore_endpoint)
            uploads.append(
                docker.ContainerUploadArgs(
                    file=spec.datastore_file,
                    content=pulumi.Output.secret(endpoint.apply(datastore_content)),
                    permissions="0600",
                )
            )
        container = docker.Container(
            f"{node.name}-container",
            name=node.name,
            hostname=node.name,
            image=self.image.image_id,
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
                for volume, (_, path) in zip(volumes, spec.volumes, strict=True)
            ],
            networks_advanced=[
                docker.ContainerNetworksAdvancedArgs(
                    name=self.network.name, ipv4_address=node.address, aliases=[node.name]
                )
            ],
            uploads=uploads,
            # A fixed name: the old container must be gone before its replacement is created.
            opts=pulumi.ResourceOptions(
                parent=parent,
                provider=self.provider,
                depends_on=[*after, *([forget] if forget else [])],
                delete_before_replace=True,
                additional_secret_outputs=["uploads"],
            ),
        )
        # The container's settings and its id: a replaced container (new id) is a new
        # generation, and every check that waits on it runs again.
        image_name = args.docker.image
        generation = container.id.apply(lambda cid: f"{scripts.fingerprint(repr(spec), image_name)}/{cid[:12]}")
        step = self._scripts_step(parent, node, container)
        # A replaced container is an upgrade, not a new node: the membership is not replaced.
        return Installed(resources=[container, step], generation=generation)

    def read_kubeconfig(
        self, name: str, waits_for: pulumi.Input[str], opts: pulumi.ResourceOptions
    ) -> pulumi.Output[str]:
        first = self.servers[0]
        read = local_command(
            name,
            render_text(
                waits_for, lambda after: exec_command(first.name, scripts.kubeconfig_script(first.ssh.user, after))
            ),
            self.args.docker.host,
            self._after_scripts(
                first,
                pulumi.ResourceOptions.merge(
                    opts, pulumi.ResourceOptions(additional_secret_outputs=["stdout", "stderr"])
                ),
            ),
            logging=local.Logging.NONE,
        )
        return read.stdout


class DockerCluster(GraphCluster):
    """A K3s cluster on one Docker engine, handed on like K3sCluster (provider, kubeconfig,
    ready, nodes), plus the engine's `docker_provider` for whatever else runs beside it."""

    def __init__(self, name: str, args: DockerClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        d = args.docker
        cluster_name = args.cluster_name or name
        record = args.record or ComponentRecord(name)
        # Before anything of the cluster is registered: a refusal leaves nothing behind.
        if not args.checked:
            secrets = ["token", *(["datastoreEndpoint"] if args.datastore_endpoint is not None else [])]
            settings = validate_args.settings_of(DockerSite(docker=d), k3s=args.k3s, secrets=secrets)
            validate_args.check(settings, by_topology.DOCKER, ["docker.image"])
        servers = [n.name for n in docker_nodes(cluster_name, d) if n.role == "server"]
        check_quorum(record, servers, args.k3s.datastore, f"{NAMESPACE}:docker.servers")
        super().__init__(CLUSTER_TYPE, name, None, opts)
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
            labels=[docker.NetworkLabelArgs(label=f"{LABEL}.stack", value=cluster_name)],
            opts=pulumi.ResourceOptions.merge(on_engine, pulumi.ResourceOptions(delete_before_replace=True)),
        )
        # The container's `image` must be an image id (the provider reads ids back); the image
        # stays on the engine after destroy (keep_locally), as other stacks may use it.
        self.image = docker.RemoteImage(f"{name}-image", name=d.image, keep_locally=True, opts=on_engine)
        backend = DockerBackend(
            args, cluster_name, provider=self.docker_provider, network=self.network, image=self.image
        )
        self._build(name, backend, args.k3s, cluster_name, record, read_previous(record))
