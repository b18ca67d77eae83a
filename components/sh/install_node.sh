# shellcheck shell=sh
# Install or update K3s on this host (server or agent); idempotent and bounded. The script the
# install's command text sources (components/scripts.py install_script): it reads the secrets,
# settles what the steps share, then runs them in order, each in its own file:
#   preflight.sh      read-only checks at every run; nothing is written before they pass
#   first_install.sh  a first install's checks that the host is fit for K3s
#   files.sh          the token, config.yaml, drop-ins, registries.yaml, the proxy's files
#   installer.sh      the installer, fetched or from the airgap generation (airgap.sh), run
#   service.sh        the start (without blocking) and the bounded wait
#   rollout.sh        a rolled agent's restart: cordon, drain, restart, Ready, uncordon
# Inputs: ROLE (server|agent), NODE_NAME, K3S_VERSION, SERVER_URL (agents and joining
# servers, else empty), CONFIG_YAML, REGISTRIES_YAML (may be empty), INSTALL_SCRIPT_URL,
# INSTALL_SCRIPT_SHA256 (pin of the downloaded installer, or empty), TIMEOUT (seconds the
# service may take to become active), AIRGAP_GENERATION (empty, or one generation with
# AIRGAP_STAGE, AIRGAP_SHA256_INSTALLER, AIRGAP_SHA256_K3S, AIRGAP_SHA256_IMAGES and
# AIRGAP_IMAGES: airgap.sh); RESTART (roll: a rolled agent's update, which restarts K3s
# cordoned and drained, with DRAIN and DRAIN_TIMEOUT: rollout.sh; else now); GENERATION (k3s-rancher's
# scripts generation: only its change re-runs installs for a release); HTTP_PROXY_URL,
# HTTPS_PROXY_URL, NO_PROXY_LIST (only with k3s.proxy: proxy_env.sh); PREFLIGHT (off: skip the
# first-install checks); ETCD_SNAPSHOT_DIR (servers, only with k3s.etcdSnapshots.directory);
# API_PORT (only when K3s's https-listen-port is not its default); DRIFT_REPAIR (only for a
# node k3s.driftCheck found drifted: its new number re-runs this install). No positional args:
# serverArgs/agentArgs are in CONFIG_YAML (components/scripts.py args_config), which K3s reads
# verbatim, never through the installer's arguments, which it re-splits.
# stdin: the secrets as named entries, NAME=value a line (components/host_facts.py
# INSTALL_STDIN; read by consts.sh read_node_secrets); an entry left out is empty.
# Labels and taints are not here: a first registration gets them from registration.sh, later
# changes go through the API (node_meta.sh), so changing them never re-runs an install.
# lib.sh: die log
set -eu
: "${ROLE:?}" "${NODE_NAME:?}" "${K3S_VERSION:?}" "${CONFIG_YAML:?}" "${INSTALL_SCRIPT_URL:?}" "${TIMEOUT:?}"

# shellcheck source=/dev/null
. "$K3SR_SCRIPTS/service.sh"
# shellcheck source=/dev/null
. "$K3SR_SCRIPTS/proxy_env.sh"
# shellcheck source=/dev/null
. "$K3SR_SCRIPTS/applied.sh"
# shellcheck source=/dev/null
. "$K3SR_SCRIPTS/preflight.sh"
# shellcheck source=/dev/null
. "$K3SR_SCRIPTS/first_install.sh"
# shellcheck source=/dev/null
. "$K3SR_SCRIPTS/files.sh"
# shellcheck source=/dev/null
. "$K3SR_SCRIPTS/airgap.sh"
# shellcheck source=/dev/null
. "$K3SR_SCRIPTS/installer.sh"
# shellcheck source=/dev/null
. "$K3SR_SCRIPTS/rollout.sh"
read_node_secrets
[ -n "$TOKEN" ] || die "no cluster token arrived on stdin"

API_PORT=${API_PORT:-$K3S_DEFAULT_API_PORT}
# shellcheck disable=SC2034 # these and UNIT, ENV_FILE below are for the steps' files above
if [ "$ROLE" = server ]; then
  OTHER_SERVICE=k3s-agent OTHER_ROLE=agent LIST=servers OTHER_LIST=agents
else
  OTHER_SERVICE=k3s OTHER_ROLE=server LIST=agents OTHER_LIST=servers
fi
choose_service "$ROLE"
# The unit and the env file the installer writes (install.sh setup_env, create_env_file).
# shellcheck disable=SC2153,SC2034 # INIT is set by choose_service (service.sh)
if [ "$INIT" = openrc ]; then
  UNIT=/etc/init.d/$SERVICE ENV_FILE=$CONF_DIR/$SERVICE.env
else
  UNIT=/etc/systemd/system/$SERVICE.service ENV_FILE=/etc/systemd/system/$SERVICE.service.env
fi
proxy_paths
BIN_DIR=/usr/local/bin
if ! { touch "$BIN_DIR/k3s-ro-test" && rm -f "$BIN_DIR/k3s-ro-test"; } 2>/dev/null && [ -d /opt/bin ]; then
  BIN_DIR=/opt/bin
fi
command -v sha256sum >/dev/null 2>&1 || die "sha256sum is missing on $NODE_NAME (coreutils or busybox provides it)"

check_ownership
check_upgrade_path
check_host
first_install_checks
# The proxy's credentials go into the URLs here, on the host: they arrived on stdin.
check_proxy_credentials

write_files
PRE_HASHES=$(installed_hashes)
run_installer
# Our files are final now: what the drift check (k3s.driftCheck) compares them with.
record_applied

POST_HASHES=$(installed_hashes)
STATE=$(service_state)
if [ "$CHANGED" = 1 ] || [ "$PRE_HASHES" != "$POST_HASHES" ] || [ "$STATE" != active ] || [ -n "$OWED" ]; then
  if [ "${RESTART:-now}" = roll ]; then
    # A rolled agent's in-place change, in its k3s.upgrade batch: cordoned and drained around
    # the restart (rollout.sh); the record stays until K3s runs the new files.
    roll_out "$STATE"
  else
    restart_service
  fi
else
  clear_restart_pending
  if [ "${RESTART:-now}" = roll ]; then finish_cordon; fi
fi
log "K3s $K3S_VERSION installed on $NODE_NAME ($SERVICE active)"
# An install completed here: no longer a failed first install's leftovers (uninstall_node.sh).
printf "%s\n" "$ROLE" > "$INSTALL_DONE"
# Older airgap generations of this node are no longer needed once this one runs.
if [ -n "${AIRGAP_GENERATION:-}" ]; then airgap_prune; fi
