"""The config schema's `default`s, for the typed settings' dataclasses (components/settings.py):
the schema (components/data/config.schema.json) is the one place a default is written, so a
dataclass built by hand and a stack config with the key left out get the same value
(tests/test_settings_defaults.py holds them equal).

Its only IO is reading the schema once, at import; no import of the rest of the package
(settings.py imports this module, and schema.py imports settings.py).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

_SCHEMA: dict[str, Any] = json.loads((Path(__file__).resolve().parent / "data" / "config.schema.json").read_text())


def default(path: str) -> Any:
    """The schema's default at a dotted config key (`k3s.timeouts.nodeReady`); KeyError when
    the schema gives none there."""
    node: dict[str, Any] = _SCHEMA
    for part in path.split("."):
        node = node["properties"][part]
        if "$ref" in node:
            node = _SCHEMA["$defs"][node["$ref"].rsplit("/", 1)[1]]
    return node["default"]


def field(path: str) -> Any:
    """A dataclass field defaulting to the schema's default at `path`: a list becomes a tuple
    (the settings hold tuples), a mapping a fresh dict per instance."""
    value = default(path)
    if isinstance(value, dict):
        return dataclasses.field(default_factory=lambda: json.loads(json.dumps(value)))
    if isinstance(value, list):
        return dataclasses.field(default=tuple(value))
    return dataclasses.field(default=value)
