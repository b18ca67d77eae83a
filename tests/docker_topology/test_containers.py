"""The docker topology's container specs under mocks: the token and datastore endpoint as
secret files, published ports, volumes, names, privileges, what a change replaces, and
Rancher's single-node container (rancher.mode docker)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from components.backends import docker_spec
from components.config import parse_settings
from policy.shell_inputs import command_inputs
from tests.docker_topology.local import CONTAINER, STACK, VOLUME, local_config, local_run, names
from tests.harness import GENERATED_PASSWORD, TEST_TOKEN, Run, leaves, node_script


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
    steps = ("container", "scripts", "data", "identity", "membership", "forget")
    assert {n for n in added if n.startswith(f"{STACK}-agent-2")} == {f"{STACK}-agent-2-{c}" for c in steps}
    for name in base:
        if name.startswith(f"{STACK}-agent") or name.startswith(f"{STACK}-server"):
            assert more[name] == base[name], name
    assert set(base) - set(fewer) == {f"{STACK}-agent-1-{c}" for c in steps}
    # A removed node leaves the cluster: its membership's delete drains and deletes the Node,
    # and its forget deletes the Node again once the container is gone (on the first server).
    for step in ("membership", "forget"):
        delete = base[f"{STACK}-agent-1-{step}"]["delete"]
        assert delete.startswith(f"docker exec {STACK}-server-0 ")
        assert "kc delete node" in node_script(delete).effective
        assert command_inputs(delete).variables["NODE_NAME"] == f"{STACK}-agent-1"  # type: ignore[union-attr]
    drain = base[f"{STACK}-agent-1-membership"]["delete"]
    assert "kc drain" in node_script(drain).effective and int(command_inputs(drain).variables["DRAIN_TIMEOUT"]) > 0  # type: ignore[union-attr]
    assert not base[f"{STACK}-agent-1-scripts"].get("delete")  # the container's removal takes the bundle
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
