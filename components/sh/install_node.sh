# shellcheck shell=sh
# Install or update K3s on this host (server or agent); idempotent and bounded.
# Over 400 lines on purpose: its preflight, files, airgap, proxy and restart steps share one
# set of inputs and one place where "nothing is written before the checks pass" can be read
# and tested (the service start and wait are in service.sh, shared with restart_pending.sh).
# Run from the scripts bundle by the install's entry point (components/scripts.py render).
# Inputs: ROLE (server|agent), NODE_NAME, K3S_VERSION, SERVER_URL (agents and joining
# servers, else empty), CONFIG_YAML, REGISTRIES_YAML (may be empty), INSTALL_SCRIPT_URL,
# INSTALL_SCRIPT_SHA256 (pin of the downloaded installer, or empty), TIMEOUT (seconds the
# service may take to become active), AIRGAP (empty, or one generation: AIRGAP_GENERATION,
# AIRGAP_STAGE relative to the SSH user's home, AIRGAP_SHA256_INSTALLER, AIRGAP_SHA256_K3S,
# AIRGAP_SHA256_IMAGES and AIRGAP_IMAGES, the images file name, both empty without images);
# RESTART (defer: a rolled agent's update, which leaves the restart to its -upgrade step and
# prints whether one is needed; else now); GENERATION (k3s-rancher's scripts generation: only
# its change re-runs installs for a release); HTTP_PROXY_URL, HTTPS_PROXY_URL, NO_PROXY_LIST
# (only with k3s.proxy: URLs without
# credentials, either may be empty); PREFLIGHT (off: skip the first-install checks);
# ETCD_SNAPSHOT_DIR (servers, only with k3s.etcdSnapshots.directory: created if missing);
# DRIFT_REPAIR (only for a node k3s.driftCheck found drifted: its new number re-runs this
# install, which rewrites the files, restarts K3s as needed and records them again). No
# positional args: serverArgs/agentArgs are in CONFIG_YAML (components/scripts.py args_config),
# which K3s reads verbatim, never through the installer's arguments, which it re-splits
# (install.sh: `eval set -- $(escape ...) $(quote "$@")`). stdin: line 1 the cluster token, line 2 the external
# datastore endpoint (may be empty), lines 3-4 (optional) the etcd S3 access and secret keys,
# line 5 (optional) the proxy's user:password, line 6 (only while newToken rotates the token)
# the token it rotates from, line 7 (only with the registryAuth secret) the whole
# registries.yaml as one JSON line; any line may be empty or absent.
# Labels and taints are not here: a first registration gets them from registration.sh, later
# changes go through the API (node_meta.sh), so changing them never re-runs an install.
: "${ROLE:?}" "${NODE_NAME:?}" "${K3S_VERSION:?}" "${CONFIG_YAML:?}" "${INSTALL_SCRIPT_URL:?}" "${TIMEOUT:?}"

# shellcheck source=/dev/null
. "$K3SR_SCRIPTS/service.sh"
# Lines 3-4 only when k3s.etcdSnapshots.s3 has keys, line 5 only with proxyCredentials, line 6
# only while newToken rotates the cluster token (token_rotation.sh ran on the init server
# first): a node whose token file holds that one takes the new token.
read_node_secrets
[ -n "$TOKEN" ] || die "no cluster token arrived on stdin"

CONF_DIR=/etc/rancher/k3s
TOKEN_FILE=$CONF_DIR/cluster-token
SERVER_TOKEN=/var/lib/rancher/k3s/server/token
AIRGAP_ROOT=/var/lib/k3s-rancher/airgap
README_TOKEN="the README's lifecycle section says how"
if [ "$ROLE" = server ]; then
  OTHER_SERVICE=k3s-agent OTHER_ROLE=agent LIST=servers OTHER_LIST=agents
else
  OTHER_SERVICE=k3s OTHER_ROLE=server LIST=agents OTHER_LIST=servers
fi
choose_service "$ROLE"
# The unit and the env file the installer writes (install.sh setup_env, create_env_file).
# shellcheck disable=SC2153 # INIT is set by choose_service (service.sh)
if [ "$INIT" = openrc ]; then
  UNIT=/etc/init.d/$SERVICE ENV_FILE=$CONF_DIR/$SERVICE.env
else
  UNIT=/etc/systemd/system/$SERVICE.service ENV_FILE=/etc/systemd/system/$SERVICE.service.env
fi
# shellcheck source=/dev/null
. "$K3SR_SCRIPTS/proxy_env.sh"
# shellcheck source=/dev/null
. "$K3SR_SCRIPTS/applied.sh"

BIN_DIR=/usr/local/bin
if ! { touch "$BIN_DIR/k3s-ro-test" && rm -f "$BIN_DIR/k3s-ro-test"; } 2>/dev/null && [ -d /opt/bin ]; then
  BIN_DIR=/opt/bin
fi
command -v sha256sum >/dev/null 2>&1 || die "sha256sum is missing on $NODE_NAME (coreutils or busybox provides it)"

sha256_of() { _sum=$(sha256sum "$1") && printf "%s\n" "${_sum%% *}"; }

# version_key VERSION: vMAJOR.MINOR.PATCH+k3sN as one comparable number (empty if not that form).
version_key() {
  printf "%s\n" "$1" | sed -n 's/^v\([0-9][0-9]*\)\.\([0-9][0-9]*\)\.\([0-9][0-9]*\)+k3s\([0-9][0-9]*\).*$/\1 \2 \3 \4/p' \
    | { read -r _maj _min _pat _rev && echo $(( ((_maj * 1000 + _min) * 1000 + _pat) * 1000 + _rev )); } || true
}

# --- preflight: read-only checks; nothing is written before they pass --------------------------

for _unit in "/etc/systemd/system/$OTHER_SERVICE.service" "/etc/init.d/$OTHER_SERVICE"; do
  [ -e "$_unit" ] || continue
  die "$NODE_NAME is already a K3s $OTHER_ROLE (found $_unit); installing it as $ROLE on top would break both. To change a node's role: remove it from '$OTHER_LIST', run pulumi up (it is drained and uninstalled), then add it to '$LIST' and run pulumi up again"
done

# Joined before: a server with data, or a node holding the kubelet client certificate that
# servers hand out only for the right token (K3s pkg/agent/config/config.go, get). A token
# file from an install that never joined (a wrong token, say) is ours to replace.
JOINED_CERT=/var/lib/rancher/k3s/agent/client-kubelet.crt
if [ -f "$TOKEN_FILE" ] && { [ -f "$SERVER_TOKEN" ] || [ -f "$JOINED_CERT" ]; }; then
  IFS= read -r OLD_TOKEN < "$TOKEN_FILE" || true
  # During a rotation (line 6) the token file may still hold the token rotated from.
  [ "$OLD_TOKEN" = "$TOKEN" ] || { [ -n "$ROTATED_FROM" ] && [ "$OLD_TOKEN" = "$ROTATED_FROM" ]; } \
    || die "$NODE_NAME already belongs to a cluster with a different token (found in $TOKEN_FILE); nothing was changed. Servers with data refuse a new token and agents could not join. If you changed k3s-rancher:token, put the old one back and set the new one as newToken instead (pulumi config set --secret newToken <new>): the next up runs 'k3s token rotate' on the init server, then restarts every node once with the new token ($README_TOKEN). If this host belongs to another cluster, uninstall K3s there first"
elif [ -f "$SERVER_TOKEN" ]; then
  IFS= read -r OLD_TOKEN < "$SERVER_TOKEN" || true
  case $OLD_TOKEN in
    "$TOKEN" | *::server:"$TOKEN") ;;
    # During a rotation a server may still hold the token rotated from (none: $TOKEN again).
    "${ROTATED_FROM:-$TOKEN}" | *::server:"${ROTATED_FROM:-$TOKEN}") ;;
    *) die "$NODE_NAME holds K3s data of another cluster (found $SERVER_TOKEN with a different token); nothing was changed. Uninstall K3s there (k3s-uninstall.sh) or use another host" ;;
  esac
fi

OLD_K3S=$(k3s_path) || OLD_K3S=""
if [ -n "$OLD_K3S" ] && [ -d /var/lib/rancher/k3s ]; then
  INSTALLED=$("$OLD_K3S" --version 2>/dev/null | sed -n '1s/^k3s version \(v[^ ]*\).*$/\1/p') || INSTALLED=""
  OLD_KEY=$(version_key "$INSTALLED") NEW_KEY=$(version_key "$K3S_VERSION")
  if [ -n "$OLD_KEY" ] && [ -n "$NEW_KEY" ]; then
    OLD_MINOR=$(( OLD_KEY / 1000000 )) NEW_MINOR=$(( NEW_KEY / 1000000 ))
    [ "$NEW_KEY" -ge "$OLD_KEY" ] || die "$NODE_NAME runs K3s $INSTALLED; $K3S_VERSION would be a downgrade, which K3s does not support: set k3s.version to $INSTALLED or newer"
    [ "$NEW_MINOR" -le $(( OLD_MINOR + 1 )) ] || die "$NODE_NAME runs K3s $INSTALLED; $K3S_VERSION skips a minor version, which K3s does not support: upgrade one minor at a time (first to the newest patch of the next minor)"
  elif [ -n "$OLD_KEY" ] || [ -n "$INSTALLED" ]; then
    log "warning: cannot compare installed K3s '${INSTALLED:-unknown}' with $K3S_VERSION; not checking the upgrade path"
  fi
fi

if [ -n "${AIRGAP_GENERATION:-}" ]; then
  ENFORCING=0
  if command -v getenforce >/dev/null 2>&1; then
    [ "$(getenforce 2>/dev/null)" != Enforcing ] || ENFORCING=1
  elif [ "$(cat /sys/fs/selinux/enforce 2>/dev/null)" = 1 ]; then
    ENFORCING=1
  fi
  if [ "$ENFORCING" = 1 ] && [ ! -f /usr/share/selinux/packages/k3s.pp ] && ! rpm -q --quiet k3s-selinux 2>/dev/null; then
    die "SELinux is enforcing on $NODE_NAME and the k3s-selinux policy is not installed; an airgap install skips it (INSTALL_K3S_SKIP_DOWNLOAD), and K3s would not run. Install the container-selinux and k3s-selinux RPMs on the host first (from your mirror of rpm.rancher.io), then run pulumi up again"
  fi
fi
if [ "$INIT" = systemd ]; then
  for _unit in nm-cloud-setup.service nm-cloud-setup.timer; do
    systemctl is-enabled --quiet "$_unit" 2>/dev/null || continue
    die "$_unit is enabled on $NODE_NAME: NetworkManager's cloud setup rewrites routing and breaks K3s networking (K3s docs, requirements). Disable it and reboot: systemctl disable nm-cloud-setup.service nm-cloud-setup.timer && reboot; then run pulumi up again"
  done
  if systemctl is-active --quiet firewalld 2>/dev/null; then
    log "warning: firewalld is active on $NODE_NAME. K3s recommends turning it off (systemctl disable --now firewalld); to keep it, allow 6443/tcp (API), 10250/tcp (kubelet), 8472/udp (flannel VXLAN), 2379-2380/tcp between servers (etcd), and trust the pod and service networks (firewall-cmd --permanent --zone=trusted --add-source=10.42.0.0/16 --add-source=10.43.0.0/16; firewall-cmd --reload)"
  fi
fi

# --- first install only: is this host fit for K3s (k3s.preflight; PREFLIGHT=off skips) -----------
# Not first: a config.yaml of ours, or K3s data of this cluster (the checks above refused any
# other token), whose own K3s holds the ports.

SKIP_HINT="(k3s.preflight false skips this check)"
ours() {
  { [ -f "$CONF_DIR/config.yaml" ] && grep -q "^# managed by k3s-rancher" "$CONF_DIR/config.yaml"; } \
    || [ -f "$SERVER_TOKEN" ] || { [ -f "$TOKEN_FILE" ] && [ -f "$JOINED_CERT" ]; }
}

# listening_ports: the local TCP ports in LISTEN state, one per line: ss, else netstat (both
# give the local address in column 4), else /proc/net/tcp[6] (state 0A, hex port).
listening_ports() {
  if command -v ss >/dev/null 2>&1; then
    ss -ltn 2>/dev/null | while read -r _ _ _ _local _; do printf "%s\n" "${_local##*:}"; done
  elif command -v netstat >/dev/null 2>&1; then
    netstat -ltn 2>/dev/null | while read -r _ _ _ _local _; do printf "%s\n" "${_local##*:}"; done
  else
    cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | while read -r _ _local _ _state _; do
      if [ "$_state" = 0A ]; then printf "%s\n" "$(( 0x${_local##*:} ))"; fi
    done
  fi
}

# epoch_of DAY MON YEAR HH:MM:SS: seconds since 1970 of an HTTP Date (UTC), in shell arithmetic
# (busybox date cannot parse it); days from the civil date as in H. Hinnant's days_from_civil.
epoch_of() {
  _m=0
  for _name in Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec; do
    _m=$(( _m + 1 ))
    [ "$_name" = "$2" ] && break
  done
  [ "$_name" = "$2" ] || return 1
  _d=${1#0} _y=$3
  [ "$_m" -gt 2 ] || _y=$(( _y - 1 ))
  _era=$(( _y / 400 )) _yoe=$(( _y % 400 ))
  _doy=$(( (153 * ((_m + 9) % 12) + 2) / 5 + _d - 1 ))
  _days=$(( _era * 146097 + _yoe * 365 + _yoe / 4 - _yoe / 100 + _doy - 719468 ))
  _hh=${4%%:*} _ss=${4##*:}
  _mm=${4#*:} && _mm=${_mm%:*}
  echo $(( _days * 86400 + ${_hh#0} * 3600 + ${_mm#0} * 60 + ${_ss#0} ))
}

# server_clock_skew URL: this host's clock minus the server's (HTTP Date of URL/ping), in
# seconds; nothing when the server does not answer (the join reports that itself).
server_clock_skew() {
  command -v curl >/dev/null 2>&1 || return 0
  # -k: the cluster's CA is not on this host before it joins; only the Date header is used.
  _date=$(curl -skI --noproxy '*' --max-time 10 "$1/ping" 2>/dev/null | tr -d '\r' | sed -n 's/^[Dd]ate: //p') || return 0
  # "Wed, 02 Dec 2026 01:58:20 GMT": weekday, day, month, year, time
  printf "%s\n" "$_date" | (
    read -r _ _day _mon _year _time _ || exit 0
    _server=$(epoch_of "$_day" "$_mon" "$_year" "$_time") || exit 0
    echo $(( $(date -u +%s) - _server ))
  ) || true
}

MAX_CLOCK_SKEW=5
if [ "${PREFLIGHT:-on}" != off ] && ! ours; then
  _os=$(uname -s)
  [ "$_os" = Linux ] || die "$NODE_NAME runs $_os; K3s runs on Linux only: use a Linux host $SKIP_HINT"
  _arch=$(uname -m)
  case $_arch in
    x86_64 | amd64 | aarch64 | arm64 | armv7* | armv8l | armhf | s390x) ;;
    *) die "$NODE_NAME is $_arch; K3s is built for x86_64, aarch64 (arm64), armv7 (armhf) and s390x only: use a host of one of those architectures $SKIP_HINT" ;;
  esac
  # What a K3s that ran leaves (its unpacked data, server state, a joined agent's certificate),
  # not /var/lib/rancher/k3s/agent/images: airgap images may be put there before an install.
  for _found in "$UNIT" "$BIN_DIR/k3s" /usr/local/bin/k3s /opt/bin/k3s /var/lib/rancher/k3s/data /var/lib/rancher/k3s/server "$JOINED_CERT"; do
    [ -e "$_found" ] || continue
    die "$NODE_NAME already has a K3s that k3s-rancher did not install (found $_found, and no $CONF_DIR/config.yaml of ours); installing over it could break what runs there. Uninstall it (k3s-uninstall.sh or k3s-agent-uninstall.sh) or use another host; to take it over as it is, set k3s.preflight false"
  done
  if [ "$ROLE" = server ]; then
    PORTS="6443 10250"
    # Embedded etcd: a joining server (SERVER_URL) or the one with cluster-init; not sqlite or external.
    if [ -z "$DATASTORE_ENDPOINT" ] && { [ -n "${SERVER_URL:-}" ] || printf "%s\n" "$CONFIG_YAML" | grep -qx "cluster-init: true"; }; then
      PORTS="$PORTS 2379 2380"
    fi
  else
    PORTS=10250
  fi
  LISTENING=$(listening_ports)
  BUSY=""
  for _port in $PORTS; do
    if printf "%s\n" "$LISTENING" | grep -qx "$_port"; then BUSY="$BUSY $_port/tcp"; fi
  done
  [ -z "$BUSY" ] || die "port(s)$BUSY already in use on $NODE_NAME; K3s ($ROLE) needs them. See what listens there (ss -ltnp), stop it or use another host, then run pulumi up again $SKIP_HINT"
  if [ -n "${SERVER_URL:-}" ]; then
    SKEW=$(server_clock_skew "$SERVER_URL")
    [ -n "$SKEW" ] || log "could not read the time of $SERVER_URL (no HTTPS answer on /ping, or no curl on $NODE_NAME): clocks not compared"
    if [ -n "$SKEW" ] && { [ "$SKEW" -gt "$MAX_CLOCK_SKEW" ] || [ "$SKEW" -lt "-$MAX_CLOCK_SKEW" ]; }; then
      die "the clock of $NODE_NAME differs from the server's ($SERVER_URL) by ${SKEW}s (more than ${MAX_CLOCK_SKEW}s); certificates and etcd need synchronised clocks. Turn on time sync on both (timedatectl set-ntp true, or chrony/ntpd), then run pulumi up again $SKIP_HINT"
    fi
  fi
fi

# The proxy's credentials go into the URLs here, on the host: they arrived on stdin.
check_proxy_credentials

# --- our files ---------------------------------------------------------------------------------

umask 077
host_lock "install of $NODE_NAME"
CHANGED=0
# Recorded before anything is written and cleared only once K3s runs what is on disk: a run
# killed between the writes and the restart leaves it, and the next run restarts K3s even
# though it finds every file already as desired (service.sh).
OWED=""
if restart_pending; then
  OWED=1
  log "$NODE_NAME: an earlier run changed K3s's files and did not restart it; restarting now"
fi
mark_restart_pending
put_file 0600 "$TOKEN_FILE" "$TOKEN"
put_file 0600 "$CONF_DIR/config.yaml" "$CONFIG_YAML"
# k3s.etcdSnapshots.directory: K3s creates only its default snapshot directory (pkg/etcd
# snapshotDir, 0700), and every snapshot to a missing one fails. Made as K3s makes its own.
if [ -n "${ETCD_SNAPSHOT_DIR:-}" ] && [ ! -d "$ETCD_SNAPSHOT_DIR" ]; then
  mkdir -p "$ETCD_SNAPSHOT_DIR"
  chmod 0700 "$ETCD_SNAPSHOT_DIR"
fi
# The S3 keys only in a 0600 drop-in on servers, as single-quoted YAML ('' is a quote there).
ETCD_S3_FILE=$CONF_DIR/config.yaml.d/50-k3s-rancher-etcd-s3.yaml
if [ "$ROLE" = server ] && [ -n "$S3_ACCESS_KEY" ]; then
  S3_ACCESS_YAML=$(printf "%s\n" "$S3_ACCESS_KEY" | sed "s/'/''/g")
  S3_SECRET_YAML=$(printf "%s\n" "$S3_SECRET_KEY" | sed "s/'/''/g")
  put_file 0600 "$ETCD_S3_FILE" "# managed by k3s-rancher
etcd-s3-access-key: '$S3_ACCESS_YAML'
etcd-s3-secret-key: '$S3_SECRET_YAML'"
else
  remove_managed "$ETCD_S3_FILE"
fi
# The external datastore's endpoint (a secret, with its password) in a 0600 drop-in, as
# single-quoted YAML: K3s reads it verbatim (backslashes, spaces, $ ' " #).
DATASTORE_FILE=$CONF_DIR/config.yaml.d/60-k3s-rancher-datastore.yaml
if [ "$ROLE" = server ] && [ -n "$DATASTORE_ENDPOINT" ]; then
  DATASTORE_YAML=$(printf "%s\n" "$DATASTORE_ENDPOINT" | sed "s/'/''/g")
  put_file 0600 "$DATASTORE_FILE" "# managed by k3s-rancher
datastore-endpoint: '$DATASTORE_YAML'"
else
  remove_managed "$DATASTORE_FILE"
fi
# With registry credentials (stdin line 7) the whole file came on stdin, as one JSON line
# (JSON is YAML to K3s); REGISTRIES_YAML, in the command text, is the same without them.
if [ -n "$REGISTRIES_WITH_AUTH" ]; then
  put_file 0600 "$CONF_DIR/registries.yaml" "# managed by k3s-rancher (with the registryAuth secret)
$REGISTRIES_WITH_AUTH"
elif [ -n "${REGISTRIES_YAML:-}" ]; then
  put_file 0600 "$CONF_DIR/registries.yaml" "$REGISTRIES_YAML"
else
  remove_managed "$CONF_DIR/registries.yaml"
fi
# k3s.proxy for K3s and containerd: our own 0600 env file and its systemd drop-in (proxy_env.sh).
write_proxy_files

# What the installer compares to decide on a restart (install.sh get_installed_hashes).
installed_hashes() { sha256sum "$BIN_DIR/k3s" "$UNIT" "$ENV_FILE" 2>&1 || true; }
PRE_HASHES=$(installed_hashes)

# airgap_ok DIR: every file of this generation is in DIR with the sha256 the program computed.
airgap_ok() {
  [ "$(sha256_of "$1/install.sh" 2>/dev/null)" = "$AIRGAP_SHA256_INSTALLER" ] || return 1
  [ "$(sha256_of "$1/k3s" 2>/dev/null)" = "$AIRGAP_SHA256_K3S" ] || return 1
  [ -z "${AIRGAP_SHA256_IMAGES:-}" ] || [ "$(sha256_of "$1/images" 2>/dev/null)" = "$AIRGAP_SHA256_IMAGES" ]
}

# With k3s.proxy: exactly the configured proxy for our download and the installer's (curl
# and wget read the lower-case names). The installer copies these into its env file, changed
# (proxy_env.sh says how); drop_installer_proxy removes its copies after it ran: K3s and
# containerd read ours.
if proxy_configured; then
  unset HTTP_PROXY HTTPS_PROXY NO_PROXY http_proxy https_proxy no_proxy
  if [ -n "${HTTP_PROXY_URL:-}" ]; then
    HTTP_PROXY=$(with_credentials "$HTTP_PROXY_URL") && http_proxy=$HTTP_PROXY
    export HTTP_PROXY http_proxy
  fi
  if [ -n "${HTTPS_PROXY_URL:-}" ]; then
    HTTPS_PROXY=$(with_credentials "$HTTPS_PROXY_URL") && https_proxy=$HTTPS_PROXY
    export HTTPS_PROXY https_proxy
  fi
  NO_PROXY=${NO_PROXY_LIST:-} no_proxy=${NO_PROXY_LIST:-}
  export NO_PROXY no_proxy
fi

# remove_staged GENERATION: the SSH user's staging directory of GENERATION, never through a
# symlink the user could have planted on the way (this runs as root).
remove_staged() {
  _home=$(user_home "$(ssh_user)") || return 0
  _parent=$_home/${AIRGAP_STAGE%/*}
  [ ! -L "$_home/${AIRGAP_STAGE%%/*}" ] && [ ! -L "$_parent" ] || return 0
  rm -rf "${_parent:?}/$1"
}

INSTALLER=$(mktemp)
# shellcheck disable=SC2016 # expanded when the script exits
at_exit 'rm -f "$INSTALLER"'
if [ -n "${AIRGAP_GENERATION:-}" ]; then
  : "${AIRGAP_STAGE:?}" "${AIRGAP_SHA256_INSTALLER:?}" "${AIRGAP_SHA256_K3S:?}"
  STAGE_USER=$(ssh_user)
  GEN_DIR=$AIRGAP_ROOT/$AIRGAP_GENERATION
  # Run nothing from the SSH user's staging directory: copy into a root-owned place that
  # survives reboots, check the copies there, and use only them.
  if ! airgap_ok "$GEN_DIR"; then
    HOME_DIR=$(user_home "$STAGE_USER") || die "cannot find the home directory of $STAGE_USER on $NODE_NAME"
    STAGED=$HOME_DIR/$AIRGAP_STAGE
    [ -d "$STAGED" ] || die "the airgap files of generation $AIRGAP_GENERATION are neither in $GEN_DIR nor staged in $STAGED; run pulumi refresh, then pulumi up, to copy them again"
    mkdir -p "$AIRGAP_ROOT"
    chmod 0700 "$AIRGAP_ROOT"
    rm -rf "$GEN_DIR.new"
    mkdir -m 0700 "$GEN_DIR.new"
    for _file in install.sh k3s ${AIRGAP_SHA256_IMAGES:+images}; do
      cp "$STAGED/$_file" "$GEN_DIR.new/$_file" || die "airgap file $_file missing in $STAGED"
    done
    chown -R 0:0 "$GEN_DIR.new" 2>/dev/null || true
    if ! airgap_ok "$GEN_DIR.new"; then
      rm -rf "$GEN_DIR.new"
      die "the airgap files staged in $STAGED do not match the sha256 sums of the local files; nothing was run. Run pulumi refresh, then pulumi up, to copy them again"
    fi
    rm -rf "$GEN_DIR"
    mv "$GEN_DIR.new" "$GEN_DIR"
  fi
  # The staged copies are not needed once the root-owned ones are checked: every staged file
  # is removed here, so a failed or refused run later leaves none behind in the home.
  remove_staged "$AIRGAP_GENERATION"
  cp "$GEN_DIR/install.sh" "$INSTALLER"
  if ! cmp -s "$GEN_DIR/k3s" "$BIN_DIR/k3s"; then
    install -m 0755 "$GEN_DIR/k3s" "$BIN_DIR/k3s.k3s-rancher-new"
    mv -f "$BIN_DIR/k3s.k3s-rancher-new" "$BIN_DIR/k3s"
  fi
  if [ -n "${AIRGAP_IMAGES:-}" ]; then
    put_file 0644 "/var/lib/rancher/k3s/agent/images/$AIRGAP_IMAGES" < "$GEN_DIR/images"
  fi
  INSTALL_K3S_SKIP_DOWNLOAD=true
  export INSTALL_K3S_SKIP_DOWNLOAD
else
  if command -v curl >/dev/null 2>&1; then
    curl -sfL --retry 3 --max-time 120 "$INSTALL_SCRIPT_URL" -o "$INSTALLER" \
      || die "cannot download the K3s installer from $INSTALL_SCRIPT_URL (no internet? use k3s.airgap)"
  elif command -v wget >/dev/null 2>&1; then
    wget -q -T 120 -O "$INSTALLER" "$INSTALL_SCRIPT_URL" \
      || die "cannot download the K3s installer from $INSTALL_SCRIPT_URL (no internet? use k3s.airgap)"
  else
    die "neither curl nor wget is installed: install one, or use k3s.airgap"
  fi
  if [ -n "${INSTALL_SCRIPT_SHA256:-}" ]; then
    GOT=$(sha256_of "$INSTALLER")
    [ "$GOT" = "$INSTALL_SCRIPT_SHA256" ] || die "the K3s installer from $INSTALL_SCRIPT_URL has sha256 $GOT, not the $INSTALL_SCRIPT_SHA256 that k3s.installScriptSha256 pins; nothing was run. Review the new installer, then update k3s.installScriptSha256"
  fi
fi

INSTALL_K3S_VERSION=$K3S_VERSION
INSTALL_K3S_EXEC=$ROLE
INSTALL_K3S_BIN_DIR=$BIN_DIR
# We start the service ourselves: the installer's `systemctl restart` blocks until K3s is
# ready (Type=notify, TimeoutStartSec=0), forever if it never is.
INSTALL_K3S_SKIP_START=true
export INSTALL_K3S_VERSION INSTALL_K3S_EXEC INSTALL_K3S_BIN_DIR INSTALL_K3S_SKIP_START
if [ -n "${SERVER_URL:-}" ] && [ "$ROLE" = agent ]; then
  K3S_URL=$SERVER_URL
  K3S_TOKEN_FILE=$TOKEN_FILE
  export K3S_URL K3S_TOKEN_FILE
fi
# The datastore endpoint is not given to the installer: it copies K3S_* variables into the
# service's env file through `read` without -r and an unquoted `echo` (install.sh
# create_env_file), which drops backslashes and squeezes spaces in a password. K3s reads it
# from the drop-in written above, as it is.
unset K3S_DATASTORE_ENDPOINT

log "installing K3s $K3S_VERSION ($ROLE) on $NODE_NAME (k3s-rancher scripts generation ${GENERATION:-0})"
sh "$INSTALLER" >&2 || die "the K3s installer failed on $NODE_NAME (see its output above)"
drop_installer_proxy
# Our files are final now: what the drift check (k3s.driftCheck) compares them with.
record_applied

# --- start (without blocking) and wait, bounded ------------------------------------------------

POST_HASHES=$(installed_hashes)
STATE=$(service_state)
if [ "$CHANGED" = 1 ] || [ "$PRE_HASHES" != "$POST_HASHES" ] || [ "$STATE" != active ] || [ -n "$OWED" ]; then
  if [ "${RESTART:-now}" = defer ]; then
    # A rolled agent: its -upgrade step restarts K3s once the agent is cordoned (and drained);
    # the record stays until then. The graph reads this line (components/scripts.py
    # restart_verdict); the time in it makes each run's line new, so that the agent's
    # -cordon, -upgrade and -rejoin run once after every run of this install.
    if [ "$STATE" != active ]; then
      # K3s is not running (stopped, failed, or a wiped host): its kubelet cannot stop pods
      # gracefully, so a drain could only wait for k3s.timeouts.drain; its pods' containers
      # keep running or are gone already. Starting K3s is the repair: no cordon, no drain.
      log "$NODE_NAME: K3s ($SERVICE) is $STATE: started in this agent's k3s.upgrade batch, without a drain"
      echo "k3s-rancher: restart stopped $(date +%s)"
      exit 0
    fi
    log "$NODE_NAME: files updated; K3s ($SERVICE) restarts in this agent's k3s.upgrade batch"
    echo "k3s-rancher: restart needed $(date +%s)"
    exit 0
  fi
  restart_service
else
  clear_restart_pending
  [ "${RESTART:-now}" != defer ] || echo "k3s-rancher: restart none $(date +%s)"
fi
log "K3s $K3S_VERSION installed on $NODE_NAME ($SERVICE active)"

# Older airgap generations of this node are no longer needed once this one runs. Only
# generation names (16 hex digits) are removed, and nothing behind a symlink.
is_generation() {
  case $1 in *[!0-9a-f]*) return 1 ;; esac
  [ "${#1}" -eq 16 ] && [ "$1" != "$AIRGAP_GENERATION" ]
}
if [ -n "${AIRGAP_GENERATION:-}" ]; then
  for _old in "$AIRGAP_ROOT"/*; do
    if is_generation "${_old##*/}"; then rm -rf "$_old"; fi
  done
  if HOME_DIR=$(user_home "$(ssh_user)") && [ ! -L "$HOME_DIR/${AIRGAP_STAGE%%/*}" ] && [ ! -L "$HOME_DIR/${AIRGAP_STAGE%/*}" ]; then
    for _old in "$HOME_DIR/${AIRGAP_STAGE%/*}"/*; do
      if is_generation "${_old##*/}"; then rm -rf "$_old"; fi
    done
  fi
fi
