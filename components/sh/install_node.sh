# shellcheck shell=sh
# Install or update K3s on this host (server or agent); idempotent.
# Inputs: ROLE (server|agent), NODE_NAME, K3S_VERSION, SERVER_URL (agents and joining
# servers, else empty), CONFIG_YAML, REGISTRIES_YAML (may be empty),
# INSTALL_SCRIPT_URL, AIRGAP_DIR (staged install.sh and k3s, or empty), AIRGAP_IMAGES
# (file name of the staged images tarball, or empty); positional args: extra K3s flags.
# Labels and taints are not here: they go through the API (node_meta.sh), so changing them
# never re-runs an install. stdin: line 1 the cluster token, line 2 the external datastore endpoint (may be empty).
: "${ROLE:?}" "${NODE_NAME:?}" "${K3S_VERSION:?}" "${CONFIG_YAML:?}" "${INSTALL_SCRIPT_URL:?}"

IFS= read -r TOKEN || true
IFS= read -r DATASTORE_ENDPOINT || true
[ -n "$TOKEN" ] || die "no cluster token arrived on stdin"

umask 077
CHANGED=0
CONF_DIR=/etc/rancher/k3s

put_file 0600 "$CONF_DIR/cluster-token" "$TOKEN"
put_file 0600 "$CONF_DIR/config.yaml" "$CONFIG_YAML"
if [ -n "${REGISTRIES_YAML:-}" ]; then
  put_file 0600 "$CONF_DIR/registries.yaml" "$REGISTRIES_YAML"
else
  remove_managed "$CONF_DIR/registries.yaml"
fi

if [ "$ROLE" = server ]; then SERVICE=k3s; else SERVICE=k3s-agent; fi

INSTALLER=$(mktemp)
trap 'rm -f "$INSTALLER"' EXIT
if [ -n "${AIRGAP_DIR:-}" ]; then
  [ -f "$AIRGAP_DIR/install.sh" ] && [ -f "$AIRGAP_DIR/k3s" ] || die "airgap files missing in $AIRGAP_DIR"
  cp "$AIRGAP_DIR/install.sh" "$INSTALLER"
  if ! cmp -s "$AIRGAP_DIR/k3s" /usr/local/bin/k3s; then
    install -m 0755 "$AIRGAP_DIR/k3s" /usr/local/bin/k3s.k3s-rancher-new
    mv -f /usr/local/bin/k3s.k3s-rancher-new /usr/local/bin/k3s
    CHANGED=1
  fi
  if [ -n "${AIRGAP_IMAGES:-}" ]; then
    put_file 0644 "/var/lib/rancher/k3s/agent/images/$AIRGAP_IMAGES" < "$AIRGAP_DIR/$AIRGAP_IMAGES"
  fi
  INSTALL_K3S_SKIP_DOWNLOAD=true
  export INSTALL_K3S_SKIP_DOWNLOAD
elif command -v curl >/dev/null 2>&1; then
  curl -sfL --retry 3 --max-time 120 "$INSTALL_SCRIPT_URL" -o "$INSTALLER" \
    || die "cannot download the K3s installer from $INSTALL_SCRIPT_URL (no internet? use k3s.airgap)"
elif command -v wget >/dev/null 2>&1; then
  wget -q -T 120 -O "$INSTALLER" "$INSTALL_SCRIPT_URL" \
    || die "cannot download the K3s installer from $INSTALL_SCRIPT_URL (no internet? use k3s.airgap)"
else
  die "neither curl nor wget is installed: install one, or use k3s.airgap"
fi

INSTALL_K3S_VERSION=$K3S_VERSION
INSTALL_K3S_EXEC=$ROLE
export INSTALL_K3S_VERSION INSTALL_K3S_EXEC
if [ -n "${SERVER_URL:-}" ] && [ "$ROLE" = agent ]; then
  K3S_URL=$SERVER_URL
  K3S_TOKEN_FILE=$CONF_DIR/cluster-token
  export K3S_URL K3S_TOKEN_FILE
fi
if [ -n "$DATASTORE_ENDPOINT" ]; then
  K3S_DATASTORE_ENDPOINT=$DATASTORE_ENDPOINT
  export K3S_DATASTORE_ENDPOINT
fi
# The installer restarts K3s only when its own inputs change; our files are not among them.
if [ "$CHANGED" = 1 ]; then
  INSTALL_K3S_FORCE_RESTART=true
  export INSTALL_K3S_FORCE_RESTART
fi

log "installing K3s $K3S_VERSION ($ROLE) on $NODE_NAME"
sh "$INSTALLER" "$@" >&2 || die "the K3s installer failed on $NODE_NAME (see its output above)"

if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl is-active --quiet "$SERVICE" || die "service $SERVICE is not active on $NODE_NAME: journalctl -u $SERVICE"
fi
log "K3s $K3S_VERSION installed on $NODE_NAME"
