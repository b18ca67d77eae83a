"""Nodes (servers and agents): names, addresses, SSH endpoints, labels and taints, each
node checked in one pass, with what must be unique across nodes."""

from __future__ import annotations

from .. import checks
from ..settings import NAMESPACE, Node, Settings
from .facts import Facts


def keyed_nodes(settings: Settings) -> list[tuple[str, Node]]:
    """Every node with its key (k3s-rancher:servers[0], k3s-rancher:agents[1], ...)."""
    keyed = [(f"{NAMESPACE}:servers[{i}]", n) for i, n in enumerate(settings.servers)]
    return keyed + [(f"{NAMESPACE}:agents[{i}]", n) for i, n in enumerate(settings.agents)]


def problems(settings: Settings, facts: Facts) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    seen_names: dict[str, str] = {}
    seen_addresses: dict[str, str] = {}
    seen_hosts: dict[tuple[str, int], str] = {}
    for key, node in keyed_nodes(settings):
        if error := checks.dns_subdomain_error(node.name):
            problems.append((f"{key}.name", error))
        if node.name in seen_names:
            problems.append(
                (
                    f"{key}.name",
                    f"{node.name!r} is used twice (also {seen_names[node.name]}): node names must be unique",
                )
            )
        seen_names.setdefault(node.name, key)
        # An address given as an Output (a host made in the same program) is checked once
        # known (components/inputs.py), not here.
        address = node.address if isinstance(node.address, str) else None
        host = node.ssh.host if isinstance(node.ssh.host, str) else None
        if address is not None and (error := checks.host_error(address)):
            problems.append((f"{key}.address", error))
        if address is not None and address in seen_addresses:
            problems.append(
                (
                    f"{key}.address",
                    f"{address} is also the address of {seen_addresses[address]}: "
                    "each node has its own cluster address",
                )
            )
        if address is not None:
            seen_addresses.setdefault(address, key)
        if host is not None and host != node.address and (error := checks.host_error(host)):
            problems.append((f"{key}.ssh.host", error))
        if host is not None and (host, node.ssh.port) in seen_hosts:
            problems.append(
                (
                    f"{key}.ssh",
                    f"{host}:{node.ssh.port} is also {seen_hosts[host, node.ssh.port]}: one host cannot be two nodes",
                )
            )
        if host is not None:
            seen_hosts.setdefault((host, node.ssh.port), key)
        for label_key, label_value in node.labels.items():
            if error := checks.label_key_error(label_key) or checks.label_value_error(label_value):
                problems.append((f"{key}.labels.{label_key}", error))
        problems += _taint_problems(key, node.taints)
    return problems


def _taint_problems(key: str, taints: tuple[str, ...]) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    for i, taint in enumerate(taints):
        if error := checks.taint_error(taint):
            problems.append((f"{key}.taints[{i}]", error))
        body, _, effect = taint.rpartition(":")
        identity = f"{body.partition('=')[0]}:{effect}"
        if identity in seen:
            problems.append(
                (f"{key}.taints[{i}]", f"{identity} is also taints[{seen[identity]}]: one value per key and effect")
            )
        seen.setdefault(identity, i)
    return problems
