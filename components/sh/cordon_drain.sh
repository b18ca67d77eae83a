# shellcheck shell=sh
# Before an agent's K3s is upgraded or reconfigured in place: cordon it and, with DRAIN=1,
# drain it (bounded by DRAIN_TIMEOUT; a drain that cannot finish stops the upgrade here, unlike
# drain_delete.sh's removal drain, which is reported, not fatal).
# Runs on the init server. A node that is not registered has nothing to move: skipped.
# Nothing is cordoned when the agent's install found nothing to restart (RESTART none): an
# agent already as desired is left in service. A cordon of ours is marked with an annotation,
# so that rejoin.sh uncordons only what this program cordoned (never an operator's cordon).
# Inputs: NODE_NAME, DRAIN (1 or 0), DRAIN_TIMEOUT (seconds), RESTART (what the agent's install
# said: needed, none, stopped (its K3s was not running: started without a drain), or unknown:
# an older release's output), WAIT_FOR (the install it
# precedes, for the plan only).
# lib.sh: log die need_k3s kc drain_node node_registered
set -eu
: "${NODE_NAME:?}" "${DRAIN:?}" "${DRAIN_TIMEOUT:?}"
if [ "${RESTART:-unknown}" = none ]; then
  log "node $NODE_NAME: its install changed nothing that needs a restart; not cordoned"
  exit 0
fi
if [ "$RESTART" = stopped ]; then
  # Its K3s was not running: its kubelet cannot confirm a pod's end, so a drain would only
  # wait out DRAIN_TIMEOUT and stop the batch. Starting K3s brings the node back as it was.
  log "node $NODE_NAME: its K3s was not running; it is started without a cordon or drain"
  exit 0
fi
need_k3s
if ! node_registered "$NODE_NAME"; then
  log "node $NODE_NAME is not registered (NotFound); nothing to cordon"
  exit 0
fi
if [ "$(kc get node "$NODE_NAME" -o 'jsonpath={.spec.unschedulable}')" = true ] \
  && [ -z "$(kc get node "$NODE_NAME" -o "jsonpath={.metadata.annotations.$CORDON_MARK_PATH}")" ]; then
  log "node $NODE_NAME was already cordoned (not by k3s-rancher): it stays cordoned after its upgrade"
else
  kc annotate --overwrite node "$NODE_NAME" "$CORDON_MARK=true" >&2 || die "could not mark node $NODE_NAME (see above)"
fi
kc cordon "$NODE_NAME" >&2 || die "could not cordon node $NODE_NAME (see above)"
if [ "$DRAIN" = 1 ] && ! drain_node "$NODE_NAME" "$DRAIN_TIMEOUT"; then
  # kubectl drain has printed each pod it could not evict (and why) above. An upgrade does
  # not take the node down with workloads still on it: stop here, the node stays cordoned,
  # and nothing after this batch runs. Budgets that allow no disruption now are named.
  _pdbs=$(kc get pdb -A -o 'jsonpath={range .items[?(@.status.disruptionsAllowed==0)]}{.metadata.namespace}/{.metadata.name} {end}' 2>/dev/null || true)
  _pdbs=${_pdbs% }
  die "drain of $NODE_NAME did not finish within ${DRAIN_TIMEOUT}s (k3s.timeouts.drain): the pods named above are still on it; PodDisruptionBudgets allowing no disruption now: ${_pdbs:-none}. $NODE_NAME stays cordoned and was not upgraded, nor was any agent after it. Let the pods go (e.g. relax the PodDisruptionBudget), or set k3s.upgrade.drain to false, then run pulumi up again"
fi
log "node $NODE_NAME cordoned for its upgrade (${WAIT_FOR:-})"
