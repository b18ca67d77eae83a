# shellcheck shell=sh
# A rolled agent's `-upgrade` step, in its k3s.upgrade batch, after the agent is cordoned (and
# drained): restart K3s if its install left a restart owed (service.sh), or if it is not
# running; else nothing. Bounded by TIMEOUT.
# Inputs: NODE_NAME, ROLE, TIMEOUT, WAIT_FOR (the install's desired state, for the plan only).
# stdin: the install's own (its secrets), read only to keep them out of the log it may show.
# lib.sh: log host_lock
set -eu
: "${NODE_NAME:?}" "${ROLE:?}" "${TIMEOUT:?}"
# shellcheck source=/dev/null
. "$K3SR_SCRIPTS/service.sh"
read_node_secrets
choose_service "$ROLE"
host_lock "restart of $NODE_NAME"
if restart_pending || [ "$(service_state)" != active ]; then
  restart_service
  log "$NODE_NAME: K3s ($SERVICE) restarted (after: ${WAIT_FOR:-install})"
else
  log "$NODE_NAME: K3s ($SERVICE) already runs what its install wrote: nothing to restart"
fi
