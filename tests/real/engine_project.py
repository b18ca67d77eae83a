"""Drive the real Pulumi engine (built from Go modules) against tier-1 test hosts.

A throwaway project directory holds a copy of the program and a stack whose nodes are the
test hosts (SSH through 127.0.0.1, airgap with the stand-in k3s), Rancher disabled (no
charts offline) and the token given in config (no random provider needed).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, TypeVar

import yaml

from tests.real.build_runner import run_build
from tests.real.standin_k3s import INSTALL_SCRIPT

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
ENGINE_BUILD = Path(__file__).resolve().parent / "engine" / "build.sh"
TOKEN = "tier2-token-0123456789abcdef"
# Bound on one engine build (cold: ~25 min on a quiet 2-core machine, ~65 min on a busy one).
ENGINE_BUILD_TIMEOUT = 5400


def engine_bin(progress: TextIO | None = None) -> Path:
    """Build (or take from cache) the Pulumi CLI, language host and providers;
    K3SR_ENGINE_BIN names a directory of already built ones instead. With `progress`, the
    builder's own lines (a component started, built in N s) are written there as they come,
    each with the seconds since the build began: a cold build takes tens of minutes."""
    if os.environ.get("K3SR_ENGINE_BIN"):
        return Path(os.environ["K3SR_ENGINE_BIN"])
    # The Go module proxy serves no pulumi-command provider module: build our stand-in
    # (tests/real/engine/command-standin/) in its place. See tests/real/engine/README.md.
    env = {**os.environ, "K3SR_ENGINE_COMMAND_STANDIN": "1"}
    return run_build(ENGINE_BUILD, "engine", timeout=ENGINE_BUILD_TIMEOUT, progress=progress, env=env)


@dataclass
class EngineProject:
    directory: Path
    env: dict[str, str]
    stack: str = "tier2"

    def pulumi(self, *args: str, check: bool = True, timeout: int = 900) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["pulumi", *args, "--stack", self.stack, "--non-interactive"],
            cwd=self.directory,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"pulumi {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout[-6000:]}\n{result.stderr[-4000:]}"
            )
        return result

    def configure(
        self,
        hosts: Sequence[Any],
        servers: int,
        version: str,
        binary: Path,
        ssh: Mapping[str, Any] | None = None,
        k3s: Mapping[str, Any] | None = None,
    ) -> None:
        """Write the stack's config: the first `servers` hosts are servers, the rest agents;
        `ssh` adds to the SSH defaults (e.g. dialErrorLimit, perDialTimeout), `k3s` to the
        K3s settings (e.g. upgrade)."""

        def node(host: Any, name: str) -> dict[str, Any]:
            return {"name": name, "address": host.address, "ssh": {"host": "127.0.0.1", "port": host.ssh_port}}

        config = {
            "k3s-rancher:topology": "ssh",
            "k3s-rancher:k3s": {
                "version": version,
                "airgap": {"installScript": str(INSTALL_SCRIPT), "binary": str(binary)},
                "timeouts": {"nodeReady": 90, "clusterReady": 120, "drain": 10},
                **(k3s or {}),
            },
            "k3s-rancher:ssh": {"user": "ubuntu", **(ssh or {})},
            "k3s-rancher:servers": [node(h, f"srv-{i + 1}") for i, h in enumerate(hosts[:servers])],
            "k3s-rancher:agents": [node(h, f"agt-{i + 1}") for i, h in enumerate(hosts[servers:])],
            "k3s-rancher:rancher": {"enabled": False},
        }
        stack_file = self.directory / "stacks" / f"Pulumi.{self.stack}.yaml"
        existing = yaml.safe_load(stack_file.read_text()) if stack_file.exists() else {}
        secure = {k: v for k, v in (existing or {}).get("config", {}).items() if isinstance(v, dict) and "secure" in v}
        stack_file.write_text(yaml.safe_dump({**(existing or {}), "config": {**config, **secure}}))

    def set_secret(self, key: str, value: str) -> None:
        self.set_config(f"k3s-rancher:{key}", value, secret=True)

    def set_config(self, key: str, value: str, secret: bool = False) -> None:
        """`pulumi config set` (the value on stdin: never in a process's arguments)."""
        subprocess.run(
            ["pulumi", "config", "set", *(["--secret"] if secret else []), key, "--stack", self.stack],
            input=value,
            cwd=self.directory,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )

    def preview_steps(self) -> list[dict[str, Any]]:
        """The steps `pulumi preview` plans, as (op, type, name)."""
        result = self.pulumi("preview", "--json")
        steps: list[dict[str, Any]] = json.loads(result.stdout).get("steps", [])
        return steps

    def start(self, *args: str, log: Path) -> subprocess.Popen[str]:
        """Start `pulumi ARGS` in the background, its output into `log` (for a test that
        interrupts it). Its own session, so that a signal reaches only the CLI."""
        with log.open("w") as out:
            return subprocess.Popen(
                ["pulumi", *args, "--stack", self.stack, "--non-interactive"],
                cwd=self.directory,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )

    def run_stamped(self, *args: str, timeout: float = 900) -> tuple[int, list[tuple[float, str]]]:
        """Run `pulumi ARGS`; return its exit code and its output lines, each with the
        monotonic time it arrived (the CLI prints each step's progress as it happens)."""
        proc = subprocess.Popen(
            ["pulumi", *args, "--stack", self.stack, "--non-interactive"],
            cwd=self.directory,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        watchdog = threading.Timer(timeout, proc.kill)  # bounds a CLI that goes silent
        watchdog.start()
        lines: list[tuple[float, str]] = []
        try:
            assert proc.stdout is not None
            for line in proc.stdout:  # ends when pulumi closes its output (or is killed)
                lines.append((time.monotonic(), line.rstrip("\n")))
            return proc.wait(timeout=60), lines
        finally:
            watchdog.cancel()

    def leftover_processes(self) -> list[int]:
        """Processes of this project's engine still alive (plugins orphaned by a killed CLI
        run on: the engine starts each plugin in a process group of its own): those whose
        environment carries this project's PULUMI_HOME, which no other test uses."""
        marker = f"PULUMI_HOME={self.env['PULUMI_HOME']}".encode()
        pids = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == os.getpid():
                continue
            try:
                environ = (proc / "environ").read_bytes()
            except OSError:
                continue
            if marker in environ.split(b"\0"):
                pids.append(int(proc.name))
        return pids

    def kill_leftovers(self) -> list[int]:
        """SIGKILL what `leftover_processes` finds (a CI job's teardown does the same)."""
        pids = self.leftover_processes()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return pids

    def pending_operations(self) -> list[dict[str, Any]]:
        """The operations the state records as begun and never finished."""
        exported = json.loads(self.pulumi("stack", "export").stdout)
        pending: list[dict[str, Any]] = exported["deployment"].get("pending_operations") or []
        return pending

    def timed_up(self) -> float:
        start = time.perf_counter()
        self.pulumi("up", "--yes", "--skip-preview")
        return time.perf_counter() - start


def copy_program(source: Path, directory: Path) -> None:
    """The program of the tree `source` (this repository, or another release's files): its
    __main__.py, components/, schema/ (where releases before 0.3.0 kept the config schema) and
    Pulumi.yaml (run with this repository's .venv) into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("__main__.py", "components", "schema"):
        path = source / name
        if path.is_dir():
            shutil.copytree(path, directory / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif path.exists():
            shutil.copy(path, directory / name)
    project = yaml.safe_load((source / "Pulumi.yaml").read_text())
    project["runtime"]["options"]["virtualenv"] = str(ROOT / ".venv")
    (directory / "Pulumi.yaml").write_text(yaml.safe_dump(project))


def program_copy(project: EngineProject, source: Path, directory: Path) -> EngineProject:
    """The same stack (its config directory, state backend, PULUMI_HOME and passphrase) run
    with the program of the tree `source` from `directory`: e.g. a previous release's."""
    copy_program(source, directory)
    (directory / "stacks").symlink_to(project.directory / "stacks")
    return EngineProject(directory, project.env, project.stack)


def make_project(tmp: Path, bin_dir: Path, program: str | None = None, source: Path = ROOT) -> EngineProject:
    """A project with a copy of the program of `source` (default this repository), or with
    `program` as its __main__.py (a bare project named `contract`, for checks of the providers)."""
    directory = tmp / "project"
    if program is None:
        copy_program(source, directory)
    else:
        directory.mkdir()
        (directory / "__main__.py").write_text(program)
        project = {
            "name": "contract",
            "runtime": {"name": "python", "options": {"virtualenv": str(ROOT / ".venv")}},
            "stackConfigDir": "stacks",
        }
        (directory / "Pulumi.yaml").write_text(yaml.safe_dump(project))
    (directory / "stacks").mkdir()
    (tmp / "state").mkdir()
    (tmp / "home").mkdir()
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "PULUMI_HOME": str(tmp / "home"),
        "XDG_CACHE_HOME": str(tmp / "cache"),  # k3s.driftCheck keeps a preview's read there
        "PULUMI_BACKEND_URL": f"file://{tmp / 'state'}",
        "PULUMI_CONFIG_PASSPHRASE": "tier2-test-passphrase",
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK": "true",
    }
    engine = EngineProject(directory, env)
    subprocess.run(
        ["pulumi", "stack", "init", engine.stack, "--non-interactive"],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return engine


@contextlib.contextmanager
def stand_in_cluster(
    tmp: Path,
    hosts: int,
    servers: int,
    version: str,
    k3s: Mapping[str, Any] | None = None,
    source: Path = ROOT,
) -> Iterator[tuple[EngineProject, list[Any], Path]]:
    """`hosts` test hosts (the first `servers` of them servers) made a cluster of the STAND-IN
    k3s at `version` by `pulumi up` of the program of `source` (default this repository's; a
    previous release's tree for an upgrade test): (the project, the hosts, the stand-in
    binary). On leaving the block, whatever the tests did, the stack is destroyed; the hosts
    are removed in any case (a failed first up is not destroyed: its hosts go with it)."""
    from tests.real.hosts import test_hosts
    from tests.real.standin_k3s import standin_binary

    with test_hosts(hosts, kubernetes=True) as started:
        project = make_project(tmp, engine_bin(), source=source)
        project.set_secret("token", TOKEN)
        project.set_secret("sshPrivateKey", started[0].private_key)
        binary = standin_binary(tmp, version)
        project.configure(started, servers, version, binary, k3s=k3s)
        project.pulumi("up", "--yes", "--skip-preview")
        try:
            yield project, list(started), binary
        finally:
            project.pulumi("destroy", "--yes", check=False, timeout=600)


if __name__ == "__main__":
    # bin/test builds the engine here, between the fast and the real tiers, with its progress
    # on the terminal (pytest's workers would hide it). The last line is the bin directory.
    import sys

    print(engine_bin(progress=sys.stderr))


def timed(record: dict[str, Any], phase: str, call: Callable[[], T]) -> T:
    """`call()`, its wall time kept in `record` under "wall seconds" by `phase`."""
    started = time.perf_counter()
    try:
        return call()
    finally:
        record.setdefault("wall seconds", {})[phase] = round(time.perf_counter() - started, 1)


def write_record(record: Mapping[str, Any], variable: str) -> None:
    """`record` (plans, timings) into the file the environment variable `variable` names, if set."""
    target = os.environ.get(variable)
    if not target:
        return
    parts = [
        f"== {key}\n{value if isinstance(value, str) else json.dumps(value, indent=2)}" for key, value in record.items()
    ]
    Path(target).write_text("\n\n".join(parts) + "\n")
