"""install_node.sh with k3s.proxy: the proxy reaches our download, the installer and K3s (through
our own 0600 env file, named by a systemd drop-in, never through the installer's env file); its
credentials come from stdin (PROXY_CREDENTIALS); a proxy change restarts K3s. The service's environment is
read here as systemd reads it (its unit's and drop-ins' EnvironmentFile=, in order)."""

from __future__ import annotations

import copy
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import pytest

from components import scripts
from components.settings import Node, Settings
from policy.shell_inputs import parse as parse_inputs
from tests.scripts.awkward import PROXY, TOKEN, awkward_config, settings_for
from tests.scripts.sandbox import Sandbox, mode, needs_sandbox

CREDENTIALS = "proxy-user:pw%40Zq7-41"
ENV_FILE = "/etc/systemd/system/k3s.service.env"  # the installer's
OUR_ENV_FILE = f"{scripts.CONF_DIR}/k3s-rancher-proxy.env"
DROP_IN = "/etc/systemd/system/k3s.service.d/50-k3s-rancher-proxy.conf"
# A password with what the installer's env file breaks or a URL needs escaped: a backslash,
# two spaces, $, ', " and #. The secret holds it percent-encoded, as in any URL (quote keeps
# $ and ', which a URL's userinfo may hold as they are).
RAW_PASSWORD = "pa\\ss  w$r'd\"x#1"
AWKWARD_CREDENTIALS = "proxy-user:" + quote(RAW_PASSWORD, safe="$'")


def systemd_env_file(text: str) -> dict[str, str]:
    """An EnvironmentFile= as systemd reads it (systemd src/basic/env-file.c,
    parse_env_file_internal): NAME=value lines, # and ; comments; a value unquoted (a backslash
    takes the next character, trailing blanks go), in '...' (literal), or in "..." (a
    backslash before " \\ ` $ stands for it, before anything else it stays); after a closing
    quote, blanks are skipped and another quoted or plain part may follow."""
    found: dict[str, str] = {}
    state, key, value, blank_at = "pre_key", "", "", -1

    def push() -> None:
        found[key.strip()] = value[:blank_at] if state == "value" and blank_at >= 0 else value

    for c in text:
        if state == "pre_key":
            if c in "#;":
                state = "comment"
            elif c not in " \t\n\r":
                state, key, value, blank_at = "key", c, "", -1
        elif state == "key":
            if c in "\n\r":
                state = "pre_key"
            elif c == "=":
                state = "pre_value"
            else:
                key += c
        elif state == "pre_value":
            if c in "\n\r":
                push()
                state = "pre_key"
            elif c == "'":
                state = "single"
            elif c == '"':
                state = "double"
            elif c == "\\":
                state = "value_escape"
            elif c not in " \t":
                state, value = "value", value + c
        elif state == "value":
            if c in "\n\r":
                push()
                state = "pre_key"
            elif c == "\\":
                state, blank_at = "value_escape", -1
            else:
                if c not in " \t":
                    blank_at = -1
                elif blank_at < 0:
                    blank_at = len(value)
                value += c
        elif state == "value_escape":
            state = "value"
            if c not in "\n\r":
                value += c
        elif state == "single":
            if c == "'":
                state = "pre_value"
            else:
                value += c
        elif state == "double":
            if c == '"':
                state = "pre_value"
            elif c == "\\":
                state = "double_escape"
            else:
                value += c
        elif state == "double_escape":
            state = "double"
            if c in '"\\`$':
                value += c
            elif c != "\n":
                value += "\\" + c
        elif state == "comment" and c in "\n\r":
            state = "pre_key"
    if state in ("pre_value", "value", "value_escape", "single", "double", "double_escape"):
        push()
    return found


def service_env(box: Sandbox, service: str = "k3s") -> dict[str, str]:
    """The environment systemd gives `service` from files: each EnvironmentFile= of its unit,
    then of its drop-ins (<unit>.d/*.conf, by name), in that order, a later file's value
    winning (systemd.exec); a `-` file may be missing."""
    unit = box.path(f"/etc/systemd/system/{service}.service")
    drop_ins = sorted(box.path(f"/etc/systemd/system/{service}.service.d").glob("*.conf"))
    env: dict[str, str] = {}
    for path in [unit, *drop_ins]:
        for line in path.read_text().splitlines():
            if not line.startswith("EnvironmentFile="):
                continue
            name = line.removeprefix("EnvironmentFile=")
            optional, name = name.startswith("-"), name.removeprefix("-")
            local = box.path(name)
            if not local.exists():
                assert optional, f"{path.name}: {name} is missing (systemd would not start {service})"
                continue
            env |= systemd_env_file(local.read_text())
    return env


def proxy_config(**proxy: Any) -> dict[str, Any]:
    return awkward_config(proxy={**copy.deepcopy(PROXY), **proxy})


def server(config: dict[str, Any]) -> tuple[Settings, Node]:
    s = settings_for(config, {"proxyCredentials"} if "proxy" in config["k3s"] else set())
    return s, s.servers[0]


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
def test_the_proxy_and_its_credentials_reach_k3s_from_our_0600_env_file(box: Sandbox) -> None:
    run(box, proxy_config())
    env = service_env(box)
    assert mode(box.path(OUR_ENV_FILE)) == 0o600
    assert box.path(DROP_IN).read_text().splitlines()[1:] == ["[Service]", f"EnvironmentFile={OUR_ENV_FILE}"]
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
    # The installer's env file keeps its other lines, and no copy of the proxy (nor its password).
    installer_env = box.path(ENV_FILE).read_text()
    assert "PROXY" not in installer_env.upper() and "Zq7" not in installer_env
    assert mode(box.path(ENV_FILE)) == 0o600


@needs_sandbox
def test_credentials_with_awkward_characters_reach_k3s_as_written(box: Sandbox) -> None:
    """Issue 24 item 1: a password with a backslash, two spaces, $, ', " and #, percent-encoded
    as a URL needs it (Go refuses the raw backslash, space and " there): K3s gets the URL
    exactly as the secret gives it, read by systemd from our file, and decoding its userinfo
    gives the password back."""
    run(box, proxy_config(), AWKWARD_CREDENTIALS)
    env = service_env(box)
    for name in ("HTTP_PROXY", "http_proxy"):
        assert env[name] == f"http://{AWKWARD_CREDENTIALS}@proxy.example.com:3128"
    url = urlsplit(env["HTTPS_PROXY"])
    assert url.username == "proxy-user" and url.password is not None
    assert unquote(url.password) == RAW_PASSWORD
    assert "r'd" in box.path(OUR_ENV_FILE).read_text()  # the quote is there, in systemd's quoting


@needs_sandbox
@pytest.mark.parametrize("password", ["pa\\ss", 'pa"ss', "pa ss", "p@ss/word", "pa%zz", "pa%4"])
def test_credentials_that_would_break_the_url_are_refused_without_showing_them(box: Sandbox, password: str) -> None:
    """Go's URL parser, which K3s and containerd read the proxy with, refuses a userinfo with a
    raw backslash, double quote or space, or a bad %-escape (net/url validUserinfo, unescape);
    @ / ? # would split the URL elsewhere. Before, a raw backslash was taken, and the
    installer's env file (`read` without -r) dropped it: K3s got `pass` for `pa\\ss`."""
    s, node = server(proxy_config())
    script = scripts.install_script(node, s.k3s, first_server=True)
    result = box.run(script, scripts.install_stdin(TOKEN, None, proxy_credentials=f"proxy-user:{password}"))
    assert result.returncode != 0
    assert "percent-encoded" in result.stderr and "proxyCredentials" in result.stderr
    assert password not in result.stderr
    assert not box.records("installer") and not box.path(scripts.TOKEN_FILE).exists()


@needs_sandbox
def test_without_credentials_the_urls_are_used_as_given(box: Sandbox) -> None:
    config = awkward_config(proxy={"httpsProxy": "http://proxy.example.com:3128"})
    run(box, config, credentials=None)
    env = service_env(box)
    assert env["HTTPS_PROXY"] == "http://proxy.example.com:3128"
    assert "HTTP_PROXY" not in env and "http_proxy" not in env  # not configured: not set


@needs_sandbox
def test_without_k3s_proxy_there_are_no_proxy_inputs_and_no_proxy_for_k3s(box: Sandbox) -> None:
    run(box, awkward_config(), credentials=None)
    s, node = server(awkward_config())
    parsed = parse_inputs(scripts.install_script(node, s.k3s, first_server=True).body)
    assert parsed is not None and not [k for k in parsed.variables if "PROXY" in k or k == "PREFLIGHT"]
    assert not [k for k in service_env(box) if k.upper().endswith("_PROXY")]
    assert not box.path(DROP_IN).exists() and not box.path(OUR_ENV_FILE).exists()


@needs_sandbox
def test_changing_the_proxy_restarts_k3s_and_removing_it_removes_our_files(box: Sandbox) -> None:
    def restarts(config: dict[str, Any], credentials: str | None = CREDENTIALS) -> int:
        before = len(box.systemctl("restart"))
        run(box, config, credentials)
        return len(box.systemctl("restart")) - before

    config = proxy_config()
    assert restarts(config) == 1  # first install
    assert restarts(config) == 0
    assert restarts(proxy_config(httpsProxy="http://proxy2.example.com:8080")) == 1  # a new URL
    assert service_env(box)["HTTPS_PROXY"] == f"http://{CREDENTIALS}@proxy2.example.com:8080"
    changed = proxy_config(httpsProxy="http://proxy2.example.com:8080")
    assert restarts(changed, "proxy-user:rotated-8c") == 1  # new credentials (stdin only)
    assert "rotated-8c" in service_env(box)["HTTPS_PROXY"]
    assert restarts(changed, "proxy-user:rotated-8c") == 0
    # k3s.proxy removed: our env file and drop-in go (and their directory), K3s restarts.
    assert restarts(awkward_config(), None) == 1
    assert not box.path(DROP_IN).exists() and not box.path(OUR_ENV_FILE).exists()
    assert not box.path(DROP_IN).parent.exists()
    assert not [k for k in service_env(box) if k.upper().endswith("_PROXY")]


@needs_sandbox
def test_the_uninstall_removes_the_drop_in(box: Sandbox) -> None:
    s, node = server(proxy_config())
    run(box, proxy_config())
    assert box.path(DROP_IN).exists()
    result = box.run(scripts.uninstall_script(node, s.k3s))
    assert result.returncode == 0, result.stderr
    assert not box.path(DROP_IN).parent.exists() and not box.path(OUR_ENV_FILE).exists()


def test_the_reader_here_reads_env_files_as_systemd_does() -> None:
    """Cases from systemd's env-file.c rules (test-env-file.c has more), so that the tests
    above read what systemd would: quotes, escapes, comments, blanks."""
    text = (
        '# comment\n; also\nA=plain value  \nB=\'single \\ $x "\'\nC="d\\"q\\\\b\\$s\\`t\\n"\n'
        "D=a\\ b\\\\c\nE='x''y'\nF=\"\"\nG=\n"
    )
    assert systemd_env_file(text) == {
        "A": "plain value",
        "B": 'single \\ $x "',
        "C": 'd"q\\b$s`t\\n',
        "D": "a b\\c",
        "E": "xy",
        "F": "",
        "G": "",
    }
    # dash's `export` quotes a ' as '"'"': systemd joins the parts (after a closing quote
    # another quoted part may follow), so that form keeps it.
    assert systemd_env_file("P='pw'\"'\"'x'\n") == {"P": "pw'x"}


def test_the_proxy_inputs_are_plain_urls_and_the_no_proxy_list() -> None:
    s, node = server(proxy_config())
    inputs = parse_inputs(scripts.install_script(node, s.k3s, first_server=True).body)
    assert inputs is not None
    assert inputs.variables["HTTP_PROXY_URL"] == PROXY["httpProxy"]
    assert inputs.variables["NO_PROXY_LIST"].endswith(",".join(PROXY["noProxy"]))
