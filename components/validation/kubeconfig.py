"""The kubeconfig topology's rules: it needs the kubeconfig secret and Rancher's host name,
and refuses whatever would install or reach nodes (it installs nothing)."""

from __future__ import annotations

from ..settings import NAMESPACE, Settings
from .facts import Facts

# Settings of clusters this program builds; k3s.version stays: it is what the Rancher
# compatibility check compares with.
_NODE_SETTINGS = ("servers", "agents", "agentPools", "ssh", "docker")
_NODE_SECRETS = (
    "token",
    "newToken",
    "sshPrivateKey",
    "sshPrivateKeyPassword",
    "datastoreEndpoint",
    "etcdS3AccessKey",
    "etcdS3SecretKey",
)
_WHY = "the kubeconfig topology installs nothing on an existing cluster"


def secret_refused(settings: Settings, facts: Facts) -> list[tuple[str, str]]:
    """The other topologies' rule: the kubeconfig secret is this topology's only."""
    if "kubeconfig" in settings.secrets_set:
        return [(f"{NAMESPACE}:kubeconfig", "only for topology kubeconfig: pulumi config rm kubeconfig")]
    return []


def problems(settings: Settings, facts: Facts) -> list[tuple[str, str]]:
    """The kubeconfig topology's rules (components/topologies/kubeconfig.py runs them)."""
    found: list[tuple[str, str]] = []
    if "kubeconfig" not in settings.secrets_set:
        found.append(
            (
                f"{NAMESPACE}:kubeconfig",
                "required with topology kubeconfig: pulumi config set --secret kubeconfig < ~/.kube/config",
            )
        )
    given_roots = {key.split(".")[0].split("[")[0] for key in facts.given}
    found += [(f"{NAMESPACE}:{key}", f"{_WHY}: remove it") for key in _NODE_SETTINGS if key in given_roots]
    found += [
        (f"{NAMESPACE}:{key}", f"{_WHY}: set only k3s.version (the cluster's version, checked against Rancher)")
        for key in sorted(facts.given)
        if key.startswith("k3s.") and key != "k3s.version"
    ]
    found += [
        (f"{NAMESPACE}:{name}", f"{_WHY}: pulumi config rm {name}")
        for name in _NODE_SECRETS
        if name in settings.secrets_set
    ]
    r = settings.rancher
    if r.enabled and "rancher.hostname" not in facts.given:
        found.append(
            (
                f"{NAMESPACE}:rancher.hostname",
                "required with topology kubeconfig: the DNS name your cluster's ingress serves Rancher at",
            )
        )
    if r.enabled and r.mode == "docker":
        found.append((f"{NAMESPACE}:rancher.mode", "docker is for topology docker: use helm on an existing cluster"))
    return found
