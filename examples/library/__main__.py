"""An example of k3s-rancher's components in another Pulumi program: two small K3s clusters
(a hub with Rancher on it, and an edge cluster) plus an app namespace of your own on each,
through each cluster's provider.

k3s-rancher is a package (`pip install <path to a checkout>`, or a git URL): requirements.txt
here installs it from this checkout into the project's own virtualenv, as your project would.
Run from this directory, with hosts of your own in CLUSTERS below:
    pulumi install && pulumi stack init dev
    pulumi config set --secret sshPrivateKey < ~/.ssh/id_ed25519
    pulumi up
"""

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
from k3s_rancher import (
    K3sCluster,
    K3sClusterArgs,
    RancherDeployment,
    RancherDeploymentArgs,
    parse_settings,
)

# The same keys as a k3s-rancher stack config (README, "Config reference"), validated the
# same way: a bad value stops the program with every problem named by key.
CLUSTERS = {
    "hub": {
        "k3s": {"version": "v1.33.5+k3s1", "datastore": "etcd"},
        "ssh": {"user": "ubuntu"},
        "servers": [{"name": "cp1", "address": "10.0.1.11"}],
        "agents": [{"name": "w1", "address": "10.0.1.21"}],
        "rancher": {"hostname": "rancher.example.com", "tls": "rancher"},
    },
    "edge": {
        "k3s": {"version": "v1.33.5+k3s1", "datastore": "sqlite"},
        "ssh": {"user": "ubuntu"},
        "servers": [{"name": "cp1", "address": "10.0.2.11"}],
        "rancher": {"enabled": False},
    },
}

ssh_key = pulumi.Config().require_secret("sshPrivateKey")

for name, raw in CLUSTERS.items():
    settings = parse_settings({"topology": "ssh", **raw}, secrets_set={"sshPrivateKey"}, stack=name)
    cluster = K3sCluster(
        name,
        K3sClusterArgs(
            servers=settings.servers,
            agents=settings.agents,
            k3s=settings.k3s,
            ssh=settings.ssh,
            # The token nodes join with: generated and kept (secret) in the state.
            token=random.RandomPassword(f"{name}-token", length=48, special=False).result,
            private_key=ssh_key,
        ),
    )
    # Each component's children are named after it (hub-cp1-install, edge-cp1-install, hub-rancher-release):
    # node names may repeat across clusters, and each cluster may have its own Rancher.
    if settings.rancher.enabled:
        rancher = RancherDeployment(
            name,
            RancherDeploymentArgs(settings=settings.rancher, provider=cluster.provider, deleted_with=cluster.ready),
        )
        pulumi.export(f"{name}RancherUrl", rancher.outputs.url)
    # Anything of your own on the cluster, through its provider: it waits until every node is Ready.
    k8s.core.v1.Namespace(
        f"{name}-apps",
        metadata=k8s.meta.v1.ObjectMetaArgs(name="apps"),
        opts=pulumi.ResourceOptions(provider=cluster.provider),
    )
    pulumi.export(f"{name}Kubeconfig", cluster.kubeconfig)
