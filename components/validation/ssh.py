"""SSH: login names and host keys (of ssh, each node's ssh override, the bastion), and the
ssh topology's rules: what it needs (servers, a key or the agent, IPv6 ranges for IPv6
hosts) and what it refuses (docker settings, Rancher's docker mode, sqlite with several
servers)."""

from __future__ import annotations

import ipaddress

from .. import checks
from ..settings import NAMESPACE, Settings, server_flag_values
from .facts import Facts
from .nodes import keyed_nodes

KEY = f"{NAMESPACE}:ssh"


def problems(settings: Settings, facts: Facts) -> list[tuple[str, str]]:
    """The ssh topology's rules, its SSH settings' among them (components/topologies/ssh.py)."""
    problems = login_problems(settings, facts)
    problems += _topology_problems(settings, facts)
    problems += _ip_family_problems(settings, facts)
    return problems


def connected_hosts(settings: Settings) -> set[str]:
    """Every host SSH connects to: each node's ssh.host (else its address) and the bastion."""
    hosts = {node.ssh.host for node in settings.nodes if isinstance(node.ssh.host, str)}
    if settings.ssh.bastion:
        hosts.add(settings.ssh.bastion.host)
    return hosts


def login_problems(settings: Settings, facts: Facts) -> list[tuple[str, str]]:
    """The SSH settings' values (the other topologies hold no ssh section: they refuse it by
    key). Each hostKeys entry must name a host SSH connects to."""
    ssh = settings.ssh
    problems: list[tuple[str, str]] = []
    if error := checks.login_name_error(ssh.user):
        problems.append((f"{KEY}.user", error))
    for key, node in keyed_nodes(settings):
        given = key.partition(":")[2]
        if f"{given}.ssh.user" in facts.given and (error := checks.login_name_error(node.ssh.user)):
            problems.append((f"{key}.ssh.user", error))
        if f"{given}.ssh.hostKey" in facts.given and (error := checks.host_key_error(node.ssh.host_key or "")):
            problems.append((f"{key}.ssh.hostKey", error))
    if bastion := ssh.bastion:
        if error := checks.host_error(bastion.host):
            problems.append((f"{KEY}.bastion.host", error))
        if "ssh.bastion.user" in facts.given and (error := checks.login_name_error(bastion.user)):
            problems.append((f"{KEY}.bastion.user", error))
        if bastion.host_key is not None and (error := checks.host_key_error(bastion.host_key)):
            problems.append((f"{KEY}.bastion.hostKey", error))
    hosts = connected_hosts(settings)
    # A host given as an Output (made in the same program) may be any entry's: none is refused.
    hosts_known = all(isinstance(node.ssh.host, str) for node in settings.nodes)
    for host, host_key in ssh.host_keys.items():
        if error := checks.host_key_error(host_key):
            problems.append((f"{KEY}.hostKeys.{host}", error))
        elif hosts_known and host not in hosts:
            problems.append(
                (
                    f"{KEY}.hostKeys.{host}",
                    f"no node or bastion connects to {host!r}: hostKeys are keyed by the host SSH connects to "
                    f"(a node's ssh.host, else its address; known: {', '.join(sorted(hosts)) or 'none'})",
                )
            )
    return problems


def _topology_problems(settings: Settings, facts: Facts) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    servers = settings.servers
    if not servers:
        problems.append(
            (
                f"{NAMESPACE}:servers",
                "at least one server is needed for the ssh topology"
                + (" (agents cannot join a cluster without servers)" if settings.agents else ""),
            )
        )
    if not settings.ssh.use_agent and "sshPrivateKey" not in settings.secrets_set:
        problems.append(
            (
                f"{NAMESPACE}:sshPrivateKey",
                "missing: set it with `pulumi config set --secret "
                "sshPrivateKey < ~/.ssh/id_ed25519`, or set ssh.useAgent: true",
            )
        )
    if settings.k3s.datastore == "sqlite" and len(servers) > 1:
        problems.append(
            (f"{NAMESPACE}:k3s.datastore", f"sqlite supports one server, not {len(servers)}: use etcd or external")
        )
    if "docker" in facts.given:
        problems.append(
            (f"{NAMESPACE}:docker", "only for topology docker: set topology: docker, or remove the docker settings")
        )
    if settings.rancher.enabled and settings.rancher.mode == "docker":
        problems.append(
            (
                f"{NAMESPACE}:rancher.mode",
                "docker runs Rancher's single-node container on the local engine: "
                "only with topology docker; use helm on SSH hosts",
            )
        )
    return problems


def _ip_family_problems(settings: Settings, facts: Facts) -> list[tuple[str, str]]:
    """IPv6 node addresses (or API address) need IPv6 cluster and service CIDRs: K3s's
    defaults are IPv4 only, and a node-ip of a family the CIDRs lack fails at start."""
    v6 = [(f"{key}.address", n.address) for key, n in keyed_nodes(settings) if _is_ipv6(n.address)]
    api = settings.k3s.api_address
    if "k3s.apiAddress" in facts.given and _is_ipv6(api):
        v6.append((f"{NAMESPACE}:k3s.apiAddress", api))
    if not v6:
        return []
    missing = []
    for flag in ("cluster-cidr", "service-cidr"):
        families = set()
        for _, value in server_flag_values(settings.k3s, flag):
            try:
                families.add(ipaddress.ip_network(value, strict=False).version)
            except ValueError:
                continue
        if 6 not in families:
            missing.append(flag)
    if not missing:
        return []
    return [
        (
            where,
            f"{address} is IPv6, but {' and '.join(missing)} (k3s.serverConfig) "
            f"{'have' if len(missing) > 1 else 'has'} no IPv6 range (K3s's defaults are IPv4 only): set "
            "IPv6 ranges, e.g. cluster-cidr: fd42::/56 and service-cidr: fd43::/112 (IPv6-only), or an IPv4 "
            "and an IPv6 range in each (dual-stack)",
        )
        for where, address in v6
    ]


def _is_ipv6(address: object) -> bool:
    # Not an Output (a host made in the same program): checked once known.
    return isinstance(address, str) and ":" in address and checks.is_ip(address)
