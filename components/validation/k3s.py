"""K3s: the release, the initialising server, API names, flags and config keys for each
role, registries, the installer URL, the datastore's secret and the airgap files."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from .. import checks, compat, k3s_flags, proxy, registry_auth
from ..scripts import etcd_snapshot_flags
from ..settings import NAMESPACE, AgentPoolArgs, K3sSettings, Settings, server_flag_values
from .facts import Facts

KEY = f"{NAMESPACE}:k3s"
# Registry auth fields that carry a credential: k3s.registries travels in the command text
# (shown by `pulumi preview --diff`) and is kept in plain text in the state; credentials are
# the registryAuth secret (components/registry_auth.py).
_REGISTRY_SECRETS = ("password", "auth", "identitytoken", "identity_token", "token")


def supported_minor(version: str) -> int:
    """The minor of k3s.version when this program supports it, else 0: nothing is checked
    against a minor that has its own problem."""
    parsed = checks.parse_k3s_version(version)
    if parsed is None or compat.k3s_minor_error(parsed[1]):
        return 0
    return parsed[1]


def problems(
    settings: Settings, facts: Facts, registry_auth_refused: str | None = None, proxy_refused: str | None = None
) -> list[tuple[str, str]]:
    """The k3s section's rules; a topology that cannot take the registryAuth secret or
    k3s.proxy passes why (components/topologies/)."""
    k3s = settings.k3s
    problems: list[tuple[str, str]] = []
    parsed = checks.parse_k3s_version(k3s.version)
    if parsed and (error := compat.k3s_minor_error(parsed[1])):
        problems.append((f"{KEY}.version", error))
    if error := _init_server_error(settings, facts):
        problems.append((f"{KEY}.initServer", error))
    api = k3s.api_address  # an Output (a host made in the same program) is checked once known
    if "k3s.apiAddress" in facts.given and isinstance(api, str) and (error := checks.host_error(api)):
        problems.append((f"{KEY}.apiAddress", error))
    for i, san in enumerate(k3s.tls_sans):
        if error := checks.host_error(san):
            problems.append((f"{KEY}.tlsSans[{i}]", error))
    if k3s.datastore == "external" and "datastoreEndpoint" not in settings.secrets_set:
        problems.append(
            (
                f"{NAMESPACE}:datastoreEndpoint",
                "datastore external needs the datastoreEndpoint secret "
                "(pulumi config set --secret datastoreEndpoint 'postgres://...')",
            )
        )
    for name in ("installScript", "binary", "images"):
        if error := facts.file_errors.get(f"k3s.airgap.{name}"):
            problems.append((f"{KEY}.airgap.{name}", error))
    problems += _flag_problems(k3s)
    if error := checks.url_error(k3s.install_script_url):
        problems.append((f"{KEY}.installScriptUrl", error))
    problems += _registries_problems(k3s.registries or {})
    if registry_auth.SECRET in settings.secrets_set and registry_auth_refused is not None:
        problems.append((registry_auth.KEY, registry_auth_refused))
    problems += etcd_snapshot_problems(settings)
    problems += proxy_problems(settings, proxy_refused)
    return problems


def etcd_warning(settings: Settings, server_count: int) -> str | None:
    """An even number of etcd members is allowed but tolerates no more failures than one fewer."""
    if settings.k3s.datastore == "etcd" and server_count and server_count % 2 == 0:
        return (
            f"{NAMESPACE}:servers: {server_count} etcd servers tolerate no more failures than "
            f"{server_count - 1}; use an odd number"
        )
    return None


def _init_server_error(settings: Settings, facts: Facts) -> str | None:
    """With one server it initialises; with more it must be named, because a default taken
    from the list's order would move (a second cluster-init, a new API address) when the
    list is reordered."""
    names = [n.name for n in settings.servers]
    name = settings.k3s.init_server
    if "k3s.initServer" in facts.given:
        if names and name not in names:
            return f"{name!r} is not one of the servers ({', '.join(names)}); it names the initialising server"
        return None
    if len(names) > 1:
        return (
            f"required with {len(names)} servers: name the server that initialised (or will initialise) the "
            f"cluster, e.g. initServer: {names[0]} (the first in the list); then reordering servers changes nothing"
        )
    return None


def pool_flag_problems(key: str, k3s: K3sSettings, pool: AgentPoolArgs) -> list[tuple[str, str]]:
    """A pool's agentArgs, agentConfig and registries, checked as k3s.agentArgs, k3s.agentConfig
    and k3s.registries are, each named under the pool's `key`."""
    own = replace(k3s, server_args=(), server_config={}, agent_args=pool.agent_args, agent_config=pool.agent_config)
    found = _flag_problems(own) + _registries_problems(pool.registries or {})
    return [(key + where.removeprefix(KEY), message) for where, message in found]


def _flag_problems(k3s: K3sSettings) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for attr, args in (("serverArgs", k3s.server_args), ("agentArgs", k3s.agent_args)):
        problems += [(f"{KEY}.{attr}[{i}]", error) for i, error in checks.k3s_args_problems(list(args))]
    for attr, config in (("serverConfig", k3s.server_config), ("agentConfig", k3s.agent_config)):
        for name, value in config.items():
            if error := checks.k3s_config_key_error(name) or checks.k3s_config_value_error(value):
                problems.append((f"{KEY}.{attr}.{name}", error))
    reported = {key for key, _ in problems}
    # The API port every join, wait and member check uses (K3sSettings.api_port): a value that
    # is not a port would otherwise fall back to 6443 while K3s refuses to start with it.
    for where, value in server_flag_values(k3s, "https-listen-port"):
        if where not in reported and not (value.isdigit() and 1 <= int(value) <= 65535):
            problems.append((where, f"https-listen-port {value!r} is not a TCP port (1-65535)"))
    return problems + _flag_name_problems(k3s, reported)


def _flag_name_problems(k3s: K3sSettings, reported: set[str]) -> list[tuple[str, str]]:
    """serverConfig/agentConfig keys and serverArgs/agentArgs flags that K3s of k3s.version
    does not have for that role (typos, server-only flags on agents); keys in `reported`
    already have a problem."""
    parsed = checks.parse_k3s_version(k3s.version)
    flags = k3s_flags.flag_set(parsed[1]) if parsed else None
    if parsed is None or flags is None:
        return []  # k3s.version has its own problem
    minor = parsed[1]
    problems: list[tuple[str, str]] = []
    for role, config, args in (
        ("server", k3s.server_config, k3s.server_args),
        ("agent", k3s.agent_config, k3s.agent_args),
    ):
        for name in config:
            where = f"{KEY}.{role}Config.{name}"
            if where not in reported and (
                error := k3s_flags.name_error(flags, role, name.removesuffix("+"), minor, name)
            ):
                problems.append((where, error))
        for i, arg in enumerate(args):
            where = f"{KEY}.{role}Args[{i}]"
            if where in reported or not arg.startswith("-") or arg == "-":
                continue
            written = arg.partition("=")[0]
            if error := k3s_flags.name_error(flags, role, written.lstrip("-"), minor, written):
                problems.append((where, error))
    return problems


def _registries_problems(registries: Mapping[str, Any]) -> list[tuple[str, str]]:
    key = f"{KEY}.registries"
    problems: list[tuple[str, str]] = []
    for name, mirror in registries.get("mirrors", {}).items():
        if name != "*" and checks.host_port_error(name):
            problems.append((f"{key}.mirrors.{name}", f"{name!r} is not a registry (host or host:port, or *)"))
        for i, endpoint in enumerate(mirror.get("endpoint", [])):
            if error := checks.url_error(endpoint, ("https://", "http://")):
                problems.append((f"{key}.mirrors.{name}.endpoint[{i}]", error))
    for name, config in registries.get("configs", {}).items():
        if name != "*" and checks.host_port_error(name):
            problems.append((f"{key}.configs.{name}", f"{name!r} is not a registry host (host or host:port, or *)"))
        for field_name in _REGISTRY_SECRETS:
            if field_name in config.get("auth", {}):
                problems.append(
                    (
                        f"{key}.configs.{name}.auth.{field_name}",
                        "a registry credential here would be plain text in the command (and `pulumi preview "
                        f"--diff`) and in the state: set it in the {registry_auth.SECRET} secret instead "
                        f"({registry_auth.EXAMPLE})",
                    )
                )
        for field_name, path in config.get("tls", {}).items():
            if field_name.endswith("_file") and (not path.startswith("/") or checks.text_error(path)):
                problems.append(
                    (f"{key}.configs.{name}.tls.{field_name}", f"{path!r} is not an absolute path on the hosts")
                )
    return problems


# serverConfig keys that would carry an S3 credential in plain text (command text, state).
_S3_CREDENTIAL_FLAGS = ("etcd-s3-access-key", "etcd-s3-secret-key", "etcd-s3-session-token")
_S3_SECRETS = ("etcdS3AccessKey", "etcdS3SecretKey")


def etcd_snapshot_problems(settings: Settings) -> list[tuple[str, str]]:
    """k3s.etcdSnapshots needs embedded etcd; each value has one place (etcdSnapshots, not
    also serverConfig/serverArgs); S3 credentials only as the two secrets, both or neither."""
    k3s = settings.k3s
    key = f"{KEY}.etcdSnapshots"
    problems: list[tuple[str, str]] = []
    if k3s.etcd_snapshots is not None and k3s.datastore != "etcd":
        problems.append(
            (key, f"etcd snapshots need embedded etcd (k3s.datastore etcd), not {k3s.datastore}: remove etcdSnapshots")
        )
    for flag in etcd_snapshot_flags(k3s):
        for where, _ in server_flag_values(k3s, flag):
            problems.append((where, f"{flag} is set by k3s.etcdSnapshots: set it in one place (remove it here)"))
    for flag in _S3_CREDENTIAL_FLAGS:
        for where, _ in server_flag_values(k3s, flag):
            problems.append(
                (
                    where,
                    f"{flag} would be plain text in the command and the state: use the secrets "
                    "(pulumi config set --secret etcdS3AccessKey ...; pulumi config set --secret etcdS3SecretKey ...)",
                )
            )
    given = [name for name in _S3_SECRETS if name in settings.secrets_set]
    s3 = k3s.etcd_snapshots.s3 if k3s.etcd_snapshots else None
    if given and s3 is None:
        problems += [
            (f"{NAMESPACE}:{name}", "set without k3s.etcdSnapshots.s3: remove it or configure s3") for name in given
        ]
    elif len(given) == 1:
        missing = next(name for name in _S3_SECRETS if name not in given)
        problems.append((f"{NAMESPACE}:{missing}", f"{given[0]} is set: set {missing} too (both or neither)"))
    return problems


def proxy_problems(settings: Settings, refused: str | None = None) -> list[tuple[str, str]]:
    """k3s.proxy: URLs without credentials (those are the proxyCredentials secret), one
    NO_PROXY entry per item; the secret only with a proxy that uses it; `refused`: why the
    topology takes no proxy."""
    p = settings.k3s.proxy
    secret = "proxyCredentials" in settings.secrets_set
    if p is None:
        if secret:
            return [(f"{NAMESPACE}:proxyCredentials", "set, but no k3s.proxy.httpProxy/httpsProxy uses it")]
        return []
    key = f"{KEY}.proxy"
    if refused is not None:
        return [(key, refused)]
    problems: list[tuple[str, str]] = []
    for name, url in (("httpProxy", p.http_proxy), ("httpsProxy", p.https_proxy)):
        if url is not None and (error := proxy.url_problem(url)):
            problems.append((f"{key}.{name}", error))
    if p.http_proxy is None and p.https_proxy is None:
        problems.append((key, "set httpProxy and/or httpsProxy (noProxy alone changes nothing)"))
    for i, entry in enumerate(p.no_proxy):
        if error := proxy.entry_problem(entry):
            problems.append((f"{key}.noProxy[{i}]", error))
    return problems
