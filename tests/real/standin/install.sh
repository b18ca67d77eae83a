#!/bin/sh
# STAND-IN for the K3s install script (get.k3s.io), for hosts with no internet and no
# systemd. Not the real installer. It keeps the contract k3s-rancher's scripts rely on:
# INSTALL_K3S_SKIP_DOWNLOAD (the binary is already in /usr/local/bin), INSTALL_K3S_EXEC
# (server|agent), INSTALL_K3S_VERSION, K3S_* variables stored 0600 in the service env
# file, extra arguments in the unit, a restart only when the unit/env/binary changed or
# INSTALL_K3S_FORCE_RESTART=true, and k3s-uninstall.sh / k3s-agent-uninstall.sh.
set -eu
BIN=/usr/local/bin
CMD=${INSTALL_K3S_EXEC:-server}
[ -n "${K3S_URL:-}" ] && [ "$CMD" = server ] && CMD=agent
if [ "$CMD" = server ]; then SERVICE=k3s; else SERVICE=k3s-agent; fi
[ "${INSTALL_K3S_SKIP_DOWNLOAD:-}" = true ] || { echo "stand-in installer: only airgap installs" >&2; exit 1; }
[ -x "$BIN/k3s" ] || { echo "stand-in installer: $BIN/k3s missing" >&2; exit 1; }
if [ -n "${K3S_URL:-}" ] && [ -z "${K3S_TOKEN:-}" ] && [ -z "${K3S_TOKEN_FILE:-}" ]; then
  echo "[ERROR]  Defaulted k3s exec command to 'agent' because K3S_URL is defined, but K3S_TOKEN or K3S_TOKEN_FILE is not defined." >&2
  exit 1
fi

UNIT=/etc/k3s-standin/$SERVICE.unit
ENVFILE=/etc/k3s-standin/$SERVICE.env
mkdir -p /etc/k3s-standin /var/log
umask 077
BEFORE=$(cat "$UNIT" "$ENVFILE" 2>/dev/null | cksum; cksum < "$BIN/k3s")
# One argument per line keeps spaces inside an argument visible to the tests.
{ echo "$CMD"; for arg in "$@"; do printf '%s\n' "$arg"; done; } > "$UNIT"
env | grep '^K3S_' | sort > "$ENVFILE" || true
chmod 0600 "$ENVFILE"
AFTER=$(cat "$UNIT" "$ENVFILE" | cksum; cksum < "$BIN/k3s")

cat > "$BIN/k3s-killall.sh" <<'KILL'
#!/bin/sh
for f in /run/k3s-standin-*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; rm -f "$f"; done
exit 0
KILL
cat > "$BIN/$SERVICE-uninstall.sh" <<UNINSTALL
#!/bin/sh
set -e
$BIN/k3s-killall.sh
rm -rf /etc/rancher/k3s /var/lib/rancher/k3s /etc/k3s-standin /var/lib/kubelet
rm -f $BIN/k3s $BIN/kubectl $BIN/k3s-killall.sh $BIN/$SERVICE-uninstall.sh
UNINSTALL
chmod 0755 "$BIN/k3s-killall.sh" "$BIN/$SERVICE-uninstall.sh"
[ -e "$BIN/kubectl" ] || ln -s k3s "$BIN/kubectl"

PIDFILE=/run/k3s-standin-$SERVICE.pid
running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }
if running && [ "$BEFORE" = "$AFTER" ] && [ "${INSTALL_K3S_FORCE_RESTART:-}" != true ]; then
  echo "[INFO]  No change detected so skipping service start" >&2
  exit 0
fi
if running; then kill "$(cat "$PIDFILE")"; sleep 1; fi
# The service's environment is the env file, as systemd's EnvironmentFile would give it.
set -a
# shellcheck disable=SC1090
. "$ENVFILE"
set +a
nohup "$BIN/k3s" "$CMD" >> "/var/log/$SERVICE.log" 2>&1 &
echo $! > "$PIDFILE"
echo "$(date +%s) start $SERVICE $INSTALL_K3S_VERSION" >> /var/log/k3s-standin-starts.log
echo "[INFO]  stand-in $SERVICE started" >&2
