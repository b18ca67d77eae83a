"""The program: read and validate config, build the cluster, then Rancher, then exports.

Everything is validated before the first resource is registered: a bad config stops with
one error that lists every problem by key.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pulumi

from . import drift, drift_reuse, registry_auth, topologies
from .cluster import GraphCluster, KubernetesCluster
from .cluster_record import STACK_RECORD
from .cluster_record import check_quorum as quorum_guard
from .cluster_record import check_roles as role_guard
from .config import parse_settings
from .previous_run import own_previous_outputs
from .rancher import RancherDeployment, RancherDeploymentArgs, RancherOutputs
from .secrets import StackSecrets, read_secrets
from .settings import NAMESPACE, SECRET_KEYS, ConfigError, Node, Settings
from .validation import bootstrap_password
from .validation.roles import previous_nodes


def namespace_values() -> dict[str, Any]:
    """Every key of the project's namespace that is set, objects decoded from JSON. Pulumi.yaml
    gives each key an empty default (a declared key without one is required), so an empty
    value means "not set"."""
    prefix = f"{NAMESPACE}:"
    values: dict[str, Any] = {}
    for key, text in pulumi.runtime.config.CONFIG.get().items():
        if not key.startswith(prefix):
            continue
        try:
            value = json.loads(text)
        except (TypeError, ValueError):
            value = text
        if value not in ("", {}, []):
            values[key[len(prefix) :]] = value
    return values


def raw_config() -> dict[str, Any]:
    """The non-secret settings that are set."""
    return {name: value for name, value in namespace_values().items() if name not in SECRET_KEYS}


def secrets_set() -> set[str]:
    """The names of the secrets that are set."""
    return {name for name in namespace_values() if name in SECRET_KEYS}


def load() -> tuple[Settings, StackSecrets]:
    # Pulumi.yaml cannot mark these keys `secret: true` (a declared secret needs an
    # encrypted default), so the program refuses a secret stored as plain text itself.
    plaintext = [
        (f"{NAMESPACE}:{name}", f"stored as plain text: set it with `pulumi config set --secret {name}`")
        for name in sorted(secrets_set())
        if not pulumi.runtime.config.is_config_secret(f"{NAMESPACE}:{name}")
    ]
    # The registryAuth secret's shape, by key (no value shown): its value is only here.
    values = namespace_values()
    if registry_auth.SECRET in values:
        registries = values.get("k3s", {}).get("registries") if isinstance(values.get("k3s"), dict) else None
        plaintext += registry_auth.problems(values[registry_auth.SECRET], registries)
    try:
        settings = parse_settings(raw_config(), secrets_set(), pulumi.get_stack())
    except ConfigError as error:
        raise ConfigError(plaintext + error.problems) from None
    if plaintext:
        raise ConfigError(plaintext)
    return settings, read_secrets(pulumi.Config(NAMESPACE), settings.secrets_set)


def current_servers(settings: Settings) -> list[str]:
    return topologies.of(settings).server_names(settings)


def check_quorum(settings: Settings) -> None:
    """Refuse, before anything runs (the generated token, the drift reads), a removal of
    servers that would leave embedded etcd without quorum: the cluster component's own guard
    (components/cluster_record.py), which it runs again, asked here first."""
    topology = topologies.of(settings)
    if not topology.installs_k3s:
        return
    quorum_guard(STACK_RECORD, current_servers(settings), settings.k3s.datastore, topology.servers_key)


def check_roles(settings: Settings) -> None:
    """Refuse, before anything runs, a node that changes role in one up: the cluster component's
    own guard (components/cluster_record.py), which it runs again, asked here first. Listed nodes
    only (ssh): docker nodes are named by role and index."""
    if not topologies.of(settings).lists_nodes:
        return
    role_guard(STACK_RECORD, list(settings.nodes))


def given_bootstrap_password(settings: Settings) -> str | None:
    """The rancherBootstrapPassword secret as set (None: unset, Rancher's is generated)."""
    if "rancherBootstrapPassword" not in settings.secrets_set:
        return None
    return pulumi.Config(NAMESPACE).get("rancherBootstrapPassword")


def check_bootstrap_password(settings: Settings) -> bootstrap_password.Previous:
    """Refuse, before anything runs, a bootstrap password that differs from the one Rancher was
    installed with (components/validation/bootstrap_password.py); what the last run recorded."""
    r = settings.rancher
    if not r.enabled:
        return bootstrap_password.Previous()
    previous = bootstrap_password.previous(own_previous_outputs(), r.mode)
    if error := bootstrap_password.change_error(previous, given_bootstrap_password(settings), r.mode):
        raise ConfigError([(bootstrap_password.KEY, error)])
    return previous


def check_drift(settings: Settings) -> drift.Markers:
    """The nodes' markers (components/drift.py): the previous run's, bumped for each node that
    k3s.driftCheck finds drifted, each named with its reasons in a warning. Kept (never
    dropped) with the check off, so that turning it off changes no step. Hosts reached over
    SSH only (ssh)."""
    if not topologies.of(settings).reads_hosts:
        return drift.Markers()
    outputs = own_previous_outputs()
    nodes = list(settings.nodes)
    names = [n.name for n in nodes]
    init = settings.k3s.init_server
    checked = drift.checked_nodes(nodes, previous_nodes(outputs))
    verdict = None
    if not settings.k3s.drift_check:
        if checked:  # once per run, and only where there are installed hosts to say it of
            pulumi.log.info(drift.OFF_NOTICE)
    else:
        # Imported only here: paramiko (with cryptography) takes ~0.3 s to import, which a run
        # with the check off should not pay.
        from . import drift_ssh

        config = pulumi.Config(NAMESPACE)
        creds = drift_ssh.Credentials(config.get("sshPrivateKey"), config.get("sshPrivateKeyPassword"))
        targets = [(n, n.name == init) for n in checked]
        timeout = settings.k3s.timeouts.drift_check

        def read() -> Mapping[str, drift.Probe | str]:
            return drift_ssh.read_hosts(targets, settings.ssh, creds, timeout)

        answers = read_once_per_up(targets, timeout, read)
        applied = outputs.get("k3sVersion")
        verdict = drift.classify(checked, answers, init, applied if isinstance(applied, str) else None)
        for warning in verdict.warnings:
            pulumi.log.warn(warning)
    result = drift.markers(verdict, outputs, names, init, len(settings.servers))
    for warning in result.warnings:
        pulumi.log.warn(warning)
    return result


def read_once_per_up(
    targets: Sequence[tuple[Node, bool]], timeout: int, read: Callable[[], Mapping[str, drift.Probe | str]]
) -> Mapping[str, drift.Probe | str]:
    """`read()`, or in the update of a `pulumi up` the read its preview kept
    (components/drift_reuse.py): the update repairs what the preview showed."""
    invocation = drift_reuse.cli_invocation()
    if invocation is None:
        return read()
    described = [[n.name, n.role, init, n.ssh.host, n.ssh.port, n.ssh.user] for n, init in targets]
    stack = f"{pulumi.get_organization()}/{pulumi.get_project()}/{pulumi.get_stack()}"
    name = drift_reuse.key(invocation, stack, {"nodes": described, "timeout": timeout})
    directory = drift_reuse.cache_dir()
    if not pulumi.runtime.is_dry_run():
        kept = drift_reuse.take(directory, name)
        if kept is not None and set(kept) == {n.name for n, _ in targets}:
            pulumi.log.debug("k3s.driftCheck: the hosts' read of this up's preview")
            return kept
        return read()
    answers = read()
    try:
        drift_reuse.keep(directory, name, answers)
    except OSError as error:  # no writable cache: the update reads again
        pulumi.log.debug(f"k3s.driftCheck: the read is not kept for the update: {error}")
    return answers


def build_cluster(settings: Settings, secrets: StackSecrets, markers: drift.Markers | None = None) -> KubernetesCluster:
    """The cluster for the configured topology (components/topologies), named after the stack.
    Its children keep the names of earlier releases (no prefix) and its record is the stack's
    outputs (STACK_RECORD): existing stacks keep their URNs and outputs."""
    return topologies.of(settings).build_cluster(settings, secrets, markers or drift.Markers())


def deploy_rancher(settings: Settings, secrets: StackSecrets, cluster: KubernetesCluster) -> RancherOutputs | None:
    """Rancher for rancher.mode, after the cluster; nothing at all when rancher.enabled is false.

    helm: cert-manager and Rancher charts through the cluster's provider (RancherDeployment).
    docker: Rancher's single-node container beside the docker topology's nodes; it returns
    the same RancherOutputs, so the exports stay one code path.
    """
    r = settings.rancher
    if not r.enabled:
        return None
    if r.mode == "helm":
        return RancherDeployment(
            "rancher",
            RancherDeploymentArgs(
                settings=r,
                provider=cluster.provider,
                deleted_with=cluster.ready,
                bootstrap_password=secrets.rancher_bootstrap_password,
                tls_key=secrets.rancher_tls_key,
                name_prefix="",  # the names of earlier releases: existing stacks keep their URNs
                checked=True,
            ),
        ).outputs
    # rancher.mode docker: config allows it with topology docker only
    return topologies.of(settings).rancher_container(settings, secrets, cluster)


def export_rancher(
    outputs: RancherOutputs | None,
    settings: Settings,
    previous: bootstrap_password.Previous | None = None,
) -> None:
    if outputs is None:
        return
    previous = previous or bootstrap_password.Previous()
    mode = settings.rancher.mode
    source = "generated" if given_bootstrap_password(settings) is None else "config"
    password = outputs.bootstrap_password
    if source == "generated" and previous.password is not None:
        password = password.apply(lambda generated: _installed_password(generated, previous))
    pulumi.export("rancherUrl", outputs.url)
    pulumi.export("rancherBootstrapPassword", pulumi.Output.secret(password))
    # What the next run compares with (bootstrap_password.DIGEST_OUTPUT, as a literal for tests/test_docs.py).
    salt = bootstrap_password.stack_salt(f"{pulumi.get_organization()}/{pulumi.get_project()}/{pulumi.get_stack()}")
    record = password.apply(lambda p: previous.next_record(p, source, mode, salt).output())
    pulumi.export("rancherBootstrapPasswordDigest", pulumi.Output.secret(record))
    pulumi.export("rancherVersion", outputs.version)
    if outputs.cert_manager_version is not None:
        pulumi.export("certManagerVersion", outputs.cert_manager_version)
    if outputs.admin_password is not None:
        pulumi.export("rancherAdminPassword", pulumi.Output.secret(outputs.admin_password))


def _installed_password(generated: str, previous: bootstrap_password.Previous) -> str:
    """A stack last updated by 0.2.0 recorded no source: a generated password that is not the
    one it exported replaced a given one (rancherBootstrapPassword removed in the same up as
    the upgrade), too late to refuse. Rancher keeps the one it was installed with: name that."""
    if previous.knows(generated):
        return generated
    pulumi.log.warn(
        f"{bootstrap_password.KEY} was removed: Rancher keeps the bootstrap password it was installed with, and the "
        "output rancherBootstrapPassword stays that one. Set the secret back to it (pulumi config set --secret "
        'rancherBootstrapPassword "$(pulumi stack output rancherBootstrapPassword --show-secrets)")'
    )
    assert previous.password is not None  # only called for a 0.2.0 stack's password
    return previous.password


def exit_quietly_on_interrupt() -> None:
    """The engine stops its plugins, the language host among them, with SIGINT to the plugin's
    process group (sdk/go/common/resource/plugin/plugin.go, cmdutil.InterruptChildren), which
    reaches this program too when a step has failed. Python's default answer is a
    KeyboardInterrupt traceback printed before the error the user needs; exit without one."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, lambda _signum, _frame: os._exit(128 + signal.SIGINT))


def run() -> None:
    settings, secrets = load()
    check_quorum(settings)
    check_roles(settings)
    bootstrap = check_bootstrap_password(settings)
    markers = check_drift(settings)
    cluster = build_cluster(settings, secrets, markers)
    if markers.repairs:
        pulumi.export("driftRepairs", markers.repairs)  # drift.REPAIRS_OUTPUT, a literal for tests/test_docs.py
    if markers.reimaged:
        pulumi.export("driftReimaged", markers.reimaged)  # drift.REIMAGED_OUTPUT
    export_rancher(deploy_rancher(settings, secrets, cluster), settings, bootstrap)
    pulumi.export("apiServer", cluster.api_server)
    pulumi.export("kubeconfig", cluster.kubeconfig)
    pulumi.export("nodes", [{"name": n.name, "role": n.role, "address": n.address} for n in cluster.nodes])
    if topologies.of(settings).installs_k3s:  # else k3s.version is only what Rancher is checked against
        pulumi.export("k3sVersion", settings.k3s.version)
    if isinstance(cluster, GraphCluster):  # a cluster this program built and reads kubeconfigs of
        export_kubeconfig_expiry(cluster)


def export_kubeconfig_expiry(cluster: GraphCluster) -> None:
    """The admin client certificate's expiry (not secret), and the renewal marker the next run
    compares with: the cluster's record (STACK_RECORD) reads them back; the cluster warns when
    the expiry is close."""
    # The names STACK_RECORD reads back (cluster_record.EXPIRY_OUTPUT, RENEWAL_OUTPUT), as literals
    # (tests/test_docs.py reads them; tests/test_kubeconfig_expiry.py checks the round trip).
    pulumi.export("kubeconfigExpiry", cluster.kubeconfig_expiry)
    pulumi.export("kubeconfigRenewal", cluster.kubeconfig_renewal)
    pulumi.export("retiredSteps", cluster.retired_steps)  # cluster_record.RETIRED_OUTPUT
