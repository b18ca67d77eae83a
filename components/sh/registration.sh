# shellcheck shell=sh
# Labels and taints for a node's first registration: K3s applies --node-label/--node-taint
# only when a node registers, so a NoSchedule taint must be in its config before K3s first
# starts. Written only while the node has not joined: K3s makes /etc/rancher/node/password
# once a server accepted the token, just before it asks for the kubelet certificates and the
# Node registers (k3s-io/k3s pkg/agent/config/config.go get: getConfig, then getNodeNamedCrt
# -> ensureNodePassword), so a node whose token was refused has none and keeps this file.
# This runs again only when the labels or taints change; by then the node has registered, so
# the file is removed: K3s merges --node-label into the Node at EVERY start
# (pkg/agent/run.go updateMutableLabels), and a stale file would bring back a label that
# node_meta.sh removed through the API. From then on the API alone keeps them in sync.
# Runs before the install; the uninstall removes /etc/rancher/k3s.
# Inputs: NODE_NAME, REGISTRATION_YAML (a config.yaml.d drop-in with node-label+/node-taint+).
# lib.sh: log put_file
set -eu
: "${NODE_NAME:?}" "${REGISTRATION_YAML:?}"
FILE=$REGISTRATION_FILE
if [ -e /etc/rancher/node/password ]; then
  rm -f "$FILE"
  log "$NODE_NAME has registered already: label and taint changes go through the API"
  exit 0
fi
umask 077
CHANGED=0
put_file 0600 "$FILE" "$REGISTRATION_YAML"
if [ "$CHANGED" = 1 ]; then WHAT=written; else WHAT=unchanged; fi
log "labels and taints for the first registration of $NODE_NAME: $FILE $WHAT"
