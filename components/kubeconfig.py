"""Turn the kubeconfig K3s writes into one a user (and the kubernetes provider) can use."""

from __future__ import annotations

from typing import Any

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
