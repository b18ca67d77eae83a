# shellcheck shell=sh
# Remove the scripts bundle from this host (the `<node>-scripts` step's delete, which runs
# after every other step on the host), and k3s-rancher's directory if nothing else is left
# in it. Not part of the bundle: its lines travel in this step's command text.
# lib.sh: log die need_root
rm -rf /var/lib/k3s-rancher/scripts
rm -f /var/lib/k3s-rancher/restart-pending
rmdir /var/lib/k3s-rancher 2>/dev/null || true
log "k3s-rancher's scripts removed"
