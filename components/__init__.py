"""k3s-rancher's components, usable from any Pulumi Python program.

    from . import K3sCluster, K3sClusterArgs, RancherDeployment, RancherDeploymentArgs, parse_settings

`parse_settings` validates a config dict (the same keys as the stack config, without the
namespace) into typed settings, with every problem named by key; the components take typed
args classes built from those settings and your secrets. Every cluster (K3sCluster,
DockerCluster) is a `KubernetesCluster`: `provider` (usable once every node is Ready),
`kubeconfig` (secret), `api_server`, `ready`, `nodes`. See README.md, "Use the components in
your own program", and examples/library/. `__version__` is this release (CHANGELOG.md).
"""

from .backends.docker import DockerCluster, DockerClusterArgs
from .backends.ssh import K3sCluster, K3sClusterArgs
from .cluster import KubernetesCluster
from .config import parse_settings
from .rancher import RancherDeployment, RancherDeploymentArgs, RancherOutputs
from .rancher_container import RancherContainer, RancherContainerArgs
from .release import VERSION as __version__
from .settings import ConfigError, Node, Settings

__all__ = [
    "ConfigError",
    "DockerCluster",
    "DockerClusterArgs",
    "K3sCluster",
    "K3sClusterArgs",
    "KubernetesCluster",
    "Node",
    "RancherContainer",
    "RancherContainerArgs",
    "RancherDeployment",
    "RancherDeploymentArgs",
    "RancherOutputs",
    "Settings",
    "__version__",
    "parse_settings",
]
