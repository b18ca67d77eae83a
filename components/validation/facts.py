"""What the validators know besides the typed settings: which keys the stack config set
itself (before defaults) and what reading the local files it names found."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Facts:
    # Keys the stack config sets, without the namespace (`k3s.apiAddress`, `servers[0].ssh.user`):
    # a defaulted or derived value is checked where it comes from, not again here.
    given: frozenset[str] = frozenset()
    # What is wrong with a local file a key names, by that key without the namespace
    # (`rancher.tlsCert`, `k3s.airgap.binary`); found by components/local_files.py.
    file_errors: Mapping[str, str] = field(default_factory=dict)
