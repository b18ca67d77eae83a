"""The STAND-IN k3s (tests/real/standin/k3s) behaves like K3s where our scripts depend on it.
(Over 400 lines on purpose: one test per row of tests/real/README.md's "K3s stand-in" table,
which names this file as their home; they share the local-process Host harness below.)

Most behaviours run the stand-in as local processes (K3S_STANDIN_ROOT gives each "host" its
own /etc and /var, K3S_STANDIN_PORT its own API port); what needs two machines runs on
Docker test hosts. tests/real/README.md ("K3s stand-in") names the K3s source of each behaviour.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from importlib.machinery import SourceFileLoader
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from components import scripts
from components.config import parse_settings
from tests.real.standin_k3s import STANDIN, standin_binary

V1 = "v1.33.5+k3s1"
TOKEN = "standin-token-0123456789"
REFUSED = "bootstrap data already found and encrypted with different token"


def load_standin() -> ModuleType:
    loader = SourceFileLoader("k3s_standin", str(STANDIN / "k3s"))
    spec = importlib.util.spec_from_loader("k3s_standin", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


k3s = load_standin()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def until(condition: Callable[[], Any], timeout: float, message: str) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"not within {timeout}s: {message}")


class Host:
    """One local 'host': its own root directory; its server (if any) listens on `port`."""

    def __init__(self, root: Path, binary: Path, port: int, api: Path) -> None:
        self.root, self.binary, self.port, self.api = root, binary, port, api
        self.procs: list[subprocess.Popen[bytes]] = []
        (root / "etc/rancher/k3s").mkdir(parents=True, exist_ok=True)

    def env(self, **extra: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("K3S_", "NOTIFY_SOCKET"))}
        return {**base, "K3S_STANDIN_ROOT": str(self.root), "K3S_STANDIN_PORT": str(self.port),
                "K3S_STANDIN_API": str(self.api), **extra}  # fmt: skip

    def config(self, text: str, name: str = "config.yaml") -> None:
        path = self.root / "etc/rancher/k3s" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def start(self, role: str, *args: str, **env: str) -> subprocess.Popen[bytes]:
        log = open(self.root / f"{role}.log", "ab")  # noqa: SIM115 - the process keeps it
        proc = subprocess.Popen(
            [sys.executable, str(self.binary), role, *args], env=self.env(**env), stdout=log, stderr=log
        )
        self.procs.append(proc)
        return proc

    def log(self, role: str) -> str:
        path = self.root / f"{role}.log"
        return path.read_text() if path.exists() else ""

    def kubectl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(self.binary), "kubectl", *args], env=self.env(), capture_output=True, text=True,
            timeout=30,
        )  # fmt: skip

    def ready(self, name: str) -> bool:
        template = '{.status.conditions[?(@.type=="Ready")].status}'
        return self.kubectl("get", "node", name, "-o", f"jsonpath={template}").stdout == "True"

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=10)
        self.procs.clear()


@pytest.fixture(scope="module")
def real_api() -> Iterator[Any]:
    """One real control plane for this module's local 'hosts' (tests/real/host_api.py): they
    reach it through its socket directory (K3S_STANDIN_API)."""
    from tests.real.host_api import host_api

    with host_api() as api:
        yield api


@pytest.fixture
def hosts(tmp_path: Path, real_api: Any) -> Iterator[Callable[[str], Host]]:
    binary = standin_binary(tmp_path, V1)
    made: list[Host] = []

    def make(name: str) -> Host:
        made.append(Host(tmp_path / name, binary, free_port(), real_api.directory))
        return made[-1]

    yield make
    for host in made:
        host.stop()
    # The next test's cluster starts empty: the Nodes go, finalizers first (the member
    # controller stopped with its server).
    names = real_api.kubectl("get", "nodes", "-o", "name").split()
    for name in names:
        real_api.kubectl("patch", name, "--type=merge", "-p", '{"metadata":{"finalizers":null}}', check=False)
    if names:
        real_api.kubectl("delete", *names, "--wait=false", check=False)


def server_config(host: Host, name: str, extra: str = "") -> None:
    host.config(f"node-name: {name}\ntoken: {TOKEN}\ncluster-init: true\n{extra}")


def agent_config(host: Host, server: Host, name: str, extra: str = "") -> None:
    host.config(f"node-name: {name}\nserver: https://127.0.0.1:{server.port}\n{extra}")


class NotifySocket:
    """What systemd binds for a Type=notify unit: a datagram socket named by NOTIFY_SOCKET."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.address = address

    def receive(self, timeout: float) -> bytes | None:
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(256)
        except TimeoutError:
            return None


# --- config files -----------------------------------------------------------------------------

CONFIG_CORPUS = [
    "cluster-init: true\nnode-name: srv-1\n",
    "tls-san:\n- 10.0.0.1\n- 'api.example.com'\n  # a comment\n- \"quoted # not a comment\"\n",
    "tls-san:\n  - a\n  - b\ndisable: [traefik, 'servicelb', \"metrics-server\"]\n",
    "node-label: []\nnode-taint:\n- dedicated=x:NoSchedule\nflags: {a: 1, b: [x, 'y z']}\n",
    "write-kubeconfig-mode: '0600'\nmode: 0644\nport: 6443\nenabled: on\ndisabled: OFF\nnothing:\nnull-value: ~\n",
    "server: https://10.0.0.1:6443 # trailing comment\ntoken: \"a\\\"b\"\nsingle: 'it''s'\n",
    "kubelet-arg:\n- eviction-hard=memory.available<100Mi,nodefs.available<10%\n- 'max-pods=200'\n",
    "---\nnested:\n  key: value\n  list:\n  - 1\n  - two\n",
    "items:\n- name: a\n  value: 1\n- name: b\n  value: [2, 3]\n",
    "text: |\n  line one\n  line two\nfolded: >\n  a\n  b\n",
]


@pytest.mark.parametrize("text", CONFIG_CORPUS)
def test_config_yaml_is_read_as_full_yaml_like_a_yaml_1_1_parser(text: str) -> None:
    assert k3s.parse_yaml(text) == yaml.safe_load(text)


def test_the_config_our_scripts_write_reads_back_as_written() -> None:
    raw = {
        "k3s": {"version": V1, "serverConfig": {"disable": ["traefik"], "tls-san": ["x.example.com"]}},
        "servers": [{"name": "srv-1", "address": "10.0.0.1", "ssh": {"host": "10.0.0.1"}}],
        "agents": [],
        "rancher": {"enabled": False},
    }
    settings = parse_settings(raw, {"sshPrivateKey"}, "t")
    data = scripts.node_config(settings.servers[0], settings.k3s, first_server=True)
    assert k3s.parse_yaml(scripts.managed_yaml(data)) == data


def test_yaml_v2_differences_from_pyyaml_are_kept() -> None:
    # yaml.v2 (what K3s uses) reads y/n as booleans; the flag then says "true"/"false".
    assert k3s.parse_yaml("a: y\nb: N\n") == {"a": True, "b": False}
    assert k3s.go_string(True) == "true" and k3s.go_string(None) == "" and k3s.go_string(384) == "384"


@pytest.mark.parametrize("text", ["a: 'open\n", "a: [1, 2\n", "a: 1\n  b: 2\n", "a:\n\t- x\n", "just text\nmore: 1\n"])
def test_malformed_config_is_an_error_not_a_guess(text: str) -> None:
    with pytest.raises(k3s.YAMLError):
        k3s.parse_yaml(text)


def test_drop_ins_merge_in_name_order_and_plus_keys_append(tmp_path: Path) -> None:
    base = tmp_path / "config.yaml"
    base.write_text("node-label: [a=1]\ntls-san: [x.example]\nnode-name: one\ncluster-init: true\n")
    (tmp_path / "config.yaml.d").mkdir()
    (tmp_path / "config.yaml.d/20-b.yml").write_text("node-name: three\ntls-san+: [z.example]\n")
    (tmp_path / "config.yaml.d/10-a.yaml").write_text("node-label+:\n- b=2\ntls-san: [y.example]\nnode-name: two\n")
    (tmp_path / "config.yaml.d/30-ignored.txt").write_text("node-name: never\n")
    assert k3s.config_file_args(str(base)) == [
        "--node-label=a=1", "--node-label=b=2", "--tls-san=y.example", "--tls-san=z.example", "--node-name=three",
        "--cluster-init=true",
    ]  # fmt: skip


def test_command_line_wins_over_the_file_and_the_file_over_k3s_environment(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("server: https://file:6443\nnode-name: from-file\nnode-label: [a=file]\ntoken-file: /t\n")
    env = {"K3S_CONFIG_FILE": str(config), "K3S_URL": "https://env:6443", "K3S_TOKEN": "env-token",
           "K3S_NODE_NAME": "from-env", "K3S_DATASTORE_ENDPOINT": "mysql://db"}  # fmt: skip
    options = k3s.resolve_options(["--node-name", "from-cli", "--node-label=b=cli"], env)
    assert options["node-name"] == "from-cli"
    assert options["server"] == "https://file:6443"
    assert options["node-label"] == ["a=file", "b=cli"]  # lists: file first, then the command line
    assert options["token"] == "env-token" and options["token-file"] == "/t"
    assert options["datastore-endpoint"] == "mysql://db"
    assert k3s.parse_flags(["-t", "short", "-s", "https://a:6443"]) == {"token": "short", "server": "https://a:6443"}


def test_k3s_config_file_beats_the_config_flag(tmp_path: Path) -> None:
    """pkg/configfilearg/parser.go findConfigFileFlag: $K3S_CONFIG_FILE first, then
    --config/-c on the command line, then /etc/rancher/k3s/config.yaml."""
    from_env, from_flag = tmp_path / "env.yaml", tmp_path / "flag.yaml"
    from_env.write_text("node-name: from-env-file\n")
    from_flag.write_text("node-name: from-flag-file\n")
    env = {"K3S_CONFIG_FILE": str(from_env)}
    for flag in (["--config", str(from_flag)], [f"--config={from_flag}"], ["-c", str(from_flag)]):
        assert k3s.resolve_options(flag, env)["node-name"] == "from-env-file", flag
        assert k3s.resolve_options(flag, {})["node-name"] == "from-flag-file", flag


def test_token_file_replaces_token_and_full_tokens_count_by_their_password(tmp_path: Path) -> None:
    (tmp_path / "t").write_text("from-file\n")
    assert k3s.read_token({"token": "flag", "token-file": str(tmp_path / "t")}) == "from-file"
    assert k3s.read_token({"token": "K10" + "a" * 64 + "::server:secret"}) == "secret"


# --- sd_notify and readiness --------------------------------------------------------------------


@pytest.mark.parametrize("abstract", [False, True])
def test_sd_notify_sends_ready_to_the_socket_systemd_names(tmp_path: Path, abstract: bool, monkeypatch: Any) -> None:
    address = f"@k3sr-test-{uuid.uuid4().hex}" if abstract else str(tmp_path / "notify")
    listener = NotifySocket(address)
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    assert k3s.sd_notify() is True
    assert listener.receive(2) == b"READY=1\n"
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert k3s.sd_notify() is False


def test_server_reports_ready_only_once_its_api_answers(hosts: Callable[[str], Host], tmp_path: Path) -> None:
    srv = hosts("srv")
    server_config(srv, "srv-1")
    notify = NotifySocket(str(tmp_path / "srv.notify"))
    srv.start("server", NOTIFY_SOCKET=notify.address)
    assert notify.receive(20) == b"READY=1\n"
    assert srv.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"  # no waiting after READY
    until(lambda: srv.ready("srv-1"), 15, "the server's own node is Ready")
    assert (srv.root / "etc/rancher/k3s/k3s.yaml").stat().st_mode & 0o777 == 0o600
    assert "K10" in (srv.root / "var/lib/rancher/k3s/server/token").read_text()


def test_agents_never_report_ready_with_a_wrong_token_or_an_unreachable_server(
    hosts: Callable[[str], Host], tmp_path: Path
) -> None:
    srv, wrong, lost, good = hosts("srv"), hosts("wrong"), hosts("lost"), hosts("good")
    server_config(srv, "srv-1")
    srv.start("server")
    until(lambda: srv.ready("srv-1"), 20, "server up")
    agent_config(wrong, srv, "agt-wrong")
    lost.config(f"node-name: agt-lost\nserver: https://127.0.0.1:{free_port()}\n")
    agent_config(good, srv, "agt-good")
    sockets = {h: NotifySocket(str(tmp_path / f"{h.root.name}.notify")) for h in (wrong, lost, good)}
    wrong.start("agent", K3S_TOKEN="not-the-token", NOTIFY_SOCKET=sockets[wrong].address)
    lost.start("agent", K3S_TOKEN=TOKEN, NOTIFY_SOCKET=sockets[lost].address)
    good.start("agent", K3S_TOKEN=TOKEN, NOTIFY_SOCKET=sockets[good].address)
    assert sockets[good].receive(20) == b"READY=1\n"
    # READY=1 comes once the Node is registered (pkg/agent/run.go); Ready is the kubelet's
    # (here kwok's) first status update, a moment later.
    assert srv.kubectl("get", "node", "agt-good").returncode == 0
    until(lambda: srv.ready("agt-good"), 20, "agt-good Ready")
    assert sockets[wrong].receive(7) is None and sockets[lost].receive(1) is None
    assert all(proc.poll() is None for proc in wrong.procs + lost.procs)  # still retrying, as K3s does
    assert (
        "Waiting to retrieve agent configuration; server is not ready: failed to retrieve configuration from "
        f"server: https://127.0.0.1:{srv.port}/v1-k3s/config: 401 Unauthorized"
    ) in wrong.log("agent")
    assert "failed to get CA certs" in lost.log("agent") and "connect: connection refused" in lost.log("agent")
    assert srv.kubectl("get", "node", "agt-wrong").returncode == 1
    # Only a node that joined holds the kubelet client certificate (the install's token check
    # tells "joined with another token" from "never joined" by it).
    cert = "var/lib/rancher/k3s/agent/client-kubelet.crt"
    assert (good.root / cert).is_file() and (good.root / cert).stat().st_mode & 0o777 == 0o600
    assert not (wrong.root / cert).exists() and not (lost.root / cert).exists()


def test_a_joining_server_with_no_first_server_never_reports_ready(
    hosts: Callable[[str], Host], tmp_path: Path
) -> None:
    joiner = hosts("joiner")
    joiner.config(f"node-name: srv-2\ntoken: {TOKEN}\nserver: https://127.0.0.1:{free_port()}\n")
    notify = NotifySocket(str(tmp_path / "notify"))
    proc = joiner.start("server", NOTIFY_SOCKET=notify.address)
    assert notify.receive(6) is None
    assert proc.poll() is None and "connect: connection refused" in joiner.log("server")
    assert joiner.kubectl("get", "--raw", "/readyz").returncode == 1


# --- tokens and data ----------------------------------------------------------------------------


def test_a_server_with_data_refuses_a_different_token_and_exits(hosts: Callable[[str], Host], tmp_path: Path) -> None:
    srv = hosts("srv")
    server_config(srv, "srv-1")
    srv.start("server")
    until(lambda: srv.ready("srv-1"), 20, "server up")
    srv.stop()
    srv.config("node-name: srv-1\ntoken: another-token\ncluster-init: true\n")
    notify = NotifySocket(str(tmp_path / "notify"))
    proc = srv.start("server", NOTIFY_SOCKET=notify.address)
    assert proc.wait(timeout=20) == 1
    assert REFUSED in srv.log("server") and "level=fatal" in srv.log("server")
    assert notify.receive(0.5) is None
    server_config(srv, "srv-1")  # the old token: the data is used again
    srv.start("server")
    until(lambda: srv.ready("srv-1"), 20, "server with its own token")


def test_cluster_init_on_existing_data_keeps_that_cluster(hosts: Callable[[str], Host]) -> None:
    srv, agt = hosts("srv"), hosts("agt")
    server_config(srv, "srv-1")
    srv.start("server")
    agent_config(agt, srv, "agt-1")
    agt.start("agent", K3S_TOKEN=TOKEN)
    until(lambda: srv.ready("agt-1"), 20, "agent joined")
    srv.stop()
    srv.start("server")  # cluster-init again: the data on disk wins, no new cluster
    until(lambda: srv.ready("srv-1"), 20, "server back")
    assert "Starting etcd for existing cluster member" in srv.log("server")
    assert srv.kubectl("get", "node", "agt-1").returncode == 0


def test_a_joined_server_stays_with_its_cluster_whatever_its_config_says(hosts: Callable[[str], Host]) -> None:
    first, other, joiner = hosts("first"), hosts("other"), hosts("joiner")
    server_config(first, "srv-1")
    first.start("server")
    other.config(f"node-name: other-1\ntoken: {TOKEN}\ncluster-init: true\n")
    other.start("server")
    joiner.config(f"node-name: srv-2\ntoken: {TOKEN}\nserver: https://127.0.0.1:{first.port}\n")
    joiner.start("server")
    until(lambda: first.ready("srv-2"), 20, "joining server registered")
    assert joiner.kubectl("get", "node", "srv-1").returncode == 0  # its API serves the cluster's nodes
    joiner.stop()
    # Told to initialise a cluster (or to join another): its etcd member data wins.
    joiner.config(f"node-name: srv-2\ntoken: {TOKEN}\ncluster-init: true\nserver: https://127.0.0.1:{other.port}\n")
    joiner.start("server")
    until(lambda: joiner.kubectl("get", "--raw", "/readyz").returncode == 0, 20, "joiner back")
    assert joiner.kubectl("get", "node", "srv-1").returncode == 0
    # (Both clusters' Nodes are in this module's one real API, so a Node list cannot tell them
    # apart.)
    joiner.stop()
    joiner.config(f"node-name: srv-2\ntoken: wrong-{TOKEN}\nserver: https://127.0.0.1:{first.port}\n")
    assert joiner.start("server").wait(timeout=20) == 1
    assert REFUSED in joiner.log("server")


def test_token_rotate_changes_the_token_servers_and_agents_must_use(hosts: Callable[[str], Host]) -> None:
    srv, agt = hosts("srv"), hosts("agt")
    server_config(srv, "srv-1")
    srv.start("server")
    until(lambda: srv.ready("srv-1"), 20, "server up")
    rotate = subprocess.run(
        [sys.executable, str(srv.binary), "token", "rotate", "--token", TOKEN, "--new-token", "new-token-0123"],
        env=srv.env(), capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert rotate.returncode == 0, rotate.stderr
    assert "Token rotated" in rotate.stdout
    agent_config(agt, srv, "agt-1")
    agt.start("agent", K3S_TOKEN=TOKEN)
    until(lambda: "401 Unauthorized" in agt.log("agent"), 15, "the old token refused")
    srv.stop()
    assert srv.start("server").wait(timeout=20) == 1  # config still has the old token
    srv.config("node-name: srv-1\ntoken: new-token-0123\ncluster-init: true\n")
    srv.start("server")
    until(lambda: srv.ready("srv-1"), 20, "server up with the new token")


def snapshot_save(host: Host, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, str(host.binary), "etcd-snapshot", "save", *args]
    return subprocess.run(argv, env=host.env(), capture_output=True, text=True, timeout=30)


def test_etcd_snapshot_save_asks_the_running_server_which_writes_name_node_time(hosts: Callable[[str], Host]) -> None:
    """pkg/cli/etcdsnapshot/etcd_snapshot.go save: the CLI reads the token from
    <data-dir>/server/token (the config's `token` is no etcd-snapshot flag), fetches
    https://127.0.0.1:6443/cacerts and POSTs /db/snapshot; the server (pkg/etcd/snapshot.go
    snapshot) writes <dir>/<name>-<its node name>-<unix time>, creating only the default dir."""
    srv = hosts("srv")
    server_config(srv, "srv-1", "etcd-snapshot-dir: /var/snaps\n")
    early = snapshot_save(srv, "--name", "early")  # never started: no server/token
    assert early.returncode == 1 and "server/token: no such file or directory" in early.stderr, early.stderr
    srv.start("server")
    until(lambda: srv.ready("srv-1"), 20, "server up")
    missing = snapshot_save(srv, "--name", "nodir")  # a non-default dir is the user's to make
    assert missing.returncode == 1, missing.stderr
    error_id = re.search(
        r"see server log for details: Internal error occurred: (etcd-snapshot error ID \d{5})", missing.stderr
    )
    assert error_id, missing.stderr  # the reason is in the server's log only (SendErrorWithID)
    assert f"{error_id[1]}: failed to get etcd-snapshot-dir: stat {srv.root}/var/snaps: no such file" in srv.log(
        "server"
    )
    (srv.root / "var/snaps").mkdir(mode=0o700)
    before = int(time.time())
    result = snapshot_save(srv, "--name", "pre-upgrade-a-to-b")
    assert result.returncode == 0, result.stderr
    assert "Unknown flag --token found in config.yaml, skipping" in result.stderr
    (snapshot,) = (srv.root / "var/snaps").iterdir()
    prefix, _, stamp = snapshot.name.rpartition("-")
    assert prefix == "pre-upgrade-a-to-b-srv-1" and before <= int(stamp) <= time.time()
    assert f"Snapshot {snapshot.name} saved." in result.stderr
    assert snapshot.stat().st_mode & 0o777 == 0o600
    assert "srv-1" in snapshot.read_text()  # the datastore's content
    assert f"Saving etcd snapshot to {srv.root}/var/snaps/{snapshot.name}" in srv.log("server")  # the server wrote it
    # K3s stopped: the CLI cannot reach it and nothing is written.
    srv.stop()
    down = snapshot_save(srv, "--name", "down")
    assert down.returncode == 1, down.stderr
    assert f'failed to get CA certs: Get \\"https://127.0.0.1:{srv.port}/cacerts\\"' in down.stderr
    assert "connect: connection refused" in down.stderr
    assert [p.name for p in (srv.root / "var/snaps").iterdir()] == [snapshot.name]


def test_etcd_snapshot_save_needs_embedded_etcd(hosts: Callable[[str], Host]) -> None:
    """pkg/cluster/managed.go handlerNoEtcd: a server without a managed etcd answers every
    /db/ path with 400 "etcd datastore disabled", which the CLI prints after "see server log
    for details" (wrapServerError)."""
    srv = hosts("srv")
    srv.config(f"node-name: srv-1\ntoken: {TOKEN}\n")  # sqlite
    srv.start("server")
    until(lambda: srv.ready("srv-1"), 20, "server up")
    result = snapshot_save(srv)
    assert result.returncode == 1
    assert "see server log for details: etcd datastore disabled" in result.stderr, result.stderr
    assert not (srv.root / "var/lib/rancher/k3s/server/db/snapshots").exists()


# --- registration, labels, taints ---------------------------------------------------------------


def test_a_node_registers_once_per_start_with_its_labels_and_taints(hosts: Callable[[str], Host]) -> None:
    srv, agt = hosts("srv"), hosts("agt")
    server_config(srv, "srv-1")
    srv.start("server")
    agent_config(agt, srv, "agt-1", "node-label: [pool=a]\nnode-taint: ['dedicated=x:NoSchedule']\n")
    agt.start("agent", K3S_TOKEN=TOKEN)
    until(lambda: srv.ready("agt-1"), 20, "agent registered")
    get = srv.kubectl("get", "node", "agt-1", "-o", "jsonpath={.metadata.labels.pool} {.spec.taints[0].key}")
    assert get.stdout == "a dedicated"
    # Changed through the API: a restart brings back config labels (K3s merges them at every
    # start) but never a taint; a config change of taints does nothing to an existing Node.
    assert srv.kubectl("label", "node", "agt-1", "--overwrite", "pool=api").returncode == 0
    assert srv.kubectl("taint", "node", "agt-1", "dedicated:NoSchedule-").returncode == 0
    agt.stop()
    agent_config(agt, srv, "agt-1", "node-label: [pool=a]\nnode-taint: ['other=y:NoExecute']\n")
    agt.start("agent", K3S_TOKEN=TOKEN)
    until(lambda: agt.log("agent").count("previously registered") == 1, 20, "agent restarted")
    get = srv.kubectl("get", "node", "agt-1", "-o", "jsonpath={.metadata.labels.pool}|{.spec.taints}")
    assert get.stdout == "a|"  # the real API drops an empty taint list
    # Deleted while it runs: it stays deleted (registration happened at start).
    assert srv.kubectl("delete", "node", "agt-1").stdout.strip() == 'node "agt-1" deleted'
    time.sleep(6)
    assert srv.kubectl("get", "node", "agt-1").returncode == 1
    agt.stop()
    agt.start("agent", K3S_TOKEN=TOKEN)  # a new start registers it again, taints from the config
    until(lambda: srv.ready("agt-1"), 20, "registered again")
    assert srv.kubectl("get", "node", "agt-1", "-o", "jsonpath={.spec.taints[0].key}").stdout == "other"


def test_a_second_host_with_the_same_node_name_is_rejected_until_the_node_is_deleted(
    hosts: Callable[[str], Host],
) -> None:
    srv, first, second = hosts("srv"), hosts("first"), hosts("second")
    server_config(srv, "srv-1")
    srv.start("server")
    agent_config(first, srv, "agt-1")
    first.start("agent", K3S_TOKEN=TOKEN)
    until(lambda: srv.ready("agt-1"), 20, "first agt-1")
    password = first.root / "etc/rancher/node/password"
    assert password.stat().st_mode & 0o777 == 0o600
    assert srv.kubectl("get", "secret", "-n", "kube-system", "agt-1.node-password.k3s").returncode == 0
    agent_config(second, srv, "agt-1")
    second.start("agent", K3S_TOKEN=TOKEN)
    until(lambda: "Node password rejected" in second.log("agent"), 15, "duplicate rejected")
    assert (
        "duplicate hostname or contents of '" + str(second.root) + "/etc/rancher/node/password' may not match "
        "server node-passwd entry"
    ) in second.log("agent")
    first.stop()  # the first host's node password survives a restart: it joins again
    first.start("agent", K3S_TOKEN=TOKEN)
    until(lambda: first.log("agent").count("previously registered") == 1, 20, "first host back")
    assert srv.kubectl("delete", "node", "agt-1").returncode == 0  # also deletes the node password
    until(lambda: "Successfully registered node agt-1" in second.log("agent"), 20, "second host registered")


def test_the_node_password_appears_only_once_the_token_is_accepted(hosts: Callable[[str], Host]) -> None:
    """pkg/agent/config/config.go get: the agent asks for its config (/v1-k3s/config, which
    needs the token) before getNodeNamedCrt calls ensureNodePassword; a refused token leaves
    no /etc/rancher/node/password, and nothing else of a join."""
    srv, refused, lost = hosts("srv"), hosts("refused"), hosts("lost")
    server_config(srv, "srv-1")
    srv.start("server")
    until(lambda: srv.ready("srv-1"), 20, "server up")
    agent_config(refused, srv, "agt-1")
    refused.start("agent", K3S_TOKEN="not-the-token")
    lost.config(f"node-name: agt-2\nserver: https://127.0.0.1:{free_port()}\n")
    lost.start("agent", K3S_TOKEN=TOKEN)
    until(lambda: refused.log("agent").count("401 Unauthorized") >= 2, 20, "the token refused twice")
    until(lambda: "connection refused" in lost.log("agent"), 10, "the lost agent retrying")
    for host in (refused, lost):
        assert not (host.root / "etc/rancher/node/password").exists(), host.root.name
    assert (
        "Waiting to retrieve agent configuration; server is not ready: failed to retrieve configuration from "
        f"server: https://127.0.0.1:{srv.port}/v1-k3s/config: 401 Unauthorized"
    ) in refused.log("agent")
    # The same host with the right token: its password is made at that join, 0600.
    refused.stop()
    refused.start("agent", K3S_TOKEN=TOKEN)
    until(lambda: srv.ready("agt-1"), 20, "agt-1 joined with the right token")
    assert (refused.root / "etc/rancher/node/password").stat().st_mode & 0o777 == 0o600


# --- kubectl ------------------------------------------------------------------------------------


def test_k3s_kubectl_is_the_real_kubectl_on_k3s_yaml(hosts: Callable[[str], Host]) -> None:
    """`k3s kubectl` runs the real kubectl (v1.33.13, from the control-plane build) with
    /etc/rancher/k3s/k3s.yaml when neither KUBECONFIG nor --kubeconfig is given (K3s's
    pkg/kubectl/main.go); the stand-in's own kubectl imitation is gone (issue 26)."""
    srv = hosts("srv")
    server_config(srv, "srv-1")
    srv.start("server")
    until(lambda: srv.ready("srv-1"), 20, "server up")
    version = srv.kubectl("version", "--client", "-o", "json")
    assert json.loads(version.stdout)["clientVersion"]["gitVersion"] == "v1.33.13", version.stderr
    missing = srv.kubectl("get", "node", "nope")
    assert (missing.returncode, missing.stderr.strip()) == (1, 'Error from server (NotFound): nodes "nope" not found')
    assert srv.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"  # through 6443 to the real API
    srv.stop()
    down = srv.kubectl("get", "--raw", "/readyz")
    assert down.returncode == 1
    assert f"The connection to the server 127.0.0.1:{srv.port} was refused" in down.stderr, down.stderr


def test_version_is_the_installed_version(hosts: Callable[[str], Host]) -> None:
    srv = hosts("srv")
    out = subprocess.run([sys.executable, str(srv.binary), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines()[0] == f"k3s version {V1} (stand-in)"
    server_config(srv, "srv-1")
    srv.start("server")
    until(lambda: srv.ready("srv-1"), 20, "server up")
    assert srv.kubectl("get", "node", "srv-1", "-o", "jsonpath={.status.nodeInfo.kubeletVersion}").stdout == V1


# --- on Docker test hosts: joins across machines --------------------------------------------------


@pytest.fixture(scope="module")
def docker_hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Any]]:
    from tests.real.hosts import test_hosts

    binary = standin_binary(tmp_path_factory.mktemp("standin"), V1).read_text()
    with test_hosts(3, kubernetes=True) as group:
        for host in group:
            host.exec("cat > /usr/local/bin/k3s && chmod 0755 /usr/local/bin/k3s && mkdir -p /etc/rancher/k3s",
                      stdin=binary)  # fmt: skip
        yield list(group)


def start_on(host: Any, role: str, config: str, log: str) -> None:
    """Run `k3s <role>` in the background with its own config file (two may share a host)."""
    host.exec(f"cat > /etc/rancher/k3s/{log}.yaml", stdin=config)
    host.exec(
        f"nohup /usr/local/bin/k3s {role} --config /etc/rancher/k3s/{log}.yaml >> /var/log/{log}.log 2>&1 < /dev/null &"
    )


def node_state(srv: Any, name: str) -> str:
    """The Node's Ready status as the server's k3s.yaml (admin) reads it, or kubectl's error."""
    template = '{.status.conditions[?(@.type=="Ready")].status}'
    return str(srv.exec(f"k3s kubectl get node {name} -o 'jsonpath={template}' 2>&1 || true")).strip()


@pytest.fixture(scope="module")
def joined(docker_hosts: list[Any]) -> list[Any]:
    """srv-1 (cluster-init) on the first host, agt-1 joined from the second across the Docker
    network and Ready; the third host is left for intruders."""
    srv, agt, _ = docker_hosts
    start_on(srv, "server", f"node-name: srv-1\ntoken: {TOKEN}\ncluster-init: true\n", "server")
    start_on(agt, "agent", f"node-name: agt-1\ntoken: {TOKEN}\nserver: https://{srv.address}:6443\n", "agent")
    until(lambda: node_state(srv, "agt-1") == "True", 30, "agt-1 joined across the Docker network")
    until(lambda: node_state(srv, "srv-1") == "True", 30, "srv-1 Ready")
    return docker_hosts


@pytest.mark.real
def test_on_hosts_agents_join_over_the_network_and_duplicates_or_wrong_tokens_do_not(joined: list[Any]) -> None:
    srv, _, intruder = joined
    join = f"server: https://{srv.address}:6443\n"
    start_on(intruder, "agent", f"node-name: agt-2\ntoken: wrong\n{join}", "wrong")
    start_on(intruder, "agent", f"node-name: agt-1\ntoken: {TOKEN}\n{join}", "duplicate")
    until(lambda: "401 Unauthorized" in intruder.exec("cat /var/log/wrong.log"), 20, "wrong token refused")
    until(lambda: "Node password rejected" in intruder.exec("cat /var/log/duplicate.log"), 20, "duplicate refused")
    assert node_state(srv, "agt-2") == 'Error from server (NotFound): nodes "agt-2" not found'
    assert intruder.exec("stat -c %a /etc/rancher/node/password").strip() == "600"


KUBELET_KUBECONFIG = "/var/lib/rancher/k3s/agent/kubelet.kubeconfig"


@pytest.mark.real
def test_on_hosts_the_kubelet_kubeconfig_holds_the_nodes_own_certificate(joined: list[Any]) -> None:
    """K3s's agent/kubelet.kubeconfig names agent/client-kubelet.crt and .key: CN
    system:node:<node>, O system:nodes, which the server's supervisor signs with the client CA
    (pkg/server/handlers/handlers.go ClientKubeletCert). With it a node reads, cordons and
    uncordons its own Node only (the Node authorizer and NodeRestriction of the real API
    server); kwok, the kubelet's stand-in, keeps the admin credentials in its own kubeconfig."""
    srv, agt, _ = joined
    cert = "/var/lib/rancher/k3s/agent/client-kubelet.crt"
    subject = agt.exec(f"openssl x509 -in {cert} -noout -subject -nameopt RFC2253").strip()
    assert subject == "subject=CN=system:node:agt-1,O=system:nodes", subject
    assert agt.exec(f"openssl verify -CAfile /var/lib/k3s-standin-api/ca.crt {cert}").strip() == f"{cert}: OK"
    modes = agt.exec(f"stat -c %a {cert} /var/lib/rancher/k3s/agent/client-kubelet.key {KUBELET_KUBECONFIG}")
    assert modes.split() == ["600", "600", "600"]
    assert "admin.crt" in agt.exec("cat /var/lib/rancher/k3s/agent/kwok/kubeconfig")

    def as_node(host: Any, args: str) -> tuple[int, str]:
        rc, out, err = host.exec_result(f"k3s kubectl --kubeconfig {KUBELET_KUBECONFIG} {args}", timeout=60)
        return rc, out + err

    assert as_node(agt, "get node agt-1 -o name") == (0, "node/agt-1\n")
    assert as_node(srv, "get node srv-1 -o name") == (0, "node/srv-1\n")  # a server's kubelet too
    try:
        assert as_node(agt, "cordon agt-1")[0] == 0
        assert srv.exec("k3s kubectl get node agt-1 -o jsonpath={.spec.unschedulable}") == "true"
        assert as_node(agt, "uncordon agt-1")[0] == 0
        assert srv.exec("k3s kubectl get node agt-1 -o jsonpath={.spec.unschedulable}") == ""
        for args, reason in (
            ("get node srv-1", "only its own Node object"),
            ("delete node agt-1 --wait=false", 'cannot delete resource "nodes"'),
        ):
            rc, out = as_node(agt, args)
            assert rc != 0 and "Forbidden" in out and reason in out, (args, out)
    finally:
        srv.exec("k3s kubectl uncordon agt-1")
    assert node_state(srv, "agt-1") == "True"  # kwok still runs the Node, with its own kubeconfig


# --- under systemd: a Type=notify unit as the K3s installer writes it -----------------------------

UNIT = """[Unit]
Description=Lightweight Kubernetes (STAND-IN unit, as install.sh writes it)
Wants=network-online.target
After=network-online.target

[Service]
Type=notify
EnvironmentFile=-/etc/systemd/system/{service}.service.env
KillMode=process
Delegate=yes
TimeoutStartSec=0
Restart=always
RestartSec=5s
ExecStart=/usr/local/bin/k3s {role}

[Install]
WantedBy=multi-user.target
"""


def install_unit(host: Any, role: str, env: str, config: str) -> str:
    service = "k3s" if role == "server" else "k3s-agent"
    host.exec(f"cat > /etc/systemd/system/{service}.service", stdin=UNIT.format(service=service, role=role))
    host.exec(f"umask 077; cat > /etc/systemd/system/{service}.service.env", stdin=env)
    host.exec("cat > /etc/rancher/k3s/config.yaml", stdin=config)
    host.exec("systemctl daemon-reload")
    return service


def timed(host: Any, command: str) -> tuple[int, float]:
    started = time.monotonic()
    rc = host.exec_result(command, timeout=60)[0]
    return rc, time.monotonic() - started


@pytest.mark.real
def test_under_systemd_restart_returns_only_when_k3s_is_ready(docker_hosts: list[Any]) -> None:
    from tests.real.hosts import test_hosts

    with test_hosts(2, kubernetes=True) as (srv, agt):
        for host in (srv, agt):
            host.exec("cat > /usr/local/bin/k3s && chmod 0755 /usr/local/bin/k3s && mkdir -p /etc/rancher/k3s",
                      stdin=docker_hosts[0].exec("cat /usr/local/bin/k3s"))  # fmt: skip
        install_unit(srv, "server", f"K3S_TOKEN={TOKEN}\n", "node-name: srv-1\ncluster-init: true\n")
        rc, _ = timed(srv, "timeout 30 systemctl restart k3s")
        assert rc == 0
        assert srv.exec("k3s kubectl get --raw /readyz").strip() == "ok"  # ready when restart returned

        join = f"K3S_URL=https://{srv.address}:6443\nK3S_TOKEN=not-the-token\n"
        install_unit(agt, "agent", join, "node-name: agt-1\n")
        rc, seconds = timed(agt, "timeout 12 systemctl restart k3s-agent")
        assert rc == 124 and seconds >= 11  # blocked: TimeoutStartSec=0 and no READY
        assert agt.exec_result("systemctl is-active k3s-agent")[1].strip() == "activating"
        assert "401 Unauthorized" in agt.exec("journalctl -u k3s-agent --no-pager")

        agt.exec(f"umask 077; printf 'K3S_URL=https://{srv.address}:6443\\nK3S_TOKEN={TOKEN}\\n' "
                 "> /etc/systemd/system/k3s-agent.service.env")  # fmt: skip
        rc, _ = timed(agt, "timeout 30 systemctl restart k3s-agent")
        assert rc == 0
        template = '{.status.conditions[?(@.type=="Ready")].status}'
        assert srv.exec(f"k3s kubectl get node agt-1 -o 'jsonpath={template}'") == "True"

        # Enabled units come back after a reboot with their data: same cluster, same node password.
        srv.exec("systemctl enable k3s")
        agt.exec("systemctl enable k3s-agent")
        password = agt.exec("cat /etc/rancher/node/password")
        srv.reboot()
        agt.reboot()
        ready = f"k3s kubectl get node agt-1 -o 'jsonpath={template}' 2>/dev/null || true"
        until(lambda: srv.exec(ready) == "True", 60, "agt-1 Ready after both hosts rebooted")
        assert agt.exec("cat /etc/rancher/node/password") == password
        assert "Node agt-1 was previously registered" in agt.exec("journalctl -b -u k3s-agent --no-pager")

        # A server with data and another token: the start fails at once, the journal says why.
        srv.exec("sed -i 's/^K3S_TOKEN=.*/K3S_TOKEN=another-token/' /etc/systemd/system/k3s.service.env")
        rc, seconds = timed(srv, "timeout 30 systemctl restart k3s")
        assert rc == 1 and seconds < 25
        assert REFUSED in srv.exec("journalctl -u k3s --no-pager")


# --- etcd members, /db/info, TLS (issue 14 item 3) ---------------------------------------------


def db_info(
    host: Host, password: str | None = TOKEN, tls: bool = True, source: str | None = None
) -> subprocess.CompletedProcess[str]:
    """GET /db/info with curl over TLS against server/tls/server-ca.crt (or plain HTTP, the
    stand-in's own clients); basic auth server:<password> from a config on stdin unless
    `password` is None; from the address `source` (curl --interface) instead of 127.0.0.1."""
    ca = host.root / "var/lib/rancher/k3s/server/tls/server-ca.crt"
    scheme = ["--cacert", str(ca), f"https://127.0.0.1:{host.port}/db/info"] if tls else [
        f"http://127.0.0.1:{host.port}/db/info"
    ]  # fmt: skip
    auth = ["-K", "-"] if password is not None else []
    via = ["--interface", source] if source else []
    return subprocess.run(
        ["curl", "-sS", "--fail", "--max-time", "10", *auth, *via, *scheme],
        input=f'user = "server:{password}"\n' if password is not None else "", capture_output=True, text=True,
        timeout=30,
    )  # fmt: skip


def member_names(host: Host) -> list[str]:
    result = db_info(host)
    assert result.returncode == 0, result.stderr
    return sorted(m["name"] for m in yaml.safe_load(result.stdout)["members"])


def test_etcd_servers_are_members_listed_by_db_info_over_tls_and_a_node_delete_removes_one(
    hosts: Callable[[str], Host],
) -> None:
    first, second = hosts("first"), hosts("second")
    server_config(first, "srv-1", "node-ip: 127.0.0.1\n")
    first.start("server")
    second.config(f"node-name: srv-2\ntoken: {TOKEN}\nserver: https://127.0.0.1:{first.port}\nnode-ip: 127.0.0.2\n")
    second.start("server")
    until(lambda: first.ready("srv-2"), 20, "joining server registered")
    names = member_names(first)
    assert len(names) == 2 and all(re.fullmatch(r"srv-[12]-[0-9a-f]{8}", n) for n in names), names
    # The name is made once and kept (server/db/etcd/name), the Node carries it and the address.
    kept = (second.root / "var/lib/rancher/k3s/server/db/etcd/name").read_text()
    assert kept in names
    annotations = json.loads(first.kubectl("get", "node", "srv-2", "-o", "json").stdout)["metadata"]["annotations"]
    etcd = {k: v for k, v in annotations.items() if k.startswith("etcd.k3s.cattle.io/")}
    assert etcd == {"etcd.k3s.cattle.io/node-name": kept, "etcd.k3s.cattle.io/node-address": "127.0.0.2"}
    # K3s's member controller (wrangler OnRemove) holds the Node's delete for the member.
    assert (
        "wrangler.cattle.io/managed-etcd-controller"
        in json.loads(first.kubectl("get", "node", "srv-2", "-o", "json").stdout)["metadata"]["finalizers"]
    )
    labels = json.loads(first.kubectl("get", "node", "srv-2", "-o", "json").stdout)["metadata"]["labels"]
    assert labels["node-role.kubernetes.io/etcd"] == "true"
    # Plain HTTP still answers (the stand-in's own clients).
    assert db_info(first, tls=False).returncode == 0
    # Every etcd server takes its own snapshots, named after itself, on its own disk.
    assert snapshot_save(second).returncode == 0
    (taken,) = (second.root / "var/lib/rancher/k3s/server/db/snapshots").iterdir()
    assert taken.name.startswith("on-demand-srv-2-")
    # Deleting the etcd server's Node removes its member (pkg/etcd member handler).
    assert first.kubectl("delete", "node", "srv-2").returncode == 0
    assert member_names(first) == [n for n in names if n.startswith("srv-1-")]
    # TLS is real: verified against server-ca.crt above; against another CA it fails.
    other = subprocess.run(
        ["curl", "-sS", "--cacert", "/etc/ssl/certs/ca-certificates.crt", f"https://127.0.0.1:{first.port}/db/info"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert other.returncode == 60, other.stderr  # curl: SSL certificate problem


def test_db_info_needs_no_credentials_from_127_0_0_1_and_the_server_role_from_elsewhere(
    hosts: Callable[[str], Host],
) -> None:
    """pkg/etcd/etcd.go handler: /db/info is wrapped in auth.IsLocalOrHasRole(k3s:server)
    (pkg/server/auth/auth.go): a client at 127.0.0.1 or ::1 is served whatever it sends; any
    other address needs the server role (basic auth server:<token>)."""
    srv = hosts("srv")
    server_config(srv, "srv-1", "node-ip: 127.0.0.1\n")
    srv.start("server")
    until(lambda: srv.ready("srv-1"), 20, "server up")
    for password in (None, "wrong", TOKEN):
        local = db_info(srv, password=password)
        assert local.returncode == 0, (password, local.stderr)
        assert [m["name"].rsplit("-", 1)[0] for m in yaml.safe_load(local.stdout)["members"]] == ["srv-1"]
    for password in (None, "wrong"):
        remote = db_info(srv, password=password, source="127.0.0.2")
        assert remote.returncode == 22 and "401" in remote.stderr, (password, remote.stderr)
    assert db_info(srv, source="127.0.0.2").returncode == 0


def test_a_server_of_a_sqlite_cluster_is_no_etcd_member(hosts: Callable[[str], Host]) -> None:
    """pkg/cluster/managed.go handlerNoEtcd: without a managed etcd every /db/ path answers
    400 "etcd datastore disabled", to anyone."""
    srv = hosts("srv")
    srv.config(f"node-name: srv-1\ntoken: {TOKEN}\n")
    srv.start("server")
    until(lambda: srv.ready("srv-1"), 20, "server up")
    answer = db_info(srv)
    assert answer.returncode == 22 and "400" in answer.stderr, answer.stderr
    plain = subprocess.run(
        ["curl", "-sS", f"http://127.0.0.1:{srv.port}/db/info"], capture_output=True, text=True, timeout=30
    )
    assert "etcd datastore disabled" in plain.stdout
    annotations = json.loads(srv.kubectl("get", "node", "srv-1", "-o", "json").stdout)["metadata"]["annotations"]
    assert "etcd.k3s.cattle.io/node-name" not in annotations
