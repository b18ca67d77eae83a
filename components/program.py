"""The program: read and validate config, build the cluster, then Rancher, then exports.

Everything is validated before the first resource is registered: a bad config stops with
one error that lists every problem by key.
"""

from __future__ import annotations

import json
from typing import Any

import pulumi

from components.config import NAMESPACE, SECRET_KEYS, Settings, parse_settings
from components.k3s import K3sCluster, SshAuth
from components.secrets import StackSecrets, cluster_token, read_secrets


def raw_config() -> dict[str, Any]:
    """Every non-secret key of the project's namespace, objects decoded from JSON."""
    prefix = f"{NAMESPACE}:"
    raw: dict[str, Any] = {}
    for key, value in pulumi.runtime.config.CONFIG.get().items():
        name = key[len(prefix) :]
        if not key.startswith(prefix) or name in SECRET_KEYS:
            continue
        try:
            raw[name] = json.loads(value)
        except (TypeError, ValueError):
            raw[name] = value
    return raw


def secrets_set() -> set[str]:
    prefix = f"{NAMESPACE}:"
    keys = pulumi.runtime.config.CONFIG.get()
    return {key[len(prefix) :] for key in keys if key.startswith(prefix) and key[len(prefix) :] in SECRET_KEYS}


def load() -> tuple[Settings, StackSecrets]:
    settings = parse_settings(raw_config(), secrets_set(), pulumi.get_stack())
    return settings, read_secrets(pulumi.Config(NAMESPACE))


def build_cluster(settings: Settings, secrets: StackSecrets) -> K3sCluster:
    """The cluster for the configured topology; every topology hands on the same things:
    api_server, kubeconfig (secret), provider (after readiness), ready, node_names."""
    token = cluster_token(secrets.token)
    return K3sCluster(
        settings.stack,
        settings,
        token=token,
        auth=SshAuth(private_key=secrets.ssh_private_key, private_key_password=secrets.ssh_private_key_password),
        datastore_endpoint=secrets.datastore_endpoint,
    )


def run() -> None:
    settings, secrets = load()
    cluster = build_cluster(settings, secrets)
    pulumi.export("apiServer", cluster.api_server)
    pulumi.export("kubeconfig", cluster.kubeconfig)
    pulumi.export("nodes", [{"name": n.name, "role": n.role, "address": n.address} for n in settings.nodes])
    pulumi.export("k3sVersion", settings.k3s.version)
