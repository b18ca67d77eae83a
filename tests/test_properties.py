"""Property tests: arbitrary node names, labels, taints, args, host names, registry settings
and K3s config either stop at validation with a ConfigError that names the key that was
varied, or render scripts in which they are only data.

"Only data" is checked four ways on each rendered script:
- outside its inputs group, the command's entry point is exactly the static text (the bundle
  check, the sources of the bundle's files), and so is the program the host runs once it has
  sourced them (`Script.effective`: helpers, body): no value can appear there;
- bashlex parses the group (structure only) as one assignment per input and one `set --` with one word per
  argument (a value never splits into more words or commands);
- `sh` runs the group with `set -u` and an empty PATH and prints every input back exactly,
  with no error output (a value that ran as code would fail or print);
- the policy pack's reader (policy/shell_inputs.py) reads back the same values.
Shellcheck runs on batches of rendered entry points, one process per batch (their inputs group
is the same text in the effective program, whose code outside it is static; the static checks
in tests/scripts/test_static_checks.py shellcheck that code, with awkward values).

Example counts: 300 per cheap property (7 properties: 2,100 examples); 120 generated configs
(each split into a node part and a K3s part) whose scripts shellcheck checks in one batch.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import bashlex
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from components import checks, k3s_flags, scripts
from components.config import parse_settings
from components.settings import NAMESPACE, ConfigError, Settings
from policy.shell_inputs import parse as parse_inputs
from tests.harness import minimal_ssh_config

CHEAP = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
SHELLCHECK_CASES = settings(
    max_examples=120, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
SH = shutil.which("dash") or "/bin/sh"
SHELLCHECK = shutil.which("shellcheck", path=str(Path(sys.executable).parent)) or shutil.which("shellcheck")
SH_DIR = Path(scripts.__file__).resolve().parent / "sh"

# --- strategies ------------------------------------------------------------------------------

SHELL_BITS = ["$(id)", "`id`", ";rm -rf /", "'", '"', "\\", "$HOME", "*", "~", "!", "&&", "|", ">x", "\n", "\t", "%s"]
awkward = st.one_of(
    st.text(max_size=30),
    st.lists(st.one_of(st.sampled_from(SHELL_BITS), st.text(max_size=5)), max_size=6).map("".join),
)
dns_names = st.from_regex(r"[a-z0-9]([-a-z0-9.]{0,20}[a-z0-9])?", fullmatch=True)
node_names = st.one_of(dns_names, awkward)
qualified = st.from_regex(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,20}[A-Za-z0-9])?", fullmatch=True)
label_keys = st.one_of(
    qualified,
    st.builds(lambda prefix, name: f"{prefix}/{name}", dns_names, qualified),
    awkward,
)
label_values = st.one_of(st.just(""), qualified, awkward)
effects = st.sampled_from([*checks.TAINT_EFFECTS, "NoRun"])
taints = st.one_of(
    st.builds(lambda k, v, e: f"{k}={v}:{e}", label_keys, label_values, effects),
    st.builds(lambda k, e: f"{k}:{e}", label_keys, effects),
    awkward,
)
_refused = set(checks.SECRET_FLAGS) | set(checks.OWNED_FLAGS) | set(checks.DEFAULT_PATH_FLAGS)
_flags = k3s_flags.flag_set(33)
assert _flags is not None
# Mostly K3s's real flags (both roles have them), so that values reach the scripts; some invented.
flag_names = st.one_of(
    st.sampled_from(sorted((_flags.server & _flags.agent) - _refused)),
    st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True).filter(lambda n: n not in _refused),
)
arguments = st.lists(
    st.one_of(
        st.builds(lambda f, v: f"--{f}={v}", flag_names, awkward),
        st.builds(lambda f: f"--{f}", flag_names),
        awkward,
    ),
    max_size=6,
)
hostnames = st.one_of(
    st.ip_addresses().map(str),
    st.from_regex(r"[A-Za-z0-9]([-A-Za-z0-9]{0,10}[A-Za-z0-9])?(\.[a-z]{2,6}){0,3}", fullmatch=True),
    awkward,
)
registry_hosts = st.one_of(st.sampled_from(["docker.io", "*", "reg.example.com:5000"]), hostnames)
url_paths = st.one_of(st.just(""), awkward.map(lambda v: "/" + v))
registries = st.fixed_dictionaries(
    {
        "mirrors": st.dictionaries(
            registry_hosts,
            st.fixed_dictionaries(
                {
                    "endpoint": st.lists(st.builds(lambda h, p: f"https://{h}{p}", hostnames, url_paths), max_size=2),
                    "rewrite": st.dictionaries(awkward, awkward, max_size=2),
                }
            ),
            max_size=2,
        ),
        "configs": st.dictionaries(
            registry_hosts,
            st.fixed_dictionaries(
                {
                    "auth": st.fixed_dictionaries({"username": awkward}),
                    "tls": st.fixed_dictionaries({"ca_file": st.one_of(awkward, awkward.map(lambda v: "/" + v))}),
                }
            ),
            max_size=2,
        ),
    }
)
config_keys = st.one_of(flag_names, awkward)
config_values = st.one_of(awkward, st.lists(awkward, max_size=3), st.integers(), st.booleans())

# --- helpers ---------------------------------------------------------------------------------


def base() -> dict[str, Any]:
    return {**minimal_ssh_config(), "rancher": {"enabled": False}}


def accepted(config: dict[str, Any], varied: Iterable[str]) -> Settings | None:
    """Settings, or None after checking that every problem names a varied key (or one under it)."""
    prefixes = [f"{NAMESPACE}:{v}" for v in varied]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = parse_settings(config, {"sshPrivateKey"}, "prop")
        event("accepted")
        return result
    except ConfigError as error:
        event("refused")
        assert error.keys
        for key in error.keys:
            assert any(key == p or key.startswith((f"{p}.", f"{p}[")) for p in prefixes), (key, error)
        return None


def _group(text: str, reference: str, marker: str) -> str:
    """The `{ ... }` group of `text`, after checking that everything around it is what
    `reference` (the same script rendered with no inputs: `{`, `set --`, `}`) has there."""
    start = text.index(marker) + len(marker) - 2
    ref_start = reference.index(marker) + len(marker) - 2
    assert text[:start] == reference[:ref_start]
    empty = "{\nset --"
    assert reference[ref_start:].startswith(empty + "\n}\n")
    suffix = reference[ref_start + len(empty) :]
    assert text.endswith(suffix)
    return text[start : len(text) - len(suffix) + 2]


def inputs_group(script: scripts.Script) -> str:
    """The `{ ... }` group of a rendered script, after checking that everything around it is
    static text, both in the command's entry point (`body`) and in what the host runs once
    that has sourced the bundle's files (`effective`)."""
    assert script.source is not None, f"{script.name}: not an entry point"
    name, _, _, sudo, root, then = script.source
    assert then is None  # (none of the scripts these properties render)
    entry = _group(
        script.body,
        scripts.render(name, {}, sudo=sudo, root=root).body,
        f"# {name}: inputs\n{scripts.ENTRY_DIRECTIVE}\n{{\n",
    )
    assert script.body.endswith(f'. "$K3SR_SCRIPTS/{name}.sh"\n')
    reference = scripts.render(name, {}, sudo=sudo, root=root).effective
    # The program's code is the script file (with the bundle files it sources in their place).
    assert reference.endswith(scripts._with_sourced(f'. "$K3SR_SCRIPTS/{name}.sh"') + "\n")
    effective = _group(script.effective, reference, f"# {name}: inputs\n{scripts.ENTRY_DIRECTIVE}\n{{\n")
    assert effective == entry
    return entry


Check = tuple[scripts.Script, Mapping[str, str], "list[str] | None"]


def assert_only_data(*items: Check) -> None:
    """Each (script, expected inputs, expected args) holds its values as data only; one `sh`
    runs all their groups (each in a subshell) to keep process starts down."""
    program, expected = "set -eu\n", []
    for script, variables, args in items:
        group = inputs_group(script)
        parsed = parse_inputs(script.body)
        assert parsed is not None and parsed.name == script.name
        for name, value in variables.items():
            assert parsed.variables[name] == value, name
        if args is not None:
            assert list(parsed.args) == args

        # Structure only: bashlex's expansion pass does not honour single quotes (it would parse
        # '$(x' or a lone '`' inside them), so expansions are left to the `sh` run below.
        (compound,) = bashlex.parse(group, expansionlimit=-1)
        commands = [part for part in compound.list[1].parts if part.kind == "command"]
        assert len(commands) == len(parsed.variables) + 1
        for command in commands[:-1]:
            assert len(command.parts) == 1 and command.parts[0].kind == "assignment"
        last = commands[-1].parts
        # (without expansions, bashlex keeps each word as its raw token: `.word.value`)
        assert [last[0].word.value, last[1].word.value] == ["set", "--"] and len(last) == 2 + len(parsed.args)

        names = list(parsed.variables)
        printer = "".join(f'printf "%s\\0" "${n}"\n' for n in names)
        program += f'(\n{group}\n{printer}for a in "$@"; do printf "%s\\0" "$a"; done\n)\n'
        expected += [parsed.variables[n] for n in names] + list(parsed.args)
    run = subprocess.run([SH, "-c", program], capture_output=True, env={"PATH": ""})
    assert run.returncode == 0 and run.stderr == b"", run.stderr
    assert run.stdout.decode().split("\0")[:-1] == expected


def managed_yaml_data(text: str) -> Any:
    assert text.startswith(scripts.MANAGED_MARKER + "\n")
    return yaml.safe_load(text)


# --- properties ------------------------------------------------------------------------------


@CHEAP
@given(name=node_names)
def test_node_names(name: str) -> None:
    config = base()
    config["servers"][0]["name"] = name
    s = accepted(config, ["servers[0].name", "agents[0].name"])
    if s is None:
        return
    node = s.servers[0]
    assert_only_data(
        (scripts.install_script(node, s.k3s, first_server=True), {"NODE_NAME": name}, None),
        (scripts.wait_script([name, "w1"], s.k3s, timeout=10, waits_for="x", user="u"), {}, [name, "w1"]),
        (scripts.node_meta_script(node, "root"), {"NODE_NAME": name}, None),
        (scripts.drain_script(name, 10, "u"), {"NODE_NAME": name}, None),
        (scripts.forget_script(name, "u"), {"NODE_NAME": name}, None),
        (scripts.registration_script(node, s.k3s), {"NODE_NAME": name}, None),
    )


@CHEAP
@given(labels=st.dictionaries(label_keys, label_values, max_size=3))
def test_labels(labels: dict[str, str]) -> None:
    config = base()
    config["agents"][0]["labels"] = labels
    s = accepted(config, ["agents[0].labels"])
    if s is None:
        return
    node = s.agents[0]
    expected = "\n".join(f"{k}={v}" for k, v in sorted(labels.items()))
    managed = "\n".join(scripts.managed_entries(node))
    registration = scripts.registration_yaml(node)
    assert_only_data(
        (scripts.node_meta_script(node, "u"), {"LABELS": expected, "MANAGED": managed}, None),
        (scripts.registration_script(node, s.k3s), {"REGISTRATION_YAML": registration}, None),
    )
    # K3s reads the drop-in back as exactly these labels, appended (`+`) to any from agentConfig.
    assert managed_yaml_data(registration).get("node-label+", []) == [f"{k}={v}" for k, v in sorted(labels.items())]


@CHEAP
@given(values=st.lists(taints, max_size=3))
def test_taints(values: list[str]) -> None:
    config = base()
    config["agents"][0]["taints"] = values
    s = accepted(config, ["agents[0].taints"])
    if s is None:
        return
    registration = scripts.registration_yaml(s.agents[0])
    assert_only_data(
        (scripts.node_meta_script(s.agents[0], "u"), {"TAINTS": "\n".join(values)}, None),
        (scripts.registration_script(s.agents[0], s.k3s), {"REGISTRATION_YAML": registration}, None),
    )
    assert managed_yaml_data(registration).get("node-taint+", []) == values


@CHEAP
@given(server_args=arguments, agent_args=arguments)
def test_args(server_args: list[str], agent_args: list[str]) -> None:
    config = base()
    config["k3s"]["serverArgs"] = server_args
    config["k3s"]["agentArgs"] = agent_args
    s = accepted(config, ["k3s.serverArgs", "k3s.agentArgs"])
    if s is None:
        return
    server = scripts.install_script(s.servers[0], s.k3s, first_server=True)
    agent = scripts.install_script(s.agents[0], s.k3s, first_server=False)
    # The args are not the installer's arguments (install.sh splits those again): they are
    # data in CONFIG_YAML, where every value comes back byte for byte as a `<flag>+` item.
    assert_only_data((server, {}, []), (agent, {}, []))
    for script, args in ((server, server_args), (agent, agent_args)):
        parsed = parse_inputs(script.body)
        assert parsed is not None
        config = managed_yaml_data(parsed.variables["CONFIG_YAML"])
        appended = [value for key, values in config.items() if key.endswith("+") for value in values]
        values, rest = [], list(args)
        while rest:  # --flag=value, --flag value, or a bare --flag (true)
            _, has_value, value = rest.pop(0).partition("=")
            if not has_value:
                value = rest.pop(0) if rest and not (rest[0].startswith("-") and rest[0] != "-") else "true"
            values.append(value)
        assert sorted(appended) == sorted(values)


@CHEAP
@given(address=hostnames, api=hostnames, san=hostnames)
def test_host_names(address: str, api: str, san: str) -> None:
    config = base()
    config["agents"][0]["address"] = address
    config["k3s"]["apiAddress"] = api
    config["k3s"]["tlsSans"] = [san]
    s = accepted(config, ["agents[0].address", "agents[0].ssh", "k3s.apiAddress", "k3s.tlsSans"])
    if s is None:
        return
    url = f"https://[{api}]:6443" if ":" in api else f"https://{api}:6443"
    server = scripts.install_script(s.servers[0], s.k3s, first_server=True)
    agent = scripts.install_script(s.agents[0], s.k3s, first_server=False)
    assert_only_data((agent, {"SERVER_URL": url}, None), (server, {}, None))
    parsed = parse_inputs(server.body)
    assert parsed is not None
    assert managed_yaml_data(parsed.variables["CONFIG_YAML"])["tls-san"][:1] == [api]
    assert san in managed_yaml_data(parsed.variables["CONFIG_YAML"])["tls-san"]


@CHEAP
@given(value=registries)
def test_registries(value: dict[str, Any]) -> None:
    config = base()
    config["k3s"]["registries"] = value
    s = accepted(config, ["k3s.registries"])
    if s is None:
        return
    script = scripts.install_script(s.servers[0], s.k3s, first_server=True)
    parsed = parse_inputs(script.body)
    assert parsed is not None
    assert managed_yaml_data(parsed.variables["REGISTRIES_YAML"]) == value
    assert_only_data((script, {}, None))


@CHEAP
@given(server_config=st.dictionaries(config_keys, config_values, max_size=3))
def test_k3s_config(server_config: dict[str, Any]) -> None:
    config = base()
    config["k3s"]["serverConfig"] = server_config
    s = accepted(config, ["k3s.serverConfig"])
    if s is None:
        return
    script = scripts.install_script(s.servers[0], s.k3s, first_server=True)
    parsed = parse_inputs(script.body)
    assert parsed is not None
    written = managed_yaml_data(parsed.variables["CONFIG_YAML"])
    for key, value in server_config.items():
        if key.removesuffix("+") != "tls-san":
            assert written[key] == value
    assert_only_data((script, {}, None))


# --- shellcheck on batches -------------------------------------------------------------------

one_case = st.fixed_dictionaries(
    {
        "name": node_names,
        "labels": st.dictionaries(label_keys, label_values, max_size=2),
        "taints": st.lists(taints, max_size=2),
        "args": arguments,
        "registries": registries,
        "config": st.dictionaries(config_keys, config_values, max_size=2),
    }
)


def _case_config(case: dict[str, Any], part: str) -> dict[str, Any]:
    config = base()
    if part == "node":
        config["agents"][0].update(name=case["name"], labels=case["labels"], taints=case["taints"])
    else:
        config["k3s"].update(serverArgs=case["args"], registries=case["registries"], serverConfig=case["config"])
    return config


def _shellcheck(paths: list[str]) -> list[subprocess.CompletedProcess[str]]:
    """shellcheck in two processes at once (it checks one file after another)."""
    assert SHELLCHECK is not None
    halves = [paths[0::2], paths[1::2]]
    running = [
        subprocess.Popen([SHELLCHECK, "-s", "sh", *half], stdout=subprocess.PIPE, text=True) for half in halves if half
    ]
    return [subprocess.CompletedProcess(p.args, p.wait(), p.communicate()[0], "") for p in running]


@pytest.mark.skipif(SHELLCHECK is None, reason="shellcheck is installed with requirements-dev.txt")
def test_rendered_scripts_pass_shellcheck() -> None:
    """Generated configs render scripts that are collected first and shellchecked together
    (one shellcheck start per half, not per script); a failure names the generated case."""
    rendered: list[tuple[str, str]] = []  # (case, script)

    @SHELLCHECK_CASES
    @given(case=one_case)
    def collect(case: dict[str, Any]) -> None:
        # Each part alone, so that one refused value does not hide the others.
        node = accepted(_case_config(case, "node"), ["agents[0]"])
        if node is not None:
            rendered.append((repr(case), scripts.node_meta_script(node.agents[0], "u").body))
            rendered.append((repr(case), scripts.registration_script(node.agents[0], node.k3s).body))
        k3s = accepted(_case_config(case, "k3s"), ["k3s"])
        if k3s is not None:
            rendered.append((repr(case), scripts.install_script(k3s.servers[0], k3s.k3s, first_server=True).body))

    collect()
    assert len(rendered) >= SHELLCHECK_CASES.max_examples // 5  # enough were accepted (typically ~60)
    with tempfile.TemporaryDirectory() as where:
        paths = []
        for i, (_, body) in enumerate(rendered):
            path = Path(where) / f"{i}.sh"
            path.write_text(body)
            paths.append(str(path))
        for result in _shellcheck(paths):
            failing = {int(Path(line.split()[1]).stem) for line in result.stdout.splitlines() if line.startswith("In ")}
            cases = "\n".join(rendered[i][0] for i in sorted(failing))
            assert result.returncode == 0, f"{result.stdout[:3000]}\nfrom:\n{cases}"
