# shellcheck shell=sh
# A node whose host k3s.driftCheck found without K3s (reimaged): before its install runs
# again, delete its Node and its node-password Secret, as a replacement's forget does. The new
# host makes a new /etc/rancher/node/password, and K3s refuses a node name whose
# <name>.node-password.k3s Secret in kube-system holds another password's hash
# (k3s-io/k3s pkg/nodepassword/nodepassword.go Ensure -> verifyHash). The garbage collector
# deletes that Secret after its Node (pkg/nodepassword/controller.go onChangeNode gives it an
# owner reference), in the background: it is deleted here too, so the install cannot race it.
# Nothing is drained: the pods went with the old host, and the pod garbage collector removes
# those bound to the deleted Node. Runs on the init server.
# Inputs: NODE_NAME, DRIFT_REIMAGED (the marker: for the plan only).
# lib.sh: log die need_k3s kc
set -eu
: "${NODE_NAME:?}"
need_k3s
kc delete node "$NODE_NAME" --ignore-not-found --wait=true --timeout=60s >&2 \
  || die "could not delete node $NODE_NAME before its reinstall (see above)"
kc -n kube-system delete secret "$NODE_NAME.node-password.k3s" --ignore-not-found >&2 \
  || die "could not delete the node-password Secret of $NODE_NAME before its reinstall (see above)"
log "node $NODE_NAME forgotten before its reimaged host is installed again (drift repair ${DRIFT_REIMAGED:-})"
