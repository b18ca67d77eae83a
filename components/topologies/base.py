"""What a topology decides, as one class: its config sections, its validation (which refuses
the other topologies' keys), its servers, how its cluster is built, and which of the
program's run-time checks apply to it. components/topologies/__init__.py is the registry."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ..cluster import KubernetesCluster
from ..drift import Markers
from ..rancher import RancherOutputs
from ..secrets import StackSecrets
from ..settings import NAMESPACE, AgentPoolArgs, DockerSettings, Node, Settings, Site, SshSettings
from ..validation import Validator


@dataclass(frozen=True)
class Sections:
    """Every topology's config sections, parsed (components/config.py parses them all, so that
    any of them can be refused by key); a topology's `site()` keeps its own."""

    ssh: SshSettings
    servers: tuple[Node, ...]
    agents: tuple[Node, ...]
    pools: tuple[AgentPoolArgs, ...]
    docker: DockerSettings


class Topology:
    """One topology. Subclasses set the class attributes and override what differs."""

    name: ClassVar[str]
    # Config sections only this topology takes (the others refuse them by key).
    sections: ClassVar[tuple[str, ...]] = ()
    # The key that says which servers a stack has (named by the quorum guard); "" if none.
    servers_key: ClassVar[str] = ""
    # Whether this program installs K3s (and so exports k3sVersion and guards etcd quorum).
    installs_k3s: ClassVar[bool] = True
    # Whether nodes are listed by name, so that a node changing role is refused
    # (components/validation/roles.py), and read over SSH for drift (components/drift.py).
    lists_nodes: ClassVar[bool] = False
    reads_hosts: ClassVar[bool] = False

    def site(self, sections: Sections) -> Site:
        """This topology's variant of Settings.site: its own sections (it refuses the others' by key)."""
        raise NotImplementedError

    def validators(self) -> Sequence[Validator]:
        """The validators this topology's settings go through, in the order their problems are listed."""
        raise NotImplementedError

    def configured_servers(self, raw: Mapping[str, Any], servers: Sequence[Node]) -> int:
        """K3s servers of a config with defaults applied (`raw`): Rancher's default replicas."""
        return len(servers)

    def rancher_https_port(self, raw: Mapping[str, Any]) -> int:
        """The host port Rancher's URL names (the ingress's HTTPS)."""
        return 443

    def server_names(self, settings: Settings) -> list[str]:
        """The servers this run has, in order."""
        return [n.name for n in settings.servers]

    def server_count(self, settings: Settings) -> int:
        return len(self.server_names(settings))

    def build_cluster(self, settings: Settings, secrets: StackSecrets, markers: Markers) -> KubernetesCluster:
        """The stack's cluster, named after the stack; its children keep the names of earlier
        releases (no prefix) and its record is the stack's outputs (STACK_RECORD)."""
        raise NotImplementedError

    def rancher_container(
        self, settings: Settings, secrets: StackSecrets, cluster: KubernetesCluster
    ) -> RancherOutputs:
        """Rancher's single-node container (rancher.mode docker): validation allows it on the
        docker topology only."""
        raise AssertionError(f"{NAMESPACE}:rancher.mode docker needs topology docker")
