# shellcheck shell=sh
# After an agent's K3s was upgraded or reconfigured in place: wait, bounded, until it is Ready
# at the expected version, then uncordon it if cordon_drain.sh cordoned it, so the next batch starts only with this one back.
# Runs on the init server.
# Inputs: NODE_NAME, K3S_VERSION, TIMEOUT (seconds), WAIT_FOR (the install it follows, for
# the plan only), HINT (what to check when the wait gives up).
# lib.sh: log die need_k3s kc node_state deadline
set -eu
: "${NODE_NAME:?}" "${K3S_VERSION:?}" "${TIMEOUT:?}" "${HINT:?}"
need_k3s
log "waiting up to ${TIMEOUT}s for $NODE_NAME at $K3S_VERSION (after: ${WAIT_FOR:-install})"
END=$(deadline "$TIMEOUT")
while :; do
  STATE=$(node_state "$NODE_NAME")
  [ "$STATE" != "$K3S_VERSION True" ] || break
  if [ "$(date +%s)" -ge "$END" ]; then
    die "$NODE_NAME is not Ready at $K3S_VERSION after ${TIMEOUT}s (${STATE:-not registered}); it stays cordoned and the next agents wait. $HINT"
  fi
  sleep 5
done
if [ -n "$(kc get node "$NODE_NAME" -o "jsonpath={.metadata.annotations.$CORDON_MARK_PATH}")" ]; then
  kc uncordon "$NODE_NAME" >&2 || die "could not uncordon node $NODE_NAME (see above)"
  kc annotate node "$NODE_NAME" "$CORDON_MARK-" >&2 || die "could not unmark node $NODE_NAME (see above)"
  log "node $NODE_NAME is back: Ready at $K3S_VERSION and uncordoned"
else
  log "node $NODE_NAME is Ready at $K3S_VERSION (k3s-rancher did not cordon it: nothing to uncordon)"
fi
