"""The policy pack (policy/): its pure rules, fed crafted inputs and the inputs recorded from
mock runs of the example stacks, and its wiring through pulumi-policy's own types: the entry
point the CLI runs, GetAnalyzerInfo, Analyze and AnalyzeStack of pulumi-policy's analyzer
service (the code `pulumi preview --policy-pack policy` talks to over gRPC)."""

from __future__ import annotations

import base64
import runpy
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

from components import scripts
from components.config import parse_settings
from policy import pack, rules
from policy.shell_inputs import ScriptInputs, command_inputs, parse, unwrap
from tests.harness import TEST_SSH_KEY, Registration, Run, load_stack_config, run_program

ROOT = Path(__file__).resolve().parent.parent
POLICY_DIR = ROOT / "policy"
REMOTE, LOCAL = rules.REMOTE_COMMAND, rules.LOCAL_COMMAND
AWKWARD = "a b 'c' \"d\" $(id) `id` ;rm -rf /\nnext"


def settings() -> Any:
    return parse_settings(
        {"servers": [{"name": "cp1", "address": "10.0.0.11"}], "rancher": {"enabled": False}}, {"sshPrivateKey"}
    )


def install(**variables: str) -> str:
    s = settings()
    script = scripts.install_script(s.servers[0], s.k3s, first_server=True)
    if not variables:
        return script.command
    parsed = parse(script.body)
    assert parsed is not None
    return scripts.render("install_node", {**parsed.variables, **variables}, parsed.args, sudo=True).command


def command(create: str, **extra: Any) -> dict[str, Any]:
    return {"create": create, "update": create, "addPreviousOutputInEnv": False, **extra}


# --- shell_inputs ----------------------------------------------------------------------------


def test_inputs_are_read_back_exactly_from_any_rendered_command() -> None:
    variables = {"ONE": AWKWARD, "TWO": "", "THREE": "plain", "FOUR": "}\n{\nset -- x\n}"}
    args = [AWKWARD, "", "}", "--flag=value with spaces"]
    for sudo in (True, False):
        script = scripts.render("drain_delete", variables, args, sudo=sudo)
        assert command_inputs(script.command) == ScriptInputs("drain_delete", variables, tuple(args))
        assert unwrap(script.command) == script.body
    docker = f"docker exec 'k3s-server-0' {scripts.render('read_kubeconfig', {'WAIT_FOR': 'x'}, sudo=False).command}"
    assert command_inputs(docker) == ScriptInputs("read_kubeconfig", {"WAIT_FOR": "x"}, ())


def test_text_that_is_not_a_rendered_command_has_no_inputs() -> None:
    for text in ("echo hi", "sh -c 'echo hi'", "sh -c 'unterminated", "", "sudo sh -c 'a' extra"):
        assert command_inputs(text) is None
    assert command_inputs(None) is None and command_inputs(rules.UNKNOWN) is None
    # a preamble without the group (as rendered before it had one) still reads
    assert parse("# old: inputs\nA='x y'\nset -- 'z'\n\nbody") == ScriptInputs("old", {"A": "x y"}, ("z",))
    assert parse("# broken: inputs\n{\nA=$(id)x\nset --\n}") == ScriptInputs("broken", {"A": "$(id)x"}, ())
    assert parse("# bad: inputs\n{\necho hi\nset --\n}") is None


# --- the rules, with crafted inputs ----------------------------------------------------------


def test_k3s_version_pinned() -> None:
    check = rules.check_k3s_version_pinned
    assert check(REMOTE, command(install())) == []
    assert check(REMOTE, command(install(K3S_VERSION="stable")))
    assert check(REMOTE, command(install(K3S_VERSION="v1.33")))
    assert check(LOCAL, command("curl -sfL https://get.k3s.io | INSTALL_K3S_CHANNEL=latest sh -"))
    assert check(rules.REMOTE_IMAGE, {"name": "rancher/k3s:v1.33.5-k3s1"}) == []
    assert check(rules.REMOTE_IMAGE, {"name": "docker.io/rancher/k3s@sha256:" + "a" * 64}) == []
    for image in ("rancher/k3s:latest", "rancher/k3s", "mirror.example.com:5000/rancher/k3s:stable"):
        assert check(rules.REMOTE_IMAGE, {"name": image}), image
    assert check(rules.CONTAINER, {"image": "rancher/k3s:latest"})
    assert check(rules.CONTAINER, {"image": "sha256:" + "b" * 64}) == []  # an image id: see its RemoteImage
    assert check(rules.REMOTE_IMAGE, {"name": "rancher/rancher:latest"}) == []  # not K3s


def test_secrets_off_the_command_line() -> None:
    check = rules.check_secrets_off_the_command_line
    stdin = "tok-0123456789abcdef\n\n"
    assert check(REMOTE, command(install(), stdin=stdin)) == []
    assert check(REMOTE, command(install(), stdin=rules.UNKNOWN)) == []
    assert check(REMOTE, command(install()))  # the install reads the token on stdin
    leaked = command(install(NODE_NAME="tok-0123456789abcdef"), stdin=stdin)
    assert check(REMOTE, leaked)
    assert check(REMOTE, command("echo hi", stdin=stdin, triggers=["tok-0123456789abcdef"]))
    assert check(LOCAL, command("echo hi", stdin=stdin, environment={"X": "tok-0123456789abcdef"}))
    assert check(REMOTE, command("K3S_TOKEN=abc sh install.sh"))
    assert check(REMOTE, command("sh install.sh server --token abc"))
    assert check(REMOTE, command("sh install.sh --datastore-endpoint=mysql://u:p@db/k3s"))
    assert check(REMOTE, command('K3S_DATASTORE_ENDPOINT=$DATASTORE_ENDPOINT; K3S_TOKEN_FILE="$F"')) == []
    s = settings()
    with_args = scripts.render("install_node", {"CONFIG_YAML": "x"}, ["--token", "abc"], sudo=False).command
    assert check(REMOTE, command(with_args, stdin=stdin))
    config_with_token = scripts.managed_yaml(
        {**scripts.node_config(s.servers[0], s.k3s, first_server=True), "token": "x"}
    )
    assert check(REMOTE, command(install(CONFIG_YAML=config_with_token), stdin=stdin))
    assert check(rules.CONTAINER, {"envs": ["K3S_TOKEN_FILE=/etc/rancher/k3s/cluster-token"]}) == []
    assert check(rules.CONTAINER, {"envs": ["K3S_TOKEN=abc"]})
    assert check(rules.CONTAINER, {"envs": ["CATTLE_BOOTSTRAP_PASSWORD=abc"]})
    assert check(rules.CONTAINER, {"command": ["server", "--token=abc"]})
    assert check(rules.CONTAINER, {"uploads": [{"file": "/etc/rancher/k3s/config.yaml", "content": "token: abc\n"}]})


def test_rancher_serves_tls() -> None:
    check = rules.check_rancher_serves_tls
    release = {"name": "rancher", "chart": "rancher", "values": {"hostname": "r.example.com"}}
    assert check(rules.HELM_RELEASE, release) == []
    for values in (
        {"tls": "external"},
        {"ingress": {"enabled": False}},
        {"ingress": {"tls": {"source": "none"}}},
        {"ingress": {"tls": {"source": "letsEncrypt"}}},
    ):
        assert check(rules.HELM_RELEASE, {**release, "values": values}), values
    ok = {"ingress": {"tls": {"source": "letsEncrypt"}}, "letsEncrypt": {"email": "ops@example.com"}}
    assert check(rules.HELM_RELEASE, {**release, "values": ok}) == []
    local_chart = {"name": "x", "chart": "/charts/rancher-2.12.3.tgz", "values": {"tls": "external"}}
    assert check(rules.HELM_RELEASE, local_chart)
    cert_manager = {"name": "cert-manager", "chart": "cert-manager", "values": {"tls": "external"}}
    assert check(rules.HELM_RELEASE, cert_manager) == []
    assert check(rules.RANCHER2_PROVIDER, {"apiUrl": "https://rancher.example.com"}) == []
    assert check(rules.RANCHER2_PROVIDER, {"apiUrl": "http://rancher.example.com"})


@pytest.mark.parametrize(
    ("mode", "readable"),
    [
        *[("644", True), ("0644", True), ("0604", True), ("600", False), ("0600", False), ("0640", False)],
        *[("o+r", True), ("a+r", True), ("+r", True), ("u+r", False), ("go-rwx", False)],
    ],
)
def test_world_readable_modes(mode: str, readable: bool) -> None:
    assert rules.world_readable(mode) is readable


def test_kubeconfig_not_world_readable() -> None:
    check = rules.check_kubeconfig_not_world_readable
    s = settings()
    config = scripts.node_config(s.servers[0], s.k3s, first_server=True)
    assert check(REMOTE, command(install())) == []
    world = scripts.managed_yaml({**config, "write-kubeconfig-mode": "0644"})
    assert check(REMOTE, command(install(CONFIG_YAML=world)))
    group = scripts.managed_yaml({**config, "write-kubeconfig-mode": "0640"})
    assert check(REMOTE, command(install(CONFIG_YAML=group))) == []
    flag = scripts.render("install_node", {"CONFIG_YAML": "x"}, ["--write-kubeconfig-mode", "644"], sudo=False)
    assert check(REMOTE, command(flag.command))
    assert check(REMOTE, command("sudo -n chmod 644 /etc/rancher/k3s/k3s.yaml"))
    assert check(REMOTE, command("chmod 0600 /etc/rancher/k3s/k3s.yaml")) == []
    assert check(rules.CONTAINER, {"command": ["server", "--write-kubeconfig-mode=666"]})
    assert check(rules.CONTAINER, {"envs": ["K3S_KUBECONFIG_MODE=644"]})
    upload = {"file": "/etc/rancher/k3s/config.yaml", "content": "write-kubeconfig-mode: '0644'\n"}
    assert check(rules.CONTAINER, {"uploads": [upload]})


def test_no_previous_output_in_env() -> None:
    check = rules.check_no_previous_output_in_env
    assert check(REMOTE, {"create": "x", "addPreviousOutputInEnv": False}) == []
    (problem,) = check(REMOTE, {"create": "x"})  # the provider's default is true
    # The true reason: pulumi-command 1.x only warns on a refused setenv of the previous
    # output and runs the command; what the setting prevents is the output being shipped.
    assert "previous output" in problem and "warning" in problem and "fail" not in problem
    assert check(LOCAL, {"create": "x", "addPreviousOutputInEnv": True})
    assert check(rules.CONTAINER, {}) == []


def test_sudo_non_interactive() -> None:
    check = rules.check_sudo_non_interactive
    assert check(REMOTE, command(install())) == []
    assert check(REMOTE, command("sudo -E -n sh -c 'x'")) == []
    assert check(REMOTE, command("sudo sh -c 'x'"))
    assert check(REMOTE, command("true && sudo -E sh -c 'x'"))


def test_ssh_host_keys_checked() -> None:
    check = rules.check_ssh_host_keys
    key = "ssh-ed25519 " + base64.b64encode(b"\0\0\0\x0bssh-ed25519").decode()
    assert check(REMOTE, {"connection": {"host": "h", "hostKey": key}}) == []
    assert check(REMOTE, {"connection": {"host": "h"}})
    assert check(rules.COPY_TO_REMOTE, {"connection": {"host": "h"}})
    proxied = {"connection": {"host": "h", "hostKey": key, "proxy": {"host": "jump"}}}
    assert check(REMOTE, proxied) == ["the host key of the bastion jump is not checked: set ssh.bastion.hostKey"]
    assert check(LOCAL, {}) == []


def test_secret_output_hidden() -> None:
    check = rules.check_secret_output_hidden
    read = scripts.kubeconfig_script("ubuntu", "x").command
    assert check(REMOTE, command(read, logging="none"), ["stdout", "stderr"]) == []
    assert len(check(REMOTE, command(read), [])) == 2
    assert check(LOCAL, command("docker exec n k3s kubectl config view --raw", logging="none"), ["stdout"])
    assert check(REMOTE, command("echo hi"), []) == []


def test_one_k3s_version() -> None:
    one = [(REMOTE, "urn:a", command(install())), (rules.REMOTE_IMAGE, "urn:b", {"name": "rancher/k3s:v1.33.5-k3s1"})]
    assert rules.check_one_k3s_version(one) == []
    two = [*one, (REMOTE, "urn:c", command(install(K3S_VERSION="v1.32.9+k3s1")))]
    ((urn, message),) = rules.check_one_k3s_version(two)
    assert urn is None and "v1.32.9+k3s1" in message and "v1.33.5+k3s1" in message


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
