# shellcheck shell=sh
# Take a node out of the cluster before its host is uninstalled: cordon, drain (bounded;
# a drain that cannot finish is reported, not fatal) and delete the Node object, so the
# name can join again from another host. Runs on the first server. Only a NotFound answer
# means "nothing to do": an unreachable API or a missing k3s binary fails with the reason,
# or Node objects and etcd members would be left behind.
# Inputs: NODE_NAME, DRAIN_TIMEOUT (seconds; 0: delete the Node object only).
# lib.sh: log die need_k3s kc drain_node node_registered
set -eu
: "${NODE_NAME:?}" "${DRAIN_TIMEOUT:?}"
need_k3s
if ! node_registered "$NODE_NAME"; then
  log "node $NODE_NAME is not registered (NotFound); nothing to remove"
  exit 0
fi
if [ "$DRAIN_TIMEOUT" -gt 0 ]; then
  kc cordon "$NODE_NAME" >&2 || die "could not cordon node $NODE_NAME (see above)"
  drain_node "$NODE_NAME" "$DRAIN_TIMEOUT" \
    || log "warning: drain of $NODE_NAME did not finish within ${DRAIN_TIMEOUT}s; deleting it anyway"
fi
kc delete node "$NODE_NAME" --ignore-not-found --wait=true --timeout=60s >&2 || die "could not delete node $NODE_NAME (see above)"
log "node $NODE_NAME removed from the cluster"
