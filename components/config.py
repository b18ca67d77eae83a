"""Typed, validated stack settings.

`parse_settings` is pure: it takes the raw config objects and the names of the secrets that
are set, and returns `Settings` or raises one `ConfigError` listing every problem, each
naming its key. The JSON Schema in schema/config.schema.json is the single source of the
objects' structure and defaults; the checks here are the ones a schema cannot express.
"""

from __future__ import annotations

import difflib
import json
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from components import checks, compat

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


@dataclass(frozen=True)
class CertManagerSettings:
    version: str
    chart_repo: str


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

    @property
    def url(self) -> str:
        return f"https://{self.hostname}"


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
        node = node["items"] if isinstance(part, int) else node.get("properties", {}).get(part, {})
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
        if error := checks.host_error(node.ssh.host):
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
        if not node.ssh.user or any(c in node.ssh.user for c in " \t\n'\"$`\\;&|<>"):
            problems.append((f"{key}.ssh.user", f"{node.ssh.user!r} is not a login name"))
        for label_key, label_value in node.labels.items():
            if error := checks.label_key_error(label_key) or checks.label_value_error(label_value):
                problems.append((f"{key}.labels.{label_key}", error))
        for i, taint in enumerate(node.taints):
            if error := checks.taint_error(taint):
                problems.append((f"{key}.taints[{i}]", error))
    return problems


def _rancher_hostname(raw: Mapping[str, Any], api_address: str) -> tuple[str, str | None]:
    if "hostname" in raw:
        return raw["hostname"], checks.dns_name_error(raw["hostname"])
    if checks.is_ip(api_address):
        return f"{api_address.replace(':', '-')}.sslip.io", None
    if api_address:
        return "", f"required when k3s.apiAddress is a DNS name ({api_address!r}): set it to Rancher's DNS name"
    return "", None


def parse_settings(raw_in: Mapping[str, Any], secrets_set: Iterable[str] = (), stack: str = "dev") -> Settings:
    """Validate the raw config objects (keys without the namespace) and build Settings."""
    secrets = frozenset(secrets_set)
    problems = schema_problems(raw_in)
    if problems:
        raise ConfigError(problems)
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
    datastore = k3s_raw["datastore"]
    api_address = k3s_raw.get("apiAddress") or (servers[0].address if servers else "127.0.0.1")
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
        if datastore == "sqlite" and docker_raw["servers"] > 1:
            problems.append(
                (f"{NAMESPACE}:k3s.datastore", "sqlite supports one server: use etcd with docker.servers > 1")
            )
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
    if rancher_raw["enabled"]:
        problems += _rancher_problems(rancher_raw, secrets, topology, minor, hostname_error)

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
            tls_cert=_pem_or_file(rancher_raw.get("tlsCert")),
            private_ca=_pem_or_file(rancher_raw.get("privateCa")),
            ingress_class_name=rancher_raw["ingressClassName"],
            system_default_registry=rancher_raw.get("systemDefaultRegistry"),
            bootstrap=rancher_raw["bootstrap"],
            values=rancher_raw["values"],
            timeout=rancher_raw["timeout"],
            ports=tuple(rancher_raw["ports"]),
            cert_manager=CertManagerSettings(
                version=rancher_raw["certManager"]["version"], chart_repo=rancher_raw["certManager"]["chartRepo"]
            ),
        ),
        secrets_set=secrets,
    )


def _pem_or_file(value: str | None) -> str | None:
    if value is None or "-----BEGIN" in value:
        return value
    return Path(value).read_text()


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
        elif "-----BEGIN" not in cert and not Path(cert).is_file():
            problems.append((f"{key}.tlsCert", f"{cert!r} is neither PEM text nor a readable file"))
        if "rancherTlsKey" not in secrets:
            problems.append(
                (
                    f"{NAMESPACE}:rancherTlsKey",
                    "required with tls secret: pulumi config set --secret rancherTlsKey < key.pem",
                )
            )
    ca = r.get("privateCa")
    if ca and "-----BEGIN" not in ca and not Path(ca).is_file():
        problems.append((f"{key}.privateCa", f"{ca!r} is neither PEM text nor a readable file"))
    return problems
