"""What the host scripts and the Python side must agree on, defined once here: the paths of
k3s-rancher's files on a host, K3s's defaults the scripts need (API port, pod and service
networks), the length of a fingerprint (components/scripts.py fingerprint: airgap generation
names), and the named entries of the secrets the install and the token rotation read on stdin.

The scripts bundle (components/bundle.py) carries them as consts.sh, rendered here and sourced
by lib.sh, so no shell file copies a path, a port or how stdin is read. consts.sh is not a
file in components/sh: it exists only in the bundle.
"""

from __future__ import annotations

import shlex

# K3s's defaults (k3s server --help: --https-listen-port, --cluster-cidr, --service-cidr).
K3S_API_PORT = 6443
K3S_CLUSTER_CIDR = "10.42.0.0/16"
K3S_SERVICE_CIDR = "10.43.0.0/16"
# Hex digits of a fingerprint (an airgap generation's name is one).
FINGERPRINT_LENGTH = 16

CONF_DIR = "/etc/rancher/k3s"
TOKEN_FILE = f"{CONF_DIR}/cluster-token"
ADMIN_KUBECONFIG = f"{CONF_DIR}/k3s.yaml"
DROP_IN_DIR = f"{CONF_DIR}/config.yaml.d"
REGISTRATION_FILE = f"{DROP_IN_DIR}/40-k3s-rancher-registration.yaml"
# The etcd S3 credentials' and the external datastore's drop-ins on servers (0600, from stdin).
ETCD_S3_FILE = f"{DROP_IN_DIR}/50-k3s-rancher-etcd-s3.yaml"
DATASTORE_FILE = f"{DROP_IN_DIR}/60-k3s-rancher-datastore.yaml"
PROXY_ENV_FILE = f"{CONF_DIR}/k3s-rancher-proxy.env"
# K3s's own files the scripts read.
K3S_DATA_DIR = "/var/lib/rancher/k3s"
SERVER_TOKEN = f"{K3S_DATA_DIR}/server/token"
SERVER_CA = f"{K3S_DATA_DIR}/server/tls/server-ca.crt"
JOINED_CERT = f"{K3S_DATA_DIR}/agent/client-kubelet.crt"
# The kubelet's kubeconfig, with the node's own credentials (system:node:<name>, the client
# certificate above): k3s-io/k3s pkg/agent/config/config.go writes it on every node.
KUBELET_KUBECONFIG = f"{K3S_DATA_DIR}/agent/kubelet.kubeconfig"
IMAGES_DIR = f"{K3S_DATA_DIR}/agent/images"
# k3s-rancher's own state on the host.
STATE_DIR = "/var/lib/k3s-rancher"
AIRGAP_ROOT = f"{STATE_DIR}/airgap"
APPLIED_FILE = f"{STATE_DIR}/applied"
RESTART_PENDING_FILE = f"{STATE_DIR}/restart-pending"
# Written when an install of this node has completed (K3s runs what it wrote), removed by the
# uninstall: the leftovers uninstall (a failed first install's) leaves such a node alone.
INSTALLED_FILE = f"{STATE_DIR}/installed"
HOST_LOCK = f"{STATE_DIR}/lock"
MANAGED_MARKER = "# managed by k3s-rancher"
# The annotation that marks a cordon of k3s-rancher's (rollout.sh sets it and lifts only those).
CORDON_MARK = "k3s-rancher.io/cordoned-for-upgrade"

# The secrets a step reads on stdin travel as named entries, `NAME=value` one a line, in any
# order; an entry left out is empty (components/scripts.py install_stdin and
# token_rotation_stdin write them with stdin_entries, consts.sh's readers read them). Each
# tuple: the entry's name (the shell variable it lands in) and what the log says instead of a
# line that holds its value. A name, once released, keeps its meaning; a reader refuses a name
# it does not know (scripts and their stdin come from the same release: the bundle is delivered
# before any step that reads them).
INSTALL_STDIN: tuple[tuple[str, str], ...] = (
    ("TOKEN", "the cluster token"),
    ("DATASTORE_ENDPOINT", "the datastore endpoint"),
    ("S3_ACCESS_KEY", "the etcd S3 access key"),
    ("S3_SECRET_KEY", "the etcd S3 secret key"),
    ("PROXY_CREDENTIALS", "the proxy credentials"),
    ("ROTATED_FROM", "the previous cluster token"),
    ("REGISTRIES_WITH_AUTH", "the registry credentials"),
)
# The token rotation's stdin (components/sh/token_rotation.sh): the token the cluster has now
# and newToken.
TOKEN_ROTATION_STDIN: tuple[tuple[str, str], ...] = (
    ("OLD_TOKEN", "a cluster token"),
    ("NEW_TOKEN", "a cluster token"),
)


def stdin_entries(entries: tuple[tuple[str, str], ...], values: dict[str, str | None]) -> str:
    """The stdin text of `values` (entry name -> value), in `entries`' order; an empty or None
    value is left out (its reader sets it empty). Every key must be one of `entries`, and a value
    one line (the reader reads a line per entry)."""
    unknown = sorted(set(values) - {name for name, _ in entries})
    assert not unknown, f"no stdin entry is named {unknown}"
    lines = []
    for name, _ in entries:
        value = values.get(name) or ""
        if "\n" in value or "\r" in value:
            raise ValueError("secrets sent to hosts must be single lines")
        if value:
            lines.append(f"{name}={value}\n")
    return "".join(lines)


def _reader_sh(function: str, entries: tuple[tuple[str, str], ...], what: str) -> list[str]:
    """A consts.sh function that reads `entries` from stdin into their variables. A line that
    names none of them stops the script without showing it (it may hold a secret)."""
    names = [name for name, _ in entries]
    known = ", ".join(f"{name}=" for name in names)
    lines = [
        f"# {function}: {what} from stdin, NAME=value a line ({known}); an entry left out is empty.",
        f"{function}() {{",
        "  " + " ".join(f"{name}=''" for name in names),
        '  while IFS= read -r _entry || [ -n "$_entry" ]; do',
        "    case $_entry in",
    ]
    lines += [f"      {name}=*) {name}=${{_entry#{name}=}} ;;" for name in names]
    refusal = (
        f"a line of stdin is none of {known} (not shown: it may hold a secret); "
        "were the scripts and their stdin written by two k3s-rancher releases?"
    )
    lines += [
        "      '') ;;",
        f"      *) _entry=''; die {shlex.quote(refusal)} ;;",
        "    esac",
        "  done",
        "  _entry=''",
        "}",
    ]
    return lines


# The values consts.sh sets, by shell variable name.
_CONSTS = {
    "K3S_DEFAULT_API_PORT": str(K3S_API_PORT),
    "K3S_DEFAULT_CLUSTER_CIDR": K3S_CLUSTER_CIDR,
    "K3S_DEFAULT_SERVICE_CIDR": K3S_SERVICE_CIDR,
    "FINGERPRINT_LENGTH": str(FINGERPRINT_LENGTH),
    "CONF_DIR": CONF_DIR,
    "TOKEN_FILE": TOKEN_FILE,
    "ADMIN_KUBECONFIG": ADMIN_KUBECONFIG,
    "REGISTRATION_FILE": REGISTRATION_FILE,
    "ETCD_S3_FILE": ETCD_S3_FILE,
    "DATASTORE_FILE": DATASTORE_FILE,
    "PROXY_ENV_FILE": PROXY_ENV_FILE,
    "K3S_DATA_DIR": K3S_DATA_DIR,
    "SERVER_TOKEN": SERVER_TOKEN,
    "SERVER_CA": SERVER_CA,
    "JOINED_CERT": JOINED_CERT,
    "KUBELET_KUBECONFIG": KUBELET_KUBECONFIG,
    "IMAGES_DIR": IMAGES_DIR,
    "STATE_DIR": STATE_DIR,
    "AIRGAP_ROOT": AIRGAP_ROOT,
    "APPLIED": APPLIED_FILE,
    "INSTALL_DONE": INSTALLED_FILE,
    "RESTART_PENDING": RESTART_PENDING_FILE,
    "HOST_LOCK": HOST_LOCK,
    "MANAGED_MARKER": MANAGED_MARKER,
    "CORDON_MARK": CORDON_MARK,
}
CONSTS_FILE = "consts.sh"


def wait_hint(api_port: str) -> str:
    """What a failed wait for a node tells the user to check."""
    return (
        f"Check the node's service (journalctl -u k3s or k3s-agent), firewall ports {api_port}/tcp, 8472/udp, "
        "10250/tcp (2379-2380/tcp between servers); raise k3s.timeouts if the hosts are slow"
    )


def _wait_hint_sh() -> list[str]:
    """consts.sh's wait_hint PORT: wait_hint's text, in double quotes with the port as $1."""
    text = wait_hint("{port}")
    for char in '\\"$`':
        text = text.replace(char, "\\" + char)
    body = text.replace("{port}", "$1")
    function = f'wait_hint() {{ printf "%s\\n" "{body}"; }}'
    return ["# wait_hint API_PORT: what a failed wait tells the user to check.", function]


def consts_sh() -> str:
    """The bundle's consts.sh: the values above as shell variables, the stdin readers (from
    INSTALL_STDIN and TOKEN_ROTATION_STDIN) and the hiding of the install's secrets in a log."""
    lines = [
        "# shellcheck shell=sh",
        "# shellcheck disable=SC2034 # read by the scripts that source lib.sh",
        "# Rendered by components/host_facts.py (the bundle's only generated file): do not edit.",
    ]
    lines += [f"{name}={shlex.quote(value)}" for name, value in _CONSTS.items()]
    # The jsonpath form of the annotation's key (dots escaped).
    lines.append(f"CORDON_MARK_PATH={shlex.quote(CORDON_MARK.replace('.', chr(92) + '.'))}")
    lines += ["", *_reader_sh("read_node_secrets", INSTALL_STDIN, "the install's secrets")]
    lines += ["", *_reader_sh("read_rotation_tokens", TOKEN_ROTATION_STDIN, "the current token and newToken")]
    lines += ["", "# hide_node_secrets: redact's filter for the install's secrets (lib.sh redact, _hide)."]
    lines.append("hide_node_secrets() {")
    lines += [f'  _hide "${{{name}:-}}" {shlex.quote(what)}' for name, what in INSTALL_STDIN]
    lines.append("}")
    lines += ["", *_wait_hint_sh()]
    return "\n".join(lines) + "\n"
