"""Bad Rancher config: one ConfigError naming the key, before anything is registered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from components.config import parse_settings
from components.settings import ConfigError
from tests.rancher.runs import CA, CERT, TLS_KEY, custom_run, one_server, tiny_chart

BAD_RANCHER = [
    pytest.param({"tls": "letsEncrypt"}, {}, "k3s-rancher:rancher.letsEncryptEmail", id="letsencrypt-no-email"),
    pytest.param(
        {"tls": "letsEncrypt", "letsEncryptEmail": "not an email"},
        {},
        "k3s-rancher:rancher.letsEncryptEmail",
        id="letsencrypt-bad-email",
    ),
    pytest.param({"hostname": "rancher_example!"}, {}, "k3s-rancher:rancher.hostname", id="hostname-not-dns"),
    pytest.param({"hostname": "10.0.0.11"}, {}, "k3s-rancher:rancher.hostname", id="hostname-ip"),
    pytest.param({"replicas": 0}, {}, "k3s-rancher:rancher.replicas", id="replicas-zero"),
    pytest.param({"tls": "secret"}, {"rancherTlsKey": TLS_KEY}, "k3s-rancher:rancher.tlsCert", id="secret-no-cert"),
    pytest.param({"tls": "secret", "tlsCert": CERT}, {}, "k3s-rancher:rancherTlsKey", id="secret-no-key"),
    pytest.param({"version": "2.10.3"}, {}, "k3s-rancher:rancher.version", id="rancher-too-old-for-k3s"),
    pytest.param({"version": "2.8.5"}, {}, "k3s-rancher:rancher.version", id="rancher-unknown-line"),
    pytest.param({"chartRepo": "/nonexistent/rancher.tgz"}, {}, "k3s-rancher:rancher.chartRepo", id="chart-missing"),
    pytest.param(
        {"values": {"bootstrapPassword": "plain"}},
        {},
        "k3s-rancher:rancher.values.bootstrapPassword",
        id="password-in-values",
    ),
    pytest.param(
        {"certManager": {"version": "v1.14.5"}},
        {},
        "k3s-rancher:rancher.certManager.version",
        id="cert-manager-without-crds-enabled",
    ),
    pytest.param({"privateCa": CA}, {}, "k3s-rancher:rancher.privateCa", id="private-ca-without-secret"),
    pytest.param({"timeout": 10}, {}, "k3s-rancher:rancher.timeout", id="timeout-too-short"),
]


@pytest.mark.parametrize(("rancher", "secrets", "key"), BAD_RANCHER)
def test_bad_rancher_config_names_the_key(rancher: dict[str, Any], secrets: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        custom_run(rancher, secrets)
    assert key in caught.value.keys, caught.value


def test_incompatible_k3s_for_rancher_names_the_version_key() -> None:
    with pytest.raises(ConfigError) as caught:
        custom_run({"version": "2.12.3"}, k3s={"version": "v1.35.1+k3s1"})
    assert caught.value.keys == ["k3s-rancher:rancher.version"]
    assert "1.31 to 1.33" in str(caught.value)


def test_dns_api_address_needs_a_hostname() -> None:
    with pytest.raises(ConfigError) as caught:
        custom_run({}, k3s={"apiAddress": "k3s.example.com"})
    assert caught.value.keys == ["k3s-rancher:rancher.hostname"]


def test_local_chart_of_another_version_is_refused(tmp_path: Path) -> None:
    chart = tiny_chart(tmp_path, "rancher", "2.12.1")
    with pytest.raises(ConfigError) as caught:
        parse_settings(one_server({"chartRepo": str(chart)}), {"sshPrivateKey"})
    assert caught.value.keys == ["k3s-rancher:rancher.chartRepo"]
    assert "2.12.1" in str(caught.value) and "2.12.3" in str(caught.value)


def test_local_chart_of_another_name_is_refused(tmp_path: Path) -> None:
    chart = tiny_chart(tmp_path, "cert-manager", "v1.18.2")
    with pytest.raises(ConfigError) as caught:
        parse_settings(one_server({"chartRepo": str(chart)}), {"sshPrivateKey"})
    assert caught.value.keys == ["k3s-rancher:rancher.chartRepo"]
