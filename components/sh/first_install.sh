# shellcheck shell=sh
# A first install's checks that the host is fit for K3s (k3s.preflight; PREFLIGHT=off skips
# them): Linux on an architecture K3s is built for, no K3s that k3s-rancher did not install, the
# ports free, and the clock within MAX_CLOCK_SKEW of the server's. Not a first install: a
# config.yaml of ours, or K3s data of this cluster (preflight.sh refused any other token), whose
# own K3s holds the ports. Read-only. Sourced by install_node.sh, which sets: ROLE, NODE_NAME,
# CONFIG_YAML, SERVER_URL (may be empty), DATASTORE_ENDPOINT (stdin), UNIT, BIN_DIR, API_PORT.
# lib.sh: die log
set -eu

SKIP_HINT="(k3s.preflight false skips this check)"
MAX_CLOCK_SKEW=5

ours() {
  { [ -f "$CONF_DIR/config.yaml" ] && grep -q "^$MANAGED_MARKER" "$CONF_DIR/config.yaml"; } \
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

# first_install_checks: the checks, unless PREFLIGHT is off or the host is already ours.
first_install_checks() {
  if [ "${PREFLIGHT:-on}" = off ] || ours; then return 0; fi
  _os=$(uname -s)
  [ "$_os" = Linux ] || die "$NODE_NAME runs $_os; K3s runs on Linux only: use a Linux host $SKIP_HINT"
  _arch=$(uname -m)
  case $_arch in
    x86_64 | amd64 | aarch64 | arm64 | armv7* | armv8l | armhf | s390x) ;;
    *) die "$NODE_NAME is $_arch; K3s is built for x86_64, aarch64 (arm64), armv7 (armhf) and s390x only: use a host of one of those architectures $SKIP_HINT" ;;
  esac
  # What a K3s that ran leaves (its unpacked data, server state, a joined agent's certificate),
  # not the agent's images directory: airgap images may be put there before an install.
  for _found in "$UNIT" "$BIN_DIR/k3s" /usr/local/bin/k3s /opt/bin/k3s "$K3S_DATA_DIR/data" "$K3S_DATA_DIR/server" "$JOINED_CERT"; do
    [ -e "$_found" ] || continue
    die "$NODE_NAME already has a K3s that k3s-rancher did not install (found $_found, and no $CONF_DIR/config.yaml of ours); installing over it could break what runs there. Uninstall it (k3s-uninstall.sh or k3s-agent-uninstall.sh) or use another host; to take it over as it is, set k3s.preflight false"
  done
  if [ "$ROLE" = server ]; then
    PORTS="$API_PORT 10250"
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
  [ -n "${SERVER_URL:-}" ] || return 0
  SKEW=$(server_clock_skew "$SERVER_URL")
  [ -n "$SKEW" ] || log "could not read the time of $SERVER_URL (no HTTPS answer on /ping, or no curl on $NODE_NAME): clocks not compared"
  if [ -n "$SKEW" ] && { [ "$SKEW" -gt "$MAX_CLOCK_SKEW" ] || [ "$SKEW" -lt "-$MAX_CLOCK_SKEW" ]; }; then
    die "the clock of $NODE_NAME differs from the server's ($SERVER_URL) by ${SKEW}s (more than ${MAX_CLOCK_SKEW}s); certificates and etcd need synchronised clocks. Turn on time sync on both (timedatectl set-ntp true, or chrony/ntpd), then run pulumi up again $SKIP_HINT"
  fi
}
