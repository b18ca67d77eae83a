"""The ssh topology: K3s on listed hosts over SSH (components/backends/ssh.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from ..backends.ssh import K3sCluster, K3sClusterArgs
from ..cluster import KubernetesCluster
from ..cluster_record import STACK_RECORD
from ..drift import Markers
from ..secrets import StackSecrets, cluster_token
from ..settings import NAMESPACE, Settings, Site, SshSite
from ..validation import Validator, by_topology
from .base import Sections, Topology


class Ssh(Topology):
    name = "ssh"
    sections: ClassVar[tuple[str, ...]] = ("servers", "agents", "agentPools", "ssh")
    servers_key = f"{NAMESPACE}:servers"
    lists_nodes = True
    reads_hosts = True

    def site(self, sections: Sections) -> Site:
        return SshSite(ssh=sections.ssh, servers=sections.servers, agents=sections.agents, agent_pools=sections.pools)

    def validators(self) -> Sequence[Validator]:
        return by_topology.SSH

    def build_cluster(self, settings: Settings, secrets: StackSecrets, markers: Markers) -> KubernetesCluster:
        return K3sCluster(
            settings.stack,
            K3sClusterArgs(
                servers=settings.servers,
                agents=settings.agents,
                pools=settings.agent_pools,
                k3s=settings.k3s,
                ssh=settings.ssh,
                token=cluster_token(secrets.token),
                private_key=secrets.ssh_private_key,
                private_key_password=secrets.ssh_private_key_password,
                datastore_endpoint=secrets.datastore_endpoint,
                etcd_s3_access_key=secrets.etcd_s3_access_key,
                etcd_s3_secret_key=secrets.etcd_s3_secret_key,
                proxy_credentials=secrets.proxy_credentials,
                new_token=secrets.new_token,
                registry_auth=secrets.registry_auth,
                repairs=dict(markers.repairs),
                reimaged=dict(markers.reimaged),
                name_prefix="",
                record=STACK_RECORD,
                checked=True,
            ),
        )
