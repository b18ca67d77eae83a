# shellcheck shell=sh
# K3s's service on this host: its state, a restart that does not block and a bounded wait for
# it, the log with secrets hidden, and the record that a restart is owed.
# Needs (from the script that sources it): NODE_NAME, TIMEOUT (seconds), choose_service called;
# the install's secrets read from stdin (consts.sh read_node_secrets), which the log never shows.
# lib.sh: die log deadline redact
set -eu

# choose_service ROLE: SERVICE and INIT for this host, by the installer's rules (install.sh
# verify_system): openrc when /sbin/openrc-run exists, else systemd.
choose_service() {
  if [ "$1" = server ]; then SERVICE=k3s; else SERVICE=k3s-agent; fi
  if [ -x /sbin/openrc-run ]; then
    INIT=openrc
  elif command -v systemctl >/dev/null 2>&1; then
    INIT=systemd
  else
    die "neither systemd nor openrc on $NODE_NAME: K3s needs one of them to run as a service"
  fi
}

# A restart is owed from the moment an install may write K3s's files until K3s runs them:
# recorded on the host, so that it survives a killed run (the next one restarts K3s even
# when it finds nothing left to write).
mark_restart_pending() {
  mkdir -p "${RESTART_PENDING%/*}"
  : > "$RESTART_PENDING"
}
restart_pending() { [ -f "$RESTART_PENDING" ]; }
clear_restart_pending() { rm -f "$RESTART_PENDING"; }

service_state() {
  if [ "$INIT" = systemd ]; then
    systemctl is-active "$SERVICE" 2>/dev/null || true
  elif rc-service "$SERVICE" status >/dev/null 2>&1; then
    echo active
  else
    echo stopped
  fi
}

# service_log: the last lines of the service's log, from its current start only where systemd
# says which that is (an older start's lines, say a refused token before an uninstall, would
# otherwise be taken for this one's).
service_log() {
  if [ "$INIT" = systemd ]; then
    _invocation=$(systemctl show "$SERVICE" -p InvocationID --value 2>/dev/null || true)
    if [ -n "$_invocation" ]; then
      journalctl --no-pager -n 20 "_SYSTEMD_INVOCATION_ID=$_invocation" 2>&1 | redact hide_node_secrets
    else
      journalctl -u "$SERVICE" --no-pager -n 20 2>&1 | redact hide_node_secrets
    fi
  else
    tail -n 20 "/var/log/$SERVICE.log" 2>&1 | redact hide_node_secrets
  fi
}

# When the service last became active: a queued restart has happened once this changes (right
# after `restart --no-block` the old process may still say "active").
entered() {
  if [ "$INIT" = systemd ]; then
    systemctl show "$SERVICE" -p ActiveEnterTimestampMonotonic --value 2>/dev/null || echo 0
  else
    echo openrc
  fi
}

# why_not_active LOG: what the log says about a service that does not come up. A join with a
# token the server refuses is K3s's 401 from the supervisor (pkg/agent/config, retried
# forever), which would otherwise read as a slow host.
why_not_active() {
  case $1 in
    *"401 Unauthorized"*)
      printf "%s\n" "the server refused this node's token (401 Unauthorized in the K3s log): the cluster token this node was given is not the cluster's. If k3s-rancher:token changed, put the cluster's token back (or rotate it with newToken); if this host belongs to another cluster, uninstall K3s there first"
      ;;
    *)
      printf "%s\n" "K3s ($SERVICE) on $NODE_NAME did not become active within ${TIMEOUT}s (state: ${STATE:-unknown}); raise k3s.timeouts.nodeReady if the host is slow"
      ;;
  esac
}

# restart_service: restart K3s without blocking, wait until it is active again (bounded by
# TIMEOUT), then clear the restart record.
restart_service() {
  log "starting $SERVICE on $NODE_NAME (was: $(service_state))"
  _entered=$(entered)
  if [ "$INIT" = systemd ]; then
    systemctl restart --no-block "$SERVICE" || die "systemctl could not queue a restart of $SERVICE on $NODE_NAME"
  else
    rc-service "$SERVICE" stop >/dev/null 2>&1 || true
    rc-service "$SERVICE" start >/dev/null 2>&1 < /dev/null &
    _entered=stopped
  fi
  _end=$(deadline "$TIMEOUT")
  while STATE=$(service_state) && { [ "$STATE" != active ] || [ "$(entered)" = "$_entered" ]; }; do
    if [ "$(date +%s)" -ge "$_end" ]; then
      _log=$(service_log)
      die "$NODE_NAME: $(why_not_active "$_log"). Last lines of its log (journalctl -u $SERVICE --no-pager):
$_log"
    fi
    sleep 2
  done
  clear_restart_pending
}
