"""Run the program under Pulumi's mocks and record what the engine would receive.

The mock monitor is wrapped so that each registration keeps its raw wire form: parent,
dependencies, options, and inputs with secrets still marked as secrets.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest import mock

import pulumi
import yaml
from google.protobuf import json_format
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

if TYPE_CHECKING:
    from components.scripts import Script

ROOT = Path(__file__).resolve().parent.parent
SECRET_SIG = "4dabf18193072939515e22adb298388d"
TEST_TOKEN = "test-token-0123456789abcdef"
TEST_SSH_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\ntest-key-material-not-real\n-----END OPENSSH PRIVATE KEY-----"
GENERATED_PASSWORD = "generated-secret-value-for-tests"

K3S_KUBECONFIG = """apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: Q0EtREFUQQ==
    server: https://127.0.0.1:6443
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
kind: Config
preferences: {}
users:
- name: default
  user:
    client-certificate-data: Q0xJRU5ULUNFUlQ=
    client-key-data: Q0xJRU5ULUtFWS1TRUNSRVQ=
"""


@dataclass
class Registration:
    type: str
    name: str
    urn: str
    parent: str
    dependencies: list[str]
    inputs: dict[str, Any]  # wire form: secrets wrapped in {SECRET_SIG: ..., "value": ...}
    options: dict[str, Any]
    custom: bool
    # Input property -> URNs its value came from: the edges the engine follows when a
    # delete-before-replace makes it delete dependents first (not plain depends_on).
    property_dependencies: dict[str, list[str]] = field(default_factory=dict)
    # The names this resource had before (its aliases: a spec's name, or a full URN).
    aliases: list[str] = field(default_factory=list)

    def plain(self) -> dict[str, Any]:
        """Inputs with secret wrappers removed."""
        return unwrap(self.inputs)

    def secret_paths(self) -> set[str]:
        return set(_secret_paths(self.inputs, ""))


def unwrap(value: Any) -> Any:
    if isinstance(value, dict):
        if SECRET_SIG in value:
            return unwrap(value.get("value"))
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any, bool]]:
    """(path, value, is_secret) for every leaf of a wire-form value; a secret wrapper is one
    leaf, whatever it holds."""
    if isinstance(value, dict):
        if SECRET_SIG in value:
            yield path, value.get("value"), True
            return
        for k, v in value.items():
            yield from leaves(v, f"{path}.{k}" if path else k)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from leaves(v, f"{path}[{i}]")
    else:
        yield path, value, False


def _secret_paths(value: Any, path: str) -> Iterator[str]:
    return (leaf_path for leaf_path, _, secret in leaves(value, path) if secret)


@dataclass
class Run:
    registrations: list[Registration] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)  # stack outputs, wire form
    warnings: list[str] = field(default_factory=list)

    def by_name(self, name: str) -> Registration:
        found = [r for r in self.registrations if r.name == name]
        assert len(found) == 1, f"{name}: {len(found)} registrations ({[r.name for r in self.registrations]})"
        return found[0]

    def of_type(self, type_: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == type_]

    def names(self) -> set[str]:
        return {r.name for r in self.registrations}

    def urn(self, name: str) -> str:
        return self.by_name(name).urn

    def depends_on(self, name: str, other: str) -> bool:
        """Direct dependency edge as sent to the engine."""
        return self.urn(other) in self.by_name(name).dependencies

    def property_depends_on(self, name: str, prop: str, other: str) -> bool:
        """The input `prop` of `name` is computed from `other`'s outputs (a property dependency)."""
        return self.urn(other) in self.by_name(name).property_dependencies.get(prop, [])

    def reaches(self, name: str, other: str) -> bool:
        """`name` waits for `other`, directly or through other dependencies or parents."""
        by_urn = {r.urn: r for r in self.registrations}
        seen: set[str] = set()
        todo = list(self.by_name(name).dependencies)
        target = self.urn(other)
        while todo:
            urn = todo.pop()
            if urn == target:
                return True
            if urn in seen or urn not in by_urn:
                continue
            seen.add(urn)
            todo += by_urn[urn].dependencies
            # A dependency on a component is a dependency on all its children.
            todo += [r.urn for r in self.registrations if r.parent == urn]
        return False


class _Mocks(pulumi.runtime.Mocks):
    def __init__(
        self,
        stdout_for: Callable[[pulumi.runtime.MockResourceArgs], str | None],
        previous_outputs: Mapping[str, Any] | None = None,
    ):
        self.stdout_for = stdout_for
        # What the engine's readStackOutputs answers for this stack: its previous run's outputs.
        self.previous_outputs = dict(previous_outputs or {})

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        outputs = dict(args.inputs)
        if args.typ == "command:remote:Command" or args.typ == "command:local:Command":
            outputs["stdout"] = self.stdout_for(args) or ""
            outputs["stderr"] = ""
        if args.typ == "random:index/randomPassword:RandomPassword":
            outputs["result"] = GENERATED_PASSWORD
        if args.typ == "docker:index/remoteImage:RemoteImage":
            outputs["imageId"] = f"sha256:{args.name}"
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> Any:
        if args.token == "pulumi:pulumi:readStackOutputs":
            # The engine's builtin (pulumi/pulumi pkg/resource/deploy/builtins.go): the named
            # stack's outputs, here always this stack's previous ones.
            return {"name": args.args.get("name"), "outputs": self.previous_outputs, "secretOutputNames": []}
        return {}


_SUBSHELL_SOURCE = re.compile(r'^\(\. "\$K3SR_SCRIPTS/([a-z0-9_]+)\.sh"\) </dev/null$', re.M)
_SOURCE = re.compile(r'^\. "\$K3SR_SCRIPTS/([a-z0-9_]+)\.sh"$', re.M)


def node_script(command: str) -> Script:
    """The script a node command's text runs (an entry point into the scripts bundle), rebuilt
    from its inputs and checked to render back to exactly that text: its `.effective` is the
    program the host runs (the code the command's text no longer carries)."""
    from components import scripts
    from policy.shell_inputs import parse, unwrap

    body = unwrap(command)
    assert body is not None, f"not an `sh -c` command: {command[:80]!r}"
    inputs = parse(body)
    assert inputs is not None, f"no inputs group: {body[:80]!r}"
    first = _SUBSHELL_SOURCE.search(body)
    then = _SOURCE.findall(body)[-1] if first else None
    script = scripts.render(
        inputs.name,
        inputs.variables,
        inputs.args,
        sudo=False,  # (the body is the same either way: sudo is in the command around it)
        root="\nneed_root\n" in body,
        then=then,
    )
    assert script.body == body, f"{inputs.name}: the command is not the entry point it renders to"
    return script


def command_variables(command: str) -> dict[str, str]:
    """The input variables a node command's text sets (its entry point's inputs group)."""
    from policy.shell_inputs import command_inputs

    parsed = command_inputs(command)
    assert parsed is not None, command[:80]
    return parsed.variables


def default_stdout(args: pulumi.runtime.MockResourceArgs) -> str | None:
    if args.name.endswith("-kubeconfig"):
        return K3S_KUBECONFIG
    return None


class _RecordingMonitor(pulumi_mocks.MockMonitor):
    def __init__(self, mocks: pulumi.runtime.Mocks, run: Run):
        super().__init__(mocks)
        self.run = run

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self.run.registrations.append(
                Registration(
                    type=request.type,
                    name=request.name,
                    urn=response.urn,
                    parent=request.parent,
                    dependencies=list(request.dependencies),
                    inputs=json_format.MessageToDict(request.object),
                    options={
                        "deleteBeforeReplace": request.deleteBeforeReplace,
                        "additionalSecretOutputs": list(request.additionalSecretOutputs),
                        "provider": request.provider,
                        "deletedWith": request.deletedWith,
                        "retainOnDelete": request.retainOnDelete,
                    },
                    custom=request.custom,
                    property_dependencies={key: list(deps.urns) for key, deps in request.propertyDependencies.items()},
                    aliases=[a.spec.name if a.HasField("spec") else a.urn for a in request.aliases],
                )
            )
        return response

    def RegisterResourceOutputs(self, request: Any) -> Any:
        if request.urn.split("::")[2] == "pulumi:pulumi:Stack":
            self.run.outputs = json_format.MessageToDict(request.outputs)
        return super().RegisterResourceOutputs(request)


def stdin_values(text: str) -> dict[str, str]:
    """A step's stdin of named entries (components/host_facts.py stdin_entries), by name; each
    line must be one NAME=value."""
    assert text.endswith("\n"), text
    pairs = [line.partition("=") for line in text[:-1].split("\n")]
    assert all(sep and name.isupper() for name, sep, _ in pairs), "a stdin line is not NAME=value"
    return {name: value for name, _, value in pairs}


def load_stack_config(stack: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The non-secret config of stacks/Pulumi.<stack>.yaml, and test values for its secrets."""
    data = yaml.safe_load((ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text())
    config: dict[str, Any] = {}
    secrets: dict[str, str] = {}
    for key, value in (data.get("config") or {}).items():
        name = key.split(":", 1)[1]
        if isinstance(value, dict) and "secure" in value:
            secrets[name] = f"stack-file-secret-{name}"
        else:
            config[name] = value
    return config, secrets


def prod_config() -> dict[str, Any]:
    """The prod example stack's settings with Rancher off: the node graph alone."""
    config, _ = load_stack_config("prod")
    config["rancher"] = {"enabled": False}
    return config


def minimal_ssh_config() -> dict[str, Any]:
    """A valid ssh-topology config: one server, one agent, Rancher on (the schema's default)."""
    return {
        "topology": "ssh",
        "k3s": {"version": "v1.33.5+k3s1"},
        "servers": [{"name": "cp1", "address": "10.0.0.11"}],
        "agents": [{"name": "w1", "address": "10.0.0.21"}],
    }


def project_config() -> dict[str, Any]:
    """The `config:` declarations of Pulumi.yaml."""
    declared: dict[str, Any] = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["config"]
    return declared


def _encode(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _run_and_finish(body: Callable[[], None]) -> None:
    body()
    root = pulumi.runtime.get_root_resource()
    if root is not None:
        # The mock stack registered its (empty) outputs when it was made; register the
        # exports again, as `pulumi up` does once the program has run.
        root._outputs_registered = False  # type: ignore[attr-defined]
        root._finish()  # type: ignore[attr-defined]


def run_program(
    config: Mapping[str, Any],
    secrets: Mapping[str, str] | None = None,
    *,
    stack: str = "dev",
    preview: bool = False,
    stdout_for: Callable[[pulumi.runtime.MockResourceArgs], str | None] = default_stdout,
    docker_engine_problem: str | None = None,
    previous_outputs: Mapping[str, Any] | None = None,
) -> Run:
    """Register the whole program for `config` (keys without the namespace) under mocks.

    The docker topology asks the Docker engine whether it answers before anything is
    created; here that edge is faked: it answers, or `docker_engine_problem` is its problem."""
    from components import program

    # As the CLI does: every key declared in Pulumi.yaml and not set gets its default.
    all_config = {key: _encode(decl["default"]) for key, decl in project_config().items() if "default" in decl}
    all_config.update({f"k3s-rancher:{k}": _encode(v) for k, v in config.items()})
    secret_values = dict(secrets or {})
    all_config.update({f"k3s-rancher:{k}": v for k, v in secret_values.items()})
    return run_function(
        program.run,
        all_config,
        [f"k3s-rancher:{k}" for k in secret_values],
        project="k3s-rancher",
        stack=stack,
        preview=preview,
        stdout_for=stdout_for,
        docker_engine_problem=docker_engine_problem,
        previous_outputs=previous_outputs,
    )


def run_function(
    body: Callable[[], None],
    config: Mapping[str, str] | None = None,
    secret_keys: list[str] | None = None,
    *,
    project: str,
    stack: str = "dev",
    preview: bool = False,
    stdout_for: Callable[[pulumi.runtime.MockResourceArgs], str | None] = default_stdout,
    docker_engine_problem: str | None = None,
    previous_outputs: Mapping[str, Any] | None = None,
) -> Run:
    """Run any Pulumi program `body` under mocks with `config` (full keys, values as the
    CLI passes them) and record its registrations."""
    from components.backends import docker_engine

    run = Run()
    root = pulumi.runtime.get_root_resource()
    if root is not None:
        # The mock root Stack outlives set_mocks: start each run with no exports left over.
        root.outputs = {}  # type: ignore[attr-defined]
    mocks = _Mocks(stdout_for, previous_outputs)
    pulumi.runtime.set_mocks(
        mocks, project=project, stack=stack, preview=preview, monitor=_RecordingMonitor(mocks, run)
    )
    pulumi.runtime.set_all_config(dict(config or {}), list(secret_keys or []))
    engine = mock.patch.object(docker_engine, "engine_problem", lambda host, **_: docker_engine_problem)
    with warnings.catch_warnings(record=True) as caught, engine:
        warnings.simplefilter("always")
        _sync_await(run_pulumi_func(lambda: _run_and_finish(body)))
    run.warnings = [str(w.message) for w in caught if "is deprecated" not in str(w.message)]
    return run


def registered_names(run: Callable[[], Any], tolerated: type[BaseException] = Exception) -> list[str]:
    """The names of the resources `run` (a run_program call) sends to the engine, in order,
    counted even when the run fails with `tolerated` (a refusal must register nothing)."""
    original = _RecordingMonitor.RegisterResource
    calls: list[str] = []

    def counting(self: Any, request: Any) -> Any:
        if request.type != "pulumi:pulumi:Stack":
            calls.append(request.name)
        return original(self, request)

    _RecordingMonitor.RegisterResource = counting  # type: ignore[method-assign]
    try:
        run()
    except tolerated:
        pass
    finally:
        _RecordingMonitor.RegisterResource = original  # type: ignore[method-assign]
    return calls
