"""The validators run on args built by hand: K3sCluster, DockerCluster and RancherDeployment
check what they are given with the very validators parse_settings runs (one ConfigError,
each problem named by its config key), so that a library user who builds the dataclasses
directly gets every check. The stack program's args come from parse_settings, already
checked: it says so (`checked`), and nothing runs twice.

A hand-built value counts as "given" (Facts.given) when it is set: a validator that checks
only what the user wrote checks it. An address given as an Output (a host made in the same
program) is skipped here and checked once known (components/inputs.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .. import local_files
from ..settings import (
    ConfigError,
    K3sSettings,
    RancherSettings,
    Settings,
    Site,
    UpgradeSettings,
)
from . import Validator
from .facts import Facts

# Rancher off: a cluster's own checks leave Rancher to RancherDeployment's.
_NO_RANCHER = RancherSettings(hostname="", replicas=1, enabled=False)


def settings_of(
    site: Site,
    *,
    k3s: K3sSettings,
    rancher: RancherSettings = _NO_RANCHER,
    secrets: Iterable[str] = (),
) -> Settings:
    """A Settings holding what a component was given (the rest at the schema's defaults)."""
    return Settings(stack="", site=site, k3s=k3s, rancher=rancher, secrets_set=frozenset(secrets))


def given(settings: Settings, section: Iterable[str] = ()) -> frozenset[str]:
    """The keys (Facts.given) a hand-built Settings sets; `section`: those of the topology's own
    section, which the component that holds it names."""
    keys: set[str] = set()
    k3s = settings.k3s
    if not isinstance(k3s.api_address, str) or k3s.api_address:
        keys.add("k3s.apiAddress")
    if k3s.init_server:
        keys.add("k3s.initServer")
    if k3s.upgrade != UpgradeSettings():
        keys.add("k3s.upgrade")
    keyed = [(f"servers[{i}]", n) for i, n in enumerate(settings.servers)]
    keyed += [(f"agents[{i}]", n) for i, n in enumerate(settings.agents)]
    keyed += [
        (f"agentPools[{i}].nodes[{j}]", n) for i, p in enumerate(settings.agent_pools) for j, n in enumerate(p.nodes)
    ]
    for key, node in keyed:
        keys.add(f"{key}.ssh.user")
        if node.ssh.host_key is not None:
            keys.add(f"{key}.ssh.hostKey")
    if settings.rancher.enabled:
        keys.add("rancher.hostname")
    return frozenset(keys | set(section))


def check(settings: Settings, validators: Sequence[Validator], section: Iterable[str] = ()) -> None:
    """Raise one ConfigError with every problem `validators` find in `settings` (`section`: as
    for `given`)."""
    files = local_files.read(settings)
    facts = Facts(given=given(settings, section), file_errors=files.errors)
    problems = [problem for validator in validators for problem in validator(settings, facts)]
    if problems:
        raise ConfigError(problems)
