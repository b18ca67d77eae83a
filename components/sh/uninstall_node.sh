# shellcheck shell=sh
# Remove K3s and everything this program put on the host; finishes from any partial state
# (nothing installed, binary gone, uninstall or killall script gone) and is safe to run twice.
# What is already gone is fine; anything else that fails stops it with the reason.
# Inputs: ROLE (server|agent); AIRGAP_GENERATION and AIRGAP_STAGE (relative to the SSH
# user's home): this node's airgap generation to remove, or empty; LEFTOVERS (1: the
# `<node>-scripts` step's delete, or the retired `<node>-cleanup` step's, for what a failed
# first install left: nothing is done on a host where an install of the node completed (its
# own delete uninstalls it), nor on a K3s node of the other role, whose files are not ours).
# lib.sh: log die ssh_user user_home host_lock
set -eu
: "${ROLE:?}"
if [ "$ROLE" = server ]; then
  SERVICE=k3s SCRIPT=k3s-uninstall.sh OTHER_SERVICE=k3s-agent
else
  SERVICE=k3s-agent SCRIPT=k3s-agent-uninstall.sh OTHER_SERVICE=k3s
fi
if [ "${LEFTOVERS:-}" = 1 ]; then
  for _unit in "/etc/systemd/system/$OTHER_SERVICE.service" "/etc/init.d/$OTHER_SERVICE"; do
    if [ -e "$_unit" ]; then
      log "this host runs K3s as the other role ($_unit): nothing of this $ROLE to clean up"
      exit 0
    fi
  done
  if [ -f "$INSTALL_DONE" ]; then
    log "an install of this node completed here ($INSTALL_DONE): nothing of a failed first install to clean up"
    exit 0
  fi
fi

host_lock "uninstall"
UNINSTALL="" FAILED=""
# Our systemd drop-in for k3s.proxy (proxy_env.sh) goes first: K3s's uninstall script reloads
# systemd once the unit is gone (its env file is in /etc/rancher/k3s, removed below).
# shellcheck source=/dev/null
. "$K3SR_SCRIPTS/proxy_env.sh"
proxy_paths
if [ -f "$PROXY_DROP_IN" ]; then
  rm -f "$PROXY_DROP_IN"
  rmdir "${PROXY_DROP_IN%/*}" 2>/dev/null || true
fi
for _dir in /usr/local/bin /opt/bin; do
  [ -x "$_dir/$SCRIPT" ] && UNINSTALL=$_dir/$SCRIPT && break
done
stop_service() {
  if command -v systemctl >/dev/null 2>&1; then systemctl stop "$SERVICE" >&2 2>/dev/null || true; fi
  if [ -e "/etc/init.d/$SERVICE" ]; then rc-service "$SERVICE" stop >&2 2>/dev/null || true; fi
}
if [ -n "$UNINSTALL" ]; then
  # K3s's uninstall script starts with the killall script (which stops the service); when
  # that is gone, stop the service here so nothing runs on while its files go.
  [ -x "${UNINSTALL%/*}/k3s-killall.sh" ] || { log "k3s-killall.sh is gone; stopping $SERVICE directly"; stop_service; }
  log "running $UNINSTALL"
  "$UNINSTALL" >&2 || FAILED="$UNINSTALL failed (output above)"
else
  log "no $SCRIPT: K3s is not installed here, or only partly"
fi

# What the K3s uninstall script would have removed, for a host where it is gone or failed.
if command -v systemctl >/dev/null 2>&1 && [ -e "/etc/systemd/system/$SERVICE.service" ]; then
  stop_service
  systemctl disable "$SERVICE" >&2 2>/dev/null || true
  rm -f "/etc/systemd/system/$SERVICE.service" "/etc/systemd/system/$SERVICE.service.env"
  systemctl daemon-reload >&2 || die "systemctl daemon-reload failed after removing $SERVICE"
fi
if [ -e "/etc/init.d/$SERVICE" ]; then
  stop_service
  rc-update delete "$SERVICE" default >&2 2>/dev/null || true
  rm -f "/etc/init.d/$SERVICE"
fi
for _unit in "/etc/systemd/system/$SERVICE.service" "/etc/init.d/$SERVICE"; do
  [ ! -e "$_unit" ] || die "$_unit is still there after the uninstall; remove K3s by hand (k3s-killall.sh, then $SCRIPT) and run pulumi destroy again"
done

# Ours: config, token file, registration drop-in (all in /etc/rancher/k3s), node password.
rm -rf "$CONF_DIR" /etc/rancher/node
# The restart owed and the drift check's record of what the install wrote (applied.sh).
rm -f "$RESTART_PENDING" "$APPLIED" "$INSTALL_DONE"
# Every airgap generation's root-owned copy (a failed upgrade may have left a newer one): the
# install of a replacement makes its own after this ran.
rm -rf "$AIRGAP_ROOT"
rmdir "$STATE_DIR" 2>/dev/null || true
if [ -n "${AIRGAP_GENERATION:-}" ]; then
  STAGE_USER=$(ssh_user)
  if HOME_DIR=$(user_home "$STAGE_USER"); then
    rm -rf "${HOME_DIR:?}/${AIRGAP_STAGE:?}"
    rmdir "$HOME_DIR/${AIRGAP_STAGE%/*}" "$HOME_DIR/${AIRGAP_STAGE%%/*}" 2>/dev/null || true
  else
    log "warning: no home directory for $STAGE_USER; staged airgap files (if any) are left"
  fi
fi
# Leave no empty directories behind that K3s created.
rmdir /etc/rancher "$K3S_DATA_DIR" /var/lib/rancher 2>/dev/null || true
if [ -n "$FAILED" ] && [ -d "$K3S_DATA_DIR" ]; then
  die "$FAILED and K3s data is left in $K3S_DATA_DIR; our files are removed. Fix the cause, run k3s-killall.sh, remove $K3S_DATA_DIR, then run pulumi destroy again"
fi
[ -z "$FAILED" ] || log "warning: $FAILED; what it leaves is removed"
log "K3s removed"
