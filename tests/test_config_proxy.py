"""k3s.proxy and k3s.preflight in the config: refusals by key (credentials in a URL above
all), the proxyCredentials secret, the automatic NO_PROXY entries, and what the install's
inputs become (nothing new for a stack that sets neither)."""

from __future__ import annotations

from typing import Any

import pytest

from components import proxy, scripts
from policy.shell_inputs import parse as parse_inputs
from tests.config_cases import NS, SSH_SECRETS, base, parse, problems_of

WITH_SECRET = SSH_SECRETS | {"proxyCredentials"}


def with_proxy(**settings: Any) -> dict[str, Any]:
    config = base()
    config["k3s"]["proxy"] = settings
    return config


def install_inputs(config: dict[str, Any], secrets: frozenset[str] = SSH_SECRETS) -> dict[str, str]:
    s = parse(config, secrets)
    node = s.servers[0]
    parsed = parse_inputs(scripts.install_script(node, s.k3s, first_server=True).body)
    assert parsed is not None
    return parsed.variables


@pytest.mark.parametrize("key", ["httpProxy", "httpsProxy"])
def test_a_proxy_url_with_credentials_is_refused_by_key_without_repeating_them(key: str) -> None:
    error = problems_of(with_proxy(**{key: "http://alice:s3cr3t-pw@proxy.example.com:3128"}))
    assert error.keys == [f"{NS}k3s.proxy.{key}"]
    message = error.problems[0][1]
    assert "pulumi config set --secret proxyCredentials" in message
    assert "s3cr3t-pw" not in str(error)


def test_the_credentials_secret_is_accepted_with_a_proxy_and_refused_without() -> None:
    s = parse(with_proxy(httpsProxy="http://proxy.example.com:3128"), WITH_SECRET)
    assert s.k3s.proxy is not None and s.k3s.proxy.https_proxy == "http://proxy.example.com:3128"
    assert problems_of(base(), WITH_SECRET).keys == [f"{NS}proxyCredentials"]


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"httpProxy": "socks5://proxy:1080"}, "k3s.proxy.httpProxy"),
        ({"httpsProxy": "http://proxy:3128/path"}, "k3s.proxy.httpsProxy"),
        ({"httpsProxy": "http://proxy:99999"}, "k3s.proxy.httpsProxy"),
        ({"httpsProxy": "proxy:3128"}, "k3s.proxy.httpsProxy"),
        ({"noProxy": [".corp"]}, "k3s.proxy"),
        ({"httpsProxy": "http://p:1", "noProxy": ["ok.example.com", "a,b"]}, "k3s.proxy.noProxy[1]"),
        ({"httpsProxy": "http://p:1", "noProxy": ["two words"]}, "k3s.proxy.noProxy[0]"),
    ],
    ids=["scheme", "path", "port", "no-scheme", "no-url", "comma", "space"],
)
def test_bad_proxy_settings_are_refused_by_key(settings: dict[str, Any], key: str) -> None:
    assert problems_of(with_proxy(**settings)).keys == [NS + key]


def test_the_docker_topology_refuses_k3s_proxy() -> None:
    config = {"topology": "docker", "k3s": {"proxy": {"httpsProxy": "http://proxy:3128"}}}
    error = problems_of(config, frozenset())
    assert error.keys == [f"{NS}k3s.proxy"] and "Docker engine" in str(error)


def test_no_proxy_gets_the_local_names_the_k3s_networks_and_every_node() -> None:
    s = parse(with_proxy(httpsProxy="http://proxy:3128", noProxy=[".corp.example.com"]))
    entries = proxy.no_proxy(s.k3s)
    assert entries[:4] == ["127.0.0.1", "localhost", ".svc", ".cluster.local"]
    assert {"10.42.0.0/16", "10.43.0.0/16"} <= set(entries)  # K3s's defaults
    assert {n.address for n in s.nodes} | {s.k3s.api_address} <= set(entries)
    assert entries[-1] == ".corp.example.com"


def test_no_proxy_follows_the_configured_cidrs_and_skips_addresses_the_user_covers() -> None:
    config = with_proxy(httpsProxy="http://proxy:3128", noProxy=["0.0.0.0/0"])
    config["k3s"]["serverConfig"] = {"cluster-cidr": "10.100.0.0/16"}
    config["k3s"]["serverArgs"] = ["--service-cidr=10.200.0.0/16,fd43::/112"]
    s = parse(config)
    entries = proxy.no_proxy(s.k3s)
    assert {"10.100.0.0/16", "10.200.0.0/16", "fd43::/112"} <= set(entries)
    assert "10.42.0.0/16" not in entries and "10.43.0.0/16" not in entries
    assert not {n.address for n in s.nodes} & set(entries)  # every IPv4 node is in 0.0.0.0/0


def test_the_order_of_nodes_changes_no_install_input() -> None:
    config = with_proxy(httpsProxy="http://proxy:3128")
    config["agents"].append({"name": "w9", "address": "10.9.9.9"})
    first = install_inputs(config)
    config["agents"].reverse()
    assert install_inputs(config)["NO_PROXY_LIST"] == first["NO_PROXY_LIST"]


def test_a_stack_without_proxy_or_preflight_settings_gets_no_new_install_inputs() -> None:
    inputs = install_inputs(base())
    assert not [name for name in inputs if "PROXY" in name or name == "PREFLIGHT"]


def test_preflight_false_reaches_the_install_as_preflight_off() -> None:
    config = base()
    config["k3s"]["preflight"] = False
    assert install_inputs(config)["PREFLIGHT"] == "off"
    assert parse(config).k3s.preflight is False and parse(base()).k3s.preflight is True


def test_the_credentials_travel_as_a_named_stdin_entry_only_when_set() -> None:
    assert scripts.install_stdin("tok", None) == "TOKEN=tok\n"
    assert scripts.install_stdin("tok", "pg://x", proxy_credentials=None) == "TOKEN=tok\nDATASTORE_ENDPOINT=pg://x\n"
    assert scripts.install_stdin("tok", None, proxy_credentials="u:p") == "TOKEN=tok\nPROXY_CREDENTIALS=u:p\n"
    with pytest.raises(ValueError):
        scripts.install_stdin("tok", None, proxy_credentials="u:p\nX=1")


def test_the_credentials_reach_every_install_on_stdin_only() -> None:
    """The wiring: proxyCredentials set in config reach each node's install (an agent's
    in-place change, in its k3s.upgrade batch, included) as stdin's PROXY_CREDENTIALS entry,
    secret, never in command text."""
    from tests.harness import TEST_SSH_KEY, load_stack_config, run_program, stdin_values

    config, _ = load_stack_config("dev")
    config["k3s"]["proxy"] = {"httpsProxy": "http://proxy.example.com:3128"}
    run = run_program(config, {"sshPrivateKey": TEST_SSH_KEY, "proxyCredentials": "u:secret-pw"}, stack="dev")
    for name in ("dev-cp1-install", "dev-w1-install"):
        registration = run.by_name(name)
        assert stdin_values(registration.plain()["stdin"])["PROXY_CREDENTIALS"] == "u:secret-pw", name
        assert "stdin" in registration.secret_paths()
        assert "secret-pw" not in registration.plain().get("create", "") + registration.plain().get("update", "")
