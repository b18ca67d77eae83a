"""Turn the kubeconfig K3s writes into one a user (and the kubernetes provider) can use, and
the kubernetes Provider made from it."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import yaml


class KubeconfigError(ValueError):
    pass


def rewrite_kubeconfig(text: str, server_url: str, name: str) -> str:
    """Point the kubeconfig at `server_url` and name its cluster, user and context `name`
    (K3s calls them all "default"), so kubeconfigs of two stacks merge without clashing."""
    try:
        config: dict[str, Any] = yaml.safe_load(text)
        cluster = config["clusters"][0]
        user = config["users"][0]
        context = config["contexts"][0]
    except (yaml.YAMLError, KeyError, IndexError, TypeError) as error:
        # Never echo the text: it holds the cluster's admin credentials.
        raise KubeconfigError(f"the server's kubeconfig is not a K3s kubeconfig ({type(error).__name__})") from None
    cluster["name"] = name
    cluster["cluster"]["server"] = server_url
    user["name"] = name
    context["name"] = name
    context["context"]["cluster"] = name
    context["context"]["user"] = name
    config["clusters"], config["users"], config["contexts"] = [cluster], [user], [context]
    config["current-context"] = name
    return yaml.safe_dump(config, sort_keys=False)


def user_kubeconfig(k3s_yaml: pulumi.Output[str], server_url: str, context: str) -> pulumi.Output[str]:
    """The kubeconfig K3s wrote, pointed at `server_url` and named `context`; secret."""
    return pulumi.Output.secret(k3s_yaml.apply(lambda text: rewrite_kubeconfig(text, server_url, context)))


def context_name(cluster_name: str) -> str:
    """The kubeconfig's cluster/user/context name: stacks' kubeconfigs merge without clashing."""
    return f"k3s-rancher-{cluster_name}"


def kubernetes_provider(
    name: str, kubeconfig: pulumi.Input[str], cluster_name: str, opts: pulumi.ResourceOptions
) -> k8s.Provider:
    # A stable cluster_identifier: a changed kubeconfig (new certificate, new address)
    # updates the provider instead of replacing every resource on the cluster.
    # No delete_unreachable: with it, a refresh during a short API outage would drop
    # cert-manager and Rancher from state (and the next up fail on "cannot re-use a name").
    # A cluster that is really gone is handled by hand (README, "The cluster is gone").
    return k8s.Provider(name, kubeconfig=kubeconfig, cluster_identifier=context_name(cluster_name), opts=opts)
