"""The Rancher chart STAND-IN's values interface, built from data.

tests/real/charts/rancher-values-2.12.3.yaml keeps the real chart's values interface (every
key, its type and default, the chart version and where it was read). From it come the
stand-in's values.yaml (the defaults) and values.schema.json (the types, refusing keys the
real chart does not have), so the stand-in accepts exactly the real keys in their real
forms. `python -m tests.real.rancher_chart` rewrites both files; tests/real/test_rancher_chart.py
checks that they are up to date.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

CHARTS = Path(__file__).resolve().parent / "charts"
INTERFACE = CHARTS / "rancher-values-2.12.3.yaml"
CHART = CHARTS / "rancher"
VALUES = CHART / "values.yaml"
SCHEMA = CHART / "values.schema.json"

# What each entry may say (the data file's header explains them).
_ENTRY_KEYS = {"type", "default", "enum", "enum_from", "properties", "open", "from", "deprecated"}


def interface() -> dict[str, Any]:
    data = yaml.safe_load(INTERFACE.read_text())
    assert isinstance(data, dict)
    return data


def _check(entries: Mapping[str, Any], where: str) -> None:
    for key, entry in entries.items():
        unknown = set(entry) - _ENTRY_KEYS
        assert not unknown, f"{where}{key}: unknown fields {sorted(unknown)}"
        assert "type" in entry, f"{where}{key}: no type"
        if "enum" in entry:
            assert entry.get("enum_from") in ("schema", "comment"), f"{where}{key}: enum_from"
        if "properties" in entry:
            _check(entry["properties"], f"{where}{key}.")


def defaults(entries: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The chart's values.yaml: every key that has a default, nested as the chart has it."""
    if entries is None:
        data = interface()
        _check(data["values"], "")
        entries = data["values"]
    out: dict[str, Any] = {}
    for key, entry in entries.items():
        if "properties" in entry and "default" not in entry:
            nested = defaults(entry["properties"])
            if nested:
                out[key] = nested
        elif "default" in entry:
            out[key] = entry["default"]
    return out


def _schema_of(entry: Mapping[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": entry["type"]}
    if "enum" in entry:
        schema["enum"] = entry["enum"]
    if entry.get("deprecated"):
        schema["deprecated"] = True
    if "properties" in entry:
        schema["additionalProperties"] = False
        schema["properties"] = {k: _schema_of(v) for k, v in entry["properties"].items()}
    return schema


def schema() -> dict[str, Any]:
    """The stand-in's values.schema.json: the real keys and types; any other key is refused."""
    data = interface()
    _check(data["values"], "")
    return {
        "$schema": "https://json-schema.org/draft-07/schema#",
        "title": f"STAND-IN {data['chart']} {data['version']} chart values",
        "description": (
            f"Built by tests/real/rancher_chart.py from tests/real/charts/{INTERFACE.name} (the real chart's "
            f"values interface: {data['source']}). Stricter than the real schema, which allows any key: a key "
            "the real chart does not have is refused, so a misspelt value fails here instead of being ignored."
        ),
        "type": "object",
        "additionalProperties": False,
        "properties": {k: _schema_of(v) for k, v in data["values"].items()},
        # The real schema's one rule across keys (chart/values.schema.json if/then).
        "if": {
            "properties": {"service": {"properties": {"disableHTTP": {"const": True}}, "required": ["disableHTTP"]}}
        },
        "then": {"properties": {"ingress": {"properties": {"servicePort": {"const": 443}}}}},
    }


def values_text() -> str:
    data = interface()
    header = (
        f"# STAND-IN defaults: rancher/rancher chart/values.yaml {data['version']}'s, built by\n"
        f"# tests/real/rancher_chart.py from tests/real/charts/{INTERFACE.name}: do not edit by hand.\n"
    )
    return header + yaml.safe_dump(defaults(), sort_keys=False, default_flow_style=False)


def schema_text() -> str:
    return json.dumps(schema(), indent=2) + "\n"


def main() -> int:
    VALUES.write_text(values_text())
    SCHEMA.write_text(schema_text())
    print(f"wrote {VALUES} and {SCHEMA}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
