# shellcheck shell=sh
# A rolled agent's in-place change (its install's update, in its k3s.upgrade batch), the part
# after the files are written: when a restart is owed and K3s runs, cordon the agent, drain it
# (DRAIN=1), restart K3s, wait until it is Ready at K3S_VERSION and uncordon it. K3s not
# running: start it, no cordon (its kubelet could not confirm a pod's end). Nothing owed:
# nothing, except finishing a cordon of ours that a killed run left (wait Ready, uncordon).
# It speaks to the API with the node's own credentials (the kubelet's kubeconfig): K3s's Node
# authorizer lets a node cordon, annotate and uncordon its own Node, list its own pods and evict
# them (tests/real/test_controlplane.py measures it), but not read DaemonSets, so the drain is
# ours, through the Eviction API (kubectl drain would need more). A cordon of ours carries an
# annotation: an operator's cordon is never lifted.
# Sourced by install_node.sh (RESTART=roll), which holds the host lock and has read the
# secrets and chosen the service; needs NODE_NAME, K3S_VERSION, TIMEOUT (seconds: the restart,
# then the Ready wait), DRAIN (1 or 0), DRAIN_TIMEOUT (seconds), API_PORT (for consts.sh
# wait_hint).
# lib.sh: log die need_k3s kc node_state node_registered deadline
set -eu
# shellcheck source=/dev/null
. "$K3SR_SCRIPTS/self_drain.sh"

cordoned_by_us() { [ -n "$(kc get node "$NODE_NAME" -o "jsonpath={.metadata.annotations.$CORDON_MARK_PATH}")" ]; }

# roll_out STATE: the owed restart, STATE being K3s's service state before it.
roll_out() {
  # shellcheck disable=SC2034 # read by lib.sh kc: the node's own credentials from here on
  KC_KUBECONFIG=$KUBELET_KUBECONFIG
  if [ "$1" != active ]; then
    log "node $NODE_NAME: K3s ($SERVICE) is $1; it is started without a cordon or drain"
    restart_service
  else
    need_k3s
    if ! node_registered "$NODE_NAME"; then
      log "node $NODE_NAME is not registered (NotFound); nothing to cordon"
    elif [ "$(kc get node "$NODE_NAME" -o 'jsonpath={.spec.unschedulable}')" = true ] && ! cordoned_by_us; then
      log "node $NODE_NAME was already cordoned (not by k3s-rancher): it stays cordoned after its upgrade"
    else
      kc annotate --overwrite node "$NODE_NAME" "$CORDON_MARK=true" >&2 || die "could not mark node $NODE_NAME (see above)"
      kc cordon "$NODE_NAME" >&2 || die "could not cordon node $NODE_NAME (see above)"
      log "node $NODE_NAME cordoned for its upgrade"
    fi
    if [ "$DRAIN" = 1 ] && ! LEFT=$(drain_own_pods "$DRAIN_TIMEOUT"); then
      die "drain of $NODE_NAME did not finish within ${DRAIN_TIMEOUT}s (k3s.timeouts.drain): still on it: $LEFT. $NODE_NAME stays cordoned and was not upgraded, nor was any agent after it. Let the pods go (e.g. relax the PodDisruptionBudget), or set k3s.upgrade.drain to false, then run pulumi up again"
    fi
    restart_service
    log "$NODE_NAME: K3s ($SERVICE) restarted"
  fi
  back_in_service
}

# finish_cordon: nothing owed; a cordon of ours that a killed run left is lifted once the node
# is Ready at K3S_VERSION.
finish_cordon() {
  # shellcheck disable=SC2034 # read by lib.sh kc
  KC_KUBECONFIG=$KUBELET_KUBECONFIG
  if [ -f "$KUBELET_KUBECONFIG" ] && cordoned_by_us 2>/dev/null; then
    log "node $NODE_NAME: an earlier run cordoned it and did not finish; finishing now"
    back_in_service
  fi
}

back_in_service() {
  log "waiting up to ${TIMEOUT}s for $NODE_NAME at $K3S_VERSION"
  _end=$(deadline "$TIMEOUT")
  while :; do
    _state=$(node_state "$NODE_NAME")
    [ "$_state" != "$K3S_VERSION True" ] || break
    if [ "$(date +%s)" -ge "$_end" ]; then
      die "$NODE_NAME is not Ready at $K3S_VERSION after ${TIMEOUT}s (${_state:-not registered}); it stays cordoned and the next agents wait. $(wait_hint "$API_PORT")"
    fi
    sleep 5
  done
  if cordoned_by_us; then
    kc uncordon "$NODE_NAME" >&2 || die "could not uncordon node $NODE_NAME (see above)"
    kc annotate node "$NODE_NAME" "$CORDON_MARK-" >&2 || die "could not unmark node $NODE_NAME (see above)"
    log "node $NODE_NAME is back: Ready at $K3S_VERSION and uncordoned"
  else
    log "node $NODE_NAME is Ready at $K3S_VERSION (k3s-rancher did not cordon it: nothing to uncordon)"
  fi
}
