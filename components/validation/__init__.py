"""One validator per section of the stack config, each a pure function over the typed
settings (and the Facts the settings do not carry) that returns problems as (key, message).

A new section adds its module here; a new topology puts its rules in its own module (as
ssh.py and docker.py do) and returns nothing for the other topologies.
"""

from __future__ import annotations

from collections.abc import Callable

from ..settings import Settings
from . import docker, k3s, kubeconfig, nodes, rancher, ssh
from .facts import Facts

Validator = Callable[[Settings, Facts], list[tuple[str, str]]]

VALIDATORS: tuple[Validator, ...] = (
    nodes.problems,
    k3s.problems,
    ssh.problems,
    docker.problems,
    kubeconfig.problems,
    rancher.problems,
)

__all__ = ["VALIDATORS", "Facts", "Validator"]
