"""Defaults in one place: a settings dataclass built by hand gets what a stack config that
leaves the keys out gets (both read the schema's `default`s: components/schema_defaults.py)."""

from __future__ import annotations

from dataclasses import replace

from components.schema_defaults import default
from components.settings import (
    CertManagerSettings,
    DockerSettings,
    K3sSettings,
    RancherSettings,
    SshSettings,
    Timeouts,
    UpgradeSettings,
)
from tests.config_cases import base, parse


def test_hand_built_settings_equal_a_config_that_leaves_every_default_out() -> None:
    settings = parse(base())
    server = settings.servers[0]
    # Only what config derives is given: the API address, the init server, the proxy.
    assert settings.k3s == K3sSettings(api_address=server.address, init_server=server.name)
    assert settings.ssh == SshSettings()
    docker = parse({"topology": "docker"}, frozenset())
    assert docker.docker == DockerSettings(image=docker.docker.image)
    assert settings.rancher == RancherSettings(hostname=settings.rancher.hostname, replicas=settings.rancher.replicas)


def test_a_changed_schema_default_reaches_the_dataclasses() -> None:
    # Not hand-copied: each default is the schema's (a copy would drift from it unnoticed).
    assert Timeouts().node_ready == default("k3s.timeouts.nodeReady")
    assert UpgradeSettings().agents_at_once == default("k3s.upgrade.agentsAtOnce")
    assert CertManagerSettings().version == default("rancher.certManager.version")
    assert K3sSettings().version == default("k3s.version")
    # A mapping default is fresh per instance, not shared.
    assert K3sSettings().server_config is not K3sSettings().server_config
    assert replace(K3sSettings(), version="v1.32.0+k3s1").tls_sans == ()
