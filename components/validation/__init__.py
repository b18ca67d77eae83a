"""One module per section of the stack config, each a pure function over the typed settings
(and the Facts the settings do not carry) that returns problems as (key, message).

Which of them run, and with what a topology refuses, is the topology's decision: each
topology in components/topologies lists its validators (`Topology.validators`). A new
section adds its module here and its validator to the topologies that take it; a new
topology puts its own rules in its own module (as ssh.py, docker.py and kubeconfig.py do).
"""

from __future__ import annotations

from collections.abc import Callable

from ..settings import Settings
from .facts import Facts

Validator = Callable[[Settings, Facts], list[tuple[str, str]]]

__all__ = ["Facts", "Validator"]
