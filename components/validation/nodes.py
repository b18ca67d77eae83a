"""Nodes (servers and agents): names, addresses, SSH endpoints, labels and taints, each
node checked in one pass, with what must be unique across nodes."""

from __future__ import annotations

import re

from .. import checks
from ..settings import NAMESPACE, Node, Settings
from . import k3s
from .facts import Facts

# A DNS-1123 label: the pool's name is part of its resources' names.
_POOL_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def keyed_nodes(settings: Settings) -> list[tuple[str, Node]]:
    """Every node with its key (k3s-rancher:servers[0], k3s-rancher:agents[1], ...)."""
    keyed = [(f"{NAMESPACE}:servers[{i}]", n) for i, n in enumerate(settings.servers)]
    keyed += [(f"{NAMESPACE}:agents[{i}]", n) for i, n in enumerate(settings.agents)]
    return keyed + [
        (f"{NAMESPACE}:agentPools[{i}].nodes[{j}]", n)
        for i, pool in enumerate(settings.agent_pools)
        for j, n in enumerate(pool.nodes)
    ]


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
    return problems + pool_problems(settings)


def pool_problems(settings: Settings) -> list[tuple[str, str]]:
    """agentPools: names (a DNS-1123 label, unique), the pool's labels and taints, its agent
    flags and registries (checked as k3s.agentArgs, k3s.agentConfig and k3s.registries are);
    its nodes are checked with every other node above."""
    problems: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    for i, pool in enumerate(settings.agent_pools):
        key = f"{NAMESPACE}:agentPools[{i}]"
        if not _POOL_NAME.match(pool.name):
            problems.append(
                (f"{key}.name", f"{pool.name!r} is not a pool name: lower-case letters, digits and '-', at most 63")
            )
        if pool.name in seen:
            problems.append(
                (f"{key}.name", f"{pool.name!r} is also agentPools[{seen[pool.name]}]: pool names must be unique")
            )
        seen.setdefault(pool.name, i)
        if not pool.nodes:
            problems.append((f"{key}.nodes", "a pool needs at least one agent (remove the pool to remove its agents)"))
        for label_key, label_value in pool.labels.items():
            if error := checks.label_key_error(label_key) or checks.label_value_error(label_value):
                problems.append((f"{key}.labels.{label_key}", error))
        problems += _taint_problems(key, pool.taints)
        problems += k3s.pool_flag_problems(key, pool.k3s(settings.k3s), pool)
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
