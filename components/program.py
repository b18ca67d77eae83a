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
        if not key.startswith(prefix) or key[len(prefix) :] in SECRET_KEYS:
            continue
        try:
            raw[key[len(prefix) :]] = json.loads(value)
        except (TypeError, ValueError):
            raw[key[len(prefix) :]] = value
    return raw


def secrets_set() -> set[str]:
    prefix = f"{NAMESPACE}:"
    return {
        key[len(prefix) :]
        for key in pulumi.runtime.config.CONFIG.get()
        if key[len(prefix) :] in SECRET_KEYS and key.startswith(prefix)
    }


def load() -> tuple[Settings, StackSecrets]:
    settings = parse_settings(raw_config(), secrets_set(), pulumi.get_stack())
    return settings, read_secrets(pulumi.Config(NAMESPACE))


def run() -> None:
    settings, secrets = load()
    token = cluster_token(secrets.token)
    cluster = K3sCluster(
        settings.stack,
        settings,
        token=token,
        auth=SshAuth(private_key=secrets.ssh_private_key, private_key_password=secrets.ssh_private_key_password),
        datastore_endpoint=secrets.datastore_endpoint,
    )
    pulumi.export("apiServer", cluster.api_server)
    pulumi.export("kubeconfig", cluster.kubeconfig)
    pulumi.export("nodes", [{"name": n.name, "role": n.role, "address": n.address} for n in settings.nodes])
    pulumi.export("k3sVersion", settings.k3s.version)
