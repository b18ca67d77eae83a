"""Tier 2, a newcomer's view (issue 15): with the Pulumi CLI built from Go modules (the same
cache entry as tests/real/test_engine.py), `bin/preview dev|prod` plans the stack without
hosts or an account, prints no secret and leaves the checkout as it was; and
`pulumi stack select --create local` / `stack init` leave the stack files as committed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.real.engine_project import engine_bin

pytestmark = pytest.mark.real

ROOT = Path(__file__).resolve().parents[2]
URN_NAME = re.compile(r"\[urn=urn:pulumi:[^:]+::k3s-rancher::[^\]]*::([^\]:]+)\]")
# The resources each stack must plan: every node's install, the cluster and Rancher.
EXPECTED = {
    "dev": {"dev-cp1-install", "dev-w1-install", "dev-w2-install", "dev-cluster-ready", "rancher"},
    "prod": {
        *(f"prod-cp{i}-install" for i in (1, 2, 3)),
        *(f"prod-w{i}-install" for i in (1, 2, 3, 4, 5)),
        "prod-cluster-ready",
        "rancher",
    },
}


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("pulumi-home")
    return {
        **os.environ,
        "PATH": f"{engine_bin()}:{os.environ['PATH']}",
        "PULUMI_HOME": str(home),
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
    }


def git_status() -> str:
    return subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_preview_plans_the_stack_without_hosts_or_secrets(stack: str, cli_env: dict[str, str]) -> None:
    before = git_status()
    result = subprocess.run(
        [str(ROOT / "bin" / "preview"), stack], cwd=ROOT, env=cli_env, capture_output=True, text=True, timeout=600
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    planned = set(URN_NAME.findall(output))
    assert EXPECTED[stack] <= planned, f"missing: {sorted(EXPECTED[stack] - planned)}"
    assert re.search(r"\+ \d+ to create", output)
    # The dummies (DUMMY-not-a-secret-<key>-<random>) never reach the output.
    assert "not-a-secret" not in output
    assert git_status() == before
    temp = re.search(r"program and \S+ in (\S+) ", output)
    assert temp, "the plan names its temporary directory"
    assert not Path(temp.group(1)).exists(), "the temporary copy is removed"


def copy_project(tmp: Path) -> Path:
    project = tmp / "project"
    (project / "stacks").mkdir(parents=True)
    shutil.copy(ROOT / "Pulumi.yaml", project)
    for path in (ROOT / "stacks").glob("Pulumi.*.yaml"):
        shutil.copy(path, project / "stacks")
    return project


def pulumi(
    project: Path, env: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["pulumi", *args, "--non-interactive"],
        cwd=project,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_stack_commands_leave_the_stack_files_as_committed(tmp_path: Path, cli_env: dict[str, str]) -> None:
    """bin/up-local's `stack select --create local` with the empty passphrase leaves
    stacks/Pulumi.local.yaml byte for byte; `stack init dev|prod` only appends the team's
    salt (the rest of each file is already in Pulumi's form)."""
    project = copy_project(tmp_path)
    (tmp_path / "state").mkdir()
    env = {**cli_env, "PULUMI_BACKEND_URL": f"file://{tmp_path / 'state'}", "PULUMI_CONFIG_PASSPHRASE": ""}
    result = pulumi(project, env, "stack", "select", "--create", "local")
    assert result.returncode == 0, result.stderr
    local = "stacks/Pulumi.local.yaml"
    assert (project / local).read_text() == (ROOT / local).read_text()
    # The committed salt is the empty passphrase's: a secret can be set (into a copy) ...
    copy = tmp_path / "local-copy.yaml"
    shutil.copy(ROOT / local, copy)
    args = ("config", "set", "--secret", "k3s-rancher:token", "--config-file", str(copy), "--stack", "local")
    assert pulumi(project, env, *args, stdin="t0ken").returncode == 0
    # ... and another passphrase is refused against it.
    shutil.copy(ROOT / local, copy)
    wrong = pulumi(project, {**env, "PULUMI_CONFIG_PASSPHRASE": "other"}, *args, stdin="t0ken")
    assert wrong.returncode != 0 and "incorrect passphrase" in wrong.stderr
    for stack in ("dev", "prod"):
        result = pulumi(project, {**env, "PULUMI_CONFIG_PASSPHRASE": "team"}, "stack", "init", stack)
        assert result.returncode == 0, result.stderr
        written = (project / f"stacks/Pulumi.{stack}.yaml").read_text()
        committed = (ROOT / f"stacks/Pulumi.{stack}.yaml").read_text()
        assert written.startswith(committed)
        assert re.fullmatch(r"encryptionsalt: v1:\S+\n", written[len(committed) :])


def test_preview_of_a_team_stack_with_its_own_salt_and_secrets(tmp_path: Path, cli_env: dict[str, str]) -> None:
    """After `stack init` and `config set --secret` with the team's passphrase (committed, as
    the README says), bin/preview still works without that passphrase."""
    project = copy_project(tmp_path)
    (tmp_path / "state").mkdir()
    env = {**cli_env, "PULUMI_BACKEND_URL": f"file://{tmp_path / 'state'}", "PULUMI_CONFIG_PASSPHRASE": "team"}
    name = f"zz-team-{os.getpid()}"
    shutil.copy(ROOT / "stacks" / "Pulumi.dev.yaml", project / "stacks" / f"Pulumi.{name}.yaml")
    assert pulumi(project, env, "stack", "init", name).returncode == 0
    secret = "team-token-0123456789"
    result = pulumi(project, env, "config", "set", "--secret", "k3s-rancher:token", "--stack", name, stdin=secret)
    assert result.returncode == 0, result.stderr
    team_file = ROOT / "stacks" / f"Pulumi.{name}.yaml"
    shutil.copy(project / "stacks" / team_file.name, team_file)
    try:
        assert "secure: v1:" in team_file.read_text() and "encryptionsalt:" in team_file.read_text()
        run = subprocess.run(
            [str(ROOT / "bin" / "preview"), name], cwd=ROOT, env=cli_env, capture_output=True, text=True, timeout=600
        )
        output = run.stdout + run.stderr
        assert run.returncode == 0, output[-6000:]
        assert f"{name}-cluster-ready" in output and "dev-cp1-install" in output
        assert secret not in output and "not-a-secret" not in output
    finally:
        team_file.unlink()


def documented_sidecar_fix() -> str:
    """The command docs/operations.md ("A failed or interrupted up") gives for empty sidecars."""
    text = (ROOT / "docs" / "operations.md").read_text()
    match = re.search(r"^(find \"\$STATE_DIR/\.pulumi\" .*-delete)", text, re.M)
    assert match, "docs/operations.md gives the sidecar fix as a command"
    return match.group(1)


def up_local_backend_query() -> str:
    script = (ROOT / "bin" / "up-local").read_text()
    match = re.search(r'PULUMI_BACKEND_URL="file://\$ROOT/\.pulumi-state(\?[^"]*)"', script)
    assert match, "bin/up-local sets its file backend"
    return match.group(1)


def test_a_run_killed_while_writing_a_sidecar_is_repaired_as_documented(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    """The file backend (gocloud's fileblob) writes a checkpoint to a temporary file and
    renames it, but writes its metadata sidecar `<stack>.json.attrs` in place
    (gocloud.dev blob/fileblob/attrs.go setAttrs: os.Create, then encode). A SIGKILL between
    the two leaves the sidecar empty, and every command then fails with "failed to load
    checkpoint: EOF" (the kill-point matrix met it once). Emulated here by emptying the
    sidecar as that kill leaves it; the documented `find` repairs the stack. bin/up-local's
    backend URL writes no sidecar at all."""
    project = copy_project(tmp_path)
    state = tmp_path / "state"
    state.mkdir()
    env = {**cli_env, "PULUMI_BACKEND_URL": f"file://{state}", "PULUMI_CONFIG_PASSPHRASE": ""}
    assert pulumi(project, env, "stack", "select", "--create", "local").returncode == 0
    sidecars = list(state.rglob("local.json.attrs"))
    assert len(sidecars) == 1, sorted(state.rglob("*"))
    sidecars[0].write_bytes(b"")
    for args in (("stack", "export", "--stack", "local"), ("cancel", "--yes", "--stack", "local")):
        broken = pulumi(project, env, *args)
        assert broken.returncode != 0 and "failed to load checkpoint: EOF" in broken.stderr, (args, broken.stderr)
    fix = subprocess.run(
        ["bash", "-c", documented_sidecar_fix()], env={**env, "STATE_DIR": str(state)}, capture_output=True, text=True
    )
    assert fix.returncode == 0, fix.stderr
    exported = pulumi(project, env, "stack", "export", "--stack", "local")
    assert exported.returncode == 0 and '"version": 3' in exported.stdout, exported.stderr
    assert pulumi(project, env, "cancel", "--yes", "--stack", "local").returncode == 0

    skip_state = tmp_path / "up-local-state"
    skip_state.mkdir()
    skip_env = {**env, "PULUMI_BACKEND_URL": f"file://{skip_state}{up_local_backend_query()}"}
    assert pulumi(project, skip_env, "stack", "select", "--create", "local").returncode == 0
    assert pulumi(project, skip_env, "stack", "tag", "set", "owner", "me", "--stack", "local").returncode == 0
    assert list(skip_state.rglob("local.json")) and not list(skip_state.rglob("*.attrs"))
