# shellcheck shell=sh
# Wait, bounded, until Rancher's single-node container answers /ping. Runs inside that
# container (docker exec), where Rancher listens on 443 whatever the published host port.
# Inputs: CONTAINER (its name, for the message), TIMEOUT (seconds), WAIT_FOR (what changed,
# for the plan only).
# lib.sh: none
: "${CONTAINER:?}" "${TIMEOUT:?}"
# Self-contained (no lib.sh): its text is all in the command, which must not change when the
# node scripts' helpers do.
log() { printf "k3s-rancher: %s\n" "$*" >&2; }
die() { printf "k3s-rancher: error: %s\n" "$*" >&2; exit 1; }
command -v curl >/dev/null 2>&1 || die "curl is missing in $CONTAINER: is it a rancher/rancher image?"

log "waiting up to ${TIMEOUT}s for Rancher in $CONTAINER (after: ${WAIT_FOR:-start})"
END=$(( $(date +%s) + TIMEOUT ))
until [ "$(curl -ksS --max-time 5 https://127.0.0.1/ping 2>/dev/null || true)" = pong ]; do
  if [ "$(date +%s)" -ge "$END" ]; then
    die "Rancher did not answer /ping within ${TIMEOUT}s: see docker logs $CONTAINER; raise rancher.timeout if this machine is slow"
  fi
  sleep 5
done
log "Rancher answers /ping"
