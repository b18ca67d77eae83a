#!/bin/sh
# STAND-IN for the K3s install script (https://get.k3s.io, k3s-io/k3s install.sh).
# NOT the real installer, and it never downloads anything: this project's own code, written
# to keep the real script's contract wherever k3s-rancher's scripts depend on it, on hosts
# without internet. Each behaviour, and the real function it imitates, is listed in
# tests/real/README.md ("Installer stand-in"). With internet, run the tiers with the real
# script instead: K3SR_INSTALL_SCRIPT=/path/to/install.sh.
#
# Imitated: init-system detection; server/agent from INSTALL_K3S_EXEC, the arguments and
# K3S_URL (https:// only; a token required when the command is defaulted to agent);
# INSTALL_K3S_NAME/_BIN_DIR/_BIN_DIR_READ_ONLY/_SYSTEMD_DIR/_SYMLINK/_SKIP_ENABLE/
# _SKIP_START/_FORCE_RESTART; /usr/local/bin or, if root cannot write there, /opt/bin;
# K3S_*/CONTAINERD_*/proxy variables in <unit>.env (0600); the systemd unit (Type=notify,
# TimeoutStartSec=0, Restart=always, KillMode=process, Delegate=yes); enable + daemon-reload;
# a restart only when the sha256 of binary, unit or env file changed (or forced), and
# `systemctl restart`, which blocks until the service sends READY=1; kubectl/crictl/ctr
# symlinks; k3s-killall.sh and <name>-uninstall.sh.
# k3s-killall.sh ends with the real one's iptables/ip6tables save-filter-restore lines (exit
# 127 where they are not installed).
# Not imitated: downloads and checksums, SELinux RPMs, OpenRC (refused).
set -e
set -o noglob

info() { echo '[INFO] ' "$@"; }
warn() { echo '[WARN] ' "$@" >&2; }
fatal() {
    echo '[ERROR] ' "$@" >&2
    exit 1
}

# Like the real script, root runs commands directly and anyone else through sudo.
SUDO=sudo
[ "$(id -u)" -ne 0 ] || SUDO=

# --- a process supervisor must exist (real: verify_system) ---
detect_init() {
    if [ -x /sbin/openrc-run ]; then
        fatal 'STAND-IN installer: OpenRC is not imitated (the real script writes /etc/init.d/k3s)'
    fi
    if [ -x /bin/systemctl ] || type systemctl >/dev/null 2>&1; then
        return 0
    fi
    fatal 'Can not find systemd or openrc to use as a process supervisor for k3s'
}

# --- each argument as one single-quoted word ('\'' inside) ---
sq() {
    for word in "$@"; do
        printf "'%s'\n" "$(printf '%s' "$word" | sed "s/'/'\\\\''/g")"
    done
}

# --- the arguments are split again (real: the `eval set -- $(escape "${INSTALL_K3S_EXEC}")
# $(quote "$@")` line before the main block, under `set -o noglob`): INSTALL_K3S_EXEC's words
# with shell punctuation made literal, then each argument single-quoted; both expansions are
# unquoted, so the quoted words are split at spaces, tabs and newlines and eval joins the
# pieces with one space. A run of blanks inside an argument arrives as one space
# (`cpu=100m,  memory=100Mi` as `cpu=100m, memory=100Mi`), as with the real script. ---
literal_punct() {
    printf '%s' "$1" | sed -e 's/\([][!#$%&()*;<=>?\_`{|}]\)/\\\1/g'
}
# shellcheck disable=SC2046 # unquoted on purpose: the real script's re-splitting
eval set -- $(literal_punct "${INSTALL_K3S_EXEC:-}") $(sq "$@")

resolve_command() {
    case "${1:-}" in
        -* | "")
            if [ -z "${K3S_URL:-}" ]; then
                K3S_COMMAND=server
            else
                if [ -z "${K3S_TOKEN:-}" ] && [ -z "${K3S_TOKEN_FILE:-}" ]; then
                    fatal "Defaulted k3s exec command to 'agent' because K3S_URL is defined, but K3S_TOKEN or K3S_TOKEN_FILE is not defined."
                fi
                K3S_COMMAND=agent
            fi
            ;;
        *)
            K3S_COMMAND=$1
            shift
            ;;
    esac
    case "${K3S_URL:-}" in
        "" | https://*) ;;
        *) fatal "Only https:// URLs are supported for K3S_URL (have ${K3S_URL})" ;;
    esac
    # ExecStart's argument lines: each word single-quoted, one per continued line.
    EXEC_LINES="    ${K3S_COMMAND} \\"
    for word in "$@"; do
        EXEC_LINES="${EXEC_LINES}
	$(sq "$word") \\"
    done

    if [ -n "${INSTALL_K3S_NAME:-}" ]; then
        UNIT_NAME=k3s-${INSTALL_K3S_NAME}
    elif [ "$K3S_COMMAND" = server ]; then
        UNIT_NAME=k3s
    else
        UNIT_NAME=k3s-${K3S_COMMAND}
    fi
    if printf '%s' "$UNIT_NAME" | grep -q '[][!#$%&()*;<=>?\_`{|}/[:space:]]'; then
        fatal "Invalid characters for system name: ${UNIT_NAME}"
    fi
}

# --- where things go (real: setup_env) ---
choose_paths() {
    if [ -n "${INSTALL_K3S_BIN_DIR:-}" ]; then
        BIN_DIR=$INSTALL_K3S_BIN_DIR
    else
        BIN_DIR=/usr/local/bin
        # A read-only /usr (Flatcar, Fedora CoreOS...): /opt/bin, but only if it exists.
        if ! $SUDO sh -c "touch ${BIN_DIR}/k3s-ro-test && rm -rf ${BIN_DIR}/k3s-ro-test"; then
            if [ -d /opt/bin ]; then
                BIN_DIR=/opt/bin
            fi
        fi
    fi
    UNIT_DIR=${INSTALL_K3S_SYSTEMD_DIR:-/etc/systemd/system}
    UNIT_FILE=${UNIT_DIR}/${UNIT_NAME}.service
    ENV_FILE=${UNIT_DIR}/${UNIT_NAME}.service.env
    KILLALL=${KILLALL_K3S_SH:-${BIN_DIR}/k3s-killall.sh}
    UNINSTALL=${UNINSTALL_K3S_SH:-${BIN_DIR}/${UNIT_NAME}-uninstall.sh}
    if [ "${INSTALL_K3S_BIN_DIR_READ_ONLY:-}" = true ]; then
        INSTALL_K3S_SKIP_DOWNLOAD=true
    fi
}

# --- what decides a restart: binary, unit and env file (real: get_installed_hashes) ---
fingerprint() {
    $SUDO sha256sum "${BIN_DIR}/k3s" "$UNIT_FILE" "$ENV_FILE" 2>&1 || true
}

# --- the binary must already be there (real: download_and_verify) ---
check_binary() {
    case "${INSTALL_K3S_SKIP_DOWNLOAD:-}" in
        true | binary) ;;
        *) fatal "STAND-IN installer cannot download k3s (no internet here): set INSTALL_K3S_SKIP_DOWNLOAD=true and put an executable k3s at ${BIN_DIR}/k3s" ;;
    esac
    info 'Skipping k3s download and verify'
    [ -x "${BIN_DIR}/k3s" ] || fatal "Executable k3s binary not found at ${BIN_DIR}/k3s"
    # SELinux: the real script installs k3s-selinux on RPM hosts; not imitated.
    info 'Skipping installation of SELinux RPM'
}

# --- kubectl, crictl, ctr -> k3s, unless something of that name exists (real: create_symlinks) ---
link_tools() {
    [ "${INSTALL_K3S_BIN_DIR_READ_ONLY:-}" = true ] && return 0
    [ "${INSTALL_K3S_SYMLINK:-}" = skip ] && return 0
    for tool in kubectl crictl ctr; do
        if [ -e "${BIN_DIR}/${tool}" ] && [ "${INSTALL_K3S_SYMLINK:-}" != force ]; then
            info "Skipping ${BIN_DIR}/${tool} symlink to k3s, already exists"
            continue
        fi
        found=$(command -v "$tool" 2>/dev/null || true)
        if [ -n "$found" ] && [ "${INSTALL_K3S_SYMLINK:-}" != force ]; then
            info "Skipping ${BIN_DIR}/${tool} symlink to k3s, command exists in PATH at ${found}"
        else
            info "Creating ${BIN_DIR}/${tool} symlink to k3s"
            $SUDO ln -sf k3s "${BIN_DIR}/${tool}"
        fi
    done
}

# --- k3s-killall.sh: stop every k3s unit, then what KillMode=process leaves behind
# (real: create_killall; network interfaces and iptables rules are not imitated) ---
write_killall() {
    [ "${INSTALL_K3S_BIN_DIR_READ_ONLY:-}" = true ] && return 0
    info "Creating killall script ${KILLALL}"
    $SUDO tee "$KILLALL" >/dev/null <<'KILLALL'
#!/bin/sh
# STAND-IN k3s-killall.sh (written by tests/real/standin/install.sh): not K3s's.
[ "$(id -u)" -eq 0 ] || exec sudo --preserve-env=K3S_DATA_DIR "$0" "$@"
K3S_DATA_DIR=${K3S_DATA_DIR:-/var/lib/rancher/k3s}
set -x
for unit in /etc/systemd/system/k3s*.service; do
    [ -s "$unit" ] && systemctl stop "$(basename "$unit")"
done
# Containers outlive the service (KillMode=process): their shims run from the data dir.
for pid in $(ps -e -o pid= -o args= | awk -v dir="$K3S_DATA_DIR/data/" 'index($2, dir) == 1 && $2 ~ /containerd-shim/ {print $1}'); do
    kill -9 "$pid" 2>/dev/null
done
for top in /run/k3s /var/lib/kubelet/pods /var/lib/kubelet/plugins /run/netns/cni-; do
    awk -v top="$top" 'index($2, top) == 1 {print $2}' /proc/self/mounts | sort -r | while read -r path; do
        umount -f "$path" && rm -rf "$path"
    done
done
rm -rf /var/lib/cni/
# The real script's last lines, as they are: no `set -e` anywhere, so its exit status is the
# last pipeline's, 127 ("not found") on a host without ip6tables-restore, after all the rest.
iptables-save | grep -v KUBE- | grep -v CNI- | grep -iv flannel | iptables-restore
ip6tables-save | grep -v KUBE- | grep -v CNI- | grep -iv flannel | ip6tables-restore
KILLALL
    $SUDO chmod 755 "$KILLALL"
    $SUDO chown root:root "$KILLALL"
}

# --- <name>-uninstall.sh (real: create_uninstall). Removes the unit and env file, and
# only when no other k3s unit remains everything else; /etc/rancher/node (the node
# password) is left in place, as by the real one. ---
write_uninstall() {
    [ "${INSTALL_K3S_BIN_DIR_READ_ONLY:-}" = true ] && return 0
    info "Creating uninstall script ${UNINSTALL}"
    $SUDO tee "$UNINSTALL" >/dev/null <<UNINSTALL
#!/bin/sh
# STAND-IN ${UNIT_NAME}-uninstall.sh (written by tests/real/standin/install.sh): not K3s's.
set -x
[ "\$(id -u)" -eq 0 ] || exec sudo --preserve-env=K3S_DATA_DIR "\$0" "\$@"
K3S_DATA_DIR=\${K3S_DATA_DIR:-/var/lib/rancher/k3s}

$(sq "$KILLALL")

if command -v systemctl; then
    systemctl disable ${UNIT_NAME}
    systemctl reset-failed ${UNIT_NAME}
    systemctl daemon-reload
fi

rm -f $(sq "$UNIT_FILE")
rm -f $(sq "$ENV_FILE")

remove_uninstall() {
    rm -f $(sq "$UNINSTALL")
}
trap remove_uninstall EXIT

if (ls $(sq "$UNIT_DIR")/k3s*.service || ls /etc/init.d/k3s*) >/dev/null 2>&1; then
    set +x; echo 'Additional k3s services installed, skipping uninstall of k3s'; set -x
    exit
fi

for tool in kubectl crictl ctr; do
    [ -L $(sq "$BIN_DIR")/\$tool ] && rm -f $(sq "$BIN_DIR")/\$tool
done

rm -rf /etc/rancher/k3s /run/k3s /run/flannel
# Mounted directories under the data dir are emptied, not removed.
remove_unmounted() {
    if ! grep -q " \$1" /proc/mounts; then
        rm -rf "\$1"
        return 0
    fi
    for path in "\$1"/*; do
        if [ -d "\$path" ] && grep -q " \$path" /proc/mounts; then
            remove_unmounted "\$path"
        else
            rm -rf "\$path"
        fi
    done
}
remove_unmounted "\$K3S_DATA_DIR"
rm -rf /var/lib/kubelet
rm -f $(sq "$BIN_DIR")/k3s
rm -f $(sq "$KILLALL")
UNINSTALL
    $SUDO chmod 755 "$UNINSTALL"
    $SUDO chown root:root "$UNINSTALL"
}

# --- a previous unit of this name is disabled and removed first (real: systemd_disable) ---
remove_old_unit() {
    $SUDO systemctl disable "$UNIT_NAME" >/dev/null 2>&1 || true
    $SUDO rm -f "/etc/systemd/system/${UNIT_NAME}.service" || true
    $SUDO rm -f "/etc/systemd/system/${UNIT_NAME}.service.env" || true
}

# --- the variables the service keeps, from this script's environment, created 0600 before
# anything is written (real: create_env_file). The same pipeline as the real one: `export`'s
# NAME='value' lines read by `read` without -r (backslashes dropped) and echoed unquoted (runs
# of blanks squeezed): values with either arrive changed. ---
write_env_file() {
    info "env: Creating environment file ${ENV_FILE}"
    $SUDO touch "$ENV_FILE"
    $SUDO chmod 0600 "$ENV_FILE"
    {
        # shellcheck disable=SC2034,SC2162,SC2086 # the real script's `read` and unquoted echo, on purpose
        sh -c export | while read x v; do echo $v; done | grep -E '^(K3S|CONTAINERD)_' || true
        # shellcheck disable=SC2034,SC2162,SC2086
        sh -c export | while read x v; do echo $v; done | grep -Ei '^(NO|HTTP|HTTPS)_PROXY' || true
    } | $SUDO tee "$ENV_FILE" >/dev/null
}

# --- the unit (real: create_systemd_service_file) ---
write_unit() {
    info "systemd: Creating service file ${UNIT_FILE}"
    $SUDO tee "$UNIT_FILE" >/dev/null <<UNIT
# STAND-IN unit written by tests/real/standin/install.sh; same directives as K3s's.
[Unit]
Description=Lightweight Kubernetes
Documentation=https://k3s.io
Wants=network-online.target
After=network-online.target

[Install]
WantedBy=multi-user.target

[Service]
Type=${INSTALL_K3S_TYPE:-notify}
EnvironmentFile=-/etc/default/%N
EnvironmentFile=-/etc/sysconfig/%N
EnvironmentFile=-${ENV_FILE}
KillMode=process
Delegate=yes
User=root
LimitNOFILE=1048576
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
TimeoutStartSec=0
Restart=always
RestartSec=5s
ExecStartPre=-/sbin/modprobe br_netfilter
ExecStartPre=-/sbin/modprobe overlay
ExecStart=${BIN_DIR}/k3s \\
${EXEC_LINES}

UNIT
}

# --- enable, then restart only on a change (real: service_enable_and_start) ---
enable_and_start() {
    [ "${INSTALL_K3S_SKIP_ENABLE:-}" = true ] && return 0
    info "systemd: Enabling ${UNIT_NAME} unit"
    $SUDO systemctl enable "$UNIT_FILE" >/dev/null
    $SUDO systemctl daemon-reload >/dev/null
    # STAND-IN test hook, not K3s behaviour: at this point the real script has written every
    # file and enabled the unit (systemd_enable, l. 1078-1082) and has not started K3s yet
    # (service_enable_and_start, l. 1124-1130). A one-shot /run/k3sr-kill-after-installer
    # SIGKILLs this script's process group (over SSH that is the session's whole command: sudo,
    # the calling k3s-rancher script, this script), as a killed SSH session or CI job would;
    # /run/k3sr-killed-after-installer lists what was killed (tests/real/test_engine_crash_safety.py).
    if [ -e /run/k3sr-kill-after-installer ]; then
        $SUDO rm -f /run/k3sr-kill-after-installer
        PGID=$(ps -o pgid= -p $$ | tr -d ' ')
        ps -e -o pid=,pgid=,args= | awk -v g="$PGID" '$2 == g' | $SUDO tee /run/k3sr-killed-after-installer >/dev/null
        $SUDO kill -s KILL -- "-$PGID"
    fi
    [ "${INSTALL_K3S_SKIP_START:-}" = true ] && return 0
    AFTER=$(fingerprint)
    if [ "$BEFORE" = "$AFTER" ] && [ "${INSTALL_K3S_FORCE_RESTART:-}" != true ]; then
        info 'No change detected so skipping service start'
        return 0
    fi
    for tables in iptables ip6tables; do
        command -v "${tables}-save" >/dev/null 2>&1 || info "Host ${tables}-save/${tables}-restore tools not found"
    done
    info "systemd: Starting ${UNIT_NAME}"
    # Blocks until the service reports READY=1 (Type=notify, TimeoutStartSec=0: forever).
    $SUDO systemctl restart "$UNIT_NAME"
}

detect_init
resolve_command "$@"
choose_paths
BEFORE=$(fingerprint)
check_binary
link_tools
write_killall
write_uninstall
remove_old_unit
write_env_file
write_unit
enable_and_start
