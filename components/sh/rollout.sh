# shellcheck shell=sh
# A rolled agent's `-upgrade` step, in its k3s.upgrade batch, on the agent itself: when its
# install left a restart owed (and K3s runs), cordon the agent, drain it (DRAIN=1), restart
# K3s, wait until it is Ready at K3S_VERSION and uncordon it. K3s not running: start it, no
# cordon (its kubelet could not confirm a pod's end). Nothing owed: nothing, except finishing a
# cordon of ours that a killed run left (wait Ready, uncordon).
# It speaks to the API with the node's own credentials (the kubelet's kubeconfig): K3s's Node
# authorizer lets a node cordon, annotate and uncordon its own Node, list its own pods and evict
# them (tests/real/test_controlplane.py measures it), but not read DaemonSets, so the drain is
# ours, through the Eviction API (kubectl drain would need more). A cordon of ours carries an
# annotation: an operator's cordon is never lifted.
# Inputs: NODE_NAME, ROLE, K3S_VERSION, TIMEOUT (seconds: the restart, then the Ready wait),
# DRAIN (1 or 0), DRAIN_TIMEOUT (seconds), HINT (what to check when the wait gives up),
# WAIT_FOR (the install run it follows, for the plan only).
# stdin: the install's own (its secrets), read only to keep them out of the log it may show.
# lib.sh: log die need_k3s kc node_state node_registered deadline host_lock
set -eu
: "${NODE_NAME:?}" "${ROLE:?}" "${K3S_VERSION:?}" "${TIMEOUT:?}" "${DRAIN:?}" "${DRAIN_TIMEOUT:?}" "${HINT:?}"
# shellcheck source=/dev/null
. "$K3SR_SCRIPTS/service.sh"
# shellcheck source=/dev/null
. "$K3SR_SCRIPTS/self_drain.sh"
read_node_secrets
choose_service "$ROLE"
host_lock "rollout of $NODE_NAME"
# shellcheck disable=SC2034 # read by lib.sh kc: the node's own credentials from here on
KC_KUBECONFIG=$KUBELET_KUBECONFIG

ours() { [ -n "$(kc get node "$NODE_NAME" -o "jsonpath={.metadata.annotations.$CORDON_MARK_PATH}")" ]; }

if [ "$(service_state)" != active ]; then
  log "node $NODE_NAME: K3s ($SERVICE) is not running; it is started without a cordon or drain"
  restart_service
elif restart_pending; then
  need_k3s
  if ! node_registered "$NODE_NAME"; then
    log "node $NODE_NAME is not registered (NotFound); nothing to cordon"
  elif [ "$(kc get node "$NODE_NAME" -o 'jsonpath={.spec.unschedulable}')" = true ] && ! ours; then
    log "node $NODE_NAME was already cordoned (not by k3s-rancher): it stays cordoned after its upgrade"
  else
    kc annotate --overwrite node "$NODE_NAME" "$CORDON_MARK=true" >&2 || die "could not mark node $NODE_NAME (see above)"
    kc cordon "$NODE_NAME" >&2 || die "could not cordon node $NODE_NAME (see above)"
    log "node $NODE_NAME cordoned for its upgrade (${WAIT_FOR:-install})"
  fi
  if [ "$DRAIN" = 1 ] && ! LEFT=$(drain_own_pods "$DRAIN_TIMEOUT"); then
    die "drain of $NODE_NAME did not finish within ${DRAIN_TIMEOUT}s (k3s.timeouts.drain): still on it: $LEFT. $NODE_NAME stays cordoned and was not upgraded, nor was any agent after it. Let the pods go (e.g. relax the PodDisruptionBudget), or set k3s.upgrade.drain to false, then run pulumi up again"
  fi
  restart_service
  log "$NODE_NAME: K3s ($SERVICE) restarted (after: ${WAIT_FOR:-install})"
elif ! ours; then
  log "$NODE_NAME: K3s ($SERVICE) already runs what its install wrote: nothing to restart"
  exit 0
fi

log "waiting up to ${TIMEOUT}s for $NODE_NAME at $K3S_VERSION"
END=$(deadline "$TIMEOUT")
while :; do
  STATE=$(node_state "$NODE_NAME")
  [ "$STATE" != "$K3S_VERSION True" ] || break
  if [ "$(date +%s)" -ge "$END" ]; then
    die "$NODE_NAME is not Ready at $K3S_VERSION after ${TIMEOUT}s (${STATE:-not registered}); it stays cordoned and the next agents wait. $HINT"
  fi
  sleep 5
done
if ours; then
  kc uncordon "$NODE_NAME" >&2 || die "could not uncordon node $NODE_NAME (see above)"
  kc annotate node "$NODE_NAME" "$CORDON_MARK-" >&2 || die "could not unmark node $NODE_NAME (see above)"
  log "node $NODE_NAME is back: Ready at $K3S_VERSION and uncordoned"
else
  log "node $NODE_NAME is Ready at $K3S_VERSION (k3s-rancher did not cordon it: nothing to uncordon)"
fi
