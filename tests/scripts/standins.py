"""STAND-INs the sandbox puts on the scripts' PATH, and the mount namespace they run in.
Each notes the real behaviour it imitates."""

from __future__ import annotations

OUTER = """set -eu
for d in /etc /usr/local /opt; do
  n=$(printf %s "$d" | tr / _)
  mkdir -p "$SANDBOX/upper$n" "$SANDBOX/work$n"
  mount -t overlay overlay -o "lowerdir=$d,upperdir=$SANDBOX/upper$n,workdir=$SANDBOX/work$n" "$d"
done
# A host whose /usr/local is read-only (the installer then uses /opt/bin).
if [ -e "$SANDBOX/usr-local-read-only" ]; then mount -o remount,ro /usr/local; fi
mkdir -p "$SANDBOX/var_lib"
mount --bind "$SANDBOX/var_lib" /var/lib
# A host without curl: the machine's own curl hidden (the test removes the stub too).
if [ -e "$SANDBOX/no-curl" ]; then
  for c in /usr/bin/curl /bin/curl; do if [ -e "$c" ]; then mount --bind /dev/null "$c"; fi; done
fi
exec sh -c "$(cat "$SANDBOX/command.sh")"
"""

# STAND-IN for sudo with RHEL-family sudoers (`Defaults secure_path = /sbin:/bin:/usr/sbin:/usr/bin`,
# no /usr/local/bin): it resets PATH like that (the stubs directory stands for the system's own
# tools), and refuses to run without -n (a prompt would read the secrets on stdin).
SUDO = """#!/bin/sh
[ "$1" = -n ] || { echo "sudo stand-in: called without -n" >&2; exit 99; }
shift
PATH="$K3SR_TEST_STUBS:/sbin:/bin:/usr/sbin:/usr/bin"
SUDO_USER=$K3SR_TEST_SSH_USER  # sudo sets it to the invoking user
export PATH SUDO_USER
exec "$@"
"""

CURL = """#!/bin/sh
# STAND-IN for curl: records the URL, "downloads" the stand-in installer. With -I (headers
# only: the clock check's GET of <server>/ping) it prints the server's Date header, taken from
# $K3SR_TEST_LOG/server-date when a test put one there (Go's net/http adds Date to every
# response), and records the URL in curl-head.log.
#
# GET https://127.0.0.1:6443/db/info (K3s's etcd member list): the options go to
# curl-dbinfo.log, a config read with `-K -` (stdin) to curl-dbinfo-config; a missing --cacert
# file fails as curl does (77); else it prints $K3SR_TEST_LOG/db-info.json (or fails 7,
# connection refused, without one), whatever credentials were sent or not: K3s serves
# /db/info to a client at 127.0.0.1 with no credentials (k3s-io/k3s pkg/etcd/etcd.go handler,
# auth.IsLocalOrHasRole; pkg/server/auth/auth.go), so it never answers 401 there.
out="" head="" cacert="" config="" all="$*"
while [ $# -gt 0 ]; do
  case "$1" in
    -o) out=$2; shift 2 ;;
    --cacert) cacert=$2; shift 2 ;;
    -K) config=$2; shift 2 ;;
    --retry|--max-time|--noproxy) shift 2 ;;
    -*I*) head=1; shift ;;
    -*) shift ;;
    *) url=$1; shift ;;
  esac
done
case "$url" in
  */db/info)
    printf '%s\\n' "$all" >> "$K3SR_TEST_LOG/curl-dbinfo.log"
    [ "$config" = - ] && cat > "$K3SR_TEST_LOG/curl-dbinfo-config"
    [ -f "$cacert" ] || { echo "curl: (77) error setting certificate file: $cacert" >&2; exit 77; }
    if [ ! -f "$K3SR_TEST_LOG/db-info.json" ]; then
      echo "curl: (7) Failed to connect to 127.0.0.1 port 6443: Connection refused" >&2; exit 7
    fi
    cat "$K3SR_TEST_LOG/db-info.json"
    exit 0 ;;
esac
if [ -n "$head" ]; then
  printf '%s\\n' "$url" >> "$K3SR_TEST_LOG/curl-head.log"
  [ -f "$K3SR_TEST_LOG/server-date" ] || exit 7
  printf 'HTTP/2 200\\r\\ndate: %s\\r\\n\\r\\n' "$(cat "$K3SR_TEST_LOG/server-date")"
  exit 0
fi
printf '%s\\n' "$url" >> "$K3SR_TEST_LOG/curl.log"
env | grep -i '_proxy=' | sort > "$K3SR_TEST_LOG/curl-proxy-env" || true
cp "$K3SR_TEST_STUBS/installer.sh" "$out"
"""

# STAND-IN for ss (iproute2): `ss -ltn` prints a header, then one line per listening socket
# with the local address:port in column 4. It lists the ports in $K3SR_TEST_LOG/listening
# (one per line), so that the sandbox never sees this machine's own sockets.
SS = """#!/bin/sh
printf 'State  Recv-Q Send-Q Local Address:Port  Peer Address:Port Process\\n'
[ -f "$K3SR_TEST_LOG/listening" ] || exit 0
while read -r port; do
  printf 'LISTEN 0      4096   0.0.0.0:%s  0.0.0.0:*\\n' "$port"
done < "$K3SR_TEST_LOG/listening"
"""

INSTALLER = r"""#!/bin/sh
# STAND-IN for the K3s installer (get.k3s.io): the install script runs it with `sh`.
# First, as install.sh does before its main block (k3s-io/k3s install.sh, the line
# `eval set -- $(escape "${{INSTALL_K3S_EXEC}}") $(quote "$@")`, under `set -o noglob`): each
# argument is single-quoted, the quoted words are expanded unquoted, so split again at spaces,
# tabs and newlines, and eval joins the pieces with one space. A run of blanks inside an
# argument arrives as one space (`cpu=100m,  memory=100Mi` as `cpu=100m, memory=100Mi`).
# INSTALL_K3S_EXEC's words come first, with shell punctuation made literal (its `escape`).
set -o noglob
each_quoted() {{
  for word in "$@"; do
    printf "'%s'\n" "$(printf '%s' "$word" | sed "s/'/'\\\\''/g")"
  done
}}
punctuation_literal() {{
  printf '%s' "$1" | sed 's/\([][!#$%&()*;<=>?\_`{{|}}]\)/\\\1/g'
}}
# shellcheck disable=SC2046 # unquoted on purpose: the installer's own re-splitting
eval set -- $(punctuation_literal "${{INSTALL_K3S_EXEC:-}}") $(each_quoted "$@")
exec "{python}" "$K3SR_TEST_STUBS/record.py" installer "$@"
"""

K3S_BINARY = """#!/bin/sh
# STAND-IN for the k3s binary {version}
K3SR_K3S_VERSION='{version}' exec "{python}" "$K3SR_TEST_STUBS/record.py" k3s "$@"
"""

TOOL = '#!/bin/sh\nexec "{python}" "$K3SR_TEST_STUBS/record.py" {kind} "$@"\n'

# The stand-ins, in one Python file. Each notes the real behaviour it imitates.
RECORD = r"""
import hashlib, json, os, shlex, stat, subprocess, sys, time

log = os.environ["K3SR_TEST_LOG"]
stubs = os.environ["K3SR_TEST_STUBS"]
kind, argv = sys.argv[1], sys.argv[2:]
env = {k: v for k, v in os.environ.items() if k.startswith(("INSTALL_K3S_", "K3S_")) or k.lower().endswith("_proxy")}
with open(os.path.join(log, kind + ".jsonl"), "a") as f:
    f.write(json.dumps({"argv": argv, "env": env}) + "\n")
state_file = os.path.join(log, "state.json")
state = json.load(open(state_file)) if os.path.exists(state_file) else {}
state.setdefault("nodes", {})
state.setdefault("annotation", "")
state.setdefault("services", {})
state.setdefault("enabled", [])


def save():
    json.dump(state, open(state_file, "w"))


def sha(path):
    try:
        return hashlib.sha256(open(path, "rb").read()).hexdigest()
    except OSError:
        return "missing"


def write(path, text, mode):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


if kind == "installer":
    # install.sh: setup_env (bin dir, service name, unit and env file), get_installed_hashes,
    # download_and_verify, create_killall/create_uninstall, create_env_file,
    # create_systemd_service_file, systemd_enable, service_enable_and_start.
    if os.path.exists(os.path.join(log, "installer-fails")):
        print("[ERROR] stand-in installer failure", file=sys.stderr)
        sys.exit(1)
    bin_dir = os.environ.get("INSTALL_K3S_BIN_DIR") or "/usr/local/bin"
    # setup_env: the first argument (after the re-split above, INSTALL_K3S_EXEC's first word)
    # is the command unless it is a flag; then agent with K3S_URL, else server.
    if argv and not argv[0].startswith("-"):
        cmd, argv = argv[0], argv[1:]
    else:
        cmd = "agent" if os.environ.get("K3S_URL") else "server"
    name = "k3s" if cmd == "server" else "k3s-" + cmd
    unit, env_file = f"/etc/systemd/system/{name}.service", f"/etc/systemd/system/{name}.service.env"
    binary = os.path.join(bin_dir, "k3s")
    hashes = lambda: [sha(binary), sha(unit), sha(env_file)]
    before = hashes()
    if os.environ.get("INSTALL_K3S_SKIP_DOWNLOAD") in ("true", "binary"):
        if not os.access(binary, os.X_OK):
            print(f"[ERROR]  Executable k3s binary not found at {binary}", file=sys.stderr)
            sys.exit(1)
    else:
        text = open(os.path.join(stubs, "k3s-binary.tmpl")).read()
        text = text.replace("{version}", os.environ["INSTALL_K3S_VERSION"])
        if sha(binary) != hashlib.sha256(text.encode()).hexdigest():
            write(binary, text, 0o755)
    killall = os.path.join(bin_dir, "k3s-killall.sh")
    # k3s-killall.sh (install.sh create_killall): stops every k3s*.service, then kills what is
    # left. It has no `set -e` and ends with `ip6tables-save | ... | ip6tables-restore`, so on
    # a host without iptables (no $K3SR_TEST_LOG/iptables here) that last pipeline's "not found"
    # is its exit status: 127, after it did all the rest.
    write(killall, "\n".join([
        "#!/bin/sh",
        f'"{sys.executable}" "$K3SR_TEST_STUBS/record.py" killall',
        "for service in /etc/systemd/system/k3s*.service; do",
        '  [ -s "$service" ] && systemctl stop "$(basename "$service")"',
        "done",
        '[ -e "$K3SR_TEST_LOG/iptables" ] && exit 0',
        'echo "$0: ip6tables-restore: not found" >&2',
        "exit 127",
        "",
    ]), 0o755)
    # k3s-uninstall.sh: no `set -e`; it calls the killall script first, whatever happens.
    uninstall = os.path.join(bin_dir, f"{name}-uninstall.sh")
    write(uninstall, "\n".join([
        "#!/bin/sh",
        f'"{sys.executable}" "$K3SR_TEST_STUBS/record.py" uninstall {name}',
        killall,
        f"rm -f {unit} {env_file}",
        "rm -rf /etc/rancher/k3s /var/lib/rancher/k3s",
        f"rm -f {binary} {killall} {uninstall}",
        "",
    ]), 0o755)
    # create_env_file (install.sh l. 968-974), run as the installer runs it (under
    # `set -o noglob`): `sh -c export | while read x v; do echo $v; done`, grepped for K3S_* and
    # CONTAINERD_*, then the proxy variables, into the 0600 env file. `read` without -r drops
    # backslashes and the unquoted `echo $v` squeezes runs of spaces: values arrive changed.
    pipeline = (
        "set -o noglob; sh -c export | while read x v; do echo $v; done | grep -E '^(K3S|CONTAINERD)_'; "
        "sh -c export | while read x v; do echo $v; done | grep -Ei '^(NO|HTTP|HTTPS)_PROXY'; true"
    )
    exports = subprocess.run(["sh", "-c", pipeline], capture_output=True, text=True, env=dict(os.environ)).stdout
    write(env_file, exports, 0o600)
    # ExecStart: each argument quoted (install.sh quote_indent), here as shlex quotes it.
    exec_start = shlex.join([binary, cmd, *argv])
    service = f"[Service]\nType=notify\nEnvironmentFile=-{env_file}\nTimeoutStartSec=0\nExecStart={exec_start}\n"
    write(unit, service, 0o644)
    subprocess.run(["systemctl", "enable", unit], check=True)
    subprocess.run(["systemctl", "daemon-reload"], check=True)
    # TEST HOOK (not the installer's): the run is killed here, once every file is written and
    # before anything restarts K3s, as when `pulumi up` is killed (a CI timeout) in that window:
    # SIGKILL to the whole command (the sandbox's process group), nothing after runs.
    kill_hook = os.path.join(log, "kill-after-installer")
    if os.path.exists(kill_hook):
        os.remove(kill_hook)
        os.killpg(os.getpgid(0), 9)
    if os.environ.get("INSTALL_K3S_SKIP_START") == "true":
        sys.exit(0)
    if hashes() == before and os.environ.get("INSTALL_K3S_FORCE_RESTART") != "true":
        sys.exit(0)
    subprocess.run(["systemctl", "restart", name], check=True)
    sys.exit(0)

if kind == "systemctl":
    # systemd for the installer's unit (install.sh create_systemd_service_file: Type=notify,
    # TimeoutStartSec=0, Restart=always): `restart` without --no-block returns once the service
    # sent READY (never, for one that cannot start); is-active says activating until then.
    args = [a for a in argv if not a.startswith("--")]
    verb, unit = (args + ["", ""])[:2]
    unit = unit.removesuffix(".service")
    service = state["services"].setdefault(unit, {"state": "inactive"})
    if verb == "is-active":
        states = service.get("states")
        now = states.pop(0) if states and len(states) > 1 else (states[0] if states else service["state"])
        if states and len(states) == 1 and service.pop("enter_on_last", False):
            service["entered"] = service.get("entered", 0) + 1
        save()
        if "--quiet" not in argv:
            print(now)
        sys.exit(0 if now == "active" else 3)
    if verb == "is-enabled":
        sys.exit(0 if unit in state["enabled"] else 1)
    if verb == "show" and "ActiveEnterTimestampMonotonic" in argv:
        print(service.get("entered", 0))
        sys.exit(0)
    if verb == "restart":
        after = service.get("after_restart", "active")
        if "--no-block" not in argv and after != "active":
            time.sleep(3600)
        service["state"] = after
        # A queued restart: the old process may still answer "active" for a moment
        # (`restart_states`); the service has restarted once it enters "active" again.
        service["states"] = list(service.get("restart_states", [after]))
        service["enter_on_last"] = after == "active"
        if len(service["states"]) == 1 and service.pop("enter_on_last"):
            service["entered"] = service.get("entered", 0) + 1
        save()
        sys.exit(0)
    if verb == "stop":
        service["state"] = "inactive"
        service.pop("states", None)
        save()
    if verb == "daemon-reload" and os.path.exists(os.path.join(log, "daemon-reload-fails")):
        print("Failed to reload daemon: Access denied", file=sys.stderr)
        sys.exit(1)
    sys.exit(0)

if kind == "journalctl":
    path = os.path.join(log, "journal.txt")
    lines = open(path).read().splitlines() if os.path.exists(path) else []
    n = int(argv[argv.index("-n") + 1]) if "-n" in argv else len(lines)
    print("\n".join(lines[-n:]))
    sys.exit(0)

if kind == "getent":
    # The host's user database: the SSH user's home is inside the sandbox.
    if argv[:1] == ["passwd"] and len(argv) == 2:
        print(f"{argv[1]}:x:1000:1000::{os.environ['SANDBOX']}/home/{argv[1]}:/bin/sh")
        sys.exit(0)
    sys.exit(2)

if kind == "getenforce":
    print(state.get("selinux", "Disabled"))
    sys.exit(0)

if kind != "k3s":
    sys.exit(0)
# k3s: `--version` (first line "k3s version vX.Y.Z+k3sN (commit)", pkg/version), and
# `kubectl --kubeconfig FILE ...` against a fake node list in state.json. kubectl's answers:
# NotFound as "Error from server (NotFound): ..." exit 1; with --ignore-not-found nothing and
# exit 0 (k8s.io/kubectl pkg/cmd/get/get.go); an API that does not answer: "The connection to
# the server ... was refused" exit 1 (client-go).
if argv[:1] == ["--version"]:
    print(f"k3s version {os.environ['K3SR_K3S_VERSION']} (0123abcd)\ngo version go1.24.6")
    sys.exit(0)
if argv[:1] == ["etcd-snapshot"]:
    # k3s etcd-snapshot save|ls (pkg/cli/etcdsnapshot/etcd_snapshot.go commandSetup, save): the
    # CLI asks the running server (GET /cacerts, then POST /db/snapshot) and the server takes
    # the snapshot; with the API down (K3s stopped) the CA fetch fails, exit 1 (logrus.Fatal).
    if state.get("api_down"):
        print('level=fatal msg="failed to get CA certs: Get \\"https://127.0.0.1:6443/cacerts\\": '
              'dial tcp 127.0.0.1:6443: connect: connection refused"', file=sys.stderr)
        sys.exit(1)
    sys.exit(0)
if argv[:2] == ["token", "rotate"]:
    # k3s token rotate (pkg/cli/token/token.go Rotate): the old token from --token or K3S_TOKEN,
    # the new one from --new-token; the local server (pkg/server/handlers/token.go tokenRotate)
    # rewrites server/token as K10<ca hash>::server:<new>; the CLI then prints one line.
    old = os.environ.get("K3S_TOKEN", "")
    new = argv[argv.index("--new-token") + 1] if "--new-token" in argv else ""
    server_token = "/var/lib/rancher/k3s/server/token"
    held = open(server_token).read().strip() if os.path.exists(server_token) else ""
    if state.get("api_down"):
        print("Error: Put \"https://127.0.0.1:6443/v1-k3s/token\": connection refused", file=sys.stderr)
        sys.exit(1)
    if not old or not new or held.rpartition("::server:")[2] != old:
        print("Error: failed to authenticate: 401 Unauthorized", file=sys.stderr)
        sys.exit(1)
    write(server_token, f"K10{'c' * 64}::server:{new}\n", 0o600)
    print("Token rotated, restart k3s nodes with new token")
    sys.exit(0)
args = argv[3:] if argv[:2] == ["kubectl", "--kubeconfig"] else argv
kubeconfig = argv[2] if argv[:2] == ["kubectl", "--kubeconfig"] else ""
if state.get("api_down"):
    refused = "The connection to the server 127.0.0.1:6443 was refused"
    print(refused + " - did you specify the right host or port?", file=sys.stderr)
    sys.exit(1)
pods = state.setdefault("pods", [])
if kubeconfig.endswith("/agent/kubelet.kubeconfig"):
    # A node's own credentials (K3s's kubelet.kubeconfig, client-kubelet.crt: CN
    # system:node:<name>; here the file holds that user name). What the API server of K3s (Node
    # authorizer, NodeRestriction: kubernetes plugin/pkg/auth/authorizer/node/node_authorizer.go,
    # plugin/pkg/admission/noderestriction/admission.go) lets it do, as
    # tests/real/test_controlplane.py measures on a real one: its own Node only (get, cordon,
    # annotate; no delete), its own pods only (list with the spec.nodeName field selector, evict),
    # and no DaemonSets (kubectl drain reads them). A missing file stops kubectl (client-go).
    if not os.path.exists(kubeconfig):
        print(f"error: stat {kubeconfig}: no such file or directory", file=sys.stderr)
        sys.exit(1)
    me = open(kubeconfig).read().split("system:node:", 1)[-1].split()[0]

    def forbidden(verb, resource, name=""):
        what = f'{resource} "{name}"' if name else resource
        print(f'Error from server (Forbidden): {what} is forbidden: User "system:node:{me}" cannot {verb} '
              f'resource "{resource}" in API group "" at the cluster scope', file=sys.stderr)  # fmt: skip
        sys.exit(1)

    at = args.index("node") + 1 if "node" in args[:3] else len(args)
    target = args[at] if at < len(args) else ""
    if args[:1] == ["get"] and args[1:2] == ["node"] and target != me:
        forbidden("get", "nodes", target)
    if args[:1] in (["cordon"], ["uncordon"]) and args[1] != me:
        forbidden("patch", "nodes", args[1])
    if args[:1] == ["annotate"] and target != me:
        forbidden("patch", "nodes", target)
    if args[:2] == ["delete", "node"]:
        forbidden("delete", "nodes", args[2])
    if args[:1] == ["drain"]:
        forbidden("get", "daemonsets")
    if args[:2] == ["get", "pods"] and f"spec.nodeName={me}" not in args:
        forbidden("list", "pods")
if args[:2] == ["get", "pods"] and "--field-selector" in args:
    # kubectl get pods -A --field-selector spec.nodeName=X with our jsonpath (namespace|name|
    # deletionTimestamp|controller kind|mirror annotation, a line each).
    node = args[args.index("--field-selector") + 1].partition("=")[2]
    for p in pods:
        if p["node"] == node:
            print("|".join([p["namespace"], p["name"], p.get("deleting", ""), p.get("owner", ""), p.get("mirror", "")]))
    sys.exit(0)
if args[:2] == ["create", "--raw"] and args[2].endswith("/eviction"):
    # POST .../pods/NAME/eviction (policy/v1 Eviction, body from -f -): 201 and the pod goes
    # (the kubelet confirms at once here); 429 while a PodDisruptionBudget allows no disruption
    # (pkg/registry/core/pod/storage/eviction.go); 404 for a pod that is gone.
    _, _, _, _, namespace, _, name, _ = args[2].split("/")
    body = json.loads(sys.stdin.read())
    assert body["kind"] == "Eviction" and body["metadata"] == {"name": name, "namespace": namespace}, body
    pod = next((p for p in pods if (p["namespace"], p["name"]) == (namespace, name)), None)
    if pod is None:
        print(f'Error from server (NotFound): pods "{name}" not found', file=sys.stderr)
        sys.exit(1)
    if kubeconfig.endswith("/agent/kubelet.kubeconfig") and pod["node"] != me:
        forbidden("create", "pods/eviction", name)
    if pod.get("budget_blocks"):
        print("Error from server (TooManyRequests): Cannot evict pod as it would violate the pod's disruption budget.",
              file=sys.stderr)  # fmt: skip
        sys.exit(1)
    pods.remove(pod)
    state.setdefault("evicted", []).append(f"{namespace}/{name}")
    save()
    print('{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","code":201}')
    sys.exit(0)
if args[:2] == ["get", "--raw"]:
    sys.exit(0 if state.get("readyz", True) else 1)
if args[:2] == ["get", "node"] and len(args) >= 3:
    name = args[2]
    if name not in state["nodes"]:
        if "--ignore-not-found" in args:
            sys.exit(0)
        print(f'Error from server (NotFound): nodes "{name}" not found', file=sys.stderr)
        sys.exit(1)
    output = " ".join(args[3:])
    marks = state.get("marks", {}).get(name, {})
    if "spec.unschedulable" in output:
        # jsonpath of an absent field prints nothing; a cordoned node has it true.
        sys.stdout.write("true" if name in state.get("cordoned", []) else "")
    elif "cordoned-for-upgrade" in output:
        sys.stdout.write(marks.get("k3s-rancher.io/cordoned-for-upgrade", ""))
    elif "annotations" in output:
        sys.stdout.write(state["annotation"])
    elif "kubeletVersion" in output:
        sys.stdout.write(state["nodes"][name])
    elif "-o name" in output:
        print(f"node/{name}")
    sys.exit(0)
if args[:1] == ["annotate"] and "k3s-rancher.io/cordoned-for-upgrade" in args[-1]:
    # The cordon mark: key=value sets it, key- removes it (kubectl annotate).
    node = args[args.index("node") + 1]
    marks = state.setdefault("marks", {}).setdefault(node, {})
    key, _, value = args[-1].partition("=")
    if key.endswith("-") and not value:
        marks.pop(key[:-1], None)
    else:
        marks[key] = value
    save()
elif args[:1] == ["annotate"]:
    state["annotation"] = args[-1].split("=", 1)[1]
    save()
if args[:1] in (["cordon"], ["uncordon"]):
    cordoned = set(state.get("cordoned", []))
    (cordoned.add if args[0] == "cordon" else cordoned.discard)(args[1])
    state["cordoned"] = sorted(cordoned)
    save()
if args[:2] == ["delete", "node"]:
    state["nodes"].pop(args[2], None)
    save()
sys.exit(0)
"""
