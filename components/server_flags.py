"""The values a K3s server flag gets from k3s.serverConfig and k3s.serverArgs, each with the
config key it came from. Pure, and imports only the settings, so that components/proxy.py,
components/scripts.py and components/validation/ can all read flags without importing each
other."""

from __future__ import annotations

from .settings import NAMESPACE, K3sSettings

KEY = f"{NAMESPACE}:k3s"


def server_flag_values(k3s: K3sSettings, flag: str) -> list[tuple[str, str]]:
    """(key, value) for each value a server flag gets from serverConfig (`flag`, `flag+`) and
    serverArgs (`--flag=v`, `--flag v`); comma-separated values split, as K3s splits them."""
    found: list[tuple[str, str]] = []
    for name in (flag, f"{flag}+"):
        value = k3s.server_config.get(name)
        for item in value if isinstance(value, list) else ([] if value is None else [value]):
            found += [(f"{KEY}.serverConfig.{name}", part.strip()) for part in str(item).split(",")]
    args = list(k3s.server_args)
    for i, arg in enumerate(args):
        name, has_value, value = arg.lstrip("-").partition("=")
        if not arg.startswith("-") or name != flag:
            continue
        if not has_value:
            if i + 1 >= len(args) or args[i + 1].startswith("-"):
                continue
            value = args[i + 1]
        found += [(f"{KEY}.serverArgs[{i}]", part.strip()) for part in value.split(",")]
    return found
