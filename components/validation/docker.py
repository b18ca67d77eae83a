"""The docker topology's rules: what it refuses (listed nodes, SSH settings, an API
address, airgap files, a named init server, sqlite with several servers, newToken) and settings that
would collide on the engine (image tag, subnet, host ports)."""

from __future__ import annotations

import ipaddress
import re

from .. import checks, host_facts
from ..settings import DOCKER_AGENT_HOST, NAMESPACE, DockerSettings, K3sSettings, Settings
from ..validation.facts import Facts

KEY = f"{NAMESPACE}:docker"
_HOST_SCHEMES = ("unix://", "tcp://", "ssh://", "npipe://")
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
_K3S_DEFAULT_CIDRS = {"cluster-cidr": host_facts.K3S_CLUSTER_CIDR, "service-cidr": host_facts.K3S_SERVICE_CIDR}


REGISTRY_AUTH_REFUSED = (
    "registry credentials reach SSH hosts only (topology docker: "
    "give the Docker engine's nodes a mirror that needs none, or use topology ssh)"
)
PROXY_REFUSED = (
    "the docker topology's nodes are containers of this machine's Docker engine: "
    "give the engine (and so its containers) the proxy instead, or use topology ssh"
)


def problems(settings: Settings, facts: Facts) -> list[tuple[str, str]]:
    """The docker topology's rules (components/topologies/docker.py runs them)."""
    return _refused(settings, facts) + _engine_problems(settings, facts)


def _refused(settings: Settings, facts: Facts) -> list[tuple[str, str]]:
    """What the docker topology cannot do."""
    problems: list[tuple[str, str]] = []
    # Listed nodes are the ssh topology's section: a docker Settings holds none, so they are
    # refused by the keys the config gave.
    for role in ("servers", "agents", "agentPools"):
        if f"{role}[0]" in facts.given:
            problems.append(
                (f"{NAMESPACE}:{role}", "the docker topology makes its own nodes: use docker.servers / docker.agents")
            )
    if settings.k3s.airgap is not None:
        problems.append(
            (f"{NAMESPACE}:k3s.airgap", "airgap files are for SSH hosts; the docker topology uses the node image")
        )
    if "k3s.initServer" in facts.given:
        problems.append(
            (f"{NAMESPACE}:k3s.initServer", "for SSH servers; the docker topology's first container initialises")
        )
    if settings.k3s.datastore == "sqlite" and settings.docker.servers > 1:
        problems.append((f"{NAMESPACE}:k3s.datastore", "sqlite supports one server: use etcd with docker.servers > 1"))
    if "ssh" in facts.given:
        problems.append((f"{NAMESPACE}:ssh", "the docker topology reaches no host over SSH: remove the ssh settings"))
    if "sshPrivateKey" in settings.secrets_set:
        problems.append(
            (
                f"{NAMESPACE}:sshPrivateKey",
                "the docker topology reaches no host over SSH: pulumi config rm sshPrivateKey",
            )
        )
    if "newToken" in settings.secrets_set:
        problems.append(
            (
                f"{NAMESPACE}:newToken",
                "the docker topology's token cannot change: its containers would get the new one and K3s refuses "
                "it on data encrypted with the old one. pulumi config rm newToken; to start over with another "
                "token, pulumi destroy (it removes the volumes), set token, then pulumi up",
            )
        )
    if settings.k3s.etcd_snapshots is not None and settings.k3s.etcd_snapshots.s3 is not None:
        problems.append(
            (
                f"{NAMESPACE}:k3s.etcdSnapshots.s3",
                "for SSH servers (its keys travel on the install's stdin); the docker topology keeps snapshots "
                "in the server containers' volumes: remove s3",
            )
        )
    if any(k.startswith("k3s.upgrade") for k in facts.given):
        problems.append(
            (
                f"{NAMESPACE}:k3s.upgrade",
                "for SSH hosts: the docker topology upgrades by replacing containers (servers one at a time, "
                "then the agents); remove it",
            )
        )
    if settings.k3s.drift_check:
        problems.append(
            (
                f"{NAMESPACE}:k3s.driftCheck",
                "for SSH hosts (it reads each host over SSH); the docker topology's containers are in the state: "
                "remove it",
            )
        )
    if "k3s.apiAddress" in facts.given:
        problems.append(
            (
                f"{NAMESPACE}:k3s.apiAddress",
                "the docker topology serves the API on 127.0.0.1:docker.apiPort: remove it "
                "(extra certificate names go in k3s.tlsSans)",
            )
        )
    return problems


def _engine_problems(settings: Settings, facts: Facts) -> list[tuple[str, str]]:
    """Settings that would fail or collide on the Docker engine."""
    d = settings.docker
    problems: list[tuple[str, str]] = []
    if not d.host.startswith(_HOST_SCHEMES):
        problems.append((f"{KEY}.host", f"{d.host!r} is not a Docker address: use {', '.join(_HOST_SCHEMES)}"))
    if not _NAME.match(d.network):
        problems.append((f"{KEY}.network", f"{d.network!r} is not a Docker network name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)"))
    if "docker.image" in facts.given:
        problems += _image_problems(d.image, settings.k3s.version)
    problems += _subnet_problems(d, settings.k3s)
    # Host ports bound on 127.0.0.1: the API, and the ingress (helm) or Rancher's container (docker).
    ports = [("apiPort", d.api_port)]
    if settings.rancher.enabled and settings.rancher.mode == "docker":
        ports += [(f"rancher.ports[{i}]", p) for i, p in enumerate(settings.rancher.ports)]
    else:
        ports += [(f"httpPorts[{i}]", p) for i, p in enumerate(d.http_ports)]
    seen: dict[int, str] = {}
    for name, port in ports:
        where = name if name.startswith("rancher.") else f"docker.{name}"
        if port in seen:
            problems.append((f"{NAMESPACE}:{where}", f"port {port} is also {seen[port]}: each host port once"))
        seen.setdefault(port, where)
    return problems


def _image_problems(image: str, version: str) -> list[tuple[str, str]]:
    """A K3s image tag must be the release k3s.version names: readiness waits for that version."""
    tag = image.rpartition(":")[2] if ":" in image.rpartition("/")[2] else ""
    looks_like_release = checks.parse_k3s_version(tag.replace("-k3s", "+k3s")) is not None
    if looks_like_release and tag != checks.k3s_image_tag(version):
        return [
            (
                f"{KEY}.image",
                f"tag {tag!r} is not k3s.version {version}: nodes are Ready only at k3s.version; "
                f"set k3s.version to {tag.replace('-k3s', '+k3s')} or the image tag to {checks.k3s_image_tag(version)}",
            )
        ]
    return []


def _subnet_problems(d: DockerSettings, k3s: K3sSettings) -> list[tuple[str, str]]:
    key = f"{KEY}.subnet"
    try:
        subnet = ipaddress.IPv4Network(d.subnet)
    except ValueError as error:
        return [(key, f"{d.subnet!r} is not an IPv4 subnet such as 172.30.0.0/24 ({error})")]
    needed = DOCKER_AGENT_HOST + d.agents + 1
    if subnet.num_addresses < needed:
        return [(key, f"{subnet} has {subnet.num_addresses} addresses; {d.agents} agents need {needed}: use a /24")]
    problems = []
    for name, default in _K3S_DEFAULT_CIDRS.items():
        value = k3s.server_config.get(name, default)
        for cidr in value if isinstance(value, list) else str(value).split(","):
            try:
                overlaps = subnet.overlaps(ipaddress.ip_network(str(cidr).strip(), strict=False))
            except (ValueError, TypeError):
                continue
            if overlaps:
                problems.append((key, f"{subnet} overlaps K3s's {name} {str(cidr).strip()}: choose another subnet"))
    return problems
