# shellcheck shell=sh
# On the init server, before its install starts using newToken: rotate the cluster token with
# K3s's own `k3s token rotate` (k3s-io/k3s pkg/cli/token/token.go Rotate; the server side,
# pkg/server/handlers/token.go tokenRotate, sets the "server" (and "node") password to the new
# token, rewrites server/token as K10<ca hash>::server:<new> and re-encrypts the bootstrap
# data with it). Each node's install then takes the new token and restarts K3s once.
# Idempotent: a re-run finds server/token at the new token and does nothing.
# Inputs: NODE_NAME. stdin: OLD_TOKEN= the token the cluster has now, NEW_TOKEN= the new one
# (consts.sh read_rotation_tokens).
# lib.sh: log die need_k3s redact _hide
set -eu
: "${NODE_NAME:?}"
read_rotation_tokens
[ -n "$OLD_TOKEN" ] && [ -n "$NEW_TOKEN" ] || die "the current and the new cluster token did not both arrive on stdin"
case $NEW_TOKEN in
  K10*::*) die "newToken must be a plain token (what follows ::server: in a K10... token), not the K10<hash>::<credentials> form: K3s would keep all of it as the password and no node could join again. Set it again: pulumi config set --secret newToken <token>" ;;
esac

if [ ! -f "$SERVER_TOKEN" ]; then
  log "no K3s server data on $NODE_NAME yet ($SERVER_TOKEN): nothing to rotate, the cluster starts with the new token"
  exit 0
fi

# holds TOKEN: server/token is TOKEN, in its short or its K10<ca hash>::server: form.
holds() {
  IFS= read -r _current < "$SERVER_TOKEN" || true
  case $_current in
    "$1" | *::server:"$1") return 0 ;;
  esac
  return 1
}

if holds "$NEW_TOKEN"; then
  log "$NODE_NAME's K3s already has the new token: nothing to rotate"
  exit 0
fi
holds "$OLD_TOKEN" || die "$SERVER_TOKEN on $NODE_NAME holds neither the current token nor newToken; nothing was changed. Was the token rotated by hand, or newToken changed while a rotation was under way? Set 'token' to the token that file holds (what follows ::server:), then run pulumi up again"

# hide_tokens: redact's filter: lines holding either token are hidden (K3s prints neither;
# this is in case).
hide_tokens() {
  _hide "$OLD_TOKEN" "a cluster token"
  _hide "$NEW_TOKEN" "a cluster token"
}

need_k3s
# The old token through K3S_TOKEN (the --token flag's variable: no argv), the new one through
# --new-token, its only source: K3s hides its own arguments (gspt.SetProcTitle) once it runs.
# K3S_URL would redirect --server from the local server (https://127.0.0.1 at the API port).
unset K3S_URL
log "rotating the cluster token on $NODE_NAME (k3s token rotate)"
if OUT=$(K3S_TOKEN=$OLD_TOKEN "$K3S" token rotate --new-token "$NEW_TOKEN" 2>&1); then
  printf "%s\n" "$OUT" | redact hide_tokens >&2
else
  printf "%s\n" "$OUT" | redact hide_tokens >&2
  die "k3s token rotate failed on $NODE_NAME (above); the cluster still uses the current token and no node was changed. Check that K3s runs there (systemctl status k3s) and is recent enough to have 'k3s token rotate' (the October 2023 releases added it, e.g. v1.28.3+k3s1), then run pulumi up again"
fi
holds "$NEW_TOKEN" || die "k3s token rotate answered, but $SERVER_TOKEN on $NODE_NAME does not hold the new token; nothing else was changed. Check the init server's K3s (journalctl -u k3s), then run pulumi up again"
log "cluster token rotated on $NODE_NAME; each node now restarts K3s once with the new token"
