"""Static: components/sh/*.sh and every rendered script (install as first/joining server and
agent, sqlite/etcd/external datastore, airgap, airgap staging, registration, wait,
kubeconfig, node_meta, drain, forget, uninstall; root and non-root users) pass
`shellcheck -s sh`, `bash -n` and `dash -n`, with awkward values wherever validation lets
them through; those values stay data and come back quoted."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import yaml

from components import bundle, host_facts, scripts
from policy.shell_inputs import parse as parse_inputs
from tests.scripts.awkward import (
    AGENT_ARGS,
    AWKWARD,
    MULTILINE,
    SERVER_ARGS,
    SH_DIR,
    SHELLS,
    awkward_config,
    run_shellcheck,
    settings_for,
)


def test_the_shells_to_check_with_are_here() -> None:
    assert "bash" in SHELLS
    assert "dash" in SHELLS or Path("/bin/sh").resolve().name != "dash"


def test_every_script_file_passes_shellcheck_and_parses() -> None:
    files = sorted(SH_DIR.glob("*.sh"))
    assert {f.stem for f in files} >= {
        "lib",
        "install_node",
        "wait_node",
        "read_kubeconfig",
        "node_meta",
        "drain_delete",
        "uninstall_node",
        "registration",
        "stage_airgap",
    }
    result = run_shellcheck(files)
    assert result.returncode == 0, result.stdout + result.stderr
    for path in files:
        assert path.read_text().startswith("# shellcheck shell=sh\n"), path
        for shell in SHELLS:
            check = subprocess.run([shell, "-n", str(path)], capture_output=True, text=True)
            assert check.returncode == 0, f"{shell} -n {path.name}: {check.stderr}"


# Every variable set to AWKWARD includes ones validation keeps plain (K3S_VERSION, ROLE,
# SERVER_URL): shellcheck's data-flow warnings about quotes inside such values (SC2089 at the
# assignment, SC2090 where the variable is exported) describe values that cannot occur.
IMPOSSIBLE_VALUE_CODES = "SC2089,SC2090"


def test_every_rendered_script_passes_shellcheck_and_parses(
    all_rendered: dict[str, scripts.Script], tmp_path: Path
) -> None:
    """Both the command text (an entry point into the scripts bundle, or a whole script) and
    what the host runs once the entry point sourced the bundle's files (`effective`)."""
    paths: list[Path] = []
    impossible: list[Path] = []
    for name, script in all_rendered.items():
        for form, text in (("entry", script.body), ("effective", script.effective)):
            path = tmp_path / f"{name}.{form}.sh"
            path.write_text(text)
            (impossible if name.startswith("file-") else paths).append(path)
            for shell in SHELLS:
                body = subprocess.run([shell, "-n", "-c", text], capture_output=True, text=True)
                assert body.returncode == 0, f"{shell} -n {name} ({form}): {body.stderr}"
            # The login shell parses the whole command text first (sshd runs `$SHELL -c COMMAND`).
            command = subprocess.run([shell, "-n", "-c", script.command], capture_output=True, text=True)
            assert command.returncode == 0, f"{shell} -n (command) {name}: {command.stderr}"
    result = run_shellcheck(paths)  # one shellcheck run for all of them
    assert result.returncode == 0, result.stdout + result.stderr
    result = run_shellcheck(impossible, "-e", IMPOSSIBLE_VALUE_CODES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(paths) >= 40


def test_the_command_is_sh_c_of_the_body_through_sudo_n_only_for_non_root(
    all_rendered: dict[str, scripts.Script],
) -> None:
    settings = settings_for(awkward_config())
    for name, script in all_rendered.items():
        words = shlex.split(script.command)
        assert words[-3:-1] == ["sh", "-c"] and words[-1] == script.body, name
        assert words[:-3] in ([], ["sudo", "-n"]), name
    by_node = {n.name: n for n in settings.nodes}
    for node_name in ("cp1", "cp2"):
        command = all_rendered[f"install-etcd-{node_name}"].command
        assert command.startswith("sudo -n ") == (by_node[node_name].ssh.user != "root")
    assert all_rendered["wait-root"].command.startswith("sh -c ")
    assert all_rendered["wait-ubuntu"].command.startswith("sudo -n sh -c ")


def test_awkward_values_stay_data(all_rendered: dict[str, scripts.Script]) -> None:
    """Values appear only inside the inputs group, and come back from it exactly."""
    settings = settings_for(awkward_config())
    install = all_rendered["install-etcd-cp1"]
    inputs = parse_inputs(install.body)
    assert inputs is not None and inputs.name == "install_node"
    assert list(inputs.args) == []  # extra args are in CONFIG_YAML, never the installer's arguments
    assert inputs.variables["INSTALL_SCRIPT_URL"] == settings.k3s.install_script_url
    config = yaml.safe_load(inputs.variables["CONFIG_YAML"])
    assert config["disable"] == ["servicelb", AWKWARD] and config["node-external-dns"] == MULTILINE
    assert config["kube-apiserver-arg+"] == [SERVER_ARGS[1]] and config["kubelet-arg+"] == [AWKWARD]
    assert config["node-external-ip+"] == ["203.0.113.5"]
    registries = yaml.safe_load(inputs.variables["REGISTRIES_YAML"])
    assert registries == settings.k3s.registries
    # The command text is the entry point: inputs, then the bundle's file; none of its code.
    assert install.body.endswith('. "$K3SR_SCRIPTS/install_node.sh"\n')
    assert "put_file" not in install.body and "installed_hashes" not in install.body
    body_file = (SH_DIR / "install_node.sh").read_text()
    assert "installed_hashes" in body_file and "installed_hashes" in install.effective
    agent = parse_inputs(all_rendered["install-etcd-w1"].body)
    assert agent is not None and list(agent.args) == []
    agent_config = yaml.safe_load(agent.variables["CONFIG_YAML"])
    assert agent_config["node-external-ip+"] == [AGENT_ARGS[0].partition("=")[2]]
    assert agent_config["lb-server-port+"] == [AGENT_ARGS[2]]
    airgap = parse_inputs(all_rendered["install-airgap-cp1"].body)
    assert airgap is not None and airgap.variables["AIRGAP_IMAGES"] == "k3s airgap 'images' $(x).tar.zst"
    hint = parse_inputs(all_rendered["wait-hint-root"].body)
    assert hint is not None and hint.variables["HINT"] == AWKWARD


def test_values_that_look_like_shell_keywords_are_quoted(tmp_path: Path) -> None:
    """shlex.quote leaves `then`, `fi`, ... bare: valid data, but shellcheck (and a reader)
    takes them for keywords (found by the shellcheck property with a node named `then`)."""
    script = scripts.render("drain_delete", {"NODE_NAME": "then", "DRAIN_TIMEOUT": "0"}, ["fi", "done"], sudo=False)
    assert "NODE_NAME='then'" in script.body and "set -- 'fi' 'done'" in script.body
    path = tmp_path / "keywords.sh"
    path.write_text(script.body)
    result = run_shellcheck([path])
    assert result.returncode == 0, result.stdout


def _code(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def _calls(text: str, names: set[str]) -> set[str]:
    """The functions of `names` that `text` calls (its own definitions aside)."""
    code = _code(text)
    own = set(re.findall(r"^\s*(\w+)\(\) \{", code, re.M))
    return {n for n in names - own if re.search(rf"(^|[\s;|&(`$!]){n}\b", code, re.M)}


def test_each_script_lists_the_lib_helpers_it_calls_and_each_listed_helper_exists() -> None:
    """A script's `# lib.sh:` line is what it may call of lib.sh; a script sent whole in its
    command text (components/bundle.py NOT_BUNDLED) gets exactly the listed helpers, so its
    list also holds every helper those call."""
    blocks = scripts.lib_blocks()
    helpers = set().union(*(names for names, _ in blocks))
    assert {"log", "die", "kc", "node_state", "drain_node", "redact"} <= helpers
    lib = (SH_DIR / "lib.sh").read_text()
    for path in sorted(SH_DIR.glob("*.sh")):
        if path.name == "lib.sh":
            continue
        text = path.read_text()
        assert re.search(r"^# lib\.sh: \S", text, re.M), f"{path.name}: no `# lib.sh:` line"
        listed = set(scripts.listed_helpers(text))
        assert listed <= helpers, f"{path.name} lists helpers lib.sh lacks: {sorted(listed - helpers)}"
        called = _calls(text, helpers)
        assert called <= listed, f"{path.name} calls helpers it does not list: {sorted(called - listed)}"
        if path.name in bundle.NOT_BUNDLED and listed:
            needed = set().union(*(_calls(t, helpers) for names, t in blocks if names & listed))
            assert needed <= listed, f"{path.name}: the listed helpers call {sorted(needed - listed)}"
        else:
            first = next(line for line in _code(text).splitlines() if line.strip())
            assert path.name in bundle.NOT_BUNDLED or first == "set -eu", f"{path.name} starts with {first!r}"
    assert _calls(lib, helpers) <= helpers


def test_no_script_copies_a_path_or_default_that_consts_sh_emits() -> None:
    """The host paths, K3s's API port and networks are defined once (components/host_facts.py)
    and reach the bundle's scripts as consts.sh; only the scripts sent whole (no bundle) keep
    their own."""
    values = [
        host_facts.TOKEN_FILE,
        host_facts.ADMIN_KUBECONFIG,
        host_facts.DROP_IN_DIR,
        host_facts.SERVER_TOKEN,
        host_facts.AIRGAP_ROOT,
        host_facts.APPLIED_FILE,
        host_facts.RESTART_PENDING_FILE,
        host_facts.HOST_LOCK,
        host_facts.CORDON_MARK,
        str(host_facts.K3S_API_PORT),
        host_facts.K3S_CLUSTER_CIDR,
        host_facts.K3S_SERVICE_CIDR,
    ]
    for path in sorted(SH_DIR.glob("*.sh")):
        if path.name in bundle.NOT_BUNDLED:
            continue
        code = _code(path.read_text())
        for value in values:
            assert value not in code, f"{path.name} has {value!r}: use consts.sh's name for it"
    consts = bundle.generated()[host_facts.CONSTS_FILE]
    assert all(f"{name}=*) {name}=" in consts for name, _ in host_facts.INSTALL_STDIN)
