"""The sandbox the behaviour tests run rendered commands in (see __init__.py), and helpers
to install into it."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import uuid
from dataclasses import dataclass
from importlib.machinery import SourceFileLoader
from pathlib import Path
from typing import Any

import pytest
import yaml

from components import bundle, scripts
from components.settings import Settings
from policy.shell_inputs import parse as parse_inputs
from tests.scripts.awkward import TOKEN, awkward_config, settings_for
from tests.scripts.standins import CURL, INSTALLER, K3S_BINARY, OUTER, RECORD, SS, SUDO, TOOL

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

    def deliver_scripts(self, sh_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run the `<node>-scripts` step's delivery (the bundle of `sh_dir`, default this
        release's) as the engine would: its command text, the bundle on stdin."""
        scripts_bundle = bundle.make_bundle(sh_dir) if sh_dir is not None else bundle.current_bundle()
        return self.run(scripts.deliver_scripts_script("ubuntu", scripts_bundle), scripts_bundle.text)

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


def make_sandbox(root: Path, *, with_scripts: bool = True) -> Sandbox:
    """A sandbox, with this release's scripts bundle delivered (as every host has before any
    node command runs) unless `with_scripts` is False."""
    box = Sandbox(root)
    box.stubs.mkdir(parents=True)
    box.log.mkdir()
    (root / "outer.sh").write_text(OUTER)
    python = sys.executable
    files = {
        "sudo": SUDO,
        "curl": CURL,
        "ss": SS,
        "installer.sh": INSTALLER.format(python=python),
        "record.py": RECORD,
        "k3s-binary.tmpl": K3S_BINARY.replace("{python}", python),
        **{kind: TOOL.format(python=python, kind=kind) for kind in ("systemctl", "journalctl", "getent", "getenforce")},
    }
    for name, text in files.items():
        (box.stubs / name).write_text(text)
        (box.stubs / name).chmod(0o755)
    if with_scripts:
        delivered = box.deliver_scripts()
        assert delivered.returncode == 0, delivered.stderr
    return box


def _sandbox_works() -> str | None:
    if not shutil.which("unshare"):
        return "unshare is not installed"
    probe = Path(f"/tmp/k3sr-sandbox-probe-{uuid.uuid4().hex}")
    try:
        box = make_sandbox(probe, with_scripts=False)
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


@functools.cache
def _k3s_standin() -> Any:
    """The tier-2 K3s stand-in (tests/real/standin/k3s) as a module, for its port of K3s's
    config-file reading, with YAML read by PyYAML (K3s reads it with yaml.v2; the stand-in's
    own small reader has no multi-line quoted scalars)."""
    path = Path(__file__).resolve().parents[1] / "real" / "standin" / "k3s"
    loader = SourceFileLoader("k3s_standin_for_sandbox", str(path))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    setattr(module, "parse_yaml", yaml.safe_load)  # noqa: B010 (a module attribute mypy cannot see)
    return module


def k3s_command_line(box: Sandbox, service: str = "k3s") -> list[str]:
    """The arguments K3s would run with after its command word: the flags of config.yaml and its
    drop-ins (k3s-io/k3s pkg/configfilearg/parser.go: readConfigFile, placed before the command
    line's by Parse), then the unit's ExecStart arguments (the installer quotes each one)."""
    unit = box.path(f"/etc/systemd/system/{service}.service").read_text()
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    argv = shlex.split(exec_start.removeprefix("ExecStart="))
    config = box.path(f"{scripts.CONF_DIR}/config.yaml")
    from_file: list[str] = _k3s_standin().config_file_args(str(config))
    return [*from_file, *argv[2:]]


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
