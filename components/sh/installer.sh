# shellcheck shell=sh
# The K3s installer (install): fetched from INSTALL_SCRIPT_URL (checked against
# INSTALL_SCRIPT_SHA256 when set) or taken from the airgap generation (airgap.sh), then run to
# put K3s K3S_VERSION and its service in place, never to start it. Sourced by install_node.sh,
# which sets: ROLE, NODE_NAME, K3S_VERSION, SERVER_URL, INSTALL_SCRIPT_URL,
# INSTALL_SCRIPT_SHA256, GENERATION, AIRGAP_GENERATION (may be unset), BIN_DIR, UNIT, ENV_FILE
# and what proxy_env.sh needs.
# lib.sh: die log at_exit sha256_of
set -eu

# installed_hashes: what the installer compares to decide on a restart (install.sh
# get_installed_hashes).
installed_hashes() { sha256sum "$BIN_DIR/k3s" "$UNIT" "$ENV_FILE" 2>&1 || true; }

# installer_proxy: with k3s.proxy, exactly the configured proxy for our download and the
# installer's (curl and wget read the lower-case names). The installer copies these into its
# env file, changed (proxy_env.sh says how); drop_installer_proxy removes its copies after it
# ran: K3s and containerd read ours.
installer_proxy() {
  proxy_configured || return 0
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
}

# fetch_installer FILE: the installer from INSTALL_SCRIPT_URL into FILE, checked against its pin.
fetch_installer() {
  if command -v curl >/dev/null 2>&1; then
    curl -sfL --retry 3 --max-time 120 "$INSTALL_SCRIPT_URL" -o "$1" \
      || die "cannot download the K3s installer from $INSTALL_SCRIPT_URL (no internet? use k3s.airgap)"
  elif command -v wget >/dev/null 2>&1; then
    wget -q -T 120 -O "$1" "$INSTALL_SCRIPT_URL" \
      || die "cannot download the K3s installer from $INSTALL_SCRIPT_URL (no internet? use k3s.airgap)"
  else
    die "neither curl nor wget is installed: install one, or use k3s.airgap"
  fi
  if [ -n "${INSTALL_SCRIPT_SHA256:-}" ]; then
    GOT=$(sha256_of "$1")
    [ "$GOT" = "$INSTALL_SCRIPT_SHA256" ] || die "the K3s installer from $INSTALL_SCRIPT_URL has sha256 $GOT, not the $INSTALL_SCRIPT_SHA256 that k3s.installScriptSha256 pins; nothing was run. Review the new installer, then update k3s.installScriptSha256"
  fi
}

# run_installer: get the installer, then run it with this node's settings.
run_installer() {
  installer_proxy
  INSTALLER=$(mktemp)
  # shellcheck disable=SC2016 # expanded when the script exits
  at_exit 'rm -f "$INSTALLER"'
  if [ -n "${AIRGAP_GENERATION:-}" ]; then
    airgap_put "$INSTALLER"
    INSTALL_K3S_SKIP_DOWNLOAD=true
    export INSTALL_K3S_SKIP_DOWNLOAD
  else
    fetch_installer "$INSTALLER"
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
  # from the drop-in files.sh wrote, as it is.
  unset K3S_DATASTORE_ENDPOINT
  log "installing K3s $K3S_VERSION ($ROLE) on $NODE_NAME (k3s-rancher scripts generation ${GENERATION:-0})"
  sh "$INSTALLER" >&2 || die "the K3s installer failed on $NODE_NAME (see its output above)"
  drop_installer_proxy
}
