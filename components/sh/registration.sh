# shellcheck shell=sh
# Labels and taints for a node's first registration: K3s applies --node-label/--node-taint
# only when a node registers, so a NoSchedule taint must be in its config before K3s first
# starts. Written only while the node has not registered (no /etc/rancher/node/password);
# afterwards the file is left as it is and node_meta.sh keeps labels and taints in sync
# through the API. Runs before the install; the uninstall removes /etc/rancher/k3s.
# Inputs: NODE_NAME, REGISTRATION_YAML (a config.yaml.d drop-in with node-label+/node-taint+).
: "${NODE_NAME:?}" "${REGISTRATION_YAML:?}"
FILE=/etc/rancher/k3s/config.yaml.d/40-k3s-rancher-registration.yaml
if [ -e /etc/rancher/node/password ]; then
  log "$NODE_NAME has registered already: label and taint changes go through the API"
  exit 0
fi
umask 077
CHANGED=0
put_file 0600 "$FILE" "$REGISTRATION_YAML"
if [ "$CHANGED" = 1 ]; then WHAT=written; else WHAT=unchanged; fi
log "labels and taints for the first registration of $NODE_NAME: $FILE $WHAT"
