# shellcheck shell=sh
# The `<node>-scripts` step's delete, which runs after every other step on the host: first
# the uninstall of whatever a failed first install left (that install is not in the state,
# so no delete of its own runs; after a normal removal's uninstall this finds nothing), with
# the bundle's own uninstall_node.sh (LEFTOVERS=1: nothing on a host that runs K3s as the
# other role); then the bundle, and k3s-rancher's directory if nothing else is left in it.
# Not part of the bundle: its lines travel in this step's command text.
# Inputs: ROLE, AIRGAP_GENERATION and AIRGAP_STAGE (as uninstall_node.sh takes them).
# lib.sh: log die need_root
: "${ROLE:?}" "${AIRGAP_GENERATION:=}" "${AIRGAP_STAGE:=}"
if [ -f /var/lib/k3s-rancher/scripts/current/uninstall_node.sh ]; then
  # In a subshell: its `exit 0` ends only it, and the bundle's lib.sh stays in there.
  (
    K3SR_SCRIPTS=/var/lib/k3s-rancher/scripts/current
    # shellcheck disable=SC2034 # read by uninstall_node.sh
    LEFTOVERS=1
    # shellcheck disable=SC1091 # the bundle on the host
    . "$K3SR_SCRIPTS/lib.sh"
    # shellcheck disable=SC1091
    . "$K3SR_SCRIPTS/uninstall_node.sh"
  ) </dev/null || die "the uninstall of what an install left failed (output above); the scripts stay for the next pulumi up or destroy"
else
  log "no scripts bundle here: nothing an install left is uninstalled through it"
fi
rm -rf /var/lib/k3s-rancher/scripts
rm -f /var/lib/k3s-rancher/restart-pending
rmdir /var/lib/k3s-rancher 2>/dev/null || true
log "k3s-rancher's scripts removed"
