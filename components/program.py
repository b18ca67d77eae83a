"""The program: read and validate config, build the cluster, then Rancher, then exports.

Everything is validated before the first resource is registered: a bad config stops with
one error that lists every problem by key.
"""

from __future__ import annotations

import json
from typing import Any

import pulumi

from components.config import NAMESPACE, SECRET_KEYS, Settings, parse_settings
from components.docker_nodes import DockerCluster, check_engine
from components.k3s import K3sCluster, SshAuth
from components.rancher import RancherDeployment, RancherOutputs
from components.rancher_container import RancherContainer
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


Cluster = K3sCluster | DockerCluster


def build_cluster(settings: Settings, secrets: StackSecrets) -> Cluster:
    """The cluster for the configured topology; every topology hands on the same things:
    api_server, kubeconfig (secret), provider (after readiness), ready, nodes, node_names."""
    if settings.topology == "docker":
        check_engine(settings)  # before anything is created, even the generated token
        return DockerCluster(
            settings.stack,
            settings,
            token=cluster_token(secrets.token),
            datastore_endpoint=secrets.datastore_endpoint,
        )
    token = cluster_token(secrets.token)
    return K3sCluster(
        settings.stack,
        settings,
        token=token,
        auth=SshAuth(private_key=secrets.ssh_private_key, private_key_password=secrets.ssh_private_key_password),
        datastore_endpoint=secrets.datastore_endpoint,
    )


def deploy_rancher(settings: Settings, secrets: StackSecrets, cluster: Cluster) -> RancherOutputs | None:
    """Rancher for rancher.mode, after the cluster; nothing at all when rancher.enabled is false.

    helm: cert-manager and Rancher charts through the cluster's provider (RancherDeployment).
    docker: Rancher's single-node container beside the docker topology's nodes; its builder
    plugs in here and returns the same RancherOutputs, so the exports stay one code path.
    """
    r = settings.rancher
    if not r.enabled:
        return None
    if r.mode == "helm":
        return RancherDeployment(
            "rancher",
            r,
            provider=cluster.provider,
            deleted_with=cluster.ready,
            bootstrap_password=secrets.rancher_bootstrap_password,
            tls_key=secrets.rancher_tls_key,
        ).outputs
    # config allows mode docker only with topology docker
    assert isinstance(cluster, DockerCluster), f"{NAMESPACE}:rancher.mode docker needs topology docker"
    return RancherContainer(
        "rancher", settings, provider=cluster.docker_provider, bootstrap_password=secrets.rancher_bootstrap_password
    ).outputs


def export_rancher(outputs: RancherOutputs | None) -> None:
    if outputs is None:
        return
    pulumi.export("rancherUrl", outputs.url)
    pulumi.export("rancherBootstrapPassword", pulumi.Output.secret(outputs.bootstrap_password))
    pulumi.export("rancherVersion", outputs.version)
    if outputs.cert_manager_version is not None:
        pulumi.export("certManagerVersion", outputs.cert_manager_version)
    if outputs.admin_password is not None:
        pulumi.export("rancherAdminPassword", pulumi.Output.secret(outputs.admin_password))


def run() -> None:
    settings, secrets = load()
    cluster = build_cluster(settings, secrets)
    export_rancher(deploy_rancher(settings, secrets, cluster))
    pulumi.export("apiServer", cluster.api_server)
    pulumi.export("kubeconfig", cluster.kubeconfig)
    pulumi.export("nodes", [{"name": n.name, "role": n.role, "address": n.address} for n in cluster.nodes])
    pulumi.export("k3sVersion", settings.k3s.version)
