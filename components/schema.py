"""The config's JSON Schema (components/data/config.schema.json, package data): loading it, filling its defaults,
naming keys the way `pulumi config` shows them (k3s-rancher:servers[1].name), and the
structural problems it finds, with a did-you-mean for unknown keys.

The only IO is reading the schema file, once per process.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from .settings import NAMESPACE, SECRET_KEYS

SCHEMA_PATH = Path(__file__).resolve().parent / "data" / "config.schema.json"


@cache
def load_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
    return schema


def apply_defaults(schema: Mapping[str, Any], value: Any, root: Mapping[str, Any] | None = None) -> Any:
    """Fill the schema's `default`s into `value`, recursively, without touching the input."""
    root = root or schema
    if "$ref" in schema:
        schema = root["$defs"][schema["$ref"].rsplit("/", 1)[1]]
    if isinstance(value, dict):
        props = schema.get("properties", {})
        filled = dict(value)
        for name, sub in props.items():
            if name not in filled and "default" in sub:
                filled[name] = json.loads(json.dumps(sub["default"]))
            if name in filled:
                filled[name] = apply_defaults(sub, filled[name], root)
        return filled
    if isinstance(value, list) and "items" in schema:
        return [apply_defaults(schema["items"], item, root) for item in value]
    return value


def key(path: Iterable[Any]) -> str:
    text = f"{NAMESPACE}:"
    first = True
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += part if first else f".{part}"
        first = False
    return text.rstrip(":") if first else text


def _schema_at(schema: Mapping[str, Any], path: Iterable[Any]) -> Mapping[str, Any]:
    node: Mapping[str, Any] = schema
    for part in path:
        if "$ref" in node:
            node = schema["$defs"][node["$ref"].rsplit("/", 1)[1]]
        if isinstance(part, int):
            node = node["items"]
        elif part in node.get("properties", {}):
            node = node["properties"][part]
        else:  # a map's entry (e.g. k3s.registries.mirrors.<registry>)
            extra = node.get("additionalProperties")
            node = extra if isinstance(extra, dict) else {}
    if "$ref" in node:
        node = schema["$defs"][node["$ref"].rsplit("/", 1)[1]]
    return node


def schema_problems(raw: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Structural problems (types, enums, ranges, unknown keys with a did-you-mean)."""
    schema = load_schema()
    validator = jsonschema.Draft202012Validator(schema)
    problems: list[tuple[str, str]] = []
    for error in sorted(validator.iter_errors(dict(raw)), key=lambda e: list(map(str, e.absolute_path))):
        path = list(error.absolute_path)
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            allowed = list(_schema_at(schema, path).get("properties", {}))
            if not path:
                allowed += list(SECRET_KEYS)
            for extra in sorted(set(error.instance) - set(allowed)):
                close = difflib.get_close_matches(extra, allowed, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(allowed)}"
                problems.append((key([*path, extra]), f"unknown key{hint}"))
            continue
        if error.validator == "enum":
            message = f"{error.instance!r} is not one of {', '.join(map(str, error.validator_value))}"
        elif error.validator == "pattern" and "k3s" in "".join(map(str, path)) and path[-1:] == ["version"]:
            message = (
                f"{error.instance!r} is not an exact K3s release such as v1.33.5+k3s1 "
                "(channels like 'stable' cannot be checked against Rancher)"
            )
        elif error.validator in ("oneOf", "anyOf") and "description" in error.schema:
            # jsonschema says only "not valid under any of the given schemas": say what is.
            message = f"{error.instance!r} is not valid here. {error.schema['description']}"
        else:
            message = error.message
        problems.append((key(path), message))
    return problems


def given_keys(raw: Mapping[str, Any]) -> frozenset[str]:
    """The keys a stack config sets itself, before defaults (`k3s.initServer`,
    `servers[0].ssh.user`; no namespace): some rules and derived values depend on whether a
    setting was given or defaulted. Lists are entered only for their objects (nodes)."""
    found: set[str] = set()

    def walk(value: Any, prefix: str) -> None:
        if isinstance(value, Mapping):
            for name, sub in value.items():
                path = f"{prefix}.{name}" if prefix else str(name)
                found.add(path)
                walk(sub, path)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, Mapping):
                    found.add(f"{prefix}[{i}]")
                    walk(item, f"{prefix}[{i}]")

    walk(raw, "")
    return frozenset(found)
