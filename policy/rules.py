"""The policy pack's rules as pure functions over a resource's inputs.

Each `check_*` takes the resource type and its inputs as plain data (what the engine sends:
camelCase keys, secrets already unwrapped by pulumi-policy, UNKNOWN where preview does not
know a value yet) and returns the violations as messages; an empty list means compliant.
Unknown values are skipped: the same check runs again on `pulumi up`, when they are known.
Standard library only (the pack's virtualenv has just pulumi and pulumi-policy).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .shell_inputs import ScriptInputs, command_inputs

REMOTE_COMMAND = "command:remote:Command"
LOCAL_COMMAND = "command:local:Command"
COMMANDS = (REMOTE_COMMAND, LOCAL_COMMAND)
COPY_TO_REMOTE = "command:remote:CopyToRemote"
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
CONTAINER = "docker:index/container:Container"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
RANCHER2_PROVIDER = "pulumi:providers:rancher2"
SCRIPT_FIELDS = ("create", "update", "delete")

K3S_RELEASE = re.compile(r"^v\d+\.\d+\.\d+(-rc\d+)?\+k3s\d+$")
K3S_IMAGE_TAG = re.compile(r"^v\d+\.\d+\.\d+(-rc\d+)?-k3s\d+$")
TLS_SOURCES = ("rancher", "letsEncrypt", "secret")
# Literal secrets in command text (an assignment from a shell variable is fine).
_LITERAL_SECRET_ENV = re.compile(r"\b(K3S_TOKEN|K3S_AGENT_TOKEN|K3S_DATASTORE_ENDPOINT)=(?![\"']?\$)")
_SECRET_FLAG = re.compile(r"(^|[\s'\"])(--token|--agent-token|--datastore-endpoint)(=|\s+)(?![\"']?\$)\S")
_SECRET_FLAG_NAMES = ("token", "t", "agent-token", "datastore-endpoint")
_SECRET_CONFIG_KEYS = ("token", "agent-token", "datastore-endpoint")
_SECRET_ENVS = ("K3S_TOKEN", "K3S_AGENT_TOKEN", "K3S_DATASTORE_ENDPOINT", "CATTLE_BOOTSTRAP_PASSWORD")
_CHMOD_KUBECONFIG = re.compile(r"chmod\s+(\S+)\s+\S*k3s\.yaml")
_PRINTS_KUBECONFIG = re.compile(r"(cat|less|head|tail)\s+\S*k3s\.yaml|config\s+view\s+--raw|--flatten")
MIN_SECRET_LINE = 8  # shorter stdin lines (an empty endpoint, "\n") are not worth matching


class Unknown:
    """A value `pulumi preview` does not know yet."""

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN = Unknown()


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> Sequence[Any]:
    return value if isinstance(value, Sequence) and not isinstance(value, str) else []


def scripts_of(props: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(field, text) of a command's known scripts."""
    return [(f, text) for f in SCRIPT_FIELDS if (text := _text(props.get(f))) is not None]


def inputs_of(props: Mapping[str, Any]) -> list[tuple[str, ScriptInputs]]:
    return [(f, inputs) for f, text in scripts_of(props) if (inputs := command_inputs(text)) is not None]


def _yaml_scalar(text: str, key: str) -> str | None:
    """The value of a top-level `key: value` in the YAML k3s-rancher writes (yaml.safe_dump)."""
    match = re.search(rf"^{re.escape(key)}:\s*(.*?)\s*$", text, re.M)
    return match.group(1).strip("'\"") if match else None


def _flag_values(args: Iterable[str], names: Iterable[str]) -> list[tuple[str, str | None]]:
    """(flag, value) of `--name=value` / `--name value` / `-n value` in an argument list."""
    wanted = set(names)
    found: list[tuple[str, str | None]] = []
    items = list(args)
    for i, arg in enumerate(items):
        if not arg.startswith("-"):
            continue
        name, has_value, value = arg.lstrip("-").partition("=")
        if name in wanted:
            following = items[i + 1] if i + 1 < len(items) and not items[i + 1].startswith("-") else None
            found.append((name, value if has_value else following))
    return found


# --- k3s-version-pinned ---------------------------------------------------------------------


def check_k3s_version_pinned(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """K3s is installed at an exact release, never a channel or `latest`."""
    problems: list[str] = []
    if resource_type in COMMANDS:
        for f, text in scripts_of(props):
            if "INSTALL_K3S_CHANNEL" in text:
                problems.append(f"{f}: sets INSTALL_K3S_CHANNEL: install an exact release (k3s.version)")
        for f, inputs in inputs_of(props):
            version = inputs.variables.get("K3S_VERSION")
            if version is not None and not K3S_RELEASE.match(version):
                problems.append(f"{f}: K3S_VERSION {version!r} is not an exact K3s release such as v1.33.5+k3s1")
    if resource_type == REMOTE_IMAGE:
        problems += _k3s_image_problems(props.get("name"))
    if resource_type == CONTAINER:
        problems += _k3s_image_problems(props.get("image"))
    return problems


def _k3s_image_problems(image: Any) -> list[str]:
    if not isinstance(image, str) or not re.match(r"^([^/]+/)*rancher/k3s([:@]|$)", image):
        return []
    if "@sha256:" in image:
        return []
    tag = image.rpartition(":")[2] if ":" in image.rpartition("/")[2] else ""
    if not K3S_IMAGE_TAG.match(tag):
        return [f"image {image!r} is not pinned to an exact K3s release tag such as rancher/k3s:v1.33.5-k3s1"]
    return []


# --- secrets-off-the-command-line -----------------------------------------------------------


def check_secrets_off_the_command_line(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """Tokens and datastore endpoints travel on stdin or in files, never in command text,
    arguments, environment or config text (all of which `pulumi preview --diff`, logs, the
    process list or `docker inspect` show)."""
    problems: list[str] = []
    if resource_type in COMMANDS:
        problems += _command_secret_problems(props)
    if resource_type == CONTAINER:
        for env in _list(props.get("envs")):
            name = (_text(env) or "").partition("=")[0]
            if name in _SECRET_ENVS:
                problems.append(f"envs: {name} is visible to `docker inspect`: upload it as a 0600 file instead")
        command = [c for c in _list(props.get("command")) if isinstance(c, str)]
        for flag, _ in _flag_values(command, _SECRET_FLAG_NAMES):
            problems.append(f"command: --{flag} puts a secret into the container's command line: use a file")
        for upload in _list(props.get("uploads")):
            content = _text(_map(upload).get("content"))
            if content and str(_map(upload).get("file", "")).endswith(".yaml"):
                problems += [f"uploads: {m}" for m in _config_secret_problems(content)]
    return problems


def _config_secret_problems(config_yaml: str) -> list[str]:
    return [
        f"config.yaml sets {key}: put the secret in its own 0600 file (token-file) instead of config text"
        for key in _SECRET_CONFIG_KEYS
        if _yaml_scalar(config_yaml, key) is not None
    ]


# The first words of the scripts bundle a `<node>-scripts` step sends (components/bundle.py).
SCRIPTS_BUNDLE_HEADER = "k3s-rancher scripts "


def _command_secret_problems(props: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    stdin = _text(props.get("stdin"))
    if stdin is not None and stdin.startswith(SCRIPTS_BUNDLE_HEADER):
        # The scripts bundle (components/bundle.py): public code on stdin, not a secret.
        return problems
    secret_lines = [line for line in (stdin or "").splitlines() if len(line.strip()) >= MIN_SECRET_LINE]
    visible: list[tuple[str, str]] = list(scripts_of(props))
    visible += [(f"environment.{k}", v) for k, v in _map(props.get("environment")).items() if isinstance(v, str)]
    visible += [(f"triggers[{i}]", v) for i, v in enumerate(_list(props.get("triggers"))) if isinstance(v, str)]
    for where, text in visible:
        if any(line in text for line in secret_lines):
            problems.append(f"{where}: contains what the command is given on stdin (a secret): keep it on stdin only")
        if _LITERAL_SECRET_ENV.search(text) or _SECRET_FLAG.search(text):
            problems.append(f"{where}: passes a K3s token or datastore endpoint literally: send it on stdin")
    for f, inputs in inputs_of(props):
        for flag, _ in _flag_values(inputs.args, _SECRET_FLAG_NAMES):
            problems.append(f"{f}: --{flag} puts a secret into the command text and the process list")
        for name, value in inputs.variables.items():
            if name.endswith("_YAML"):
                problems += [f"{f}: {name}: {m}" for m in _config_secret_problems(value)]
        if inputs.name == "install_node" and props.get("stdin") is None:
            problems.append(f"{f}: the install reads the cluster token on stdin, but stdin is not set")
    return problems


# --- rancher-serves-tls ---------------------------------------------------------------------


def is_rancher_release(props: Mapping[str, Any]) -> bool:
    chart = _text(props.get("chart")) or ""
    base = chart.rstrip("/").rpartition("/")[2]
    return props.get("name") == "rancher" or base == "rancher" or base.startswith("rancher-")


def check_rancher_serves_tls(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """Rancher is reached over HTTPS only: its ingress serves TLS, and code that logs in to it
    uses an https:// URL."""
    problems: list[str] = []
    if resource_type == HELM_RELEASE and is_rancher_release(props):
        values = _map(props.get("values"))
        ingress = _map(values.get("ingress"))
        source = _map(ingress.get("tls")).get("source", "rancher")
        if values.get("tls") == "external":
            problems.append("values.tls external: Rancher would serve plain HTTP behind a TLS proxy this stack lacks")
        if ingress.get("enabled") is False:
            problems.append("values.ingress.enabled false: Rancher would have no TLS ingress")
        if isinstance(source, str) and source not in TLS_SOURCES:
            problems.append(f"values.ingress.tls.source {source!r} is not one of {', '.join(TLS_SOURCES)}")
        if source == "letsEncrypt" and not _map(values.get("letsEncrypt")).get("email"):
            problems.append("values.ingress.tls.source letsEncrypt needs values.letsEncrypt.email")
        hostname = values.get("hostname")
        if hostname is not None and not isinstance(hostname, (str, Unknown)):
            problems.append("values.hostname must be Rancher's DNS name")
    if resource_type == RANCHER2_PROVIDER:
        url = _text(props.get("apiUrl"))
        if url is not None and not url.startswith("https://"):
            problems.append(f"apiUrl {url!r}: Rancher's API is reached over https:// only")
    return problems


# --- kubeconfig-not-world-readable -----------------------------------------------------------


def world_readable(mode: str) -> bool:
    """True when a chmod-style mode lets other users read (or write) the file."""
    if re.fullmatch(r"0?[0-7]{3}", mode):
        return int(mode[-1]) != 0
    return bool(re.search(r"(^|,)[ao]*[+=][rwx]", mode)) and not re.search(r"(^|,)[ug]+[+=]", mode)


def check_kubeconfig_not_world_readable(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """The admin kubeconfig (/etc/rancher/k3s/k3s.yaml) stays readable by root only."""
    problems: list[str] = []
    if resource_type in COMMANDS:
        for f, text in scripts_of(props):
            for mode in _CHMOD_KUBECONFIG.findall(text):
                if world_readable(mode):
                    problems.append(f"{f}: chmod {mode} makes the admin kubeconfig readable by every user")
        for f, inputs in inputs_of(props):
            problems += [f"{f}: {m}" for m in _kubeconfig_mode_problems(inputs.args, inputs.variables.values())]
    if resource_type == CONTAINER:
        command = [c for c in _list(props.get("command")) if isinstance(c, str)]
        configs = [
            content
            for upload in _list(props.get("uploads"))
            if (content := _text(_map(upload).get("content"))) and str(_map(upload).get("file", "")).endswith(".yaml")
        ]
        problems += _kubeconfig_mode_problems(command, configs)
        for env in _list(props.get("envs")):
            name, _, value = (_text(env) or "").partition("=")
            if name == "K3S_KUBECONFIG_MODE" and world_readable(value):
                problems.append(f"envs: K3S_KUBECONFIG_MODE={value} makes the admin kubeconfig readable by every user")
    return problems


def _kubeconfig_mode_problems(args: Iterable[str], config_texts: Iterable[str]) -> list[str]:
    problems: list[str] = []
    for _, mode in _flag_values(args, ["write-kubeconfig-mode"]):
        if mode is None or world_readable(mode):
            problems.append(f"--write-kubeconfig-mode {mode}: the admin kubeconfig must not be world-readable")
    for text in config_texts:
        mode = _yaml_scalar(text, "write-kubeconfig-mode")
        if mode is not None and world_readable(mode):
            problems.append(f"config.yaml write-kubeconfig-mode {mode}: the kubeconfig must not be world-readable")
    return problems


# --- no-previous-output-in-env ----------------------------------------------------------------


def check_no_previous_output_in_env(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """add_previous_output_in_env is false. With the default (true) every update and delete
    sends the previous stdout/stderr as PULUMI_COMMAND_STDOUT/STDERR: over SSH a stock sshd
    refuses that setenv, which pulumi-command 1.x logs as a warning on every run (the command
    still runs); where sshd accepts it, the previous output (which can hold what a script
    printed about the node) travels to the host's environment. Nothing of ours reads it."""
    if resource_type in COMMANDS and props.get("addPreviousOutputInEnv") not in (False, UNKNOWN):
        return [
            "addPreviousOutputInEnv is not false (the provider's default is true): set it to False, "
            "else every update and delete ships the previous output to the command's environment "
            "(a setenv warning per run against a stock sshd)"
        ]
    return []


# --- sudo-non-interactive ---------------------------------------------------------------------


def check_sudo_non_interactive(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """sudo runs with -n: a password prompt would read the command's stdin, where the secrets are."""
    problems: list[str] = []
    if resource_type in COMMANDS:
        for f, text in scripts_of(props):
            for match in re.finditer(r"(^|[;&|]\s*|\s)sudo(\s+-[A-Za-z]+)*\s", text):
                if not re.search(r"-[A-Za-z]*n", match.group(0)):
                    problems.append(f"{f}: sudo without -n could prompt for a password on stdin")
                    break
    return problems


# --- ssh-host-keys-checked (advisory) ---------------------------------------------------------


def check_ssh_host_keys(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """Every SSH connection checks the host's key (ssh.hostKeys, or a node's ssh.hostKey)."""
    if resource_type not in (REMOTE_COMMAND, COPY_TO_REMOTE):
        return []
    connection = props.get("connection")
    if not isinstance(connection, Mapping):
        return []
    problems: list[str] = []
    if connection.get("hostKey") is None:
        problems.append(f"the host key of {connection.get('host')} is not checked: set ssh.hostKeys")
    proxy = connection.get("proxy")
    if isinstance(proxy, Mapping) and proxy.get("hostKey") is None:
        problems.append(f"the host key of the bastion {proxy.get('host')} is not checked: set ssh.bastion.hostKey")
    return problems


# --- secret-command-output-hidden ------------------------------------------------------------


def prints_secret(props: Mapping[str, Any]) -> bool:
    """Whether a command prints something secret (the admin kubeconfig)."""
    if any(inputs.name == "read_kubeconfig" for _, inputs in inputs_of(props)):
        return True
    return any(_PRINTS_KUBECONFIG.search(text) for _, text in scripts_of(props))


def check_secret_output_hidden(
    resource_type: str, props: Mapping[str, Any], additional_secret_outputs: Iterable[str]
) -> list[str]:
    """A command that prints a secret keeps its output secret in state and out of the logs."""
    if resource_type not in COMMANDS or not prints_secret(props):
        return []
    problems: list[str] = []
    missing = {"stdout", "stderr"} - set(additional_secret_outputs)
    if missing:
        problems.append(f"prints the admin kubeconfig but {', '.join(sorted(missing))} not in additionalSecretOutputs")
    if props.get("logging") not in ("none", UNKNOWN):
        logging = props.get("logging") or "stdoutAndStderr"
        problems.append(f"prints the admin kubeconfig with logging {logging}: use none")
    return problems


# --- one-k3s-version (stack) -----------------------------------------------------------------


def k3s_versions(resources: Iterable[tuple[str, str, Mapping[str, Any]]]) -> dict[str, set[str]]:
    """K3s version -> URNs that install or wait for it, over (type, urn, props) of a stack."""
    found: dict[str, set[str]] = {}
    for resource_type, urn, props in resources:
        if resource_type in COMMANDS:
            for _, inputs in inputs_of(props):
                if version := inputs.variables.get("K3S_VERSION"):
                    found.setdefault(version, set()).add(urn)
        if resource_type == REMOTE_IMAGE:
            name = _text(props.get("name")) or ""
            tag = name.rpartition(":")[2]
            if re.match(r"^([^/]+/)*rancher/k3s:", name) and K3S_IMAGE_TAG.match(tag):
                found.setdefault(tag.replace("-k3s", "+k3s"), set()).add(urn)
    return found


def check_one_k3s_version(resources: Iterable[tuple[str, str, Mapping[str, Any]]]) -> list[tuple[str | None, str]]:
    """Every node of a stack runs the same K3s release (servers first, then agents, in one `up`)."""
    found = k3s_versions(resources)
    if len(found) <= 1:
        return []
    summary = ", ".join(f"{v} ({len(urns)} resources)" for v, urns in sorted(found.items()))
    return [(None, f"the stack installs more than one K3s release: {summary}")]
