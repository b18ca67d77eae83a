"""Render the shell commands that run on the hosts.

Each script is a static file in components/sh/ that reads its inputs from shell variables;
the files reach each host as the scripts bundle (components/bundle.py). A node command's
text is an entry point: a preamble of `NAME='quoted value'` lines (and `set -- 'arg' ...`
for lists), then lib.sh and the script sourced from the bundle on the host, run by `sh -c`
(whatever the login shell is) and through `sudo -n` when the SSH user is not root. So the
text is what the node should be, never the code. No config value is ever pasted into code,
and secrets only travel on stdin.

(Over 400 lines: the two renderers (entry points into the scripts bundle, and the few
scripts sent whole) and one small function per script, all on the same render/quote/stdin
rules; split by script they would scatter the one contract every script's inputs follow.)
"""

from __future__ import annotations

import hashlib
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import yaml

from . import bundle, checks, host_facts, k3s_flags, proxy
from .checks import is_ip
from .release import SCRIPTS_GENERATION, VERSION
from .settings import K3sSettings, Node, known

SH_DIR = bundle.SH_DIR
CONF_DIR = host_facts.CONF_DIR
TOKEN_FILE = host_facts.TOKEN_FILE
MANAGED_MARKER = host_facts.MANAGED_MARKER
# Airgap files: staged by CopyToRemote (SFTP, as the SSH user) under the user's home (a
# relative SFTP path resolves there), one directory per generation; the install copies them
# to a root-owned place per generation and runs them from there only.
AIRGAP_STAGE_PARENT = ".k3s-rancher/airgap"
AIRGAP_ROOT = host_facts.AIRGAP_ROOT
REGISTRATION_FILE = host_facts.REGISTRATION_FILE
ETCD_S3_FILE = host_facts.ETCD_S3_FILE
_VAR = re.compile(r"^[A-Z][A-Z0-9_]*$")
INPUTS_DIRECTIVE = "# shellcheck disable=SC1003,SC2016"
# An entry point's inputs are read by the bundle's files it sources, which shellcheck does not see.
ENTRY_DIRECTIVE = "# shellcheck disable=SC1003,SC2016,SC2034"


@cache
def _read(name: str) -> str:
    """sh/<name>, or the bundle's generated file of that name (consts.sh)."""
    return bundle.generated().get(name) or (SH_DIR / name).read_text()


# Each host script lists the lib.sh helpers it calls on a line `# lib.sh: log die ...` ("none":
# it calls none); tests/scripts/test_static_checks.py checks the lists against the code.
_LISTED = re.compile(r"^# lib\.sh: (.*)$", re.M)
_FUNCTION = re.compile(r"^(\w+)\(\) \{", re.M)


def listed_helpers(text: str) -> tuple[str, ...]:
    """The lib.sh helpers a script's text lists (empty without a list or with "none")."""
    match = _LISTED.search(text)
    words = match.group(1).split() if match else []
    return tuple(w for w in words if w != "none")


@cache
def lib_blocks() -> tuple[tuple[frozenset[str], str], ...]:
    """sh/lib.sh split at blank lines into (the functions a block defines, its text)."""
    return tuple((frozenset(_FUNCTION.findall(block)), block) for block in _read("lib.sh").strip().split("\n\n"))


def _helpers_for(listed: Sequence[str]) -> str:
    """lib.sh's header and the blocks defining the helpers in `listed`, for a script sent whole
    in its command text (no bundle on the host): its list must name every helper it needs,
    those the listed ones call included. lib.sh's other statements (sourcing consts.sh) run
    only where the bundle is."""
    blocks = lib_blocks()
    header = [blocks[0][1]] if not blocks[0][0] else []
    return "\n\n".join(header + [text for names, text in blocks if names & set(listed)])


# Words shlex.quote leaves bare that a shell (and shellcheck, for a reader) can take for a
# keyword: harmless as data, but quoted all the same.
_KEYWORDS = frozenset(
    [
        "case",
        "do",
        "done",
        "elif",
        "else",
        "esac",
        "fi",
        "for",
        "if",
        "in",
        "then",
        "until",
        "while",
        "function",
        "select",
        "time",
        "coproc",
    ]
)


def _quote(value: str) -> str:
    quoted = shlex.quote(value)
    return f"'{value}'" if quoted in _KEYWORDS else quoted


def quote_assignment(name: str, value: str) -> str:
    if not _VAR.match(name):
        raise ValueError(f"not a script variable name: {name!r}")
    return f"{name}={_quote(value)}"


@dataclass(frozen=True)
class Script:
    """A rendered script: `body` is what `sh` runs; `command` is the full SSH command text;
    `effective` is the program the host ends up running (lib.sh's helpers, the inputs, the
    script's code), which for an entry point is only on the host: the static checks read it."""

    name: str
    body: str
    command: str
    # An entry point's `render` arguments (name, variables, args, sudo, root, then); None: `body`
    # is all there is. `effective` is then `body` with the bundle's files it sources in place.
    source: tuple[Any, ...] | None = field(default=None, compare=False, repr=False)

    @cached_property
    def effective(self) -> str:
        if self.source is None:
            return self.body
        # Without where the bundle is and the checks that it is there: this text carries what
        # it would source.
        bundle_lines = (f'[ -f "${BUNDLE_DIR_VAR}/', f"{BUNDLE_DIR_VAR}=")
        kept = [line for line in self.body.splitlines() if not line.startswith(bundle_lines)]
        return _with_sourced("\n".join(kept) + "\n")


def _strip_comments(text: str) -> str:
    """Drop comment-only lines but shellcheck's directives: the files keep them; the command
    text stays short to read."""
    return "\n".join(
        line
        for line in text.splitlines()
        if not line.lstrip().startswith("#") or line.lstrip().startswith("# shellcheck disable=")
    )


def _inputs(
    name: str, variables: Mapping[str, str], args: Sequence[str], directive: str = INPUTS_DIRECTIVE
) -> list[str]:
    # The inputs are one group, so that one shellcheck directive covers them: their values are
    # data in single quotes, and `$(...)` or a backslash in data is not a mistake there.
    lines = [f"# {name}: inputs", directive, "{"]
    lines += [quote_assignment(key, value) for key, value in variables.items()]
    lines.append("set --" + "".join(" " + _quote(a) for a in args))
    lines.append("}")
    return lines


def _wrap(script: str, sudo: bool) -> str:
    return ("sudo -n " if sudo else "") + "sh -c " + shlex.quote(script)


_SOURCED = re.compile(r'^(\(?)\. "\$K3SR_SCRIPTS/([a-z0-9_]+\.sh)"(\)?.*)$', re.M)


def _with_sourced(text: str) -> str:
    """`text` with each file it sources from the bundle written in its place (and the files
    those source), as the host runs it: for the static checks."""

    def expand(match: re.Match[str]) -> str:
        lines = _with_sourced(_strip_comments(_read(match.group(2))).strip()).splitlines()
        # The file's leading shellcheck directives cover all of it, as they do in the file.
        lead = 0
        while lead < len(lines) and lines[lead].startswith("# shellcheck disable="):
            lead += 1
        inner = "\n".join([*lines[:lead], "{", *lines[lead:], "}"])
        return f"(\n{inner}\n{match.group(3)}" if match.group(1) else inner

    return _SOURCED.sub(expand, text)


def _inline_body(name: str, then: str | None) -> str:
    body = _with_sourced(_strip_comments(_read(f"{name}.sh")).strip())
    if then is not None:
        # The first script in a subshell, so that its early `exit 0` ends only it (set -e still
        # stops at its failure), and with no stdin: what comes on stdin is for `then`.
        body = f"(\n{body}\n) </dev/null\n\n" + _with_sourced(_strip_comments(_read(f"{then}.sh")).strip())
    return body


def render_inline(
    name: str,
    variables: Mapping[str, str],
    args: Sequence[str] = (),
    *,
    sudo: bool,
    root: bool = True,
    then: str | None = None,
    helpers: bool = True,
) -> Script:
    """sh/<name>.sh with the lib.sh helpers it calls (none with `helpers` False: a script that
    brings its own) and its inputs, all in the command text. Only for what runs where no
    scripts bundle is: the bundle's own delivery, and Rancher's container. Node commands use
    `render` (an entry point into the bundle)."""
    body = _inline_body(name, then)
    listed = [*listed_helpers(_read(f"{name}.sh")), *(listed_helpers(_read(f"{then}.sh")) if then else ())]
    used = _strip_comments(_helpers_for([*listed, *(["need_root"] if root else [])])) if helpers else ""
    lines = ["set -eu", *([used] if used else []), *_inputs(name, variables, args)]
    if root:
        lines.append("need_root")
    script = "\n".join(lines) + "\n\n" + body
    return Script(name=name, body=script, command=_wrap(script, sudo))


# Where the entry points find the scripts (components/bundle.py delivers them there).
BUNDLE_DIR_VAR = "K3SR_SCRIPTS"
MISSING_BUNDLE = (
    "the k3s-rancher scripts are not on this host (was it wiped or reimaged?); see Scripts on the hosts in the README"
)


def render(
    name: str,
    variables: Mapping[str, str],
    args: Sequence[str] = (),
    *,
    sudo: bool,
    root: bool = True,
    then: str | None = None,
) -> Script:
    """The entry point of sh/<name>.sh: its inputs, as quoted data, then the script sourced
    from the scripts bundle on the host (components/bundle.py). The text holds what the node
    should be, never the code, so a code change changes no node command. `root` False for
    the one step that runs as the SSH user itself (no root check). With `then`, sh/<then>.sh
    runs after it, in the same command."""
    steps = [name] if then is None else [name, then]
    lines = ["set -eu", *_inputs(name, variables, args, ENTRY_DIRECTIVE), f"{BUNDLE_DIR_VAR}={bundle.CURRENT}"]
    for step in steps:
        lines.append(
            f'[ -f "${BUNDLE_DIR_VAR}/{step}.sh" ] || {{ echo "k3s-rancher: error: {MISSING_BUNDLE}" >&2; exit 3; }}'
        )
    lines += ["# shellcheck source=/dev/null", f'. "${BUNDLE_DIR_VAR}/lib.sh"']
    if root:
        lines.append("need_root")
    if then is None:
        lines += ["# shellcheck source=/dev/null", f'. "${BUNDLE_DIR_VAR}/{name}.sh"']
    else:
        # The first script in a subshell, so that its early `exit 0` ends only it (set -e still
        # stops at its failure), and with no stdin: what comes on stdin is for `then`.
        lines += [
            "# shellcheck source=/dev/null",
            f'(. "${BUNDLE_DIR_VAR}/{name}.sh") </dev/null',
            "# shellcheck source=/dev/null",
            f'. "${BUNDLE_DIR_VAR}/{then}.sh"',
        ]
    script = "\n".join(lines) + "\n"
    source = (name, dict(variables), tuple(args), sudo, root, then)
    return Script(name=name, body=script, command=_wrap(script, sudo), source=source)


def needs_sudo(user: str) -> bool:
    return user != "root"


def managed_yaml(data: Mapping[str, Any]) -> str:
    return MANAGED_MARKER + "\n" + yaml.safe_dump(dict(data), sort_keys=True, default_flow_style=False)


def _unique(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(items))


def etcd_snapshot_flags(k3s: K3sSettings) -> dict[str, Any]:
    """The server flags (config.yaml keys) k3s.etcdSnapshots sets, none without it."""
    snap = k3s.etcd_snapshots
    if snap is None:
        return {}
    flags: dict[str, Any] = {}
    if snap.schedule_cron is not None:
        flags["etcd-snapshot-schedule-cron"] = snap.schedule_cron
    if snap.retention is not None:
        flags["etcd-snapshot-retention"] = snap.retention
    if snap.directory is not None:
        flags["etcd-snapshot-dir"] = snap.directory
    if snap.s3 is not None:
        flags |= {"etcd-s3": True, "etcd-s3-endpoint": snap.s3.endpoint, "etcd-s3-bucket": snap.s3.bucket}
        for name, value in (("etcd-s3-folder", snap.s3.folder), ("etcd-s3-region", snap.s3.region)):
            if value is not None:
                flags[name] = value
        for name, on in (("etcd-s3-insecure", snap.s3.insecure), ("etcd-s3-skip-ssl-verify", snap.s3.skip_ssl_verify)):
            if on:
                flags[name] = True
    return flags


def node_config(node: Node, k3s: K3sSettings, *, first_server: bool) -> dict[str, Any]:
    """The node's /etc/rancher/k3s/config.yaml as data (the user's serverConfig/agentConfig
    first, then the keys this program owns, which win; tls-san lists are merged)."""
    user = k3s.server_config if node.role == "server" else k3s.agent_config
    config: dict[str, Any] = dict(user)
    config["node-name"] = node.name
    if is_ip(known(node.address)):
        config["node-ip"] = node.address
    config["token-file"] = TOKEN_FILE
    if node.role == "server":
        config["write-kubeconfig-mode"] = "0600"
        user_sans = user.get("tls-san", [])
        user_sans = [user_sans] if isinstance(user_sans, str) else list(user_sans)
        config["tls-san"] = _unique([known(k3s.api_address), known(node.address), *k3s.tls_sans, *user_sans])
        if k3s.datastore == "etcd":
            if first_server:
                config["cluster-init"] = True
            else:
                config["server"] = k3s.server_url
            config |= etcd_snapshot_flags(k3s)
    else:
        config["server"] = k3s.server_url
    return config


def args_config(args: Sequence[str], k3s: K3sSettings) -> dict[str, list[str]]:
    """serverArgs/agentArgs as config.yaml keys: each flag (its long name) as `<flag>+`, with its
    values in order (`--flag=v` and `--flag v` give v, a bare `--flag` gives "true").

    Not on the installer's command line: install.sh re-splits its arguments (`eval set --
    $(escape "${INSTALL_K3S_EXEC}") $(quote "$@")`, unquoted), so a run of spaces inside a value
    arrives as one. K3s reads config.yaml into `--flag=value` arguments placed before the
    command line's (k3s-io/k3s pkg/configfilearg/parser.go, Parse and readConfigFile), and a key
    ending in `+` appends to what came before: a single-valued flag's last value wins, a
    repeatable one collects them all, exactly as these flags on the command line would, and
    every value arrives byte for byte."""
    parsed = checks.parse_k3s_version(k3s.version)
    flags = k3s_flags.flag_set(parsed[1]) if parsed else None
    found: dict[str, list[str]] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if not arg.startswith("-") or arg == "-":
            continue  # validation refuses a value without its flag
        name, has_value, value = arg.lstrip("-").partition("=")
        if not has_value:
            if i < len(args) and not (args[i].startswith("-") and args[i] != "-"):
                value = args[i]
                i += 1
            else:
                value = "true"
        long = flags.long_name(name) if flags else name
        found.setdefault(f"{long}+", []).append(value)
    return found


def install_config(node: Node, k3s: K3sSettings, *, first_server: bool) -> dict[str, Any]:
    """The node's config.yaml on an SSH host: node_config, then its role's extra args
    (args_config), appended to any `<flag>+` key of serverConfig/agentConfig."""
    config = node_config(node, k3s, first_server=first_server)
    for key, values in args_config(k3s.server_args if node.role == "server" else k3s.agent_args, k3s).items():
        before = config.get(key)
        config[key] = [*(before if isinstance(before, list) else [] if before is None else [before]), *values]
    return config


@dataclass(frozen=True)
class AirgapLayout:
    """One airgap generation of a node: `files` maps the staged name (install.sh, k3s,
    images) to (local path, sha256); `stage` is the staging directory relative to the SSH
    user's home."""

    generation: str
    stage: str
    files: dict[str, tuple[str, str]]


@cache
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: str) -> str:
    """sha256 of a local file, computed once per program run (cached by size and mtime)."""
    st = Path(path).stat()
    return _sha256(path, st.st_size, st.st_mtime_ns)


def airgap_layout(node: Node, k3s: K3sSettings) -> AirgapLayout | None:
    """The node's airgap generation: a digest of the files' sha256s and of what the node is
    (name, address, role: a change replaces it), so that a changed file re-runs the install and a
    replaced node's uninstall never removes the generation its replacement staged. Not the
    SSH endpoint: how we reach a host changes no file on it."""
    if not k3s.airgap:
        return None
    local = {"install.sh": k3s.airgap.install_script, "k3s": k3s.airgap.binary}
    if k3s.airgap.images:
        local["images"] = k3s.airgap.images
    files = {name: (path, file_sha256(path)) for name, path in local.items()}
    generation = fingerprint(
        node.name,
        known(node.address),
        node.role,
        *(f"{name}={digest}" for name, (_, digest) in files.items()),
    )
    return AirgapLayout(generation=generation, stage=f"{AIRGAP_STAGE_PARENT}/{generation}", files=files)


def _airgap_inputs(layout: AirgapLayout | None) -> dict[str, str]:
    # Not the SSH user's name: the scripts learn it from sudo (SUDO_USER), so that a new SSH
    # user (a new endpoint, not a new node) changes no command text.
    if layout is None:
        return {"AIRGAP_GENERATION": ""}
    return {"AIRGAP_GENERATION": layout.generation, "AIRGAP_STAGE": layout.stage}


def install_script(node: Node, k3s: K3sSettings, *, first_server: bool, roll: bool = False, repair: int = 0) -> Script:
    """The node's install: what it should be (role, version, files, flags) as inputs of
    sh/install_node.sh. `roll` for a rolled agent's update, which runs in the agent's
    k3s.upgrade batch: it writes the files, then restarts K3s, if a restart is owed, between a
    cordon and drain (k3s.upgrade.drain) and the uncordon (sh/rollout.sh).
    `repair`: the node's k3s.driftCheck marker (components/drift.py), an input only when not 0."""
    layout = airgap_layout(node, k3s)
    images = Path(k3s.airgap.images).name if k3s.airgap and k3s.airgap.images else ""
    sums = {name: digest for name, (_, digest) in layout.files.items()} if layout else {}
    joins = node.role == "agent" or (k3s.datastore == "etcd" and not first_server)
    airgap = _airgap_inputs(layout)
    if layout is not None:
        airgap |= {
            "AIRGAP_SHA256_INSTALLER": sums["install.sh"],
            "AIRGAP_SHA256_K3S": sums["k3s"],
            "AIRGAP_SHA256_IMAGES": sums.get("images", ""),
            "AIRGAP_IMAGES": images,
        }
    return render(
        "install_node",
        {
            "ROLE": node.role,
            "NODE_NAME": node.name,
            "K3S_VERSION": k3s.version,
            "SERVER_URL": k3s.server_url if joins else "",
            "CONFIG_YAML": managed_yaml(install_config(node, k3s, first_server=first_server)),
            "REGISTRIES_YAML": managed_yaml(k3s.registries) if k3s.registries else "",
            "INSTALL_SCRIPT_URL": k3s.install_script_url,
            "INSTALL_SCRIPT_SHA256": k3s.install_script_sha256 or "",
            "TIMEOUT": str(k3s.timeouts.node_ready),
            "GENERATION": str(SCRIPTS_GENERATION),
            **_roll_inputs(k3s, roll),
            **airgap,
            **_proxy_inputs(k3s),
            **({} if k3s.preflight else {"PREFLIGHT": "off"}),
            **_snapshot_dir_input(node, k3s),
            **_api_port_input(k3s),
            **_repair_input(repair),
        },
        sudo=needs_sudo(node.ssh.user),
    )


def _roll_inputs(k3s: K3sSettings, roll: bool) -> dict[str, str]:
    """What a rolled agent's update restarts K3s with (sh/rollout.sh); none for the others."""
    if not roll:
        return {}
    return {"RESTART": "roll", "DRAIN": "1" if k3s.upgrade.drain else "0", "DRAIN_TIMEOUT": str(k3s.timeouts.drain)}


def _snapshot_dir_input(node: Node, k3s: K3sSettings) -> dict[str, str]:
    """k3s.etcdSnapshots.directory for a server's install to create: K3s makes only its
    default snapshot directory (k3s-io/k3s pkg/etcd/snapshot.go snapshotDir), and snapshots to
    a missing one fail, the scheduled ones included. Absent without it (no change for others)."""
    snap = k3s.etcd_snapshots
    if node.role != "server" or snap is None or snap.directory is None:
        return {}
    return {"ETCD_SNAPSHOT_DIR": snap.directory}


def _api_port_input(k3s: K3sSettings) -> dict[str, str]:
    """The servers' API port, only when https-listen-port moves it from K3s's default (which the
    scripts have from consts.sh): no change for other stacks."""
    return {} if k3s.api_port == host_facts.K3S_API_PORT else {"API_PORT": str(k3s.api_port)}


def _repair_input(repair: int) -> dict[str, str]:
    """k3s.driftCheck's marker (components/drift.py REPAIR_INPUT): a new number re-runs the
    step; absent while 0, so that stacks without drift keep their command text."""
    return {"DRIFT_REPAIR": str(repair)} if repair else {}


def _proxy_inputs(k3s: K3sSettings) -> dict[str, str]:
    """The proxy URLs and NO_PROXY list, only when k3s.proxy is set: without it the install's
    command text has no proxy inputs at all."""
    if k3s.proxy is None:
        return {}
    return {
        "HTTP_PROXY_URL": k3s.proxy.http_proxy or "",
        "HTTPS_PROXY_URL": k3s.proxy.https_proxy or "",
        "NO_PROXY_LIST": ",".join(proxy.no_proxy(k3s)),
    }


def stage_airgap_script(node: Node, k3s: K3sSettings, reimaged: int = 0) -> Script:
    """Make the node's 0700 staging directory, as the SSH user (no sudo): SFTP writes there.
    `reimaged` (drift): a reimaged host stages its files again."""
    layout = airgap_layout(node, k3s)
    if layout is None:
        raise ValueError("no k3s.airgap: nothing to stage")
    return render("stage_airgap", {"AIRGAP_STAGE": layout.stage, **_reimaged_input(reimaged)}, sudo=False, root=False)


def unstage_airgap_script(node: Node, k3s: K3sSettings) -> Script:
    """The staging step's delete: remove the node's staging directory, as the SSH user."""
    layout = airgap_layout(node, k3s)
    if layout is None:
        raise ValueError("no k3s.airgap: nothing staged")
    return render("unstage_airgap", {"AIRGAP_STAGE": layout.stage}, sudo=False, root=False)


def registration_yaml(node: Node) -> str:
    """The config.yaml.d drop-in with the node's labels and taints for its first registration
    (`+` appends to what serverConfig/agentConfig may hold)."""
    data: dict[str, Any] = {}
    if node.labels:
        data["node-label+"] = [f"{k}={v}" for k, v in sorted(node.labels.items())]
    if node.taints:
        data["node-taint+"] = list(node.taints)
    return managed_yaml(data)


def registration_script(node: Node, k3s: K3sSettings, reimaged: int = 0) -> Script:
    """Write the labels/taints drop-in while the node has not registered yet (K3s applies
    them only then); `k3s` is for symmetry with the other node scripts; `reimaged` (drift):
    a reimaged host registers again and gets the drop-in again."""
    del k3s
    return render(
        "registration",
        {"NODE_NAME": node.name, "REGISTRATION_YAML": registration_yaml(node), **_reimaged_input(reimaged)},
        sudo=needs_sudo(node.ssh.user),
    )


def install_stdin(
    token: str,
    datastore_endpoint: str | None,
    s3_access_key: str | None = None,
    s3_secret_key: str | None = None,
    proxy_credentials: str | None = None,
    rotated_from: str | None = None,
    registries: str | None = None,
) -> str:
    """What the install script reads on stdin: its secrets as named entries (host_facts
    INSTALL_STDIN, which also renders the host's reader, consts.sh read_node_secrets): the
    token, the datastore endpoint, the etcd S3 access and secret keys, the proxy's
    user:password, the token newToken rotates from, the whole registries.yaml with the
    registryAuth secret as one JSON line. An entry that is not set is not sent."""
    return host_facts.stdin_entries(
        host_facts.INSTALL_STDIN,
        {
            "TOKEN": token,
            "DATASTORE_ENDPOINT": datastore_endpoint,
            "S3_ACCESS_KEY": s3_access_key,
            "S3_SECRET_KEY": s3_secret_key,
            "PROXY_CREDENTIALS": proxy_credentials,
            "ROTATED_FROM": rotated_from,
            "REGISTRIES_WITH_AUTH": registries,
        },
    )


def fingerprint(*parts: str) -> str:
    """A short, stable digest of non-secret text: it makes a dependent command's text change
    (and so re-run) when what it depends on changes."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[: host_facts.FINGERPRINT_LENGTH]


def ssh_wait_hint(api_port: int = host_facts.K3S_API_PORT) -> str:
    """What a failed wait tells the user to check (host_facts.wait_hint; consts.sh has it too)."""
    return host_facts.wait_hint(str(api_port))


SSH_WAIT_HINT = ssh_wait_hint()


def wait_script(
    node_names: Sequence[str],
    k3s: K3sSettings,
    *,
    timeout: int,
    waits_for: str,
    user: str,
    hint: str | None = None,
) -> Script:
    """Wait until `node_names` are Ready at k3s.version and /readyz passes; `hint` is what the
    failure message tells the user to check (default: ssh_wait_hint at the cluster's port)."""
    hint = ssh_wait_hint(k3s.api_port) if hint is None else hint
    return render(
        "wait_node",
        {"K3S_VERSION": k3s.version, "TIMEOUT": str(timeout), "WAIT_FOR": waits_for, "HINT": hint},
        node_names,
        sudo=needs_sudo(user),
    )


def pre_upgrade_snapshot_script(k3s: K3sSettings, user: str) -> Script:
    """On the init server, before its install updates K3s: one on-demand etcd snapshot named
    after the installed and the new version (nothing when they are equal)."""
    return render("pre_upgrade_snapshot", {"K3S_VERSION": k3s.version}, sudo=needs_sudo(user))


def token_rotation_script(node_name: str, user: str) -> Script:
    """On the init server, before its install: `k3s token rotate` from the old token to the new
    one (stdin: old, new), when its K3s still holds the old one (sh/token_rotation.sh)."""
    return render("token_rotation", {"NODE_NAME": node_name}, sudo=needs_sudo(user))


def token_rotation_stdin(old: str, new: str) -> str:
    """The rotation's stdin (host_facts TOKEN_ROTATION_STDIN): the token the cluster has now
    and newToken."""
    return host_facts.stdin_entries(host_facts.TOKEN_ROTATION_STDIN, {"OLD_TOKEN": old, "NEW_TOKEN": new})


def kubeconfig_script(user: str, waits_for: str) -> Script:
    return render("read_kubeconfig", {"WAIT_FOR": waits_for}, sudo=needs_sudo(user))


def managed_entries(node: Node) -> list[str]:
    entries = [f"label:{key}" for key in sorted(node.labels)]
    for taint in node.taints:
        body, _, effect = taint.rpartition(":")
        entries.append(f"taint:{body.partition('=')[0]}:{effect}")
    return entries


def node_meta_script(node: Node, user: str, reimaged: int = 0) -> Script:
    """`reimaged`: the node's k3s.driftCheck reimage marker: its Node was deleted and made
    again by a new host, so labels and taints are applied again."""
    return render(
        "node_meta",
        {
            "NODE_NAME": node.name,
            "LABELS": "\n".join(f"{k}={v}" for k, v in sorted(node.labels.items())),
            "TAINTS": "\n".join(node.taints),
            "MANAGED": "\n".join(managed_entries(node)),
            **_reimaged_input(reimaged),
        },
        sudo=needs_sudo(user),
    )


def _reimaged_input(reimaged: int) -> dict[str, str]:
    """k3s.driftCheck's reimage marker (components/drift.py REIMAGED_OUTPUT); absent while 0."""
    return {"DRIFT_REIMAGED": str(reimaged)} if reimaged else {}


def forget_reimaged_script(node_name: str, user: str, reimaged: int) -> Script:
    """A non-init node whose host k3s.driftCheck found without K3s: before its install runs
    again, its Node and node-password Secret go (sh/forget_reimaged.sh)."""
    return render("forget_reimaged", {"NODE_NAME": node_name, **_reimaged_input(reimaged)}, sudo=needs_sudo(user))


def drain_script(node_name: str, drain_timeout: int, user: str) -> Script:
    return render("drain_delete", {"NODE_NAME": node_name, "DRAIN_TIMEOUT": str(drain_timeout)}, sudo=needs_sudo(user))


def server_removal_script(
    node_name: str, drain_timeout: int, user: str, member_timeout: int = 60, api_port: int = host_facts.K3S_API_PORT
) -> Script:
    """A server of embedded etcd leaving: drain_delete.sh, then etcd_member_gone.sh (wait until
    K3s has removed its etcd member, read from /db/info at 127.0.0.1, which K3s serves there
    without credentials: neither script reads the command's stdin)."""
    return render(
        "drain_delete",
        {
            "NODE_NAME": node_name,
            "DRAIN_TIMEOUT": str(drain_timeout),
            "MEMBER_TIMEOUT": str(member_timeout),
            **({} if api_port == host_facts.K3S_API_PORT else {"API_PORT": str(api_port)}),
        },
        sudo=needs_sudo(user),
        then="etcd_member_gone",
    )


def remove_scripts_script(node: Node, k3s: K3sSettings) -> Script:
    """The `<node>-scripts` step's delete (last on the host: every other step there depends on
    it): the uninstall of what a failed first install left, through the bundle (uninstall_node
    with LEFTOVERS=1, the retired `<node>-cleanup` step's delete), then the bundle's removal.
    Inline, like the delivery: it runs where the bundle may be gone."""
    airgap = _airgap_inputs(airgap_layout(node, k3s))
    return render_inline("remove_scripts", {"ROLE": node.role, **airgap}, sudo=needs_sudo(node.ssh.user))


def deliver_scripts_script(user: str, scripts_bundle: bundle.Bundle, repair: int = 0) -> Script:
    """The `<node>-scripts` step: check and unpack the bundle that arrives on stdin. Its own
    code is in its text (no bundle is on the host before it runs). `repair` as for the install:
    a drifted (perhaps wiped) host gets the bundle again."""
    return render_inline(
        "deliver_scripts",
        {"BUNDLE_SHA256": scripts_bundle.sha256, "BUNDLE_VERSION": VERSION, **_repair_input(repair)},
        sudo=needs_sudo(user),
    )


def cleanup_script(node: Node, k3s: K3sSettings) -> Script:
    """The `<node>-cleanup` step's delete (a step retired in 0.3.0, kept in the graph, its text
    unchanged, until the record says it was retained: components/backends/ssh.py install):
    the uninstall, for whatever an install left on the
    host without being in the state (a failed first install); nothing on a host that is a K3s
    node of the other role (a refused role change must not take that node's files)."""
    airgap = _airgap_inputs(airgap_layout(node, k3s))
    return render("uninstall_node", {"ROLE": node.role, "LEFTOVERS": "1", **airgap}, sudo=needs_sudo(node.ssh.user))


def forget_script(node_name: str, user: str) -> Script:
    """Delete the Node object once its host is uninstalled: a still-running agent would
    register the node again after the drain's delete, leaving a NotReady Node behind."""
    return drain_script(node_name, 0, user)


def uninstall_script(node: Node, k3s: K3sSettings) -> Script:
    """Remove K3s and what is ours, including this node's airgap generation (only it)."""
    airgap = _airgap_inputs(airgap_layout(node, k3s))
    return render("uninstall_node", {"ROLE": node.role, **airgap}, sudo=needs_sudo(node.ssh.user))
