"""The policy pack (policy/) over the inputs recorded from mock runs of the example stacks, and its
wiring through pulumi-policy's own types: the entry point the CLI runs, GetAnalyzerInfo, Analyze
and AnalyzeStack of pulumi-policy's analyzer service (the code `pulumi preview --policy-pack
policy` talks to over gRPC). The rules alone, with crafted inputs: test_policy_rules.py."""

from __future__ import annotations

import base64
import os
import runpy
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import pulumi_policy
import pytest
import yaml
from google.protobuf import json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2
from pulumi_policy import EnforcementLevel
from pulumi_policy.policy import _PolicyAnalyzerServicer
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE

from policy import pack, rules
from policy.shell_inputs import command_inputs
from tests.harness import TEST_SSH_KEY, Registration, Run, load_stack_config, run_program

ROOT = Path(__file__).resolve().parent.parent
POLICY_DIR = ROOT / "policy"
REMOTE = rules.REMOTE_COMMAND


# --- the rules over the example stacks (inputs recorded under mocks) -------------------------

STACKS = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in (ROOT / "stacks").glob("Pulumi.*.yaml"))
RESOURCE_CHECKS: list[Callable[[str, Mapping[str, Any]], list[str]]] = [
    rules.check_k3s_version_pinned,
    rules.check_secrets_off_the_command_line,
    rules.check_rancher_serves_tls,
    rules.check_kubeconfig_not_world_readable,
    rules.check_no_previous_output_in_env,
    rules.check_sudo_non_interactive,
]


def stack_run(stack: str, **overrides: Any) -> Run:
    config, secrets = load_stack_config(stack)
    config.update(overrides)
    if config.get("topology", "ssh") == "ssh":
        secrets.setdefault("sshPrivateKey", TEST_SSH_KEY)
    return run_program(config, secrets, stack=stack)


@pytest.fixture(scope="module", params=STACKS)
def example(request: pytest.FixtureRequest) -> tuple[str, Run]:
    return request.param, stack_run(request.param)


def violations(registration: Registration) -> list[str]:
    props = registration.plain()
    found = [m for check in RESOURCE_CHECKS for m in check(registration.type, props)]
    return found + rules.check_secret_output_hidden(
        registration.type, props, registration.options["additionalSecretOutputs"]
    )


def test_the_example_stacks_comply(example: tuple[str, Run]) -> None:
    name, run = example
    assert run.registrations
    assert {r.name: violations(r) for r in run.registrations if violations(r)} == {}, name
    resources = [(r.type, r.urn, r.plain()) for r in run.registrations]
    assert rules.check_one_k3s_version(resources) == []
    assert list(rules.k3s_versions(resources)) == [load_stack_config(name)[0]["k3s"]["version"]]


def test_host_keys_are_only_advice_and_the_advice_goes_when_they_are_set() -> None:
    run = stack_run("dev")
    advised = [r.name for r in run.registrations if rules.check_ssh_host_keys(r.type, r.plain())]
    assert advised and all(r.type == REMOTE for r in run.registrations if r.name in advised)
    key = "ssh-ed25519 " + base64.b64encode(b"\0\0\0\x0bssh-ed25519" + b"\0\0\0\x20" + b"k" * 32).decode()
    config, _ = load_stack_config("dev")
    hosts = [n["address"] for n in config["servers"] + config["agents"]]
    checked = stack_run("dev", ssh={**config.get("ssh", {}), "hostKeys": dict.fromkeys(hosts, key)})
    assert [r.name for r in checked.registrations if rules.check_ssh_host_keys(r.type, r.plain())] == []


def test_every_command_of_the_examples_is_a_rendered_script(example: tuple[str, Run]) -> None:
    """The rules read inputs back from the command text: every command must be readable."""
    _, run = example
    for r in run.registrations:
        if r.type in rules.COMMANDS:
            for field, text in rules.scripts_of(r.plain()):
                assert command_inputs(text) is not None, f"{r.name}.{field}"


# --- the wiring, through pulumi-policy -------------------------------------------------------


def test_policy_project_files() -> None:
    project = yaml.safe_load((POLICY_DIR / "PulumiPolicy.yaml").read_text())
    assert project["runtime"]["name"] == "python"
    assert project["runtime"]["options"]["virtualenv"] == "venv"
    pins = [line for line in (POLICY_DIR / "requirements.txt").read_text().splitlines() if "==" in line]
    assert sorted(pins) == ["pulumi-policy==1.21.0", "pulumi==3.272.0"]
    root_pins = (ROOT / "requirements.txt").read_text()
    assert all(pin in root_pins for pin in pins)  # the same versions the program and tests use


class PackRecorder:
    """Stands in for pulumi_policy.PolicyPack, which would start a gRPC server and block."""

    made: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, **kwargs: Any) -> None:
        PackRecorder.made.append(kwargs)


@pytest.fixture(scope="module")
def entry_point() -> dict[str, Any]:
    """Run policy/ the way the Pulumi CLI does: runpy on the directory."""
    patch = pytest.MonkeyPatch()
    patch.setattr(pulumi_policy, "PolicyPack", PackRecorder)
    PackRecorder.made.clear()
    try:
        runpy.run_path(str(POLICY_DIR), run_name="__main__")
    finally:
        patch.undo()
    (made,) = PackRecorder.made
    return made


def test_the_entry_point_builds_the_pack(entry_point: dict[str, Any]) -> None:
    assert entry_point["name"] == pack.PACK_NAME
    assert entry_point["enforcement_level"] == EnforcementLevel.MANDATORY
    names = [p.name for p in entry_point["policies"]]
    assert len(names) == len(set(names)) == len(pack.POLICIES)
    assert {
        "k3s-version-pinned",
        "k3s-secrets-off-the-command-line",
        "rancher-serves-tls",
        "kubeconfig-not-world-readable",
        "commands-no-previous-output-in-env",
        "ssh-host-keys-checked",
        "secret-command-output-hidden",
        "one-k3s-version",
    } <= set(names)


def test_the_pack_runs_from_a_copy_under_another_name(tmp_path: Path) -> None:
    """`pulumi policy publish` packs this directory as `package`, and the CLI runs it from
    wherever it was unpacked: the entry point must not need the repository or the name
    `policy`. A fresh interpreter in another directory, with no PYTHONPATH, runs a copy."""
    copy = tmp_path / "package"
    shutil.copytree(POLICY_DIR, copy, ignore=shutil.ignore_patterns("venv", "__pycache__"))
    probe = (
        "import runpy, pulumi_policy\n"
        "pulumi_policy.PolicyPack = lambda **k: print(k['name'], len(k['policies']))\n"
        f"runpy.run_path({str(copy)!r}, run_name='__main__')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [pack.PACK_NAME, str(len(pack.POLICIES))]


def servicer(policies: list[pulumi_policy.Policy]) -> _PolicyAnalyzerServicer:
    return _PolicyAnalyzerServicer(pack.PACK_NAME, "0.1.0", policies, EnforcementLevel.MANDATORY)


def test_analyzer_info_lists_every_policy_with_its_level(entry_point: dict[str, Any]) -> None:
    info = servicer(entry_point["policies"]).GetAnalyzerInfo(None, None)
    levels = {p.name: p.enforcementLevel for p in info.policies}
    assert levels["ssh-host-keys-checked"] == analyzer_pb2.ADVISORY
    assert {n for n, level in levels.items() if level == analyzer_pb2.MANDATORY} == set(levels) - {
        "ssh-host-keys-checked"
    }
    assert all(p.description and p.remediation_steps for p in info.policies)


def _wire(inputs: Mapping[str, Any]) -> struct_pb2.Struct:
    return json_format.ParseDict(dict(inputs), struct_pb2.Struct())


def analyze(policies: list[pulumi_policy.Policy], r: Registration, inputs: Mapping[str, Any] | None = None) -> Any:
    request = analyzer_pb2.AnalyzeRequest(
        type=r.type,
        urn=r.urn,
        name=r.name,
        properties=_wire(r.inputs if inputs is None else inputs),
        options=analyzer_pb2.AnalyzerResourceOptions(additionalSecretOutputs=r.options["additionalSecretOutputs"]),
    )
    return servicer(policies).Analyze(request, None)


def test_analyze_on_the_example_stacks_gives_only_host_key_advice(
    entry_point: dict[str, Any], example: tuple[str, Run]
) -> None:
    name, run = example
    for r in run.registrations:
        response = analyze(entry_point["policies"], r)  # inputs as the engine sends them: secrets wrapped
        for diagnostic in response.diagnostics:
            assert diagnostic.policyName == "ssh-host-keys-checked", (name, r.name, diagnostic.message)
            assert diagnostic.enforcementLevel == analyzer_pb2.ADVISORY


def test_analyze_reports_a_mandatory_violation(entry_point: dict[str, Any]) -> None:
    run = stack_run("dev")
    install = run.by_name("dev-cp1-install")
    doctored = {**install.inputs, "addPreviousOutputInEnv": True}
    response = analyze(entry_point["policies"], install, doctored)
    mandatory = [d for d in response.diagnostics if d.enforcementLevel == analyzer_pb2.MANDATORY]
    assert [d.policyName for d in mandatory] == ["commands-no-previous-output-in-env"]
    assert "addPreviousOutputInEnv" in mandatory[0].message


def test_analyze_in_preview_skips_unknown_values_instead_of_failing(entry_point: dict[str, Any]) -> None:
    run = stack_run("dev")
    install = run.by_name("dev-cp1-install")
    unknown = {**install.inputs, "create": UNKNOWN_STRING_VALUE, "stdin": UNKNOWN_STRING_VALUE}
    response = analyze(entry_point["policies"], install, unknown)
    assert {d.policyName for d in response.diagnostics} == {"ssh-host-keys-checked"}
    assert not [d for d in response.diagnostics if "can't run policy" in d.message]


def test_analyze_stack_checks_one_k3s_version(entry_point: dict[str, Any]) -> None:
    run = stack_run("prod")

    def resources(change: str | None = None) -> list[analyzer_pb2.AnalyzerResource]:
        out = []
        for r in run.registrations:
            inputs = dict(r.inputs)
            if change and r.name == change:
                for field in ("create", "update"):
                    inputs[field] = inputs[field].replace("v1.33.5+k3s1", "v1.33.6+k3s1")
            out.append(analyzer_pb2.AnalyzerResource(type=r.type, urn=r.urn, name=r.name, properties=_wire(inputs)))
        return out

    policies = entry_point["policies"]
    ok = servicer(policies).AnalyzeStack(analyzer_pb2.AnalyzeStackRequest(resources=resources()), None)
    assert list(ok.diagnostics) == []
    mixed = servicer(policies).AnalyzeStack(
        analyzer_pb2.AnalyzeStackRequest(resources=resources("prod-w1-install")), None
    )
    assert [d.policyName for d in mixed.diagnostics] == ["one-k3s-version"]
