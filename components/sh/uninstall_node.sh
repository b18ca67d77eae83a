# shellcheck shell=sh
# Remove K3s and everything this program put on the host; safe to run twice.
# Inputs: ROLE (server|agent), AIRGAP_DIR (staged files to remove, or empty).
: "${ROLE:?}"
BIN=/usr/local/bin
if [ "$ROLE" = server ]; then UNINSTALL=$BIN/k3s-uninstall.sh; else UNINSTALL=$BIN/k3s-agent-uninstall.sh; fi
if [ -x "$UNINSTALL" ]; then
  log "running $UNINSTALL"
  "$UNINSTALL" >&2 || die "$UNINSTALL failed"
else
  log "$UNINSTALL not found: K3s is not installed here"
fi
rm -rf /etc/rancher/k3s /etc/rancher/node
[ -z "${AIRGAP_DIR:-}" ] || rm -rf "$AIRGAP_DIR"
# Leave no empty directories behind that K3s created.
rmdir /etc/rancher /var/lib/rancher/k3s /var/lib/rancher 2>/dev/null || true
log "K3s removed"
