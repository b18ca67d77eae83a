"""Registry credentials: the registryAuth secret, and the registries.yaml it makes with
k3s.registries.

The secret is a JSON object of registry host -> credential fields, the `auth` entries of K3s's
registries.yaml `configs` section (pulumi config set --secret registryAuth
'{"registry.example.com:5000": {"username": "ci", "password": "..."}}'). Its shape is checked
here by key, never showing a value; the complete file, with k3s.registries, travels only on the
install's stdin (its REGISTRIES_WITH_AUTH entry) into the 0600 /etc/rancher/k3s/registries.yaml, as one JSON line
(YAML reads JSON: K3s parses the file with yaml.v2).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from . import checks
from .settings import NAMESPACE

SECRET = "registryAuth"
KEY = f"{NAMESPACE}:{SECRET}"
# The fields K3s reads under configs.<host>.auth: the yaml tags of rancher/wharfie
# pkg/registries AuthConfig (Username, Password, Auth, IdentityToken), the types K3s parses
# registries.yaml into. yaml.v2 skips any other key without a word.
FIELDS = ("username", "password", "auth", "identity_token")
# What people write instead (K3s's docs show `token`; containerd's TOML says identitytoken):
# K3s would ignore them silently, so they are refused with the field it reads.
MISNAMED = {"token": "identity_token", "identitytoken": "identity_token", "identityToken": "identity_token"}
EXAMPLE = (
    f'pulumi config set --secret {SECRET} \'{{"registry.example.com:5000": {{"username": "ci", "password": "..."}}}}\''
)


def decode(value: Any) -> Any:
    """The secret's value as config gives it: a JSON object (set as JSON text, or with --path)."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def problems(value: Any, registries: Any) -> list[tuple[str, str]]:
    """Why the registryAuth secret's value (decoded) cannot be used, by key; `registries` is
    k3s.registries as config gives it (a field set in both places is refused). No message
    holds a value of the secret."""
    value = decode(value)
    if not isinstance(value, Mapping) or not value:
        return [(KEY, f"must be a JSON object of registry host to credentials, e.g. {EXAMPLE}")]
    configs = registries.get("configs", {}) if isinstance(registries, Mapping) else {}
    configs = configs if isinstance(configs, Mapping) else {}
    found: list[tuple[str, str]] = []
    for host, fields in value.items():
        where = f"{KEY}.{host}"
        if host != "*" and checks.host_port_error(str(host)):
            found.append((where, "is not a registry host (host or host:port, or *), as in k3s.registries.configs"))
        if not isinstance(fields, Mapping) or not fields:
            found.append((where, f"must be an object with {', '.join(FIELDS)} (the registries.yaml auth fields)"))
            continue
        entry = configs.get(host)
        plain = entry.get("auth", {}) if isinstance(entry, Mapping) else {}
        plain = plain if isinstance(plain, Mapping) else {}
        for name, text in fields.items():
            if name not in FIELDS:
                hint = f"; K3s reads {MISNAMED[name]}" if name in MISNAMED else ""
                found.append((f"{where}.{name}", f"is not a field K3s reads under auth ({', '.join(FIELDS)}){hint}"))
            elif not isinstance(text, str) or not text or checks.text_error(text):
                found.append((f"{where}.{name}", "must be one non-empty line of printable text"))
            elif name in plain:
                found.append(
                    (
                        f"{where}.{name}",
                        f"also set in {NAMESPACE}:k3s.registries.configs.{host}.auth.{name}: set it in one place",
                    )
                )
        if "password" in fields and "username" not in fields and "username" not in plain:
            found.append((f"{where}.password", "needs a username (here, or in k3s.registries.configs)"))
    return found


def registries_file(registries: Mapping[str, Any] | None, value: Any) -> str:
    """The complete registries.yaml content, one JSON line: k3s.registries with each host's
    credentials added under configs.<host>.auth. Only for the install's stdin: it holds the
    secret."""
    data: dict[str, Any] = copy.deepcopy(dict(registries or {}))
    configs = data.setdefault("configs", {})
    for host, fields in decode(value).items():
        entry = configs.setdefault(host, {})
        entry["auth"] = {**entry.get("auth", {}), **fields}
    return json.dumps(data, sort_keys=True, separators=(",", ":"))
