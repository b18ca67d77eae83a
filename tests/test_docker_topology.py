"""The docker topology (the local stack) under mocks: graph, secrets, ports, volumes, names,
Rancher's single-node container, and the config it refuses before registering anything."""

from __future__ import annotations

import itertools
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.backends import docker_engine, docker_spec
from components.config import ConfigError, parse_settings
from tests.harness import GENERATED_PASSWORD, TEST_TOKEN, Run, leaves, load_stack_config, run_program

STACK = "local"
CONTAINER = "docker:index/container:Container"
VOLUME = "docker:index/volume:Volume"
LOCAL_COMMAND = "command:local:Command"


def local_config(**overrides: Any) -> dict[str, Any]:
    config, _ = load_stack_config(STACK)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return config


def local_run(secrets: dict[str, str] | None = None, **overrides: Any) -> Run:
    return run_program(local_config(**overrides), secrets or {}, stack=STACK)


def names(role: str, count: int) -> list[str]:
    return [f"{STACK}-{role}-{i}" for i in range(count)]


@pytest.fixture(scope="module")
def local() -> Run:
    """The stack file as it is: 1 server, 2 agents, Rancher by Helm, generated token."""
    return local_run()


@pytest.fixture(scope="module")
def ha() -> Run:
    """Three etcd servers and three agents, with a configured token."""
    return local_run({"token": TEST_TOKEN}, docker={"servers": 3, "agents": 3}, rancher={"enabled": False})


# --- the graph -----------------------------------------------------------------------------


def test_every_node_is_a_component_with_its_container_and_volumes(local: Run) -> None:
    cluster = local.by_name(STACK)
    assert cluster.type == "k3s-rancher:index:DockerCluster"
    for node in names("server", 1) + names("agent", 2):
        component = local.by_name(node)
        assert component.parent == cluster.urn
        assert component.type == (
            "k3s-rancher:index:DockerServer" if "server" in node else "k3s-rancher:index:DockerAgent"
        )
        for child in ("container", "data", "identity", "membership"):
            assert local.by_name(f"{node}-{child}").parent == component.urn
    assert local.by_name(f"{STACK}-server-0-ready").parent == local.urn(f"{STACK}-server-0")
    assert not any(r.name.startswith(f"{STACK}-agent") and r.name.endswith("-ready") for r in local.registrations)


def test_servers_are_replaced_one_after_another_each_after_the_previous_is_ready(ha: Run) -> None:
    servers = names("server", 3)
    for server in servers:
        assert ha.depends_on(f"{server}-ready", f"{server}-container")
    for previous, current in itertools.pairwise(servers):
        assert ha.depends_on(f"{current}-container", f"{previous}-ready")
    for server in servers[1:]:
        assert not ha.reaches(f"{servers[0]}-container", f"{server}-container")


def test_agents_wait_for_the_last_server_and_never_for_each_other(ha: Run) -> None:
    agents = names("agent", 3)
    for agent in agents:
        assert ha.depends_on(f"{agent}-container", f"{STACK}-server-2-ready")
        for other in agents:
            if other != agent:
                assert not ha.reaches(f"{agent}-container", f"{other}-container")


def test_cluster_ready_gates_the_kubeconfig_and_the_provider(ha: Run) -> None:
    ready = f"{STACK}-cluster-ready"
    for node in names("server", 3) + names("agent", 3):
        assert ha.depends_on(ready, f"{node}-container")
        assert ha.depends_on(f"{node}-membership", ready)
        assert ha.depends_on(f"{STACK}-k8s", f"{node}-membership")
    assert ha.depends_on(ready, f"{STACK}-server-2-ready")
    assert ha.depends_on(f"{STACK}-kubeconfig", ready)
    provider = ha.by_name(f"{STACK}-k8s")
    assert provider.type == "pulumi:providers:kubernetes"
    assert ha.depends_on(f"{STACK}-k8s", ready)
    assert provider.plain()["clusterIdentifier"] == f"k3s-rancher-{STACK}"
    # One command, on the first server, waits for every node.
    command = ha.by_name(ready).plain()["create"]
    assert command.startswith(f"docker exec {STACK}-server-0 sh -c ")
    assert "set -- " + " ".join(names("server", 3) + names("agent", 3)) in command


def test_helm_releases_wait_for_the_ready_cluster(local: Run) -> None:
    release = local.by_name("rancher-release")
    assert release.options["provider"].startswith(local.urn(f"{STACK}-k8s"))


def test_every_docker_resource_uses_the_stacks_docker_provider(local: Run) -> None:
    provider = local.by_name(f"{STACK}-docker")
    assert provider.plain()["host"] == "unix:///var/run/docker.sock"
    docker_resources = [r for r in local.registrations if r.type.startswith("docker:")]
    assert docker_resources
    for resource in docker_resources:
        assert resource.options["provider"].startswith(provider.urn), resource.name


def test_local_commands_reach_the_configured_engine_and_run_as_root_without_sudo() -> None:
    run = local_run(docker={"host": "tcp://127.0.0.1:2375"}, rancher={"enabled": False})
    commands = run.of_type(LOCAL_COMMAND)
    # server ready, cluster ready, memberships, forgets (not the first server's), kubeconfig
    assert len(commands) == 1 + 1 + 3 + 2 + 1
    for command in commands:
        plain = command.plain()
        assert plain["environment"] == {"DOCKER_HOST": "tcp://127.0.0.1:2375"}, command.name
        assert plain["addPreviousOutputInEnv"] is False
        text = plain.get("create") or plain["delete"]
        assert text.startswith("docker exec ")
        assert "sudo" not in text.split("sh -c")[0]


def test_the_kubeconfig_is_read_secretly_and_points_at_the_published_port(local: Run) -> None:
    read = local.by_name(f"{STACK}-kubeconfig")
    assert read.plain()["logging"] == "none"
    assert set(read.options["additionalSecretOutputs"]) == {"stdout", "stderr"}
    assert local.outputs["apiServer"] == "https://127.0.0.1:6443"
    exported = local.outputs["kubeconfig"]
    assert isinstance(exported, dict) and "value" in exported  # a secret output
    kubeconfig = yaml.safe_load(exported["value"])
    assert kubeconfig["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"
    assert kubeconfig["current-context"] == f"k3s-rancher-{STACK}"


def test_exports_name_the_docker_nodes(local: Run) -> None:
    nodes = local.outputs["nodes"]
    assert [n["name"] for n in nodes] == names("server", 1) + names("agent", 2)
    assert [n["address"] for n in nodes] == ["172.30.0.10", "172.30.0.20", "172.30.0.21"]
    assert local.outputs["k3sVersion"] == "v1.33.5+k3s1"
    assert local.outputs["rancherUrl"] == "https://127.0.0.1.sslip.io:8443"


# --- secrets -------------------------------------------------------------------------------


def _strings_outside_secrets(value: Any) -> Iterator[str]:
    return (text for _, text, secret in leaves(value) if not secret and isinstance(text, str))


@pytest.mark.parametrize("fixture", ["local", "ha"])
def test_the_token_is_a_secret_file_never_env_labels_or_command(fixture: str, request: pytest.FixtureRequest) -> None:
    run: Run = request.getfixturevalue(fixture)
    token = GENERATED_PASSWORD if fixture == "local" else TEST_TOKEN
    containers = run.of_type(CONTAINER)
    assert containers
    for container in containers:
        plain = container.plain()
        uploads = {u["file"]: (i, u) for i, u in enumerate(plain["uploads"])}
        index, upload = uploads["/etc/rancher/k3s/cluster-token"]
        assert upload["content"] == token + "\n" and upload["permissions"] == "0600"
        assert f"uploads[{index}].content" in container.secret_paths()
        assert "uploads" in container.options["additionalSecretOutputs"]
        assert "K3S_TOKEN_FILE=/etc/rancher/k3s/cluster-token" in plain["envs"]
        for field in ("envs", "labels", "command", "hostname", "name"):
            assert token not in repr(plain.get(field)), (container.name, field)
    for registration in run.registrations:
        for text in _strings_outside_secrets(registration.inputs):
            assert token not in text, registration.name


def test_an_external_datastore_endpoint_is_a_secret_file_on_servers_only() -> None:
    endpoint = "postgres://k3s:pw@db.local:5432/k3s"
    run = local_run(
        {"datastoreEndpoint": endpoint},
        k3s={"datastore": "external"},
        docker={"servers": 2},
        rancher={"enabled": False},
    )
    for container in run.of_type(CONTAINER):
        uploads = {u["file"]: u for u in container.plain()["uploads"]}
        has = docker_spec.DATASTORE_FILE in uploads
        assert has == ("server" in container.name)
        if has:
            assert yaml.safe_load(uploads[docker_spec.DATASTORE_FILE]["content"]) == {"datastore-endpoint": endpoint}
        for registration in run.registrations:
            for text in _strings_outside_secrets(registration.inputs):
                assert endpoint not in text


# --- ports, volumes, names ---------------------------------------------------------------


def ports(run: Run, container: str) -> set[tuple[int, int, str]]:
    return {(int(p["internal"]), int(p["external"]), p["ip"]) for p in run.by_name(container).plain().get("ports", [])}


def test_published_ports_are_bound_to_loopback_only(local: Run) -> None:
    assert ports(local, f"{STACK}-server-0-container") == {
        (6443, 6443, "127.0.0.1"),
        (80, 8080, "127.0.0.1"),
        (443, 8443, "127.0.0.1"),
    }
    for agent in names("agent", 2):
        assert ports(local, f"{agent}-container") == set()
    for container in local.of_type(CONTAINER):
        for port in container.plain().get("ports", []):
            assert port["ip"] == "127.0.0.1"


def test_the_api_port_follows_config_and_only_the_first_server_publishes() -> None:
    run = local_run(docker={"servers": 3, "apiPort": 16443}, rancher={"enabled": False})
    assert (6443, 16443, "127.0.0.1") in ports(run, f"{STACK}-server-0-container")
    for server in names("server", 3)[1:]:
        assert ports(run, f"{server}-container") == set()
    assert run.outputs["apiServer"] == "https://127.0.0.1:16443"


def test_every_node_keeps_its_data_and_identity_in_its_own_volumes(ha: Run) -> None:
    volumes = {r.plain()["name"] for r in ha.of_type(VOLUME)}
    for node in names("server", 3) + names("agent", 3):
        assert {f"{node}-data", f"{node}-identity"} <= volumes
        mounts = {v["containerPath"]: v["volumeName"] for v in ha.by_name(f"{node}-container").plain()["volumes"]}
        assert mounts == {"/var/lib/rancher/k3s": f"{node}-data", "/etc/rancher/node": f"{node}-identity"}
        assert ha.depends_on(f"{node}-container", f"{node}-data")
    assert len(volumes) == 2 * 6


def test_node_containers_are_privileged_k3s_containers_like_k3d(ha: Run) -> None:
    for node in names("server", 3) + names("agent", 3):
        container = ha.by_name(f"{node}-container")
        plain = container.plain()
        assert plain["name"] == plain["hostname"] == node
        assert plain["privileged"] is True
        assert plain["restart"] == "unless-stopped"
        assert plain["tmpfs"] == {"/run": "", "/var/run": ""}
        assert plain["image"] == "sha256:local-image"  # the RemoteImage's id
        assert container.options["deleteBeforeReplace"] is True  # a fixed name
        assert plain["networksAdvanced"][0]["name"] == "k3s-local"
        config = yaml.safe_load({u["file"]: u for u in plain["uploads"]}["/etc/rancher/k3s/config.yaml"]["content"])
        assert config["node-name"] == node
        assert config["token-file"] == "/etc/rancher/k3s/cluster-token"
        assert config["node-ip"] == plain["networksAdvanced"][0]["ipv4Address"]
        if node.endswith("server-0"):
            assert plain["command"] == ["server"] and config["cluster-init"] is True
            assert {"127.0.0.1", "localhost", "172.30.0.10"} <= set(config["tls-san"])
        elif "server" in node:
            assert plain["command"] == ["server"] and config["server"] == "https://172.30.0.10:6443"
        else:
            assert plain["command"] == ["agent"] and "K3S_URL=https://172.30.0.10:6443" in plain["envs"]
    image = ha.by_name(f"{STACK}-image").plain()
    assert image["name"] == "rancher/k3s:v1.33.5-k3s1" and image["keepLocally"] is True
    network = ha.by_name(f"{STACK}-network").plain()
    assert network["ipamConfigs"] == [{"subnet": "172.30.0.0/24"}]


def test_sqlite_runs_a_plain_server() -> None:
    run = local_run(k3s={"datastore": "sqlite"}, rancher={"enabled": False})
    plain = run.by_name(f"{STACK}-server-0-container").plain()
    config = yaml.safe_load(plain["uploads"][0]["content"])
    assert plain["command"] == ["server"] and "cluster-init" not in config and "server" not in config


def test_adding_an_agent_changes_nothing_about_the_others_and_removing_removes_the_last() -> None:
    def inputs(run: Run) -> dict[str, Any]:
        return {r.name: r.plain() for r in run.registrations if r.custom}

    base = inputs(local_run({"token": TEST_TOKEN}, rancher={"enabled": False}))
    more = inputs(local_run({"token": TEST_TOKEN}, docker={"agents": 3}, rancher={"enabled": False}))
    fewer = inputs(local_run({"token": TEST_TOKEN}, docker={"agents": 1}, rancher={"enabled": False}))
    added = set(more) - set(base)
    assert {n for n in added if n.startswith(f"{STACK}-agent-2")} == {
        f"{STACK}-agent-2-{c}" for c in ("container", "data", "identity", "membership", "forget")
    }
    for name in base:
        if name.startswith(f"{STACK}-agent") or name.startswith(f"{STACK}-server"):
            assert more[name] == base[name], name
    assert set(base) - set(fewer) == {
        f"{STACK}-agent-1-{c}" for c in ("container", "data", "identity", "membership", "forget")
    }
    # A removed node leaves the cluster: its membership's delete drains and deletes the Node,
    # and its forget deletes the Node again once the container is gone (on the first server).
    for step in ("membership", "forget"):
        delete = base[f"{STACK}-agent-1-{step}"]["delete"]
        assert delete.startswith(f"docker exec {STACK}-server-0 ") and "delete node" in delete
    assert not base[f"{STACK}-agent-1-forget"].get("create")
    assert "delete" not in base[f"{STACK}-server-0-membership"]
    assert f"{STACK}-server-0-forget" not in base


def test_a_new_k3s_version_replaces_containers_keeps_volumes_and_reruns_every_wait() -> None:
    before = {r.name: r.plain() for r in local_run({"token": TEST_TOKEN}, rancher={"enabled": False}).registrations}
    after_run = local_run({"token": TEST_TOKEN}, k3s={"version": "v1.33.6+k3s1"}, rancher={"enabled": False})
    after = {r.name: r.plain() for r in after_run.registrations}
    assert after[f"{STACK}-image"]["name"] == "rancher/k3s:v1.33.6-k3s1"
    for name, plain in before.items():
        if name.endswith(("-data", "-identity")) or name == f"{STACK}-network":
            assert after[name] == plain, name
    for wait in (f"{STACK}-server-0-ready", f"{STACK}-cluster-ready", f"{STACK}-kubeconfig"):
        assert after[wait]["create"] != before[wait]["create"], wait
    assert "K3S_VERSION=v1.33.6+k3s1" in after[f"{STACK}-cluster-ready"]["create"]


def test_a_second_run_with_nothing_changed_changes_nothing() -> None:
    def inputs() -> dict[str, Any]:
        return {r.name: r.plain() for r in local_run({"token": TEST_TOKEN}).registrations}

    assert inputs() == inputs()


def test_names_are_dns_labels_whatever_the_stack_name() -> None:
    assert docker_spec.name_prefix("My_Stack.dev") == "my-stack-dev"
    assert docker_spec.name_prefix("___") == "k3s"
    settings = parse_settings(local_config(), stack="Laptop_1")
    assert [n.name for n in docker_spec.docker_nodes(settings.stack, settings.docker)] == [
        "laptop-1-server-0",
        "laptop-1-agent-0",
        "laptop-1-agent-1",
    ]


# --- Rancher's single-node container ------------------------------------------------------


@pytest.fixture(scope="module")
def rancher_docker() -> Run:
    return local_run(rancher={"mode": "docker"})


def test_rancher_docker_mode_runs_the_single_node_container(rancher_docker: Run) -> None:
    run = rancher_docker
    assert not run.of_type("kubernetes:helm.sh/v3:Release")
    component = run.by_name("rancher")
    assert component.type == "k3s-rancher:index:RancherContainer"
    image = run.by_name("rancher-image").plain()
    assert image["name"] == "rancher/rancher:v2.12.3"
    container = run.by_name("rancher-container")
    plain = container.plain()
    assert plain["name"] == f"{STACK}-rancher"
    assert plain["privileged"] is True and plain["restart"] == "unless-stopped"
    assert ports(run, "rancher-container") == {(80, 80, "127.0.0.1"), (443, 443, "127.0.0.1")}
    assert plain["volumes"] == [{"volumeName": f"{STACK}-rancher-data", "containerPath": "/var/lib/rancher"}]
    assert container.options["provider"].startswith(run.urn(f"{STACK}-docker"))
    assert run.depends_on("rancher-ready", "rancher-container")
    assert run.by_name("rancher-ready").plain()["create"].startswith(f"docker exec {STACK}-rancher sh -c ")
    # The ingress is not published when Rancher's own container serves 80/443.
    assert ports(run, f"{STACK}-server-0-container") == {(6443, 6443, "127.0.0.1")}


def test_rancher_bootstrap_password_is_a_file_not_the_environment(rancher_docker: Run) -> None:
    container = rancher_docker.by_name("rancher-container")
    plain = container.plain()
    assert plain["uploads"] == [
        {"file": "/etc/k3s-rancher/bootstrap-password", "content": GENERATED_PASSWORD, "permissions": "0600"}
    ]
    assert "uploads[0].content" in container.secret_paths()
    assert "CATTLE_BOOTSTRAP_PASSWORD" not in repr(plain.get("envs"))
    assert plain["entrypoints"][:2] == ["/bin/sh", "-c"]
    assert "exec /usr/bin/entrypoint.sh" in plain["entrypoints"][2]
    for registration in rancher_docker.registrations:
        for text in _strings_outside_secrets(registration.inputs):
            assert GENERATED_PASSWORD not in text, registration.name


def test_rancher_docker_mode_exports(rancher_docker: Run) -> None:
    outputs = rancher_docker.outputs
    assert outputs["rancherUrl"] == "https://localhost"
    assert outputs["rancherBootstrapPassword"]["value"] == GENERATED_PASSWORD  # secret-wrapped
    assert outputs["rancherVersion"] == "2.12.3"
    given = local_run(
        {"rancherBootstrapPassword": "given-password-123"}, rancher={"mode": "docker", "ports": [8081, 8444]}
    )
    assert given.outputs["rancherUrl"] == "https://localhost:8444"
    assert "rancher-bootstrap-password" not in given.names()
    upload = given.by_name("rancher-container").plain()["uploads"][0]
    assert upload["content"] == "given-password-123"


# --- bad config, refused before anything is registered -------------------------------------


def problems(config: dict[str, Any], secrets: tuple[str, ...] = ()) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        parse_settings(config, secrets, STACK)
    return dict(caught.value.problems)


@pytest.mark.parametrize(
    ("overrides", "secrets", "key"),
    [
        ({"servers": [{"name": "a", "address": "10.0.0.1"}]}, (), "k3s-rancher:servers"),
        ({"agents": [{"name": "b", "address": "10.0.0.2"}]}, (), "k3s-rancher:agents"),
        ({"ssh": {"user": "root"}}, (), "k3s-rancher:ssh"),
        ({}, ("sshPrivateKey",), "k3s-rancher:sshPrivateKey"),
        ({"k3s": {"apiAddress": "10.0.0.1"}}, (), "k3s-rancher:k3s.apiAddress"),
        ({"k3s": {"airgap": {"installScript": "/x", "binary": "/y"}}}, (), "k3s-rancher:k3s.airgap"),
        ({"k3s": {"datastore": "sqlite"}, "docker": {"servers": 3}}, (), "k3s-rancher:k3s.datastore"),
        ({"docker": {"image": "rancher/k3s:v1.32.1-k3s1"}}, (), "k3s-rancher:docker.image"),
        ({"docker": {"host": "/var/run/docker.sock"}}, (), "k3s-rancher:docker.host"),
        ({"docker": {"network": "bad name"}}, (), "k3s-rancher:docker.network"),
        ({"docker": {"subnet": "172.30.0.0/33"}}, (), "k3s-rancher:docker.subnet"),
        ({"docker": {"subnet": "172.30.0.0/28"}}, (), "k3s-rancher:docker.subnet"),
        ({"docker": {"subnet": "10.42.0.0/24"}}, (), "k3s-rancher:docker.subnet"),
        ({"docker": {"apiPort": 8443}}, (), "k3s-rancher:docker.httpPorts[1]"),
        ({"docker": {"apiPort": 443}, "rancher": {"mode": "docker"}}, (), "k3s-rancher:rancher.ports[1]"),
    ],
)
def test_the_docker_topology_refuses_what_it_cannot_do(
    overrides: dict[str, Any], secrets: tuple[str, ...], key: str
) -> None:
    found = problems(local_config(**overrides), secrets)
    assert key in found, found
    assert found[key]  # a message that says what to do


def test_a_custom_image_with_a_non_release_tag_is_accepted() -> None:
    settings = parse_settings(local_config(docker={"image": "registry.local:5000/k3s:my-build"}), (), STACK)
    assert settings.docker.image == "registry.local:5000/k3s:my-build"


def test_docker_settings_on_an_ssh_stack_are_refused() -> None:
    config, _ = load_stack_config("dev")
    config["docker"] = {"agents": 1}
    assert "k3s-rancher:docker" in problems(config, ("sshPrivateKey",))


def test_rancher_docker_mode_needs_the_docker_topology() -> None:
    config, _ = load_stack_config("dev")
    config["rancher"] = {"mode": "docker"}
    assert "k3s-rancher:rancher.mode" in problems(config, ("sshPrivateKey",))


def test_bad_config_registers_nothing() -> None:
    with pytest.raises(ConfigError):
        local_run(ssh={"user": "root"})


# --- the engine check ------------------------------------------------------------------------


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    # AF_UNIX paths are short: a fresh directory under /tmp, not pytest's deep tmp_path.
    with tempfile.TemporaryDirectory(dir="/tmp") as directory:
        yield Path(directory)


def _serve_once(path: Path, response: bytes) -> threading.Thread:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def answer() -> None:
        connection, _ = server.accept()
        connection.recv(1024)
        connection.sendall(response)
        connection.close()
        server.close()

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    return thread


def test_engine_check_pings_a_unix_socket(socket_dir: Path) -> None:
    path = socket_dir / "docker.sock"
    thread = _serve_once(path, b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nOK")
    assert docker_engine.engine_problem(f"unix://{path}") is None
    thread.join(5)


def test_engine_check_explains_a_missing_or_dead_engine(socket_dir: Path) -> None:
    missing = docker_engine.engine_problem(f"unix://{socket_dir}/none.sock")
    assert missing and "does not exist" in missing and "docker.host" in missing
    dead = socket_dir / "dead.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(dead))
    listener.close()  # the file stays, nothing listens
    refused = docker_engine.engine_problem(f"unix://{dead}")
    assert refused and "does not answer" in refused
    unhappy = socket_dir / "503.sock"
    thread = _serve_once(unhappy, b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
    assert "HTTP 503" in (docker_engine.engine_problem(f"unix://{unhappy}") or "")
    thread.join(5)


def test_engine_check_over_tcp_and_unchecked_schemes() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    problem = docker_engine.engine_problem(f"tcp://127.0.0.1:{free_port}", timeout=2)
    assert problem and "cannot reach" in problem
    assert docker_engine.engine_problem("ssh://me@build-host") is None


def test_an_unreachable_engine_stops_up_before_anything_is_registered() -> None:
    problem = "no Docker engine at unix:///var/run/docker.sock"
    with pytest.raises(ConfigError) as caught:
        run_program(local_config(), {}, stack=STACK, docker_engine_problem=problem)
    assert caught.value.keys == ["k3s-rancher:docker.host"]
    assert problem in str(caught.value)
    # A preview only warns: it creates nothing, and CI may preview without Docker.
    run = run_program(local_config(), {}, stack=STACK, preview=True, docker_engine_problem=problem)
    assert run.by_name(f"{STACK}-server-0-container")


def test_the_docker_provider_skips_its_own_daemon_check_for_previews(local: Run) -> None:
    assert local.by_name(f"{STACK}-docker").plain()["disableDockerDaemonCheck"] in (True, "true")


def test_the_critical_path_grows_with_servers_not_agents() -> None:
    from benchmarks.graph_scale import longest_chain

    def chain(servers: int, agents: int) -> int:
        run = local_run(
            {"token": TEST_TOKEN}, docker={"servers": servers, "agents": agents}, rancher={"enabled": False}
        )
        return longest_chain(run.registrations)

    assert chain(1, 1) == chain(1, 20)
    assert chain(3, 2) == chain(3, 20) == chain(1, 2) + 4  # each server adds its container and its wait


# --- removal, readiness after a restart, the kubernetes provider (issue 12) -----------------


def test_a_removed_node_is_forgotten_after_its_container_is_gone(ha: Run) -> None:
    """As on SSH hosts: drain (membership delete) -> remove the container -> delete the Node
    object (forget), so that the still-running node cannot register it again after the drain."""
    first = f"{STACK}-server-0"
    assert f"{first}-forget" not in ha.names()  # the first server goes last, with the cluster
    for node in names("server", 3)[1:] + names("agent", 3):
        forget = ha.by_name(f"{node}-forget").plain()
        assert forget["delete"].startswith(f"docker exec {first} ") and "delete node" in forget["delete"]
        assert not forget.get("create")
        assert ha.depends_on(f"{node}-container", f"{node}-forget")  # deleted after the container
        assert ha.depends_on(f"{node}-membership", f"{node}-container")  # drained before it
        assert ha.depends_on(f"{node}-forget", f"{first}-container")  # and before the first server
        assert ha.by_name(f"{node}-forget").options["deleteBeforeReplace"] is True


def test_a_token_change_replaces_the_containers_and_reruns_every_wait() -> None:
    before = local_run({"token": TEST_TOKEN}, docker={"servers": 3}, rancher={"enabled": False})
    after = local_run({"token": TEST_TOKEN + "-rotated"}, docker={"servers": 3}, rancher={"enabled": False})
    nodes = names("server", 3) + names("agent", 2)
    for node in nodes:
        # The token file is an upload: a changed upload is a new container (the Docker provider
        # replaces a container on any input change), which gets a new id ...
        old, new = (run.by_name(f"{node}-container").plain()["uploads"] for run in (before, after))
        assert old != new, node
        # ... and every wait's command text is computed from the container ids, so it re-runs.
        assert after.property_depends_on(f"{STACK}-cluster-ready", "create", f"{node}-container")
    for server in names("server", 3):
        assert after.property_depends_on(f"{server}-ready", "create", f"{server}-container")


def test_the_kubernetes_provider_keeps_resources_of_an_unreachable_cluster(local: Run) -> None:
    assert "deleteUnreachable" not in local.by_name(f"{STACK}-k8s").plain()
