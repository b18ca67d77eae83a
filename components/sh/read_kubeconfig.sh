# shellcheck shell=sh
# Print the admin kubeconfig (the caller keeps it secret), making sure it stays 0600.
# lib.sh: log die need_k3s
set -eu
FILE=$ADMIN_KUBECONFIG
need_k3s
log "reading the kubeconfig $K3S wrote (after: ${WAIT_FOR:-install})"
[ -f "$FILE" ] || die "$FILE does not exist: is K3s running on this server?"
chmod 0600 "$FILE"
cat "$FILE"
