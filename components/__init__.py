"""k3s-rancher's components, usable from any Pulumi Python program.

Installed (`pip install <path to this repository>`), the package is `k3s_rancher`; in this
repository, the Pulumi program and the tests import the same folder as `components`:

    from k3s_rancher import K3sCluster, K3sClusterArgs, RancherDeployment, RancherDeploymentArgs, parse_settings

`parse_settings` validates a config dict (the same keys as the stack config, without the
namespace) into typed settings, with every problem named by key; the components take typed
args classes built from those settings (or from the settings dataclasses built by hand) and
your secrets. Every cluster (K3sCluster, DockerCluster, KubeconfigCluster) is a
`KubernetesCluster`: `provider` (usable once every node is Ready), `kubeconfig` (secret),
`api_server`, `ready`, `nodes`. See README.md, "Use the components in your own program",
and examples/library/. `__version__` is this release (CHANGELOG.md).
"""

# Relative imports only inside this package: it is imported as `components` here and as
# `k3s_rancher` when installed.
from .agent_pool import AgentPool, AgentPoolArgs
from .backends.docker import DockerCluster, DockerClusterArgs
from .backends.kubeconfig import KubeconfigCluster, KubeconfigClusterArgs
from .backends.ssh import K3sCluster, K3sClusterArgs
from .cluster import KubernetesCluster
from .config import parse_settings
from .rancher import RancherDeployment, RancherDeploymentArgs, RancherOutputs
from .rancher_container import RancherContainer, RancherContainerArgs
from .release import VERSION as __version__
from .settings import (
    Airgap,
    Bastion,
    CertManagerSettings,
    ConfigError,
    DockerSettings,
    DockerSite,
    EtcdS3,
    EtcdSnapshots,
    K3sSettings,
    KubeconfigSite,
    Node,
    Proxy,
    RancherSettings,
    Settings,
    Site,
    SshEndpoint,
    SshSettings,
    SshSite,
    Timeouts,
    UpgradeSettings,
)

__all__ = [
    "AgentPool",
    "AgentPoolArgs",
    "Airgap",
    "Bastion",
    "CertManagerSettings",
    "ConfigError",
    "DockerCluster",
    "DockerClusterArgs",
    "DockerSettings",
    "DockerSite",
    "EtcdS3",
    "EtcdSnapshots",
    "K3sCluster",
    "K3sClusterArgs",
    "K3sSettings",
    "KubeconfigCluster",
    "KubeconfigClusterArgs",
    "KubeconfigSite",
    "KubernetesCluster",
    "Node",
    "Proxy",
    "RancherContainer",
    "RancherContainerArgs",
    "RancherDeployment",
    "RancherDeploymentArgs",
    "RancherOutputs",
    "RancherSettings",
    "Settings",
    "Site",
    "SshEndpoint",
    "SshSettings",
    "SshSite",
    "Timeouts",
    "UpgradeSettings",
    "__version__",
    "parse_settings",
]
