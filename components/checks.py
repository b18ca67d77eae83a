"""Pure predicates for values that reach Kubernetes, K3s or a shell.

Each returns an error text (what would be valid) or None, so callers can name the key.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re

# RFC 1123 label / subdomain, as Kubernetes uses them for node names.
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
_DNS_SUBDOMAIN = re.compile(rf"^{_DNS_LABEL}(\.{_DNS_LABEL})*$")
# Host names may carry upper case; DNS is case-insensitive.
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*$")
# Kubernetes qualified name (label key name part, label value).
_QUALIFIED = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_K3S_VERSION = re.compile(r"^v(\d+)\.(\d+)\.(\d+)(-rc\d+)?\+k3s(\d+)$")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def dns_subdomain_error(value: str) -> str | None:
    if len(value) > 253 or not _DNS_SUBDOMAIN.match(value):
        return (
            f"{value!r} is not a valid node name: use lower-case letters, digits, '-' and '.', "
            "starting and ending with a letter or digit, at most 253 characters"
        )
    return None


def dns_name_error(value: str) -> str | None:
    if len(value) > 253 or not _HOSTNAME.match(value) or value.rpartition(".")[2].isdigit():
        return f"{value!r} is not a DNS name (letters, digits, '-' and '.' in labels of at most 63 characters)"
    return None


def host_error(value: str) -> str | None:
    """An IP address (v4 or v6) or a DNS host name."""
    if is_ip(value):
        return None
    # A name whose last label is all digits (10.0.0.300) is a mistyped address, not a host name.
    if len(value) > 253 or not _HOSTNAME.match(value) or value.rpartition(".")[2].isdigit():
        return f"{value!r} is neither an IP address nor a host name"
    return None


def label_key_error(key: str) -> str | None:
    prefix, _, name = key.rpartition("/")
    if "/" in key and (not prefix or dns_subdomain_error(prefix) or len(prefix) > 253):
        return f"label key {key!r} has an invalid prefix: it must be a lower-case DNS subdomain"
    if not name or len(name) > 63 or not _QUALIFIED.match(name):
        return (
            f"label key {key!r} is invalid: the name part must be 1-63 characters of letters, digits, "
            "'-', '_' or '.', starting and ending with a letter or digit"
        )
    return None


def label_value_error(value: str) -> str | None:
    if value == "":
        return None
    if len(value) > 63 or not _QUALIFIED.match(value):
        return (
            f"label value {value!r} is invalid: at most 63 characters of letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit (or empty)"
        )
    return None


def taint_error(taint: str) -> str | None:
    """Taints are written key=value:Effect or key:Effect, as kubectl and K3s take them."""
    body, sep, effect = taint.rpartition(":")
    if not sep or effect not in TAINT_EFFECTS:
        return f"taint {taint!r} must be key=value:Effect or key:Effect with Effect one of {', '.join(TAINT_EFFECTS)}"
    key, _, value = body.partition("=")
    return label_key_error(key) or label_value_error(value)


def parse_k3s_version(version: str) -> tuple[int, int, int] | None:
    match = _K3S_VERSION.match(version)
    if not match:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def k3s_image_tag(version: str) -> str:
    """rancher/k3s image tags spell the build metadata with '-' instead of '+'."""
    return version.replace("+", "-")


# --- SSH ----------------------------------------------------------------------------------

# Portable login names (POSIX, plus the '.' many sites use), as sshd and useradd take them.
_LOGIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$")
HOST_KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)


def login_name_error(value: str) -> str | None:
    if not _LOGIN.match(value):
        return f"{value!r} is not a login name (letters, digits, '_', '.', '-'; at most 32 characters)"
    return None


def host_key_error(value: str) -> str | None:
    """A host public key as one line of a .pub file or `ssh-keyscan` output: TYPE BASE64 [comment]."""
    hint = (
        "a host public key looks like 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA...': take it from the host's "
        "/etc/ssh/ssh_host_ed25519_key.pub or `ssh-keyscan -t ed25519 HOST` (without the host name)"
    )
    parts = value.split()
    if len(parts) < 2 or parts[0] not in HOST_KEY_TYPES:
        return f"{value[:40]!r}... is not a host key: {hint}"
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        return f"the key of {parts[0]} is not valid base64: {hint}"
    # The blob starts with the key type again, as an SSH string (uint32 length + bytes).
    length = int.from_bytes(blob[:4], "big") if len(blob) >= 4 else -1
    if blob[4 : 4 + length] != parts[0].encode():
        return f"the key data does not belong to a {parts[0]} key (copied incompletely?): {hint}"
    return None


# --- values that reach a shell or a file as text --------------------------------------------


def text_error(value: str) -> str | None:
    """Text that goes into a command line or a file must be one line of printable text."""
    for char in value:
        if ord(char) < 32 or ord(char) == 127 or 0xD800 <= ord(char) <= 0xDFFF:
            return f"{value!r} contains a control character ({char!r}): use one line of printable text"
    return None


def url_error(value: str, schemes: tuple[str, ...] = ("https://",)) -> str | None:
    if not value.startswith(schemes) or any(c.isspace() for c in value) or text_error(value):
        return f"{value!r} is not a URL starting with {' or '.join(schemes)} (no spaces)"
    host = value.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
    if not host or host_port_error(host):
        return f"{value!r} has no valid host"
    return None


def host_port_error(value: str) -> str | None:
    """host, host:port or [v6]:port, as registries and URLs name a server."""
    host, port = value, ""
    if value.startswith("["):
        host, _, port = value[1:].partition("]")
        port = port.removeprefix(":")
    elif value.count(":") == 1:
        host, port = value.split(":")
    if (port and (not port.isdigit() or not 0 < int(port) < 65536)) or host_error(host):
        return f"{value!r} is not host or host:port"
    return None


# --- K3s flags -------------------------------------------------------------------------------

_FLAG_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
# Flags that would put a secret into the command text, the process list and the state.
SECRET_FLAGS = {
    "token": "the token secret",
    "t": "the token secret",
    "agent-token": "the token secret (one token joins servers and agents)",
    "datastore-endpoint": "the datastoreEndpoint secret",
}
# Flags this program sets itself: a second value would silently win over it (CLI flags win
# over config.yaml) or fight it.
OWNED_FLAGS = {
    "token-file": "k3s-rancher writes the token file",
    "agent-token-file": "k3s-rancher writes the token file",
    "server": "k3s-rancher sets the join address from k3s.apiAddress",
    "s": "k3s-rancher sets the join address from k3s.apiAddress",
    "cluster-init": "k3s-rancher sets it on the first server with datastore etcd",
    "node-name": "set servers[]/agents[].name",
    "node-ip": "set servers[]/agents[].address",
    "tls-san": "use k3s.tlsSans (a flag would replace the SANs k3s-rancher needs)",
    "write-kubeconfig-mode": "k3s-rancher keeps the admin kubeconfig 0600",
    "write-kubeconfig": "k3s-rancher reads the kubeconfig from its default path",
    "o": "k3s-rancher reads the kubeconfig from its default path",
    "node-label": "use servers[]/agents[].labels (flags apply only when a node first registers)",
    "node-taint": "use servers[]/agents[].taints (flags apply only when a node first registers)",
}


# Paths the scripts rely on: they write /etc/rancher/k3s/config.yaml (and registries.yaml) and
# read the token, the admin kubeconfig and node state under /var/lib/rancher/k3s.
DEFAULT_PATH_FLAGS = {
    "config": "k3s-rancher writes /etc/rancher/k3s/config.yaml, the file K3s reads by default: "
    "put settings in serverConfig/agentConfig",
    "c": "k3s-rancher writes /etc/rancher/k3s/config.yaml, the file K3s reads by default: "
    "put settings in serverConfig/agentConfig",
    "data-dir": "k3s-rancher's scripts read the token, kubeconfig and node state under /var/lib/rancher/k3s, "
    "K3s's default: it cannot move",
    "d": "k3s-rancher's scripts read the token, kubeconfig and node state under /var/lib/rancher/k3s, "
    "K3s's default: it cannot move",
}


def _flag_problem(name: str, written: str = "") -> str | None:
    """Why k3s-rancher refuses the K3s flag `name` as an extra argument (or, with `written`,
    as a config.yaml key written that way), or None."""
    if name in SECRET_FLAGS:
        where = "config.yaml text" if written else "the process list"
        return (
            f"{written or '--' + name} would put a secret into the command text and {where}: use {SECRET_FLAGS[name]}"
        )
    if name in OWNED_FLAGS:
        return f"{written or '--' + name} is set by k3s-rancher: {OWNED_FLAGS[name]}"
    if name in DEFAULT_PATH_FLAGS:
        return f"{written or '--' + name} is refused: {DEFAULT_PATH_FLAGS[name]}"
    return None


def k3s_args_problems(args: list[str]) -> list[tuple[int, str]]:
    """Problems of serverArgs/agentArgs by index: each entry is `--flag`, `--flag=value`, or
    the value right after a `--flag` without '='."""
    problems: list[tuple[int, str]] = []
    value_allowed = False
    for i, arg in enumerate(args):
        if error := text_error(arg):
            problems.append((i, error))
            value_allowed = False
            continue
        if arg.startswith("-") and arg != "-":
            name, has_value, _ = arg.lstrip("-").partition("=")
            if not _FLAG_NAME.match(name):
                problems.append((i, f"{arg!r} is not a K3s flag (--name or --name=value)"))
            elif error := _flag_problem(name):
                problems.append((i, error))
            value_allowed = not has_value
        elif value_allowed:
            value_allowed = False
        else:
            problems.append(
                (
                    i,
                    f"{arg!r} is not a flag: write --flag=value (or --flag followed by its value); "
                    "the role is set by k3s-rancher",
                )
            )
    return problems


def k3s_config_key_error(key: str) -> str | None:
    """A key of serverConfig/agentConfig: a K3s flag name (optionally with K3s's '+' append suffix)."""
    name = key.removesuffix("+")
    if not _FLAG_NAME.match(name):
        return f"{key!r} is not a K3s flag name (lower-case letters, digits and '-', as on the command line)"
    if name == "tls-san":  # merged with the SANs k3s-rancher needs
        return None
    return _flag_problem(name, written=key)


def k3s_config_value_error(value: object) -> str | None:
    scalars = (str, int, float, bool)
    if isinstance(value, scalars) or (isinstance(value, list) and all(isinstance(v, scalars) for v in value)):
        return None
    return "a K3s config value is a string, number, boolean or a list of them"
