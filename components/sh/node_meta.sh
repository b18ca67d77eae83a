# shellcheck shell=sh
# Keep a node's labels and taints equal to the config, through the API (K3s applies its
# --node-label/--node-taint flags only at registration). Keys this program set before but
# the config no longer has are removed; labels and taints set by others are left alone.
# Inputs: NODE_NAME; LABELS and TAINTS (one key=value / key[=value]:Effect per line);
# MANAGED (one "label:KEY" / "taint:KEY:Effect" per line: what this run owns).
# lib.sh: log die need_k3s kc node_registered
set -eu
: "${NODE_NAME:?}"

need_k3s
node_registered "$NODE_NAME" || die "node $NODE_NAME is not registered"
PREVIOUS=$(kc get node "$NODE_NAME" -o 'jsonpath={.metadata.annotations.k3s-rancher\.io/managed}')

if [ -n "$PREVIOUS" ]; then
  while IFS= read -r ENTRY; do
    printf "%s\n" "${MANAGED:-}" | grep -qxF -- "$ENTRY" && continue
    case "$ENTRY" in
      label:*) kc label node "$NODE_NAME" "${ENTRY#label:}-" >/dev/null ;;
      taint:*) kc taint node "$NODE_NAME" "${ENTRY#taint:}-" >/dev/null 2>&1 || true ;;
    esac
  done <<EOF_PREVIOUS
$PREVIOUS
EOF_PREVIOUS
fi

if [ -n "${LABELS:-}" ]; then
  while IFS= read -r LABEL; do
    kc label node "$NODE_NAME" --overwrite "$LABEL" >/dev/null
  done <<EOF_LABELS
$LABELS
EOF_LABELS
fi
if [ -n "${TAINTS:-}" ]; then
  while IFS= read -r TAINT; do
    kc taint node "$NODE_NAME" --overwrite "$TAINT" >/dev/null
  done <<EOF_TAINTS
$TAINTS
EOF_TAINTS
fi
kc annotate node "$NODE_NAME" --overwrite "k3s-rancher.io/managed=${MANAGED:-}" >/dev/null
log "labels and taints of $NODE_NAME are in sync"
