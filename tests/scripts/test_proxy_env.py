"""install_node.sh with k3s.proxy: the proxy reaches our download, the installer and (through
the installer's env file) K3s; its credentials come from stdin line 5 and land only in the
0600 env file; a proxy change restarts K3s."""

from __future__ import annotations

import copy
import shlex
from typing import Any

from components import scripts
from components.settings import Node, Settings
from policy.shell_inputs import parse as parse_inputs
from tests.scripts.awkward import PROXY, TOKEN, awkward_config, settings_for
from tests.scripts.sandbox import Sandbox, mode, needs_sandbox

CREDENTIALS = "proxy-user:pw%40Zq7-41"
ENV_FILE = "/etc/systemd/system/k3s.service.env"


def proxy_config(**proxy: Any) -> dict[str, Any]:
    return awkward_config(proxy={**copy.deepcopy(PROXY), **proxy})


def server(config: dict[str, Any]) -> tuple[Settings, Node]:
    s = settings_for(config, {"proxyCredentials"} if "proxy" in config["k3s"] else set())
    return s, s.servers[0]


def env_file(box: Sandbox) -> dict[str, str]:
    """The env file as systemd reads it (EnvironmentFile=: a value may be quoted; the
    installer writes `export`'s quoted form)."""
    lines = box.path(ENV_FILE).read_text().splitlines()
    pairs = (line.split("=", 1) for line in lines)
    return {name: (shlex.split(value) or [""])[0] for name, value in pairs}


def run(box: Sandbox, config: dict[str, Any], credentials: str | None = CREDENTIALS) -> str:
    s, node = server(config)
    script = scripts.install_script(node, s.k3s, first_server=True)
    result = box.run(script, scripts.install_stdin(TOKEN, None, proxy_credentials=credentials))
    assert result.returncode == 0, result.stderr
    if credentials:
        assert credentials not in script.command
        assert credentials not in result.stdout + result.stderr
    return script.command


@needs_sandbox
def test_the_proxy_and_its_credentials_land_in_the_0600_service_env_file(box: Sandbox) -> None:
    run(box, proxy_config())
    env = env_file(box)
    assert mode(box.path(ENV_FILE)) == 0o600
    assert env["HTTP_PROXY"] == f"http://{CREDENTIALS}@proxy.example.com:3128"
    assert env["HTTPS_PROXY"] == f"http://{CREDENTIALS}@proxy.example.com:3129/"
    assert env["https_proxy"] == env["HTTPS_PROXY"]  # wget and curl read the lower-case names
    no_proxy = env["NO_PROXY"].split(",")
    for entry in ("127.0.0.1", "localhost", ".svc", ".cluster.local", "10.42.0.0/16", "fd42::/56"):
        assert entry in no_proxy
    assert {"10.43.0.0/16", "fd43::/112", "k3s-2.example.com"} <= set(no_proxy)
    assert no_proxy[-3:] == PROXY["noProxy"]  # the user's entries, after the automatic ones
    # 10.0.0.11, 10.0.0.21, fd00::13 are inside the user's CIDRs: not listed one by one
    assert not {"10.0.0.11", "10.0.0.21", "fd00::13"} & set(no_proxy)
    # our own download of the installer went through the proxy, with the credentials
    download_env = (box.log / "curl-proxy-env").read_text()
    assert f"https_proxy=http://{CREDENTIALS}@proxy.example.com:3129/" in download_env
    assert box.records("installer")[-1]["env"]["HTTPS_PROXY"] == env["HTTPS_PROXY"]


@needs_sandbox
def test_without_credentials_the_urls_are_used_as_given(box: Sandbox) -> None:
    config = awkward_config(proxy={"httpsProxy": "http://proxy.example.com:3128"})
    run(box, config, credentials=None)
    env = env_file(box)
    assert env["HTTPS_PROXY"] == "http://proxy.example.com:3128"
    assert "HTTP_PROXY" not in env and "http_proxy" not in env  # not configured: not set


@needs_sandbox
def test_without_k3s_proxy_there_are_no_proxy_inputs_and_no_proxy_in_the_env_file(box: Sandbox) -> None:
    run(box, awkward_config(), credentials=None)
    s, node = server(awkward_config())
    parsed = parse_inputs(scripts.install_script(node, s.k3s, first_server=True).body)
    assert parsed is not None and not [k for k in parsed.variables if "PROXY" in k or k == "PREFLIGHT"]
    assert not [k for k in env_file(box) if k.upper().endswith("_PROXY")]


@needs_sandbox
def test_changing_the_proxy_restarts_k3s_and_an_unchanged_one_does_not(box: Sandbox) -> None:
    def restarts(config: dict[str, Any], credentials: str = CREDENTIALS) -> int:
        before = len(box.systemctl("restart"))
        run(box, config, credentials)
        return len(box.systemctl("restart")) - before

    config = proxy_config()
    assert restarts(config) == 1  # first install
    assert restarts(config) == 0
    assert restarts(proxy_config(httpsProxy="http://proxy2.example.com:8080")) == 1  # a new URL
    assert env_file(box)["HTTPS_PROXY"] == f"http://{CREDENTIALS}@proxy2.example.com:8080"
    changed = proxy_config(httpsProxy="http://proxy2.example.com:8080")
    assert restarts(changed, "proxy-user:rotated-8c") == 1  # new credentials (stdin only)
    assert "rotated-8c" in env_file(box)["HTTPS_PROXY"]


@needs_sandbox
def test_credentials_that_would_break_the_url_are_refused_without_showing_them(box: Sandbox) -> None:
    s, node = server(proxy_config())
    script = scripts.install_script(node, s.k3s, first_server=True)
    result = box.run(script, scripts.install_stdin(TOKEN, None, proxy_credentials="proxy-user:p@ss/word"))
    assert result.returncode != 0
    assert "percent-encoded" in result.stderr and "proxyCredentials" in result.stderr
    assert "p@ss/word" not in result.stderr
    assert not box.records("installer") and not box.path(scripts.TOKEN_FILE).exists()


def test_the_proxy_inputs_are_plain_urls_and_the_no_proxy_list() -> None:
    s, node = server(proxy_config())
    inputs = parse_inputs(scripts.install_script(node, s.k3s, first_server=True).body)
    assert inputs is not None
    assert inputs.variables["HTTP_PROXY_URL"] == PROXY["httpProxy"]
    assert inputs.variables["NO_PROXY_LIST"].endswith(",".join(PROXY["noProxy"]))
