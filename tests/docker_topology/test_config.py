"""Config the docker topology refuses before anything is registered."""

from __future__ import annotations

from typing import Any

import pytest

from components.config import parse_settings
from components.settings import ConfigError
from tests.docker_topology.local import STACK, local_config, local_run
from tests.harness import load_stack_config


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
