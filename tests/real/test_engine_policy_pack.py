"""Tier 2: the policy pack (policy/) in the real engine, as CI's pull-request preview runs it:
`pulumi preview --policy-pack policy` starts the pack through the language host's RunPlugin
(tests/real/engine/langhost/main.go) in the pack's own virtualenv, a mandatory violation stops
the preview with the policy's message, an advisory one is printed and the preview succeeds;
and `bin/preview STACK --policy-pack policy` does the same from its temporary copy.

The dev stack needs no hosts for a preview (as in test_engine_preview.py): its remote commands
are only planned. It violates `ssh-host-keys-checked` (advisory: no ssh.hostKeys); setting
`rancher.values.tls: external` violates `rancher-serves-tls` (mandatory), a value the
program's own config checks let through (rancher.values is the chart's to judge).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.real.engine_project import EngineProject, engine_bin, make_project

pytestmark = pytest.mark.real

ROOT = Path(__file__).resolve().parents[2]
ADVISORY = "[advisory]  ssh-host-keys-checked"
ADVICE = "the host key of 192.168.56.10 is not checked: set ssh.hostKeys"
MANDATORY = "[mandatory]  rancher-serves-tls"
VIOLATION = "values.tls external: Rancher would serve plain HTTP behind a TLS proxy this stack lacks"


def dev_config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((ROOT / "stacks" / "Pulumi.dev.yaml").read_text())["config"]
    return config


def write_config(project: EngineProject, config: dict[str, Any]) -> None:
    """The stack file with `config` (its encryptionsalt and secrets kept)."""
    path = project.directory / "stacks" / f"Pulumi.{project.stack}.yaml"
    existing = yaml.safe_load(path.read_text()) or {}
    secure = {k: v for k, v in existing.get("config", {}).items() if isinstance(v, dict) and "secure" in v}
    path.write_text(yaml.safe_dump({**existing, "config": {**config, **secure}}))


def copy_policy_pack(directory: Path, venv: bool = True) -> Path:
    """policy/ into `directory`/policy, with `venv` (PulumiPolicy.yaml's virtualenv) a link to
    this repository's .venv: the pack's requirements.txt pins the same pulumi and pulumi-policy
    (tests/test_policy_pack.py checks), and the test writes nothing into the checkout."""
    pack = directory / "policy"
    shutil.copytree(ROOT / "policy", pack, ignore=shutil.ignore_patterns("venv", "__pycache__"))
    if venv:
        (pack / "venv").symlink_to(ROOT / ".venv")
    return pack


@pytest.fixture
def dev_project(tmp_path: Path) -> EngineProject:
    """A copy of the program with the dev stack's config and dummy secrets, and the policy pack."""
    project = make_project(tmp_path, engine_bin())
    write_config(project, dev_config())
    for key in ("token", "rancherBootstrapPassword", "sshPrivateKey"):
        project.set_secret(key, f"dummy-{key}-0123456789")
    copy_policy_pack(project.directory)
    return project


def output_of(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


def test_an_advisory_violation_is_printed_and_the_preview_succeeds(dev_project: EngineProject) -> None:
    result = dev_project.pulumi("preview", "--policy-pack", "policy", check=False, timeout=600)
    output = output_of(result)
    assert result.returncode == 0, output[-6000:]
    assert ADVISORY in output and ADVICE in output
    assert "[mandatory]" not in output
    # The engine's summary names the pack with PulumiPolicy.yaml's version, and the policy's
    # description and message under each resource it advises on.
    assert re.search(r"^Policies:\n\s+\S+ k3s-rancher@v0\.1\.0 \(local: policy\)\n\s+- \[advisory\]", output, re.M)
    install = re.escape(ADVISORY) + r"  \(command:remote:Command: dev-cp1-install\)\n.*\n\s+" + re.escape(ADVICE)
    assert re.search(install, output)


def test_a_mandatory_violation_stops_the_preview_with_the_policy_message(dev_project: EngineProject) -> None:
    config = dev_config()
    config["k3s-rancher:rancher"] = {**config["k3s-rancher:rancher"], "values": {"tls": "external"}}
    write_config(dev_project, config)
    # Without the pack the same stack previews: what stops it below is the policy.
    assert dev_project.pulumi("preview", check=False, timeout=600).returncode == 0
    result = dev_project.pulumi("preview", "--policy-pack", "policy", check=False, timeout=600)
    output = output_of(result)
    assert result.returncode != 0, output[-6000:]
    # The policy, the resource, its description and the message, as README.md shows them.
    assert re.search(
        re.escape(MANDATORY) + r"  \(kubernetes:helm.sh/v3:Release: rancher-release\)\n.*\n\s+" + re.escape(VIOLATION),
        output,
    )
    assert "error: preview failed" in output
    assert ADVISORY in output  # the advice is still given


def test_the_pack_runs_in_its_own_virtualenv_only(tmp_path: Path) -> None:
    """As the real Python host does, the pack runs with PulumiPolicy.yaml's virtualenv (policy/venv),
    not the program's: without it the pack does not start, and the error names it."""
    project = make_project(tmp_path, engine_bin())
    write_config(project, dev_config())
    for key in ("token", "rancherBootstrapPassword", "sshPrivateKey"):
        project.set_secret(key, f"dummy-{key}-0123456789")
    pack = copy_policy_pack(project.directory, venv=False)
    result = project.pulumi("preview", "--policy-pack", "policy", check=False, timeout=600)
    output = output_of(result)
    assert result.returncode != 0
    assert f'policy pack "{pack}" failed to start' in output, output[-3000:]
    assert f"{pack}/venv/bin/python: no such file or directory" in output


def checkout_state() -> tuple[str, str]:
    """What bin/preview must leave alone: policy/ (ignored files too: no policy/venv appears) and
    the stack files. (The whole tree's status would also see other people's concurrent edits.)"""
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all", "--ignored", "--", "policy", "stacks"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # test_engine_preview.py's team stack file (stacks/Pulumi.zz-team-<pid>.yaml, bin/preview
    # reads stack files from the checkout only) may come and go meanwhile on the other worker.
    status = "".join(line for line in status.splitlines(keepends=True) if "stacks/Pulumi.zz-team-" not in line)
    return status, (ROOT / "stacks" / "Pulumi.dev.yaml").read_text()


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{engine_bin()}:{os.environ['PATH']}",
        "PULUMI_HOME": str(tmp_path_factory.mktemp("pulumi-home")),
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
    }


def test_bin_preview_applies_the_checkouts_policy_pack(cli_env: dict[str, str]) -> None:
    before = checkout_state()
    result = subprocess.run(
        [str(ROOT / "bin" / "preview"), "dev", "--policy-pack", "policy"],
        cwd=ROOT,
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = output_of(result)
    assert result.returncode == 0, output[-6000:]
    assert ADVISORY in output and ADVICE in output and "[mandatory]" not in output
    # --diff's summary: the pack ran from the temporary copy.
    summary = r"^Policy Packs run:\n\s+Name\s+Version\n\s+k3s-rancher\|local\|\S+/project/policy\s+0\.1\.0$"
    assert re.search(summary, output, re.M)
    assert "not-a-secret" not in output
    assert checkout_state() == before  # no policy/venv, the stack file as it was


def test_bin_preview_stops_on_a_mandatory_violation_from_any_directory(tmp_path: Path, cli_env: dict[str, str]) -> None:
    """A relative pack path is the caller's (here from another directory, in the --flag=value
    form); `--config` changes only the temporary copy's stack file."""
    before = checkout_state()
    relative = os.path.relpath(ROOT / "policy", tmp_path)
    result = subprocess.run(
        [
            str(ROOT / "bin" / "preview"),
            "dev",
            f"--policy-pack={relative}",
            "--config-path",
            "--config",
            "k3s-rancher:rancher.values.tls=external",
        ],
        cwd=tmp_path,
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = output_of(result)
    assert result.returncode != 0, output[-6000:]
    assert MANDATORY in output and VIOLATION in output
    assert checkout_state() == before  # --config went to the copy's stack file
