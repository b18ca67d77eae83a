"""The GitHub workflows: previews on pull requests, `pulumi up` only on pushes to main, tests.

Parsed as YAML and checked for what reviewers rely on: triggers, the stacks in each matrix
(never `local`), least-privilege permissions, the policy pack, PR comments, concurrency per
stack, pinned actions, and that the test workflow runs exactly the README's test command.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
PULUMI_ACTION = "pulumi/actions"
STACK_EXPR = "${{ matrix.stack }}"


def load(name: str) -> dict[str, Any]:
    data: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the key `on` as the boolean True.
    if True in data:
        data["on"] = data.pop(True)
    return data


def triggers(workflow: dict[str, Any]) -> dict[str, Any]:
    on = workflow["on"]
    if isinstance(on, str):
        return {on: None}
    if isinstance(on, list):
        return dict.fromkeys(on)
    return dict(on)


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return list(job.get("steps", []))


def pulumi_step(job: dict[str, Any]) -> dict[str, Any]:
    found = [s for s in steps(job) if str(s.get("uses", "")).startswith(PULUMI_ACTION + "@")]
    assert len(found) == 1, f"expected one {PULUMI_ACTION} step, found {len(found)}"
    return found[0]


def matrix_stacks(job: dict[str, Any]) -> list[str]:
    matrix = job["strategy"]["matrix"]
    stacks = list(matrix.get("stack", []))
    stacks += [entry["stack"] for entry in matrix.get("include", []) if "stack" in entry]
    return stacks


def stack_files() -> set[str]:
    return {p.name[len("Pulumi.") : -len(".yaml")] for p in (ROOT / "stacks").glob("Pulumi.*.yaml")}


def readme_test_command() -> str:
    from tests.test_docs import setup_commands

    return setup_commands()[1]


@pytest.fixture(scope="module")
def preview() -> dict[str, Any]:
    return load("preview.yml")


@pytest.fixture(scope="module")
def up() -> dict[str, Any]:
    return load("up.yml")


@pytest.fixture(scope="module")
def test_workflow() -> dict[str, Any]:
    return load("test.yml")


def all_workflows() -> dict[str, dict[str, Any]]:
    return {p.name: load(p.name) for p in sorted(WORKFLOWS.glob("*.yml"))}


def test_the_three_workflows_exist() -> None:
    assert set(all_workflows()) == {"preview.yml", "up.yml", "test.yml"}


def test_preview_runs_on_pull_requests_only(preview: dict[str, Any]) -> None:
    assert set(triggers(preview)) == {"pull_request"}
    assert set(preview["jobs"]) == {"preview"}


def test_up_runs_only_on_push_to_main(up: dict[str, Any]) -> None:
    on = triggers(up)
    assert set(on) == {"push"}, "up must not run on pull requests, schedules or by hand"
    assert on["push"] == {"branches": ["main"]}
    assert set(up["jobs"]) == {"up"}
    condition = up["jobs"]["up"]["if"]
    assert "github.event_name == 'push'" in condition
    assert "github.ref == 'refs/heads/main'" in condition


def test_no_other_workflow_runs_pulumi_up() -> None:
    for name, workflow in all_workflows().items():
        for job in workflow["jobs"].values():
            for step in steps(job):
                with_ = step.get("with") or {}
                if str(step.get("uses", "")).startswith(PULUMI_ACTION + "@") and with_.get("command") in {
                    "up",
                    "update",
                    "destroy",
                }:
                    assert name == "up.yml"
                assert not re.search(r"\bpulumi\s+(up|update|destroy)\b", str(step.get("run", ""))), name


def test_preview_covers_every_stack_but_local(preview: dict[str, Any]) -> None:
    stacks = matrix_stacks(preview["jobs"]["preview"])
    assert "local" not in stacks
    assert sorted(stacks) == sorted(stack_files() - {"local"}), "every stack file except local is previewed"


def test_up_stacks_are_previewed_and_never_local(preview: dict[str, Any], up: dict[str, Any]) -> None:
    stacks = matrix_stacks(up["jobs"]["up"])
    assert stacks, "up.yml's matrix lists the stacks a merge updates"
    assert "local" not in stacks
    assert set(stacks) <= set(matrix_stacks(preview["jobs"]["preview"]))


def test_least_privilege_permissions(preview: dict[str, Any], up: dict[str, Any]) -> None:
    for name, workflow in all_workflows().items():
        assert workflow.get("permissions") == {"contents": "read"}, f"{name}: top-level permissions"
        for job_name, job in workflow["jobs"].items():
            permissions = job.get("permissions")
            if name == "preview.yml" and job_name == "preview":
                assert permissions == {"contents": "read", "pull-requests": "write"}
            else:
                assert permissions in (None, {"contents": "read"}), f"{name}:{job_name} asks for more"


def test_preview_applies_the_policy_pack_and_comments_on_the_pr(preview: dict[str, Any]) -> None:
    job = preview["jobs"]["preview"]
    with_ = pulumi_step(job)["with"]
    assert with_["command"] == "preview"
    assert with_["policyPacks"] == "policy"
    assert (ROOT / "policy").is_dir()
    assert with_["comment-on-pr"] is True
    assert with_["edit-pr-comment"] is True
    assert with_["stack-name"].endswith(STACK_EXPR)


def test_up_applies_the_policy_pack(up: dict[str, Any]) -> None:
    with_ = pulumi_step(up["jobs"]["up"])["with"]
    assert with_["command"] == "up"
    assert with_["policyPacks"] == "policy"
    assert with_["stack-name"].endswith(STACK_EXPR)
    assert "comment-on-pr" not in with_


def test_backend_and_secrets_come_from_repository_settings(preview: dict[str, Any], up: dict[str, Any]) -> None:
    for workflow, job_name in ((preview, "preview"), (up, "up")):
        job = workflow["jobs"][job_name]
        with_ = pulumi_step(job)["with"]
        assert with_["cloud-url"] == "${{ vars.PULUMI_BACKEND_URL }}"
        assert with_["secrets-provider"] == "${{ vars.PULUMI_SECRETS_PROVIDER }}"
        assert job["env"]["PULUMI_CONFIG_PASSPHRASE"] == "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"


def test_concurrency_per_stack(preview: dict[str, Any], up: dict[str, Any]) -> None:
    up_concurrency = up["jobs"]["up"]["concurrency"]
    assert STACK_EXPR in up_concurrency["group"]
    assert up_concurrency["cancel-in-progress"] is False, "an update that started must never be cancelled"
    preview_concurrency = preview["jobs"]["preview"]["concurrency"]
    assert STACK_EXPR in preview_concurrency["group"]
    # A preview must never queue in (and so cancel a pending run of) the update's group.
    assert preview_concurrency["group"] != up_concurrency["group"]
    assert not preview_concurrency["group"].startswith(up_concurrency["group"].split("$")[0])


def test_up_runs_in_the_stacks_environment(up: dict[str, Any]) -> None:
    assert up["jobs"]["up"]["environment"] == STACK_EXPR


def test_pulumi_cli_matches_the_sdk_pin(preview: dict[str, Any], up: dict[str, Any]) -> None:
    match = re.search(r"^pulumi==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M)
    assert match
    for workflow, job_name in ((preview, "preview"), (up, "up")):
        assert str(pulumi_step(workflow["jobs"][job_name])["with"]["pulumi-version"]) == match.group(1)


def test_every_action_is_pinned_to_a_version() -> None:
    pinned = re.compile(r"^[\w.-]+/[\w./-]+@(v\d+(\.\d+){0,2}|[0-9a-f]{40})$")
    for name, workflow in all_workflows().items():
        for job in workflow["jobs"].values():
            for step in steps(job):
                if "uses" in step:
                    assert pinned.match(step["uses"]), f"{name}: {step['uses']} is not pinned to a version"


def test_program_requirements_are_installed_before_pulumi_runs(preview: dict[str, Any], up: dict[str, Any]) -> None:
    for workflow, job_name in ((preview, "preview"), (up, "up")):
        job_steps = steps(workflow["jobs"][job_name])
        install = next(i for i, s in enumerate(job_steps) if "ensure_venv requirements.txt" in str(s.get("run", "")))
        assert install < job_steps.index(pulumi_step(workflow["jobs"][job_name]))


def test_the_policy_packs_virtualenv_is_made_before_pulumi_runs(preview: dict[str, Any], up: dict[str, Any]) -> None:
    policy = yaml.safe_load((ROOT / "policy" / "PulumiPolicy.yaml").read_text())
    venv = f"policy/{policy['runtime']['options']['virtualenv']}"
    for workflow, job_name in ((preview, "preview"), (up, "up")):
        job = workflow["jobs"][job_name]
        job_steps = steps(job)
        install = next(i for i, s in enumerate(job_steps) if f"-m venv {venv}" in str(s.get("run", "")))
        assert f"{venv}/bin/pip install" in job_steps[install]["run"]
        assert "-r policy/requirements.txt" in job_steps[install]["run"]
        assert install < job_steps.index(pulumi_step(job))


def test_the_test_workflow_runs_exactly_the_readme_test_command(test_workflow: dict[str, Any]) -> None:
    assert {"pull_request", "push"} <= set(triggers(test_workflow))
    runs = [s["run"].strip() for job in test_workflow["jobs"].values() for s in steps(job) if "run" in s]
    assert runs == [readme_test_command()] == ["bin/test"]
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert "exec bin/test" in ci


def test_the_real_tiers_run_on_github_runners_as_a_non_root_user(test_workflow: dict[str, Any]) -> None:
    """CI runs the real tiers, not skips them: bin/test as the runner's user on ubuntu-latest,
    with setup_docker.sh using sudo, the public Debian mirror and the runner's Docker."""
    (job,) = test_workflow["jobs"].values()
    assert job["runs-on"] == "ubuntu-latest"
    text = (WORKFLOWS / "test.yml").read_text()
    assert "K3SR_SKIP_REAL" not in text  # a skip would have to say so with ::notice::
    runs = [s["run"] for s in steps(job) if "run" in s]
    assert not any(run.lstrip().startswith("sudo") for run in runs)  # not as root
    setup = (ROOT / "tests" / "real" / "setup_docker.sh").read_text()
    assert 'as_root() { sudo -n "$@"; }' in setup
    assert "MIRROR=${MIRROR:-http://deb.debian.org/debian}" in setup
    assert "missing+=(debian-archive-keyring)" in setup
    testing = " ".join((ROOT / "docs" / "testing.md").read_text().split())
    assert "On GitHub-hosted runners the real tiers run" in testing
    assert "tests/real/README.md" in testing


def test_every_variable_and_secret_the_workflows_use_is_documented() -> None:
    ci_doc = (ROOT / "docs" / "ci.md").read_text()
    used: set[str] = set()
    for path in WORKFLOWS.glob("*.yml"):
        used |= set(re.findall(r"\b(?:vars|secrets)\.([A-Z][A-Z0-9_]*)", path.read_text()))
    used.discard("GITHUB_TOKEN")
    assert used
    missing = sorted(name for name in used if f"`{name}`" not in ci_doc)
    assert not missing, f"docs/ci.md does not document {missing}"
