"""Typed, validated stack settings.

`parse_settings` is pure: it takes the raw config objects and the names of the secrets that
are set, and returns `Settings` or raises one `ConfigError` listing every problem, each
naming its key. The JSON Schema in schema/config.schema.json is the single source of the
objects' structure and defaults; the checks here are the ones a schema cannot express.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from components import charts, checks, compat, k3s_flags

NAMESPACE = "k3s-rancher"
SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schema" / "config.schema.json"
SECRET_KEYS = (
    "token",
    "sshPrivateKey",
    "sshPrivateKeyPassword",
    "datastoreEndpoint",
    "rancherBootstrapPassword",
    "rancherTlsKey",
)
API_PORT = 6443


@cache
def load_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
    return schema


class ConfigError(ValueError):
    """Every problem found in a stack's config, each as (key, what is wrong and what is valid)."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        lines = [f"  - {key}: {message}" for key, message in problems]
        super().__init__("invalid stack config:\n" + "\n".join(lines))

    @property
    def keys(self) -> list[str]:
        return [key for key, _ in self.problems]


@dataclass(frozen=True)
class SshEndpoint:
    host: str
    port: int
    user: str
    host_key: str | None = None


@dataclass(frozen=True)
class Node:
    name: str
    role: str  # "server" | "agent"
    address: str
    ssh: SshEndpoint
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[str, ...] = ()


@dataclass(frozen=True)
class Timeouts:
    node_ready: int
    cluster_ready: int
    drain: int


@dataclass(frozen=True)
class Airgap:
    install_script: str
    binary: str
    images: str | None


@dataclass(frozen=True)
class K3sSettings:
    version: str
    datastore: str
    api_address: str
    tls_sans: tuple[str, ...]
    server_args: tuple[str, ...]
    agent_args: tuple[str, ...]
    server_config: Mapping[str, Any]
    agent_config: Mapping[str, Any]
    registries: Mapping[str, Any] | None
    install_script_url: str
    airgap: Airgap | None
    timeouts: Timeouts
    # Name of the initialising server (cluster-init, default API address); "" without servers.
    init_server: str = ""
    install_script_sha256: str | None = None

    @property
    def minor(self) -> int:
        parsed = checks.parse_k3s_version(self.version)
        assert parsed is not None  # validated
        return parsed[1]

    @property
    def server_url(self) -> str:
        return f"https://{_bracket(self.api_address)}:{API_PORT}"


@dataclass(frozen=True)
class Bastion:
    host: str
    port: int
    user: str
    host_key: str | None


@dataclass(frozen=True)
class SshSettings:
    user: str
    port: int
    use_agent: bool
    host_keys: Mapping[str, str]
    bastion: Bastion | None
    dial_error_limit: int
    per_dial_timeout: int


@dataclass(frozen=True)
class DockerSettings:
    host: str
    image: str
    servers: int
    agents: int
    api_port: int
    http_ports: tuple[int, int]
    network: str
    subnet: str


@dataclass(frozen=True)
class CertManagerSettings:
    version: str
    chart_repo: str
    values: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RancherSettings:
    enabled: bool
    mode: str
    hostname: str
    version: str
    chart_repo: str
    replicas: int
    tls: str
    lets_encrypt_email: str | None
    lets_encrypt_environment: str
    tls_cert: str | None
    private_ca: str | None
    ingress_class_name: str
    system_default_registry: str | None
    bootstrap: bool
    values: Mapping[str, Any]
    timeout: int
    ports: tuple[int, int]
    cert_manager: CertManagerSettings
    # Host port of the ingress's HTTPS: 443 on real hosts; docker.httpPorts[1] on the docker
    # topology, which publishes the ingress on 127.0.0.1 only.
    https_port: int = 443

    @property
    def url(self) -> str:
        return f"https://{self.hostname}" + ("" if self.https_port == 443 else f":{self.https_port}")


@dataclass(frozen=True)
class Settings:
    stack: str
    topology: str
    k3s: K3sSettings
    ssh: SshSettings
    servers: tuple[Node, ...]
    agents: tuple[Node, ...]
    docker: DockerSettings
    rancher: RancherSettings
    secrets_set: frozenset[str]

    @property
    def nodes(self) -> tuple[Node, ...]:
        return self.servers + self.agents

    @property
    def init_node(self) -> Node:
        """The server that initialised the cluster: named by k3s.initServer, never by position."""
        return next(n for n in self.servers if n.name == self.k3s.init_server)


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


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


def _key(path: Iterable[Any]) -> str:
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
                problems.append((_key([*path, extra]), f"unknown key{hint}"))
            continue
        if error.validator == "enum":
            message = f"{error.instance!r} is not one of {', '.join(map(str, error.validator_value))}"
        elif error.validator == "pattern" and "k3s" in "".join(map(str, path)) and path[-1:] == ["version"]:
            message = (
                f"{error.instance!r} is not an exact K3s release such as v1.33.5+k3s1 "
                "(channels like 'stable' cannot be checked against Rancher)"
            )
        else:
            message = error.message
        problems.append((_key(path), message))
    return problems


def _node(raw: Mapping[str, Any], role: str, ssh: Mapping[str, Any]) -> Node:
    over = raw.get("ssh", {})
    host = over.get("host", raw["address"])
    host_key = over.get("hostKey") or ssh["hostKeys"].get(host)
    return Node(
        name=raw["name"],
        role=role,
        address=raw["address"],
        ssh=SshEndpoint(
            host=host, port=over.get("port", ssh["port"]), user=over.get("user", ssh["user"]), host_key=host_key
        ),
        labels=dict(raw.get("labels", {})),
        taints=tuple(raw.get("taints", [])),
    )


def _node_problems(settings_nodes: list[tuple[str, Node]], topology: str) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    seen_names: dict[str, str] = {}
    seen_hosts: dict[tuple[str, int], str] = {}
    for key, node in settings_nodes:
        if error := checks.dns_subdomain_error(node.name):
            problems.append((f"{key}.name", error))
        if node.name in seen_names:
            problems.append(
                (
                    f"{key}.name",
                    f"{node.name!r} is used twice (also {seen_names[node.name]}): node names must be unique",
                )
            )
        seen_names.setdefault(node.name, key)
        if error := checks.host_error(node.address):
            problems.append((f"{key}.address", error))
        if node.ssh.host != node.address and (error := checks.host_error(node.ssh.host)):
            problems.append((f"{key}.ssh.host", error))
        endpoint = (node.ssh.host, node.ssh.port)
        if endpoint in seen_hosts:
            problems.append(
                (
                    f"{key}.ssh",
                    f"{node.ssh.host}:{node.ssh.port} is also {seen_hosts[endpoint]}: one host cannot be two nodes",
                )
            )
        seen_hosts.setdefault(endpoint, key)
        for label_key, label_value in node.labels.items():
            if error := checks.label_key_error(label_key) or checks.label_value_error(label_value):
                problems.append((f"{key}.labels.{label_key}", error))
        for i, taint in enumerate(node.taints):
            if error := checks.taint_error(taint):
                problems.append((f"{key}.taints[{i}]", error))
    return problems


def _init_server(k3s_raw: Mapping[str, Any], servers: list[Node]) -> tuple[str, str | None]:
    """The initialising server's name and the problem with k3s.initServer, if any. With one
    server it is that server; with more it must be named, because a default taken from the
    list's order would move (a second cluster-init, a new API address) when the list is
    reordered."""
    names = [n.name for n in servers]
    if "initServer" in k3s_raw:
        name = k3s_raw["initServer"]
        if servers and name not in names:
            listed = ", ".join(names)
            return "", f"{name!r} is not one of the servers ({listed}); it names the initialising server"
        return name, None
    if len(servers) > 1:
        return "", (
            f"required with {len(servers)} servers: name the server that initialised (or will initialise) the "
            f"cluster, e.g. initServer: {names[0]} (the first in the list); then reordering servers changes nothing"
        )
    return (names[0] if names else ""), None


def _rancher_hostname(raw: Mapping[str, Any], api_address: str) -> tuple[str, str | None]:
    if "hostname" in raw:
        return raw["hostname"], checks.dns_name_error(raw["hostname"])
    if checks.is_ip(api_address):
        return f"{api_address.replace(':', '-')}.sslip.io", None
    if api_address and not checks.host_error(api_address):  # an invalid one has its own problem
        return "", f"required when k3s.apiAddress is a DNS name ({api_address!r}): set it to Rancher's DNS name"
    return "", None


def parse_settings(raw_in: Mapping[str, Any], secrets_set: Iterable[str] = (), stack: str = "dev") -> Settings:
    """Validate the raw config objects (keys without the namespace) and build Settings.

    One ConfigError lists every problem: when the structure is wrong somewhere, the value
    checks still run, best effort, on the rest."""
    secrets = frozenset(secrets_set)
    problems = schema_problems(raw_in)
    if problems:
        raise ConfigError(problems + _problems_beyond_structure(raw_in, secrets, stack, problems))
    return _parse_valid(raw_in, secrets, stack)


def _problems_beyond_structure(
    raw_in: Mapping[str, Any], secrets: frozenset[str], stack: str, structural: list[tuple[str, str]]
) -> list[tuple[str, str]]:
    """The value problems of a config whose structure is wrong somewhere, leaving out the keys
    (and the keys under them) that already have a structural problem. A part whose structure
    is too broken to check stops this best effort: its own problem is listed anyway."""
    if any(key == f"{NAMESPACE}:topology" for key, _ in structural):
        return []  # every other check depends on the topology
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _parse_valid(raw_in, secrets, stack)
    except ConfigError as error:
        reported = [key for key, _ in structural]

        def related(key: str) -> bool:
            return any(
                key == r or key.startswith((f"{r}.", f"{r}[")) or r.startswith((f"{key}.", f"{key}[")) for r in reported
            )

        return [(key, message) for key, message in error.problems if not related(key)]
    except (KeyError, TypeError, AttributeError, ValueError, IndexError, OSError):
        return []
    return []


def _parse_valid(raw_in: Mapping[str, Any], secrets: frozenset[str], stack: str) -> Settings:
    """parse_settings for a config whose structure matches the schema."""
    problems: list[tuple[str, str]] = []
    raw = apply_defaults(load_schema(), dict(raw_in))
    topology = raw["topology"]
    ssh_raw, k3s_raw, docker_raw, rancher_raw = raw["ssh"], raw["k3s"], raw["docker"], raw["rancher"]

    servers = [_node(n, "server", ssh_raw) for n in raw["servers"]]
    agents = [_node(n, "agent", ssh_raw) for n in raw["agents"]]
    keyed = [(f"{NAMESPACE}:servers[{i}]", n) for i, n in enumerate(servers)]
    keyed += [(f"{NAMESPACE}:agents[{i}]", n) for i, n in enumerate(agents)]
    problems += _node_problems(keyed, topology)

    version = checks.parse_k3s_version(k3s_raw["version"])
    minor = version[1] if version else 0
    if version and (error := compat.k3s_minor_error(minor)):
        problems.append((f"{NAMESPACE}:k3s.version", error))
        minor = 0  # nothing else is checked against an unknown minor
    datastore = k3s_raw["datastore"]
    init_server, init_error = _init_server(k3s_raw, servers)
    if init_error:
        problems.append((f"{NAMESPACE}:k3s.initServer", init_error))
    init_node = next((n for n in servers if n.name == init_server), None)
    api_address = k3s_raw.get("apiAddress") or (init_node.address if init_node else "127.0.0.1")
    if "apiAddress" in k3s_raw and (error := checks.host_error(k3s_raw["apiAddress"])):
        problems.append((f"{NAMESPACE}:k3s.apiAddress", error))
    for i, san in enumerate(k3s_raw["tlsSans"]):
        if error := checks.host_error(san):
            problems.append((f"{NAMESPACE}:k3s.tlsSans[{i}]", error))

    if topology == "ssh":
        if not servers:
            problems.append(
                (
                    f"{NAMESPACE}:servers",
                    "at least one server is needed for the ssh topology"
                    + (" (agents cannot join a cluster without servers)" if agents else ""),
                )
            )
        if not ssh_raw["useAgent"] and "sshPrivateKey" not in secrets:
            problems.append(
                (
                    f"{NAMESPACE}:sshPrivateKey",
                    "missing: set it with `pulumi config set --secret "
                    "sshPrivateKey < ~/.ssh/id_ed25519`, or set ssh.useAgent: true",
                )
            )
        if datastore == "sqlite" and len(servers) > 1:
            problems.append(
                (f"{NAMESPACE}:k3s.datastore", f"sqlite supports one server, not {len(servers)}: use etcd or external")
            )
        if "docker" in raw_in:
            problems.append(
                (f"{NAMESPACE}:docker", "only for topology docker: set topology: docker, or remove the docker settings")
            )
    else:
        for key in ("servers", "agents"):
            if raw_in.get(key):
                problems.append(
                    (
                        f"{NAMESPACE}:{key}",
                        "the docker topology makes its own nodes: use docker.servers / docker.agents",
                    )
                )
        if "airgap" in k3s_raw:
            problems.append(
                (f"{NAMESPACE}:k3s.airgap", "airgap files are for SSH hosts; the docker topology uses the node image")
            )
        if "initServer" in k3s_raw:
            problems.append(
                (f"{NAMESPACE}:k3s.initServer", "for SSH servers; the docker topology's first container initialises")
            )
        if datastore == "sqlite" and docker_raw["servers"] > 1:
            problems.append(
                (f"{NAMESPACE}:k3s.datastore", "sqlite supports one server: use etcd with docker.servers > 1")
            )
        problems += _docker_problems(raw_in, k3s_raw, docker_raw, rancher_raw, secrets)
    if datastore == "external" and "datastoreEndpoint" not in secrets:
        problems.append(
            (
                f"{NAMESPACE}:datastoreEndpoint",
                "datastore external needs the datastoreEndpoint secret "
                "(pulumi config set --secret datastoreEndpoint 'postgres://...')",
            )
        )
    server_count = len(servers) if topology == "ssh" else docker_raw["servers"]
    if datastore == "etcd" and server_count and server_count % 2 == 0:
        warnings.warn(
            f"{NAMESPACE}:servers: {server_count} etcd servers tolerate no more failures than "
            f"{server_count - 1}; use an odd number",
            stacklevel=2,
        )

    airgap = None
    if "airgap" in k3s_raw:
        a = k3s_raw["airgap"]
        airgap = Airgap(install_script=a["installScript"], binary=a["binary"], images=a.get("images"))
        for name, path in (
            ("installScript", airgap.install_script),
            ("binary", airgap.binary),
            ("images", airgap.images),
        ):
            if path is not None and not Path(path).is_file():
                problems.append((f"{NAMESPACE}:k3s.airgap.{name}", f"{path!r} is not a readable file"))

    bastion = None
    if "bastion" in ssh_raw:
        b = ssh_raw["bastion"]
        bastion = Bastion(
            host=b["host"], port=b["port"], user=b.get("user", ssh_raw["user"]), host_key=b.get("hostKey")
        )
        if error := checks.host_error(bastion.host):
            problems.append((f"{NAMESPACE}:ssh.bastion.host", error))

    hostname, hostname_error = _rancher_hostname(rancher_raw, api_address)
    pems: dict[str, str | None] = {"tlsCert": None, "privateCa": None}
    if rancher_raw["enabled"]:
        problems += _rancher_problems(rancher_raw, secrets, topology, minor, hostname_error)
        # Read only for a Rancher that is installed: a disabled one's paths are never used.
        for name in pems:
            pems[name], error = _pem_text(rancher_raw.get(name))
            if error:
                problems.append((f"{NAMESPACE}:rancher.{name}", error))
    problems += value_problems(raw)

    if problems:
        raise ConfigError(problems)

    tag = checks.k3s_image_tag(k3s_raw["version"])
    return Settings(
        stack=stack,
        topology=topology,
        k3s=K3sSettings(
            version=k3s_raw["version"],
            datastore=datastore,
            api_address=api_address,
            tls_sans=tuple(k3s_raw["tlsSans"]),
            server_args=tuple(k3s_raw["serverArgs"]),
            agent_args=tuple(k3s_raw["agentArgs"]),
            server_config=k3s_raw["serverConfig"],
            agent_config=k3s_raw["agentConfig"],
            registries=k3s_raw.get("registries"),
            install_script_url=k3s_raw["installScriptUrl"],
            install_script_sha256=k3s_raw.get("installScriptSha256"),
            init_server=init_server,
            airgap=airgap,
            timeouts=Timeouts(
                node_ready=k3s_raw["timeouts"]["nodeReady"],
                cluster_ready=k3s_raw["timeouts"]["clusterReady"],
                drain=k3s_raw["timeouts"]["drain"],
            ),
        ),
        ssh=SshSettings(
            user=ssh_raw["user"],
            port=ssh_raw["port"],
            use_agent=ssh_raw["useAgent"],
            host_keys=ssh_raw["hostKeys"],
            bastion=bastion,
            dial_error_limit=ssh_raw["dialErrorLimit"],
            per_dial_timeout=ssh_raw["perDialTimeout"],
        ),
        servers=tuple(servers),
        agents=tuple(agents),
        docker=DockerSettings(
            host=docker_raw["host"],
            image=docker_raw.get("image", f"rancher/k3s:{tag}"),
            servers=docker_raw["servers"],
            agents=docker_raw["agents"],
            api_port=docker_raw["apiPort"],
            http_ports=tuple(docker_raw["httpPorts"]),
            network=docker_raw["network"],
            subnet=docker_raw["subnet"],
        ),
        rancher=RancherSettings(
            enabled=rancher_raw["enabled"],
            mode=rancher_raw["mode"],
            hostname=hostname,
            version=rancher_raw["version"],
            chart_repo=rancher_raw["chartRepo"],
            replicas=rancher_raw.get("replicas", 1 if server_count <= 1 else 3),
            tls=rancher_raw["tls"],
            lets_encrypt_email=rancher_raw.get("letsEncryptEmail"),
            lets_encrypt_environment=rancher_raw["letsEncryptEnvironment"],
            tls_cert=pems["tlsCert"],
            private_ca=pems["privateCa"],
            ingress_class_name=rancher_raw["ingressClassName"],
            system_default_registry=rancher_raw.get("systemDefaultRegistry"),
            bootstrap=rancher_raw["bootstrap"],
            values=rancher_raw["values"],
            timeout=rancher_raw["timeout"],
            ports=tuple(rancher_raw["ports"]),
            https_port=docker_raw["httpPorts"][1] if topology == "docker" else 443,
            cert_manager=CertManagerSettings(
                version=rancher_raw["certManager"]["version"],
                chart_repo=rancher_raw["certManager"]["chartRepo"],
                values=rancher_raw["certManager"]["values"],
            ),
        ),
        secrets_set=secrets,
    )


def _pem_text(value: str | None) -> tuple[str | None, str | None]:
    """PEM text given inline or in a local file, and the problem with it (never an exception)."""
    if value is None or "-----BEGIN" in value:
        return value, None
    try:
        text = Path(value).read_text()
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        return None, f"{value!r} is neither PEM text nor a readable file ({reason})"
    if "-----BEGIN" not in text:
        return None, f"{value!r} holds no PEM block (-----BEGIN ...)"
    return text, None


def _rancher_problems(
    r: Mapping[str, Any], secrets: frozenset[str], topology: str, k3s_minor: int, hostname_error: str | None
) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    key = f"{NAMESPACE}:rancher"
    if hostname_error:
        problems.append((f"{key}.hostname", hostname_error))
    if r["mode"] == "docker" and topology != "docker":
        problems.append(
            (
                f"{key}.mode",
                "docker runs Rancher's single-node container on the local engine: "
                "only with topology docker; use helm on SSH hosts",
            )
        )
    if r["mode"] == "helm" and k3s_minor and (error := compat.rancher_k3s_error(r["version"], k3s_minor)):
        problems.append((f"{key}.version", error))
    if r["tls"] == "letsEncrypt":
        email = r.get("letsEncryptEmail", "")
        if "@" not in email or any(c.isspace() for c in email):
            problems.append((f"{key}.letsEncryptEmail", "required with tls letsEncrypt: a valid e-mail address"))
    if r["tls"] == "secret":
        cert = r.get("tlsCert")
        if not cert:
            problems.append((f"{key}.tlsCert", "required with tls secret: a PEM certificate or a path to one"))
        if "rancherTlsKey" not in secrets:
            problems.append(
                (
                    f"{NAMESPACE}:rancherTlsKey",
                    "required with tls secret: pulumi config set --secret rancherTlsKey < key.pem",
                )
            )
    ca = r.get("privateCa")
    if ca and r["tls"] != "secret":
        problems.append((f"{key}.privateCa", "only with tls secret (the CA that signed tlsCert)"))
    if r["mode"] == "helm":
        problems += _rancher_chart_problems(r)
    return problems


# Values that have their own setting: set there, so that outputs (rancherUrl) stay true and
# the password stays a secret instead of plain text in the stack file.
_OWNED_VALUES = {"hostname": "rancher.hostname", "bootstrapPassword": "the rancherBootstrapPassword secret"}


def _rancher_chart_problems(r: Mapping[str, Any]) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    key = f"{NAMESPACE}:rancher"
    for value, instead in _OWNED_VALUES.items():
        if value in r["values"]:
            problems.append((f"{key}.values.{value}", f"set by k3s-rancher: use {instead} instead"))
    cm = r["certManager"]
    if tuple(int(n) for n in cm["version"][1:].split(".")[:2]) < (1, 15):
        problems.append((f"{key}.certManager.version", f"{cm['version']} predates crds.enabled: use v1.15.0 or newer"))
    for where, source, chart, version in (
        ("chartRepo", r["chartRepo"], "rancher", r["version"]),
        ("certManager.chartRepo", cm["chartRepo"], "cert-manager", cm["version"]),
    ):
        if not charts.is_remote(source) and (error := charts.local_chart_error(source, chart, version)):
            problems.append((f"{key}.{where}", error))
    return problems


# Addresses of docker nodes in docker.subnet: server i at host SERVER_HOST + i, agent i at
# AGENT_HOST + i (the schema bounds servers to 7 and agents to 50).
DOCKER_SERVER_HOST = 10
DOCKER_AGENT_HOST = 20
_DOCKER_HOST_SCHEMES = ("unix://", "tcp://", "ssh://", "npipe://")
_DOCKER_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
_K3S_DEFAULT_CIDRS = {"cluster-cidr": "10.42.0.0/16", "service-cidr": "10.43.0.0/16"}


def _docker_problems(
    raw_in: Mapping[str, Any],
    k3s_raw: Mapping[str, Any],
    d: Mapping[str, Any],
    r: Mapping[str, Any],
    secrets: frozenset[str],
) -> list[tuple[str, str]]:
    """What the docker topology cannot do, or settings that would collide on the engine."""
    key = f"{NAMESPACE}:docker"
    problems: list[tuple[str, str]] = []
    if "ssh" in raw_in:
        problems.append((f"{NAMESPACE}:ssh", "the docker topology reaches no host over SSH: remove the ssh settings"))
    if "sshPrivateKey" in secrets:
        problems.append(
            (
                f"{NAMESPACE}:sshPrivateKey",
                "the docker topology reaches no host over SSH: pulumi config rm sshPrivateKey",
            )
        )
    if "apiAddress" in k3s_raw:
        problems.append(
            (
                f"{NAMESPACE}:k3s.apiAddress",
                "the docker topology serves the API on 127.0.0.1:docker.apiPort: remove it "
                "(extra certificate names go in k3s.tlsSans)",
            )
        )
    if not d["host"].startswith(_DOCKER_HOST_SCHEMES):
        problems.append(
            (f"{key}.host", f"{d['host']!r} is not a Docker address: use {', '.join(_DOCKER_HOST_SCHEMES)}")
        )
    if not _DOCKER_NAME.match(d["network"]):
        problems.append(
            (f"{key}.network", f"{d['network']!r} is not a Docker network name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)")
        )
    if "image" in d:
        problems += _docker_image_problems(d["image"], k3s_raw["version"])
    problems += _docker_subnet_problems(d, k3s_raw)
    # Host ports bound on 127.0.0.1: the API, and the ingress (helm) or Rancher's container (docker).
    ports = [("apiPort", d["apiPort"])]
    if r["enabled"] and r["mode"] == "docker":
        ports += [(f"rancher.ports[{i}]", p) for i, p in enumerate(r["ports"])]
    else:
        ports += [(f"httpPorts[{i}]", p) for i, p in enumerate(d["httpPorts"])]
    seen: dict[int, str] = {}
    for name, port in ports:
        where = name if name.startswith("rancher.") else f"docker.{name}"
        if port in seen:
            problems.append((f"{NAMESPACE}:{where}", f"port {port} is also {seen[port]}: each host port once"))
        seen.setdefault(port, where)
    return problems


def _docker_image_problems(image: str, version: str) -> list[tuple[str, str]]:
    """A K3s image tag must be the release k3s.version names: readiness waits for that version."""
    tag = image.rpartition(":")[2] if ":" in image.rpartition("/")[2] else ""
    looks_like_release = checks.parse_k3s_version(tag.replace("-k3s", "+k3s")) is not None
    if looks_like_release and tag != checks.k3s_image_tag(version):
        return [
            (
                f"{NAMESPACE}:docker.image",
                f"tag {tag!r} is not k3s.version {version}: nodes are Ready only at k3s.version; "
                f"set k3s.version to {tag.replace('-k3s', '+k3s')} or the image tag to {checks.k3s_image_tag(version)}",
            )
        ]
    return []


def _docker_subnet_problems(d: Mapping[str, Any], k3s_raw: Mapping[str, Any]) -> list[tuple[str, str]]:
    key = f"{NAMESPACE}:docker.subnet"
    try:
        subnet = ipaddress.IPv4Network(d["subnet"])
    except ValueError as error:
        return [(key, f"{d['subnet']!r} is not an IPv4 subnet such as 172.30.0.0/24 ({error})")]
    needed = DOCKER_AGENT_HOST + d["agents"] + 1
    if subnet.num_addresses < needed:
        return [(key, f"{subnet} has {subnet.num_addresses} addresses; {d['agents']} agents need {needed}: use a /24")]
    problems = []
    server_config = k3s_raw.get("serverConfig", {})
    for name, default in _K3S_DEFAULT_CIDRS.items():
        value = server_config.get(name, default)
        for cidr in value if isinstance(value, list) else str(value).split(","):
            try:
                overlaps = subnet.overlaps(ipaddress.ip_network(str(cidr).strip(), strict=False))
            except (ValueError, TypeError):
                continue
            if overlaps:
                problems.append((key, f"{subnet} overlaps K3s's {name} {str(cidr).strip()}: choose another subnet"))
    return problems


def value_problems(raw: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Checks of values the schema types only as strings, maps and lists (on the config with
    defaults applied): K3s flags and config keys, registries, SSH users and host keys, node
    addresses and taints, URLs, and Rancher's names."""
    k3s, rancher = raw["k3s"], raw["rancher"]
    key = f"{NAMESPACE}:k3s"
    problems: list[tuple[str, str]] = []
    for args in ("serverArgs", "agentArgs"):
        problems += [(f"{key}.{args}[{i}]", error) for i, error in checks.k3s_args_problems(list(k3s[args]))]
    for config in ("serverConfig", "agentConfig"):
        for name, value in k3s[config].items():
            if error := checks.k3s_config_key_error(name) or checks.k3s_config_value_error(value):
                problems.append((f"{key}.{config}.{name}", error))
    problems += _flag_name_problems(k3s, {k for k, _ in problems})
    problems += _ingress_problems(k3s, rancher)
    if raw["topology"] == "ssh":
        problems += _ip_family_problems(raw)
    if error := checks.url_error(k3s["installScriptUrl"]):
        problems.append((f"{key}.installScriptUrl", error))
    problems += _registries_problems(k3s.get("registries") or {})
    problems += _ssh_problems(raw)
    problems += _node_value_problems(raw)
    if rancher["enabled"]:
        problems += _rancher_value_problems(rancher)
    return problems


def _flag_name_problems(k3s: Mapping[str, Any], reported: set[str]) -> list[tuple[str, str]]:
    """serverConfig/agentConfig keys and serverArgs/agentArgs flags that K3s of k3s.version
    does not have for that role (typos, server-only flags on agents); keys in `reported`
    already have a problem."""
    parsed = checks.parse_k3s_version(k3s["version"])
    flags = k3s_flags.flag_set(parsed[1]) if parsed else None
    if parsed is None or flags is None:
        return []  # k3s.version has its own problem
    minor = parsed[1]
    key = f"{NAMESPACE}:k3s"
    problems: list[tuple[str, str]] = []
    for role in ("server", "agent"):
        for name in k3s[f"{role}Config"]:
            where = f"{key}.{role}Config.{name}"
            if where not in reported and (
                error := k3s_flags.name_error(flags, role, name.removesuffix("+"), minor, name)
            ):
                problems.append((where, error))
        for i, arg in enumerate(k3s[f"{role}Args"]):
            where = f"{key}.{role}Args[{i}]"
            if where in reported or not arg.startswith("-") or arg == "-":
                continue
            written = arg.partition("=")[0]
            if error := k3s_flags.name_error(flags, role, written.lstrip("-"), minor, written):
                problems.append((where, error))
    return problems


def _server_flag_values(k3s: Mapping[str, Any], flag: str) -> list[tuple[str, str]]:
    """(key, value) for each value a server flag gets from serverConfig (`flag`, `flag+`) and
    serverArgs (`--flag=v`, `--flag v`); comma-separated values split, as K3s splits them."""
    key = f"{NAMESPACE}:k3s"
    found: list[tuple[str, str]] = []
    for name in (flag, f"{flag}+"):
        value = k3s["serverConfig"].get(name)
        for item in value if isinstance(value, list) else ([] if value is None else [value]):
            found += [(f"{key}.serverConfig.{name}", part.strip()) for part in str(item).split(",")]
    args = list(k3s["serverArgs"])
    for i, arg in enumerate(args):
        name, has_value, value = arg.lstrip("-").partition("=")
        if not arg.startswith("-") or name != flag:
            continue
        if not has_value:
            if i + 1 >= len(args) or args[i + 1].startswith("-"):
                continue
            value = args[i + 1]
        found += [(f"{key}.serverArgs[{i}]", part.strip()) for part in value.split(",")]
    return found


def _ingress_problems(k3s: Mapping[str, Any], rancher: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Rancher's ingress on the bundled Traefik while Traefik is disabled: Helm would wait for
    an ingress nothing serves."""
    if not (rancher["enabled"] and rancher["mode"] == "helm" and rancher["ingressClassName"] == "traefik"):
        return []
    return [
        (
            where,
            "disables K3s's bundled Traefik, but Rancher's ingress uses the class traefik "
            "(rancher.ingressClassName): bring another ingress controller and set rancher.ingressClassName "
            "to its class, or keep traefik",
        )
        for where, value in _server_flag_values(k3s, "disable")
        if value == "traefik"
    ]


def _ip_family_problems(raw: Mapping[str, Any]) -> list[tuple[str, str]]:
    """IPv6 node addresses (or API address) need IPv6 cluster and service CIDRs: K3s's
    defaults are IPv4 only, and a node-ip of a family the CIDRs lack fails at start."""
    k3s = raw["k3s"]
    v6: list[tuple[str, str]] = []
    for role in ("servers", "agents"):
        v6 += [
            (f"{NAMESPACE}:{role}[{i}].address", node["address"])
            for i, node in enumerate(raw[role])
            if ":" in node["address"] and checks.is_ip(node["address"])
        ]
    api = k3s.get("apiAddress", "")
    if ":" in api and checks.is_ip(api):
        v6.append((f"{NAMESPACE}:k3s.apiAddress", api))
    if not v6:
        return []
    missing = []
    for flag in ("cluster-cidr", "service-cidr"):
        families = set()
        for _, value in _server_flag_values(k3s, flag):
            try:
                families.add(ipaddress.ip_network(value, strict=False).version)
            except ValueError:
                continue
        if 6 not in families:
            missing.append(flag)
    if not missing:
        return []
    return [
        (
            where,
            f"{address} is IPv6, but {' and '.join(missing)} (k3s.serverConfig) "
            f"{'have' if len(missing) > 1 else 'has'} no IPv6 range (K3s's defaults are IPv4 only): set "
            "IPv6 ranges, e.g. cluster-cidr: fd42::/56 and service-cidr: fd43::/112 (IPv6-only), or an IPv4 "
            "and an IPv6 range in each (dual-stack)",
        )
        for where, address in v6
    ]


# Registry auth fields that carry a credential: the registries file travels in the command
# text (shown by `pulumi preview --diff`) and is kept in plain text in the state.
_REGISTRY_SECRETS = ("password", "auth", "identitytoken")


def _registries_problems(registries: Mapping[str, Any]) -> list[tuple[str, str]]:
    key = f"{NAMESPACE}:k3s.registries"
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
                        "--diff`) and in the state: use a mirror that needs no credential, or put the "
                        "credential on the hosts yourself",
                    )
                )
        for field_name, path in config.get("tls", {}).items():
            if field_name.endswith("_file") and (not path.startswith("/") or checks.text_error(path)):
                problems.append(
                    (f"{key}.configs.{name}.tls.{field_name}", f"{path!r} is not an absolute path on the hosts")
                )
    return problems


def _ssh_problems(raw: Mapping[str, Any]) -> list[tuple[str, str]]:
    ssh = raw["ssh"]
    key = f"{NAMESPACE}:ssh"
    problems: list[tuple[str, str]] = []
    if error := checks.login_name_error(ssh["user"]):
        problems.append((f"{key}.user", error))
    hosts: set[str] = set()
    for role in ("servers", "agents"):
        for i, node in enumerate(raw[role]):
            over = node.get("ssh", {})
            hosts.add(over.get("host", node["address"]))
            if "user" in over and (error := checks.login_name_error(over["user"])):
                problems.append((f"{NAMESPACE}:{role}[{i}].ssh.user", error))
            if "hostKey" in over and (error := checks.host_key_error(over["hostKey"])):
                problems.append((f"{NAMESPACE}:{role}[{i}].ssh.hostKey", error))
    if bastion := ssh.get("bastion"):
        hosts.add(bastion["host"])
        if "user" in bastion and (error := checks.login_name_error(bastion["user"])):
            problems.append((f"{key}.bastion.user", error))
        if "hostKey" in bastion and (error := checks.host_key_error(bastion["hostKey"])):
            problems.append((f"{key}.bastion.hostKey", error))
    for host, host_key in ssh["hostKeys"].items():
        if error := checks.host_key_error(host_key):
            problems.append((f"{key}.hostKeys.{host}", error))
        elif raw["topology"] == "ssh" and host not in hosts:
            problems.append(
                (
                    f"{key}.hostKeys.{host}",
                    f"no node or bastion connects to {host!r}: hostKeys are keyed by the host SSH connects to "
                    f"(a node's ssh.host, else its address; known: {', '.join(sorted(hosts)) or 'none'})",
                )
            )
    return problems


def _node_value_problems(raw: Mapping[str, Any]) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    addresses: dict[str, str] = {}
    for role in ("servers", "agents"):
        for i, node in enumerate(raw[role]):
            key = f"{NAMESPACE}:{role}[{i}]"
            if node["address"] in addresses:
                problems.append(
                    (
                        f"{key}.address",
                        f"{node['address']} is also the address of {addresses[node['address']]}: "
                        "each node has its own cluster address",
                    )
                )
            addresses.setdefault(node["address"], key)
            seen: dict[str, int] = {}
            for t, taint in enumerate(node.get("taints", [])):
                body, _, effect = taint.rpartition(":")
                identity = f"{body.partition('=')[0]}:{effect}"
                if identity in seen:
                    problems.append(
                        (
                            f"{key}.taints[{t}]",
                            f"{identity} is also taints[{seen[identity]}]: one value per key and effect",
                        )
                    )
                seen.setdefault(identity, t)
    return problems


def _rancher_value_problems(rancher: Mapping[str, Any]) -> list[tuple[str, str]]:
    key = f"{NAMESPACE}:rancher"
    problems: list[tuple[str, str]] = []
    registry = rancher.get("systemDefaultRegistry")
    if registry is not None and checks.host_port_error(registry):
        problems.append(
            (f"{key}.systemDefaultRegistry", f"{registry!r} is a registry host (host or host:port), without https://")
        )
    if error := checks.dns_subdomain_error(rancher["ingressClassName"]):
        problems.append((f"{key}.ingressClassName", error.replace("node name", "ingress class name")))
    for where, source in (
        ("chartRepo", rancher["chartRepo"]),
        ("certManager.chartRepo", rancher["certManager"]["chartRepo"]),
    ):
        # A source without a scheme is a local chart, checked with the charts.
        if "://" in source and (error := checks.url_error(source, ("https://", "http://", "oci://"))):
            problems.append((f"{key}.{where}", error))
    return problems
