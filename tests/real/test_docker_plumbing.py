"""PLUMBING of the docker topology on a real Docker engine, with a STAND-IN node image: not K3s.

What runs for real:
- the network, volumes and containers exactly as the program registers them: their inputs are
  read from a run of the program under mocks and created with the docker CLI the way the
  Docker provider does (create, copy the uploaded files in, start);
- the local commands the program registers (readiness waits, kubeconfig read, membership
  delete), run by /bin/sh with DOCKER_HOST as pulumi_command.local runs them.

The node image (tests/real/standin_image) is a fake k3s that registers nodes with the token
file and answers the kubectl calls of our scripts. So these tests check the wiring: names,
fixed addresses, files and their modes, no token in env or labels, ports on 127.0.0.1 only,
volumes that survive a replaced container, commands that work inside a node as root. They
say nothing about K3s itself running in Docker. This engine also refuses privileged
containers (no capabilities to grant), so the containers run unprivileged here; that they
are privileged is checked under mocks.
"""

from __future__ import annotations

import io
import ipaddress
import json
import os
import secrets
import socket
import subprocess
import tarfile
import time
import urllib.request
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml

from components import scripts
from components.backends import docker_engine, docker_spec
from components.config import parse_settings
from components.kubeconfig import rewrite_kubeconfig
from tests.harness import Run, run_program
from tests.real.standin_image import build_node_image

VERSION = "v1.33.5+k3s1"
DOCKER_HOST = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")


def docker(*args: str, stdin: bytes | None = None, timeout: float = 120, check: bool = True) -> str:
    proc = subprocess.run(["docker", *args], input=stdin, capture_output=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args[:3])} ... failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout.decode(errors="replace").strip()


def inspect(container: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(docker("inspect", container))[0]
    return result


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def free_subnet() -> str:
    used = []
    for network in docker("network", "ls", "-q").split():
        for config in json.loads(docker("network", "inspect", network))[0]["IPAM"]["Config"] or []:
            if "Subnet" in config:
                used.append(ipaddress.ip_network(config["Subnet"], strict=False))
    for third in secrets.SystemRandom().sample(range(1, 255), 254):
        candidate = ipaddress.ip_network(f"10.250.{third}.0/24")
        if not any(candidate.overlaps(u) for u in used if u.version == 4):
            return str(candidate)
    raise RuntimeError("no free 10.250.x.0/24 subnet on this engine")


def privileged_allowed(image: str) -> bool:
    proc = subprocess.run(
        ["docker", "run", "--rm", "--privileged", "--entrypoint", "true", image],
        capture_output=True,
        timeout=60,
        check=False,
    )
    return proc.returncode == 0


@dataclass
class Command:
    rc: int
    stdout: str
    stderr: str
    seconds: float


def run_local(command: dict[str, Any], text: str | None = None, timeout: float = 300) -> Command:
    """A registered command.local.Command's create text (or `text`), as the provider runs it:
    with the command's stdin, if it has one."""
    started = time.monotonic()
    proc = subprocess.run(
        ["/bin/sh", "-c", text if text is not None else command["create"]],
        input=command.get("stdin") or "",
        env={**os.environ, **command.get("environment", {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Command(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)


@dataclass
class Engine:
    """Creates what the program registered, as the Docker provider would."""

    run: Run
    image: str  # the stand-in image, for the RemoteImage's id the mocks made up
    privileged: bool
    created: dict[str, list[str]] = field(default_factory=lambda: {"containers": [], "volumes": [], "networks": []})
    #: Test-only `docker create` arguments: the real Kubernetes API's socket directory
    #: (tests/real/host_api.py), where the K3s stand-in in the node image finds it.
    extra_args: list[str] = field(default_factory=list)

    def plain(self, name: str) -> dict[str, Any]:
        return self.run.by_name(name).plain()

    def network(self, name: str) -> None:
        plain = self.plain(name)
        args = ["network", "create", "--driver", plain["driver"]]
        for ipam in plain["ipamConfigs"]:
            args += ["--subnet", ipam["subnet"]]
        for label in plain.get("labels", []):
            args += ["--label", f"{label['label']}={label['value']}"]
        docker(*args, plain["name"])
        self.created["networks"].append(plain["name"])

    def volume(self, name: str) -> None:
        plain = self.plain(name)
        args = ["volume", "create"]
        for label in plain.get("labels", []):
            args += ["--label", f"{label['label']}={label['value']}"]
        docker(*args, plain["name"])
        self.created["volumes"].append(plain["name"])

    def container(self, name: str) -> str:
        plain = self.plain(name)
        args = ["create", "--name", plain["name"], "--hostname", plain["hostname"], "--restart", plain["restart"]]
        if plain.get("privileged") and self.privileged:
            args.append("--privileged")
        for path, options in plain.get("tmpfs", {}).items():
            args += ["--tmpfs", f"{path}:{options}" if options else path]
        for port in plain.get("ports", []):
            args += ["--publish", f"{port['ip']}:{int(port['external'])}:{int(port['internal'])}"]
        for env in plain.get("envs", []):
            args += ["--env", env]
        for label in plain.get("labels", []):
            args += ["--label", f"{label['label']}={label['value']}"]
        for volume in plain.get("volumes", []):
            args += ["--volume", f"{volume['volumeName']}:{volume['containerPath']}"]
        for net in plain.get("networksAdvanced", []):
            args += ["--network", net["name"], "--ip", net["ipv4Address"]]
            for alias in net.get("aliases", []):
                args += ["--network-alias", alias]
        cid = docker(*args, *self.extra_args, self.image, *plain.get("command", []))
        self.created["containers"].append(plain["name"])
        # The provider's uploads: a tar of each file, copied to / before the container starts.
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for upload in plain.get("uploads", []):
                data = upload["content"].encode()
                info = tarfile.TarInfo(upload["file"].lstrip("/"))
                info.size, info.mode = len(data), int(upload["permissions"], 8)
                tar.addfile(info, io.BytesIO(data))
        docker("cp", "-", f"{cid}:/", stdin=buffer.getvalue())
        docker("start", cid)
        return cid

    def remove_container(self, name: str) -> None:
        """The provider's delete: stop within destroy_grace_seconds, then remove."""
        plain = self.plain(name)
        docker("stop", "-t", str(int(plain["destroyGraceSeconds"])), plain["name"], timeout=120)
        docker("rm", "-f", plain["name"])

    def cleanup(self) -> None:
        for container in self.created["containers"]:
            docker("rm", "-f", "-v", container, check=False)
        for volume in self.created["volumes"]:
            docker("volume", "rm", "-f", volume, check=False)
        for network in self.created["networks"]:
            docker("network", "rm", network, check=False)


@dataclass
class Plumbing:
    stack: str
    token: str
    api_port: int
    engine: Engine
    servers: list[str]
    agents: list[str]
    ready: dict[str, Command]

    @property
    def run(self) -> Run:
        return self.engine.run

    def command(self, name: str) -> dict[str, Any]:
        return self.run.by_name(name).plain()


def _require(result: Command, what: str) -> Command:
    if result.rc != 0:
        raise AssertionError(f"{what} exited {result.rc}\nstderr:\n{result.stderr}")
    return result


def deliver_scripts(run: Run, node: str) -> Command:
    """The node's `<node>-scripts` step (after its container, before any command there): the
    scripts bundle into the container by `docker exec -i`, on stdin."""
    step = run.by_name(f"{node}-scripts").plain()
    assert step.get("stdin"), f"{node}-scripts has no stdin"
    return _require(run_local(step), f"{node}-scripts")


@pytest.fixture(scope="module")
def plumbing(testhost_image: str) -> Iterator[Plumbing]:
    """`pulumi up` of a 2-server, 1-agent docker stack, step by step in the program's order."""
    image = build_node_image(testhost_image, VERSION)
    uid = uuid.uuid4().hex[:8]
    stack = f"plumb{uid}"
    token = secrets.token_hex(24)
    api_port = free_port()
    config = {
        "topology": "docker",
        "k3s": {"version": VERSION, "timeouts": {"nodeReady": 90, "clusterReady": 120, "drain": 0}},
        "docker": {
            "host": DOCKER_HOST,
            "image": image,
            "servers": 2,
            "agents": 1,
            "apiPort": api_port,
            "httpPorts": [free_port(), free_port()],
            "network": f"k3sr-plumb-{uid}",
            "subnet": free_subnet(),
        },
        "rancher": {"enabled": False},
    }
    run = run_program(config, {"token": token}, stack=stack)
    from tests.real.host_api import host_api

    api_context = host_api()
    api = api_context.__enter__()
    allowed = privileged_allowed(image)
    if not allowed:
        warnings.warn(
            "this Docker engine refuses privileged containers: node containers run unprivileged", stacklevel=1
        )
    engine = Engine(run, image, allowed, extra_args=api.volume_args())
    servers = [f"{stack}-server-{i}" for i in range(2)]
    agents = [f"{stack}-agent-0"]
    ready: dict[str, Command] = {}
    try:
        engine.network(f"{stack}-network")
        for node in servers + agents:
            engine.volume(f"{node}-data")
            engine.volume(f"{node}-identity")
        for server in servers:  # one at a time, each after the previous is Ready
            engine.container(f"{server}-container")
            deliver_scripts(run, server)
            ready[server] = _require(run_local(run.by_name(f"{server}-ready").plain()), f"{server}-ready")
        for agent in agents:
            engine.container(f"{agent}-container")
            deliver_scripts(run, agent)
        ready["cluster"] = _require(run_local(run.by_name(f"{stack}-cluster-ready").plain()), "cluster-ready")
        for node in servers + agents:
            _require(run_local(run.by_name(f"{node}-membership").plain()), f"{node}-membership")
        yield Plumbing(stack, token, api_port, engine, servers, agents, ready)
    finally:
        engine.cleanup()
        api_context.__exit__(None, None, None)


def test_plumbing_servers_come_up_one_at_a_time_and_the_cluster_wait_sees_every_node(plumbing: Plumbing) -> None:
    for server in plumbing.servers:
        assert f"Ready at {VERSION}: {server}" in plumbing.ready[server].stderr
    everyone = " ".join(plumbing.servers + plumbing.agents)
    assert f"Ready at {VERSION}: {everyone}" in plumbing.ready["cluster"].stderr


def test_plumbing_nodes_sit_at_their_fixed_addresses(plumbing: Plumbing) -> None:
    network = plumbing.engine.plain(f"{plumbing.stack}-network")
    subnet = ipaddress.ip_network(network["ipamConfigs"][0]["subnet"])
    exported = {n["name"]: n["address"] for n in plumbing.run.outputs["nodes"]}
    assert set(exported) == set(plumbing.servers + plumbing.agents)
    for name, address in exported.items():
        assert ipaddress.ip_address(address) in subnet
        assert inspect(name)["NetworkSettings"]["Networks"][network["name"]]["IPAddress"] == address


def test_plumbing_the_token_is_only_in_a_0600_file(plumbing: Plumbing) -> None:
    for node in plumbing.servers + plumbing.agents:
        info = inspect(node)
        shown = json.dumps({"env": info["Config"]["Env"], "labels": info["Config"]["Labels"], "args": info["Args"]})
        assert plumbing.token not in shown, node
        assert f"K3S_TOKEN_FILE={scripts.TOKEN_FILE}" in info["Config"]["Env"]
        mode_and_owner = docker("exec", node, "stat", "-c", "%a %u", scripts.TOKEN_FILE)
        assert mode_and_owner == "600 0", node
        assert docker("exec", node, "cat", scripts.TOKEN_FILE) == plumbing.token
        assert docker("exec", node, "stat", "-c", "%a", docker_spec.CONFIG_FILE) == "600"


def test_plumbing_ports_are_published_on_loopback_only_and_reach_the_api(plumbing: Plumbing) -> None:
    first = inspect(plumbing.servers[0])
    bindings = first["HostConfig"]["PortBindings"]
    assert bindings["6443/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": str(plumbing.api_port)}]
    assert set(bindings) == {"6443/tcp", "80/tcp", "443/tcp"}
    for node in plumbing.servers + plumbing.agents:
        for binding in (b for bs in (inspect(node)["HostConfig"]["PortBindings"] or {}).values() for b in bs):
            assert binding["HostIp"] == "127.0.0.1", node
    assert not inspect(plumbing.servers[1])["HostConfig"]["PortBindings"]
    # The stand-in's API speaks plain HTTP; the point is that the published port is its API:
    # /cacerts answers without credentials there, as K3s's supervisor does on 6443.
    with urllib.request.urlopen(f"http://127.0.0.1:{plumbing.api_port}/cacerts", timeout=10) as response:
        assert response.status == 200


def test_plumbing_the_kubeconfig_is_read_as_root_and_rewritten_to_the_published_port(plumbing: Plumbing) -> None:
    read = _require(run_local(plumbing.command(f"{plumbing.stack}-kubeconfig")), "kubeconfig")
    assert yaml.safe_load(read.stdout)["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"
    rewritten = yaml.safe_load(rewrite_kubeconfig(read.stdout, f"https://127.0.0.1:{plumbing.api_port}", "ctx"))
    assert rewritten["clusters"][0]["cluster"]["server"] == f"https://127.0.0.1:{plumbing.api_port}"
    assert docker("exec", plumbing.servers[0], "stat", "-c", "%a", "/etc/rancher/k3s/k3s.yaml") == "600"
    assert plumbing.token not in read.stderr


def test_plumbing_a_wait_for_a_missing_node_gives_up_in_time_with_what_to_check(plumbing: Plumbing) -> None:
    settings = parse_settings({"topology": "docker", "k3s": {"version": VERSION}}, stack=plumbing.stack)
    script = scripts.wait_script(
        ["ghost"],
        settings.k3s,
        timeout=10,
        waits_for="test",
        user=docker_spec.EXEC_USER,
        hint=docker_spec.node_hint(["ghost"]),
    )
    command = plumbing.command(f"{plumbing.stack}-cluster-ready")
    result = run_local(command, docker_spec.exec_command(plumbing.servers[0], script), timeout=60)
    assert result.rc == 1
    assert f"not Ready at {VERSION} after 10s: ghost(not registered)" in result.stderr
    assert "docker logs ghost" in result.stderr
    assert result.seconds < 30


def test_plumbing_a_replaced_server_keeps_its_data_identity_and_address(plumbing: Plumbing) -> None:
    first = plumbing.servers[0]
    network = plumbing.engine.plain(f"{plumbing.stack}-network")["name"]
    address = inspect(first)["NetworkSettings"]["Networks"][network]["IPAddress"]
    old_id = inspect(first)["Id"]
    docker("exec", first, "sh", "-c", "echo kept > /etc/rancher/node/plumbing-marker")
    listing = ("exec", first, "k3s", "kubectl", "get", "nodes", "-o", "jsonpath={.items[*].metadata.name}")
    nodes_before = set(docker(*listing).split())
    # delete_before_replace: the old container goes, then the new one is created and waited for.
    plumbing.engine.remove_container(f"{first}-container")
    plumbing.engine.container(f"{first}-container")
    # A new container has none of the old one's filesystem: its scripts step runs again (its
    # trigger is the container's id).
    assert "delivered to" in deliver_scripts(plumbing.run, first).stderr
    again = _require(run_local(plumbing.command(f"{first}-ready")), "ready after replacement")
    assert f"Ready at {VERSION}: {first}" in again.stderr
    assert inspect(first)["Id"] != old_id
    assert inspect(first)["NetworkSettings"]["Networks"][network]["IPAddress"] == address
    assert docker("exec", first, "cat", "/etc/rancher/node/plumbing-marker") == "kept"
    assert set(docker(*listing).split()) == nodes_before
    _require(run_local(plumbing.command(f"{plumbing.stack}-cluster-ready")), "cluster ready after replacement")


def test_plumbing_removing_an_agent_deletes_its_node_object(plumbing: Plumbing) -> None:
    agent = plumbing.agents[0]
    membership = plumbing.command(f"{agent}-membership")
    server = plumbing.servers[0]

    def node_known() -> bool:
        args = ("exec", server, "k3s", "kubectl", "--kubeconfig", "/etc/rancher/k3s/k3s.yaml", "get", "node", agent)
        return docker(*args, check=False) != ""

    assert node_known()
    removed = _require(run_local(membership, membership["delete"]), "membership delete")
    assert f"node {agent} removed from the cluster" in removed.stderr
    assert not node_known()  # the API no longer has the Node


def test_plumbing_the_engine_check_answers_for_this_engine() -> None:
    assert docker_engine.engine_problem(DOCKER_HOST) is None
