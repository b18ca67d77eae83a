"""Parse a stack's config into typed Settings, or one ConfigError listing every problem.

`parse_settings` takes the raw config objects (keys without the namespace), the names of
the secrets that are set and the stack name, and runs, in order:
1. the schema's structural checks (components/schema.py);
2. its defaults, then `build`: a pure builder of Settings that also derives what the config
   leaves out (the init server, the API address, Rancher's host name and replicas, ...);
3. components/local_files.py: the only IO besides reading the schema once, the local files
   the settings name;
4. the validators the topology lists (components/topologies: its sections' rules and what it
   refuses of the others'), over the typed settings.
When the structure is wrong somewhere, 2-4 still run, best effort, so that one error lists
the value problems too.

The settings types live in components/settings.py, the schema in components/schema.py.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from typing import Any

from . import checks, local_files, topologies
from .agent_pool import AgentPoolArgs
from .schema import apply_defaults, given_keys, load_schema, schema_problems
from .settings import (
    NAMESPACE,
    Airgap,
    Bastion,
    CertManagerSettings,
    ConfigError,
    DockerSettings,
    EtcdS3,
    EtcdSnapshots,
    K3sSettings,
    Node,
    Proxy,
    RancherSettings,
    Settings,
    SshEndpoint,
    SshSettings,
    Timeouts,
    UpgradeSettings,
)
from .validation import Facts
from .validation.k3s import etcd_warning

# What building or checking a config of the wrong structure can raise; the structural
# problem is listed anyway.
_BROKEN = (KeyError, TypeError, AttributeError, ValueError, IndexError, OSError)


def parse_settings(raw_in: Mapping[str, Any], secrets_set: Iterable[str] = (), stack: str = "dev") -> Settings:
    """Validate the raw config objects (keys without the namespace) and build Settings.

    One ConfigError lists every problem: when the structure is wrong somewhere, the value
    checks still run, best effort, on the rest."""
    secrets = frozenset(secrets_set)
    structural = schema_problems(raw_in)
    if structural:
        raise ConfigError(structural + _problems_beyond_structure(raw_in, secrets, stack, structural))
    settings, facts = _settings_and_facts(raw_in, secrets, stack)
    problems = [problem for validator in topologies.of(settings).validators() for problem in validator(settings, facts)]
    if warning := etcd_warning(settings, server_count(settings)):
        warnings.warn(warning, stacklevel=2)
    if problems:
        raise ConfigError(problems)
    return settings


def _settings_and_facts(raw_in: Mapping[str, Any], secrets: frozenset[str], stack: str) -> tuple[Settings, Facts]:
    raw = apply_defaults(load_schema(), dict(raw_in))
    given = given_keys(raw_in)
    built = build(raw, given, secrets, stack)
    files = local_files.read(built)
    return local_files.with_texts(built, files), Facts(given=given, file_errors=files.errors)


def _problems_beyond_structure(
    raw_in: Mapping[str, Any], secrets: frozenset[str], stack: str, structural: list[tuple[str, str]]
) -> list[tuple[str, str]]:
    """The value problems of a config whose structure is wrong somewhere, leaving out the keys
    (and the keys under them) that already have a structural problem. A part too broken to
    build stops this best effort; a section too broken to check skips only its validator."""
    if any(key == f"{NAMESPACE}:topology" for key, _ in structural):
        return []  # every other check depends on the topology
    try:
        settings, facts = _settings_and_facts(raw_in, secrets, stack)
    except _BROKEN:
        return []
    found: list[tuple[str, str]] = []
    for validator in topologies.of(settings).validators():
        try:
            found += validator(settings, facts)
        except _BROKEN:
            continue
    reported = [key for key, _ in structural]

    def related(key: str) -> bool:
        return any(
            key == r or key.startswith((f"{r}.", f"{r}[")) or r.startswith((f"{key}.", f"{key}[")) for r in reported
        )

    return [(key, message) for key, message in found if not related(key)]


def server_count(settings: Settings) -> int:
    """K3s servers the stack runs: listed hosts (ssh) or containers (docker)."""
    return topologies.of(settings).server_count(settings)


def build(raw: Mapping[str, Any], given: frozenset[str], secrets: frozenset[str], stack: str) -> Settings:
    """Settings from the config with defaults applied (`raw`); pure. Derived values: each
    node's SSH endpoint, the init server, the API address, the docker image, Rancher's host
    name, replicas and HTTPS port. rancher.tlsCert/privateCa stay as given (text or path):
    components/local_files.py reads them."""
    topology = topologies.named(raw["topology"])
    ssh_raw, k3s_raw, docker_raw, rancher_raw = raw["ssh"], raw["k3s"], raw["docker"], raw["rancher"]
    servers = tuple(_node(n, "server", ssh_raw) for n in raw["servers"])
    agents = tuple(_node(n, "agent", ssh_raw) for n in raw["agents"])
    upgrade = UpgradeSettings(agents_at_once=k3s_raw["upgrade"]["agentsAtOnce"], drain=k3s_raw["upgrade"]["drain"])
    pools = tuple(_pool(p, ssh_raw, upgrade) for p in raw.get("agentPools", []))
    init_server = _init_server(k3s_raw, servers, given)
    init_node = next((n for n in servers if n.name == init_server), None)
    # A given address is kept as given, even when empty, so that validation sees that value.
    api_address = k3s_raw.get("apiAddress", init_node.address if init_node else "127.0.0.1")
    count = topology.configured_servers(raw, servers)
    airgap = None
    if "airgap" in k3s_raw:
        a = k3s_raw["airgap"]
        airgap = Airgap(install_script=a["installScript"], binary=a["binary"], images=a.get("images"))
    bastion = None
    if "bastion" in ssh_raw:
        b = ssh_raw["bastion"]
        bastion = Bastion(
            host=b["host"], port=b["port"], user=b.get("user", ssh_raw["user"]), host_key=b.get("hostKey")
        )
    ssh = SshSettings(
        user=ssh_raw["user"],
        port=ssh_raw["port"],
        use_agent=ssh_raw["useAgent"],
        host_keys=ssh_raw["hostKeys"],
        bastion=bastion,
        dial_error_limit=ssh_raw["dialErrorLimit"],
        per_dial_timeout=ssh_raw["perDialTimeout"],
    )
    tag = checks.k3s_image_tag(k3s_raw["version"])
    return Settings(
        stack=stack,
        k3s=K3sSettings(
            version=k3s_raw["version"],
            datastore=k3s_raw["datastore"],
            api_address=api_address,
            tls_sans=tuple(k3s_raw["tlsSans"]),
            server_args=tuple(k3s_raw["serverArgs"]),
            agent_args=tuple(k3s_raw["agentArgs"]),
            server_config=k3s_raw["serverConfig"],
            agent_config=k3s_raw["agentConfig"],
            registries=k3s_raw.get("registries"),
            install_script_url=k3s_raw["installScriptUrl"],
            install_script_sha256=k3s_raw.get("installScriptSha256"),
            proxy=_proxy(k3s_raw, servers, agents + tuple(n for p in pools for n in p.nodes), api_address),
            preflight=k3s_raw["preflight"],
            drift_check=k3s_raw["driftCheck"],
            init_server=init_server,
            airgap=airgap,
            etcd_snapshots=_etcd_snapshots(k3s_raw.get("etcdSnapshots")),
            timeouts=Timeouts(
                node_ready=k3s_raw["timeouts"]["nodeReady"],
                cluster_ready=k3s_raw["timeouts"]["clusterReady"],
                drain=k3s_raw["timeouts"]["drain"],
                drift_check=k3s_raw["timeouts"]["driftCheck"],
            ),
            upgrade=upgrade,
        ),
        site=topology.site(
            topologies.Sections(
                ssh=ssh,
                servers=servers,
                agents=agents,
                pools=pools,
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
            )
        ),
        rancher=RancherSettings(
            enabled=rancher_raw["enabled"],
            mode=rancher_raw["mode"],
            hostname=_rancher_hostname(rancher_raw, api_address),
            version=rancher_raw["version"],
            chart_repo=rancher_raw["chartRepo"],
            replicas=rancher_raw.get("replicas", 1 if count <= 1 else 3),
            tls=rancher_raw["tls"],
            lets_encrypt_email=rancher_raw.get("letsEncryptEmail"),
            lets_encrypt_environment=rancher_raw["letsEncryptEnvironment"],
            tls_cert=rancher_raw.get("tlsCert"),
            private_ca=rancher_raw.get("privateCa"),
            ingress_class_name=rancher_raw["ingressClassName"],
            system_default_registry=rancher_raw.get("systemDefaultRegistry"),
            bootstrap=rancher_raw["bootstrap"],
            values=rancher_raw["values"],
            timeout=rancher_raw["timeout"],
            ports=tuple(rancher_raw["ports"]),
            https_port=topology.rancher_https_port(raw),
            cert_manager=CertManagerSettings(
                version=rancher_raw["certManager"]["version"],
                chart_repo=rancher_raw["certManager"]["chartRepo"],
                values=rancher_raw["certManager"]["values"],
            ),
        ),
        secrets_set=secrets,
    )


def _etcd_snapshots(raw: Mapping[str, Any] | None) -> EtcdSnapshots | None:
    if raw is None:
        return None
    s3 = raw.get("s3")
    return EtcdSnapshots(
        schedule_cron=raw.get("scheduleCron"),
        retention=raw.get("retention"),
        directory=raw.get("directory"),
        s3=None
        if s3 is None
        else EtcdS3(
            endpoint=s3["endpoint"],
            bucket=s3["bucket"],
            folder=s3.get("folder"),
            region=s3.get("region"),
            insecure=s3.get("insecure", False),
            skip_ssl_verify=s3.get("skipSslVerify", False),
        ),
    )


def _node(raw: Mapping[str, Any], role: str, ssh: Mapping[str, Any]) -> Node:
    over = raw.get("ssh", {})
    host = over.get("host", raw["address"])
    host_key = over.get("hostKey", ssh["hostKeys"].get(host))
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


def _pool(raw: Mapping[str, Any], ssh: Mapping[str, Any], cluster_upgrade: UpgradeSettings) -> AgentPoolArgs:
    """One of agentPools; its upgrade keys left out are k3s.upgrade's."""
    upgrade = raw.get("upgrade")
    return AgentPoolArgs(
        name=raw["name"],
        nodes=tuple(_node(n, "agent", ssh) for n in raw["nodes"]),
        labels=dict(raw.get("labels", {})),
        taints=tuple(raw.get("taints", [])),
        agent_args=tuple(raw.get("agentArgs", [])),
        agent_config=dict(raw.get("agentConfig", {})),
        registries=raw.get("registries"),
        upgrade=None
        if upgrade is None
        else UpgradeSettings(
            agents_at_once=upgrade.get("agentsAtOnce", cluster_upgrade.agents_at_once),
            drain=upgrade.get("drain", cluster_upgrade.drain),
        ),
    )


def _init_server(k3s_raw: Mapping[str, Any], servers: tuple[Node, ...], given: frozenset[str]) -> str:
    """k3s.initServer as given (validation checks it names a server); else the only server;
    else "" (more than one server needs it named: see validation/k3s.py)."""
    if "k3s.initServer" in given:
        name: str = k3s_raw["initServer"]
        return name
    return servers[0].name if len(servers) == 1 else ""


def _proxy(
    k3s_raw: Mapping[str, Any], servers: tuple[Node, ...], agents: tuple[Node, ...], api_address: str
) -> Proxy | None:
    """k3s.proxy with the addresses NO_PROXY gets automatically (every node's and the API's)."""
    if "proxy" not in k3s_raw:
        return None
    p = k3s_raw["proxy"]
    addresses = [n.address for n in (*servers, *agents)] + [api_address]
    return Proxy(
        http_proxy=p.get("httpProxy"),
        https_proxy=p.get("httpsProxy"),
        no_proxy=tuple(p["noProxy"]),
        node_addresses=tuple(sorted({a for a in addresses if isinstance(a, str) and a})),
    )


def _rancher_hostname(raw: Mapping[str, Any], api_address: str) -> str:
    """rancher.hostname as given; else an sslip.io name for an IP API address; else "" (a DNS
    API address needs it given: see validation/rancher.py)."""
    if "hostname" in raw:
        hostname: str = raw["hostname"]
        return hostname
    if isinstance(api_address, str) and checks.is_ip(api_address):  # not str: a structural problem
        return f"{api_address.replace(':', '-')}.sslip.io"
    return ""
