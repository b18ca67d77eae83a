"""A cluster that exists already, given by its kubeconfig: the `kubeconfig` topology.

Nothing is installed and no host is reached: the program's cluster-side half (cert-manager
and Rancher) runs through a kubernetes Provider made from the kubeconfig secret. For users
who have a K3s (or any conformant) cluster and want this project's Rancher on it, and for
the test tier that runs the releases against a real API server.

Teardown differs from the clusters this program builds: nothing on the cluster is
`deleted_with` anything (`ready` is None), so `pulumi destroy` uninstalls the releases and
deletes the namespaces, and the cluster itself stays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import yaml

from ..kubeconfig import KubeconfigError, context_name
from ..settings import Node

CLUSTER_TYPE = "k3s-rancher:index:KubeconfigCluster"


@dataclass(frozen=True)
class KubeconfigClusterArgs:
    """The kubeconfig (a secret) and, optionally, which of its contexts to use."""

    kubeconfig: pulumi.Input[str]
    # The context to use; the kubeconfig's current-context when unset.
    context: str | None = None
    # The provider's cluster identifier is k3s-rancher-<name>; the component's name when unset.
    cluster_name: str | None = None


def api_server_of(text: str, context: str | None) -> str:
    """The API server URL of `context` (or the current context) in a kubeconfig; the error
    never echoes the text, which holds credentials."""
    try:
        config: dict[str, Any] = yaml.safe_load(text)
        name = context or config["current-context"]
        ctx = next(c for c in config["contexts"] if c["name"] == name)
        cluster = next(c for c in config["clusters"] if c["name"] == ctx["context"]["cluster"])
        server = cluster["cluster"]["server"]
    except (yaml.YAMLError, KeyError, TypeError, StopIteration, AttributeError) as error:
        raise KubeconfigError(
            f"the kubeconfig secret has no usable context {context or '(current-context)'} "
            f"with a cluster server ({type(error).__name__})"
        ) from None
    if not isinstance(server, str) or not server.startswith("https://"):
        raise KubeconfigError("the kubeconfig's cluster server is not an https:// URL")
    return server


class KubeconfigCluster(pulumi.ComponentResource):
    """An existing cluster as a KubernetesCluster: a Provider from its kubeconfig."""

    def __init__(self, name: str, args: KubeconfigClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(CLUSTER_TYPE, name, None, opts)
        kubeconfig = pulumi.Output.secret(args.kubeconfig)
        self.kubeconfig: pulumi.Output[str] = kubeconfig
        # Not secret: the address is no credential (the kubeconfig's other fields are).
        self.api_server: pulumi.Output[str] = pulumi.Output.unsecret(
            kubeconfig.apply(lambda text: api_server_of(text, args.context))
        )
        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=kubeconfig,
            context=args.context,
            cluster_identifier=context_name(args.cluster_name or name),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.ready: pulumi.Resource | None = None
        self.nodes: tuple[Node, ...] = ()
        self.register_outputs({"apiServer": self.api_server})
