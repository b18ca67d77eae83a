# shellcheck shell=sh
# Take a node out of the cluster before its host is uninstalled: cordon, drain (bounded;
# a drain that cannot finish is reported, not fatal) and delete the Node object, so the
# name can join again from another host. Runs on the first server.
# Inputs: NODE_NAME, DRAIN_TIMEOUT (seconds).
: "${NODE_NAME:?}" "${DRAIN_TIMEOUT:?}"
command -v k3s >/dev/null 2>&1 || { log "K3s is gone from this server; nothing to drain"; exit 0; }
if ! kc get node "$NODE_NAME" >/dev/null 2>&1; then
  log "node $NODE_NAME is not registered; nothing to drain"
  exit 0
fi
kc cordon "$NODE_NAME" >&2 || true
if [ "$DRAIN_TIMEOUT" -gt 0 ]; then
  kc drain "$NODE_NAME" --ignore-daemonsets --delete-emptydir-data --force \
    --timeout="${DRAIN_TIMEOUT}s" >&2 \
    || log "warning: drain of $NODE_NAME did not finish within ${DRAIN_TIMEOUT}s; deleting it anyway"
fi
kc delete node "$NODE_NAME" --wait=true --timeout=60s >&2 || die "could not delete node $NODE_NAME"
log "node $NODE_NAME removed from the cluster"
