"""Tier 1: k3s.proxy and the first-install checks on throwaway systemd hosts (containers),
with the STAND-IN installer and k3s (tests/real/standin/; the installer's env file imitates
install.sh create_env_file). hosts[0] is srv-1 (the init server), hosts[1] srv-2 (joins).
The clock check is not exercised here: the stand-in K3s serves plain HTTP, so the check's
HTTPS request gets no Date and it logs that clocks were not compared (sandbox tests cover it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import pytest

from components import scripts
from components.config import parse_settings
from components.settings import Settings
from tests.real.standin_k3s import INSTALL_SCRIPT, standin_binary
from tests.real.test_scripts_on_hosts import NODE_READY, TOKEN, V1, deliver_all, ssh, stage

pytestmark = [pytest.mark.real, pytest.mark.filterwarnings("ignore:.*etcd servers tolerate")]

# A password with a backslash, two spaces, $, ', " and #, percent-encoded as in any URL.
RAW_PASSWORD = "pw\\t1  x$y'z\"#@77c"
CREDENTIALS = "proxy-user:" + quote(RAW_PASSWORD, safe="$'")
PROXY = {"httpProxy": "http://proxy.invalid:3128", "httpsProxy": "http://proxy.invalid:3129", "noProxy": [".corp"]}
ENV_FILE = "/etc/systemd/system/k3s.service.env"  # the installer's
OUR_ENV_FILE = "/etc/rancher/k3s/k3s-rancher-proxy.env"
DROP_IN = "/etc/systemd/system/k3s.service.d/50-k3s-rancher-proxy.conf"


def settings_for(hosts: list[Any], tmp: Path, **k3s: Any) -> Settings:
    def node(host: Any, name: str) -> dict[str, Any]:
        return {"name": name, "address": host.address, "ssh": {"host": "127.0.0.1", "port": host.ssh_port}}

    raw = {
        "k3s": {
            "version": V1,
            "airgap": {"installScript": str(INSTALL_SCRIPT), "binary": str(standin_binary(tmp, V1))},
            "timeouts": {"nodeReady": NODE_READY, "clusterReady": 60, "drain": 10},
            "initServer": "srv-1",
            **k3s,
        },
        "servers": [node(hosts[0], "srv-1"), node(hosts[1], "srv-2")],
        "agents": [],
        "rancher": {"enabled": False},
    }
    secrets = {"sshPrivateKey", *(["proxyCredentials"] if "proxy" in k3s else [])}
    return parse_settings(raw, secrets, "tier1")


def install(host: Any, settings: Settings, index: int, credentials: str | None = None) -> tuple[int, str, str]:
    node = settings.servers[index]
    stage(host, node, settings)
    script = scripts.install_script(node, settings.k3s, first_server=index == 0)
    return ssh(host, script, scripts.install_stdin(TOKEN, None, proxy_credentials=credentials))


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[Any], Path]]:
    from tests.real.hosts import test_hosts

    with test_hosts(2, kubernetes=True) as started:
        deliver_all(started)  # what each host's `-scripts` step does before any node command
        yield list(started), tmp_path_factory.mktemp("first-install")


def test_the_proxy_reaches_k3s_from_our_env_file_through_a_drop_in(hosts: tuple[list[Any], Path]) -> None:
    """Issue 24 item 1, on real systemd: K3s's environment comes from our 0600 env file, named
    by a drop-in, read by systemd as written (the password holds a backslash, two spaces, $,
    ', " and #, percent-encoded as a URL needs them); the installer's env file, which its
    stand-in writes with install.sh's own `read`/`echo` pipeline, keeps no copy."""
    machines, tmp = hosts
    settings = settings_for(machines, tmp, proxy=PROXY)
    rc, out, err = install(machines[0], settings, 0, CREDENTIALS)
    assert rc == 0, err
    host = machines[0]
    assert host.exec(f"stat -c '%a %U' {OUR_ENV_FILE}").strip() == "600 root"
    assert host.exec("systemctl show -p DropInPaths --value k3s").split() == [DROP_IN]
    # systemd hands our file to K3s: the running service has the proxy in its environment.
    pid = host.exec("systemctl show -p MainPID --value k3s").strip()
    environ = dict(line.split("=", 1) for line in host.exec(f"tr '\\0' '\\n' < /proc/{pid}/environ").splitlines())
    assert environ["HTTPS_PROXY"] == environ["https_proxy"] == f"http://{CREDENTIALS}@proxy.invalid:3129"
    assert environ["HTTP_PROXY"] == f"http://{CREDENTIALS}@proxy.invalid:3128"
    password = urlsplit(environ["HTTPS_PROXY"]).password
    assert password is not None and unquote(password) == RAW_PASSWORD
    no_proxy = environ["NO_PROXY"].split(",")
    assert {machines[0].address, machines[1].address, "10.42.0.0/16", "10.43.0.0/16", ".svc", ".corp"} <= set(no_proxy)
    assert host.exec(f"stat -c '%a %U' {ENV_FILE}").strip() == "600 root"
    assert "proxy" not in host.exec(f"cat {ENV_FILE}").lower()
    assert CREDENTIALS not in out + err
    assert "proxy-user" not in host.exec("cat /etc/rancher/k3s/config.yaml /etc/systemd/system/k3s.service")


def test_preflight_refuses_a_busy_etcd_port_and_writes_nothing(hosts: tuple[list[Any], Path]) -> None:
    machines, tmp = hosts
    settings = settings_for(machines, tmp)
    host = machines[1]
    listener = (
        'nohup python3 -c \'import socket, time; s = socket.socket(); s.bind(("0.0.0.0", 2380)); '
        "s.listen(); time.sleep(120)' >/dev/null 2>&1 & echo $!"
    )
    pid = host.exec(listener).strip()
    try:
        host.exec(
            "for i in $(seq 50); do (ss -ltn 2>/dev/null || cat /proc/net/tcp) | grep -qi ':2380\\|:094C' && break; "
            "sleep 0.1; done"
        )
        rc, _, err = install(host, settings, 1)
        assert rc != 0
        assert "port(s) 2380/tcp already in use on srv-2" in err and "k3s.preflight false" in err
        assert host.exec("ls /etc/rancher/k3s/config.yaml /etc/systemd/system/k3s.service 2>/dev/null || true") == ""
    finally:
        host.exec(f"kill {pid} || true")


def test_preflight_refuses_a_k3s_someone_else_installed_and_preflight_false_takes_it_over(
    hosts: tuple[list[Any], Path],
) -> None:
    machines, tmp = hosts
    host = machines[1]
    binary = standin_binary(tmp, V1)
    rc, _, err = host.run(
        "sudo -n sh -c 'cat > /usr/local/bin/k3s && chmod 0755 /usr/local/bin/k3s'", stdin=binary.read_text()
    )
    assert rc == 0, err
    rc, _, err = install(host, settings_for(machines, tmp), 1)
    assert rc != 0
    assert "srv-2 already has a K3s that k3s-rancher did not install (found /usr/local/bin/k3s" in err
    assert host.exec("ls /etc/rancher/k3s/config.yaml 2>/dev/null || true") == ""
    rc, _, err = install(host, settings_for(machines, tmp, preflight=False), 1)
    assert rc == 0, err
    assert "K3s v1.33.5+k3s1 installed on srv-2" in err
