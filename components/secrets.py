"""The stack's secrets as secret Outputs: read from config, or generated and kept in state."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import pulumi
import pulumi_random as random

from .settings import SECRET_KEYS


@dataclass(frozen=True)
class StackSecrets:
    token: pulumi.Output[str] | None
    ssh_private_key: pulumi.Output[str] | None
    ssh_private_key_password: pulumi.Output[str] | None
    datastore_endpoint: pulumi.Output[str] | None
    rancher_bootstrap_password: pulumi.Output[str] | None
    rancher_tls_key: pulumi.Output[str] | None
    kubeconfig: pulumi.Output[str] | None = None
    etcd_s3_access_key: pulumi.Output[str] | None = None
    etcd_s3_secret_key: pulumi.Output[str] | None = None
    # user:password for k3s.proxy, the install's stdin entry PROXY_CREDENTIALS (scripts.install_stdin).
    proxy_credentials: pulumi.Output[str] | None = None
    # The token to rotate the cluster to (components/sh/token_rotation.sh); None: no rotation.
    new_token: pulumi.Output[str] | None = None
    # Registry credentials, JSON (components/registry_auth.py), for stdin's REGISTRIES_WITH_AUTH.
    registry_auth: pulumi.Output[str] | None = None


def read_secrets(config: pulumi.Config, present: Collection[str]) -> StackSecrets:
    """The secrets that are set (`present`), as secret Outputs; the others are None."""
    values = {key: config.get_secret(key) if key in present else None for key in SECRET_KEYS}
    return StackSecrets(
        token=values["token"],
        ssh_private_key=values["sshPrivateKey"],
        ssh_private_key_password=values["sshPrivateKeyPassword"],
        datastore_endpoint=values["datastoreEndpoint"],
        rancher_bootstrap_password=values["rancherBootstrapPassword"],
        rancher_tls_key=values["rancherTlsKey"],
        kubeconfig=values["kubeconfig"],
        etcd_s3_access_key=values["etcdS3AccessKey"],
        etcd_s3_secret_key=values["etcdS3SecretKey"],
        proxy_credentials=values["proxyCredentials"],
        new_token=values["newToken"],
        registry_auth=values["registryAuth"],
    )


def cluster_token(given: pulumi.Output[str] | None, parent: pulumi.Resource | None = None) -> pulumi.Output[str]:
    """The token every node joins with: the configured one, else a generated one (kept in
    state, secret). Letters and digits only, so it is safe in any file format."""
    if given is not None:
        return pulumi.Output.secret(given)
    generated = random.RandomPassword(
        "cluster-token", length=48, special=False, opts=pulumi.ResourceOptions(parent=parent)
    )
    return pulumi.Output.secret(generated.result)
