"""Values the schema types only as strings: Traefik under Rancher, IP families, PEM files,
and value checks that still run when the structure is wrong elsewhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.config_cases import (
    NS,
    PEM,
    SSH_SECRETS,
    base,
    messages,
    parse,
    problems_of,
)


@pytest.mark.parametrize(
    "change",
    [
        {"rancher": {"ingressClassName": "nginx"}},
        {"rancher": {"enabled": False}},
        {"topology": "docker", "rancher": {"mode": "docker"}},
    ],
    ids=["another-ingress-class", "rancher-disabled", "rancher-docker-mode"],
)
def test_disabling_traefik_is_accepted_when_rancher_does_not_need_it(change: dict[str, Any]) -> None:
    config = base()
    config["k3s"]["serverConfig"] = {"disable": ["traefik"]}
    if change.get("topology") == "docker":
        config = {"topology": "docker", "k3s": {"serverConfig": {"disable": ["traefik"]}}}
        secrets: frozenset[str] = frozenset()
    else:
        secrets = SSH_SECRETS
    config.update({k: v for k, v in change.items() if k != "topology"})
    assert parse(config, secrets).k3s.server_config["disable"] == ["traefik"]


def test_disabling_traefik_under_rancher_says_what_to_do() -> None:
    config = base()
    config["k3s"]["serverArgs"] = ["--disable=servicelb,traefik"]
    message = messages(config)[NS + "k3s.serverArgs[0]"]
    assert "rancher.ingressClassName" in message and "keep traefik" in message


@pytest.mark.parametrize(
    ("server_config", "server_args"),
    [
        ({"cluster-cidr": "fd42::/56", "service-cidr": "fd43::/112"}, []),
        ({"cluster-cidr": ["10.42.0.0/16", "fd42::/56"], "service-cidr": "10.43.0.0/16,fd43::/112"}, []),
        ({}, ["--cluster-cidr=fd42::/56", "--service-cidr", "fd43::/112"]),
    ],
    ids=["ipv6-only", "dual-stack", "as-args"],
)
def test_ipv6_addresses_are_accepted_with_ipv6_cidrs(server_config: dict[str, Any], server_args: list[str]) -> None:
    config = base()
    config["servers"][0]["address"] = "fd00::11"
    config["agents"][0]["address"] = "fd00::21"
    config["k3s"].update(serverConfig=server_config, serverArgs=server_args, apiAddress="fd00::10")
    settings = parse(config)
    assert settings.k3s.server_url == "https://[fd00::10]:6443"


def test_an_ipv6_address_without_ipv6_cidrs_names_every_such_address() -> None:
    config = base()
    config["servers"][0]["address"] = "fd00::11"
    config["agents"][0]["address"] = "fd00::21"
    config["k3s"]["serverConfig"] = {"service-cidr": "fd43::/112"}
    found = messages(config)
    assert set(found) == {NS + "servers[0].address", NS + "agents[0].address"}
    assert "cluster-cidr (k3s.serverConfig) has no IPv6 range" in found[NS + "agents[0].address"]


def test_rancher_disabled_never_reads_its_certificate_paths() -> None:
    config = base()
    config["rancher"] = {"enabled": False, "tls": "secret", "tlsCert": "/nonexistent/tls.crt", "privateCa": "/no/ca"}
    settings = parse(config)  # no traceback, no problem: nothing will use them
    assert (settings.rancher.tls_cert, settings.rancher.private_ca) == (None, None)


def test_rancher_enabled_reads_its_certificate_files(tmp_path: Path) -> None:
    (tmp_path / "tls.crt").write_text(PEM)
    (tmp_path / "ca.crt").write_text(PEM.replace("MIIB", "MIIC"))
    config = base()
    config["rancher"] = {"tls": "secret", "tlsCert": str(tmp_path / "tls.crt"), "privateCa": str(tmp_path / "ca.crt")}
    settings = parse(config, SSH_SECRETS | {"rancherTlsKey"})
    assert settings.rancher.tls_cert == PEM
    assert settings.rancher.private_ca is not None and "MIIC" in settings.rancher.private_ca


def test_flag_and_address_checks_still_run_when_the_structure_is_wrong_elsewhere() -> None:
    config = base()
    config["ssh"] = {"port": 0}  # structural
    config["k3s"]["agentConfig"] = {"cluster-cidr": "10.42.0.0/16"}
    config["k3s"]["serverArgs"] = ["--disable=traefik"]
    config["agents"][0]["address"] = "fd00::21"
    keys = problems_of(config).keys
    for key in ("ssh.port", "k3s.agentConfig.cluster-cidr", "k3s.serverArgs[0]", "agents[0].address"):
        assert NS + key in keys, keys
