# shellcheck shell=sh
# Before an agent's K3s is upgraded or reconfigured in place: cordon it and, with DRAIN=1,
# drain it (bounded; a drain that cannot finish is reported, not fatal, as in drain_delete.sh).
# Runs on the init server. A node that is not registered has nothing to move: skipped.
# Inputs: NODE_NAME, DRAIN (1 or 0), DRAIN_TIMEOUT (seconds), WAIT_FOR (the install it
# precedes, for the plan only).
: "${NODE_NAME:?}" "${DRAIN:?}" "${DRAIN_TIMEOUT:?}"
need_k3s
if ! node_registered "$NODE_NAME"; then
  log "node $NODE_NAME is not registered (NotFound); nothing to cordon"
  exit 0
fi
kc cordon "$NODE_NAME" >&2 || die "could not cordon node $NODE_NAME (see above)"
if [ "$DRAIN" = 1 ]; then
  kc drain "$NODE_NAME" --ignore-daemonsets --delete-emptydir-data --force \
    --timeout="${DRAIN_TIMEOUT}s" >&2 \
    || log "warning: drain of $NODE_NAME did not finish within ${DRAIN_TIMEOUT}s; upgrading it anyway"
fi
log "node $NODE_NAME cordoned for its upgrade (${WAIT_FOR:-})"
