"""The topologies, by the name `topology` takes: the only place that maps that name to
behaviour. Everything that differs between topologies (config sections and what each
refuses, validation, servers, the cluster's backend, the program's run-time checks) is a
method or attribute of its class (base.py says which); a new topology is a module here and
an entry in TOPOLOGIES."""

from __future__ import annotations

from collections.abc import Mapping

from ..settings import Settings
from .base import Sections, Topology
from .docker import Docker
from .kubeconfig import Kubeconfig
from .ssh import Ssh

TOPOLOGIES: Mapping[str, Topology] = {t.name: t for t in (Ssh(), Docker(), Kubeconfig())}


def named(name: str) -> Topology:
    """The topology `topology: name` selects (the schema allows only registered names)."""
    return TOPOLOGIES[name]


def of(settings: Settings) -> Topology:
    return named(settings.topology)


__all__ = ["TOPOLOGIES", "Sections", "Topology", "named", "of"]
