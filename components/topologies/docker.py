"""The docker topology: K3s nodes as containers of one Docker engine
(components/backends/docker.py), and Rancher's single-node container beside them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from ..backends.docker import DockerCluster, DockerClusterArgs
from ..backends.docker_engine import check_engine
from ..backends.docker_spec import docker_nodes
from ..cluster import KubernetesCluster
from ..cluster_record import STACK_RECORD
from ..drift import Markers
from ..rancher import RancherOutputs
from ..rancher_container import RancherContainer, RancherContainerArgs
from ..secrets import StackSecrets, cluster_token
from ..settings import NAMESPACE, DockerSite, Node, Settings, Site
from ..validation import Validator, by_topology
from .base import Sections, Topology


class Docker(Topology):
    name = "docker"
    sections: ClassVar[tuple[str, ...]] = ("docker",)
    servers_key = f"{NAMESPACE}:docker.servers"

    def site(self, sections: Sections) -> Site:
        return DockerSite(docker=sections.docker)

    def validators(self) -> Sequence[Validator]:
        return by_topology.DOCKER

    def configured_servers(self, raw: Mapping[str, Any], servers: Sequence[Node]) -> int:
        count: int = raw["docker"]["servers"]
        return count

    def rancher_https_port(self, raw: Mapping[str, Any]) -> int:
        # The ingress is published on 127.0.0.1:docker.httpPorts[1].
        port: int = raw["docker"]["httpPorts"][1]
        return port

    def server_names(self, settings: Settings) -> list[str]:
        return [n.name for n in docker_nodes(settings.stack, settings.docker) if n.role == "server"]

    def server_count(self, settings: Settings) -> int:
        return settings.docker.servers

    def build_cluster(self, settings: Settings, secrets: StackSecrets, markers: Markers) -> KubernetesCluster:
        check_engine(settings.docker.host)  # before anything is created, even the generated token
        return DockerCluster(
            settings.stack,
            DockerClusterArgs(
                docker=settings.docker,
                k3s=settings.k3s,
                token=cluster_token(secrets.token),
                datastore_endpoint=secrets.datastore_endpoint,
                publish_ingress=not (settings.rancher.enabled and settings.rancher.mode == "docker"),
                record=STACK_RECORD,
                checked=True,
            ),
        )

    def rancher_container(
        self, settings: Settings, secrets: StackSecrets, cluster: KubernetesCluster
    ) -> RancherOutputs:
        assert isinstance(cluster, DockerCluster)
        return RancherContainer(
            "rancher",
            RancherContainerArgs(
                settings=settings.rancher,
                provider=cluster.docker_provider,
                docker_host=settings.docker.host,
                stack=settings.stack,
                bootstrap_password=secrets.rancher_bootstrap_password,
            ),
        ).outputs
