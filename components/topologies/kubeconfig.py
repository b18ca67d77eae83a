"""The kubeconfig topology: an existing cluster, given by the kubeconfig secret
(components/backends/kubeconfig.py); this program installs nothing on it."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from ..backends.kubeconfig import KubeconfigCluster, KubeconfigClusterArgs
from ..cluster import KubernetesCluster
from ..drift import Markers
from ..secrets import StackSecrets
from ..settings import KubeconfigSite, Settings, Site
from ..validation import Validator, k3s, kubeconfig, nodes, rancher
from .base import Sections, Topology

REGISTRY_AUTH_REFUSED = (
    "registry credentials reach SSH hosts only (topology kubeconfig: "
    "nothing is installed; configure the cluster's registries where it runs)"
)


class Kubeconfig(Topology):
    name = "kubeconfig"
    installs_k3s = False  # k3s.version is only what Rancher is checked against

    def site(self, sections: Sections) -> Site:
        return KubeconfigSite()

    def validators(self) -> Sequence[Validator]:
        return (
            nodes.problems,
            partial(k3s.problems, registry_auth_refused=REGISTRY_AUTH_REFUSED),
            kubeconfig.problems,
            rancher.problems,
        )

    def build_cluster(self, settings: Settings, secrets: StackSecrets, markers: Markers) -> KubernetesCluster:
        assert secrets.kubeconfig is not None  # config requires it
        return KubeconfigCluster(settings.stack, KubeconfigClusterArgs(kubeconfig=secrets.kubeconfig))
