# shellcheck shell=sh
# Wait, bounded, until the named nodes are Ready at the expected K3s version and the API
# answers /readyz. Runs on a server, where the admin kubeconfig lives.
# Inputs: K3S_VERSION, TIMEOUT (seconds), WAIT_FOR (what changed, for the plan only), HINT
# (what to check when the wait gives up); positional args: the node names.
# lib.sh: log die need_k3s kc node_state deadline
set -eu
: "${K3S_VERSION:?}" "${TIMEOUT:?}" "${HINT:?}"
[ "$#" -gt 0 ] || die "no node names to wait for"
need_k3s

log "waiting up to ${TIMEOUT}s for: $* (after: ${WAIT_FOR:-install})"
END=$(deadline "$TIMEOUT")
while :; do
  PENDING=""
  if kc get --raw /readyz >/dev/null 2>&1; then
    for NODE in "$@"; do
      STATE=$(node_state "$NODE")
      [ "$STATE" = "$K3S_VERSION True" ] || PENDING="$PENDING $NODE(${STATE:-not registered})"
    done
  else
    PENDING=" the API server (/readyz failing)"
  fi
  [ -n "$PENDING" ] || break
  if [ "$(date +%s)" -ge "$END" ]; then
    kc get nodes -o wide >&2 2>/dev/null || true
    die "not Ready at $K3S_VERSION after ${TIMEOUT}s:$PENDING. $HINT"
  fi
  sleep 5
done
log "Ready at $K3S_VERSION: $*"
