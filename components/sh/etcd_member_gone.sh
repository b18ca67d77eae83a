# shellcheck shell=sh
# After a removed server's Node is deleted (drain_delete.sh runs first in the same command),
# confirm that its etcd member is gone before its host is uninstalled. K3s removes the member
# in the Node's finalizer (pkg/etcd/member_controller.go, nodes.OnRemove -> RemovePeer), so it
# is usually gone already; this reads K3s's own member list, /db/info on this server (the init
# server; role k3s:server, basic auth server:<token>, pkg/server router), until no member is
# named <node>-<8 hex digits> (pkg/etcd/etcd.go setName), for at most MEMBER_TIMEOUT seconds.
# The token comes on stdin line 1 (the readiness checks' stdin); curl gets it through `-K -`
# (stdin), never in argv. When K3s refuses it (a token rotated in the same up: this delete
# runs with the stdin it was last given), K3s's own server/token on this server is tried once.
# Inputs: NODE_NAME, MEMBER_TIMEOUT (seconds).
: "${NODE_NAME:?}" "${MEMBER_TIMEOUT:?}"
SERVER_CA=/var/lib/rancher/k3s/server/tls/server-ca.crt
SERVER_TOKEN=/var/lib/rancher/k3s/server/token
command -v curl >/dev/null 2>&1 \
  || die "curl is not installed on this server: it is needed to confirm that the etcd member of $NODE_NAME is gone; install curl and run pulumi up again"

# use_token TOKEN: the basic-auth password curl's config gets. A full K10<ca hash>::server:<pw>
# token authenticates by its password, a bare one is the password (pkg/clientaccess/token.go
# parseToken); in curl's config syntax, backslash and quote are escaped inside the quotes.
use_token() {
  case $1 in
    K10*::*)
      _password=${1#*::}
      _password=${_password#*:}
      ;;
    *) _password=$1 ;;
  esac
  QUOTED=$(printf '%s' "$_password" | sed 's/[\\"]/\\&/g')
}

TOKEN="" FROM_FILE=""
IFS= read -r TOKEN || true
if [ -z "$TOKEN" ] && [ -r "$SERVER_TOKEN" ]; then
  TOKEN=$(cat "$SERVER_TOKEN") FROM_FILE=1
fi
[ -n "$TOKEN" ] || die "no cluster token on stdin or in $SERVER_TOKEN: cannot read the etcd member list"
use_token "$TOKEN"

member_list() {
  printf 'user = "server:%s"\n' "$QUOTED" \
    | curl -sS --fail --max-time 10 --cacert "$SERVER_CA" -K - https://127.0.0.1:6443/db/info
}

# leftover_member JSON: the member named after NODE_NAME, if any. Member names are DNS
# labels: splitting the JSON at every other character leaves `"name":"<member>"` words.
leftover_member() {
  for _field in $(printf '%s\n' "$1" | sed 's/" *: *"/":"/g' | tr -c 'A-Za-z0-9.:"_-' ' '); do
    case $_field in
      '"name":"'*'"') ;;
      *) continue ;;
    esac
    _member=${_field#'"name":"'}
    _member=${_member%'"'}
    _suffix=${_member#"$NODE_NAME"-}
    [ "$_suffix" != "$_member" ] || continue
    case $_suffix in
      *[!0-9a-f]*) ;;
      ????????) printf '%s\n' "$_member"; return 0 ;;
    esac
  done
  return 1
}

END=$(deadline "$MEMBER_TIMEOUT")
while :; do
  if ANSWER=$(member_list 2>&1); then
    if ! LEFT=$(leftover_member "$ANSWER"); then
      log "no etcd member of $NODE_NAME is left (K3s /db/info)"
      exit 0
    fi
    LAST="etcd member $LEFT of removed server $NODE_NAME is still in the member list"
  else
    case $ANSWER in
      *" 401"*)
        if [ -z "$FROM_FILE" ] && [ -r "$SERVER_TOKEN" ]; then
          log "K3s refused the token on stdin for /db/info; trying its own $SERVER_TOKEN"
          use_token "$(cat "$SERVER_TOKEN")"
          FROM_FILE=1
          continue
        fi
        die "K3s refused the cluster token reading its etcd member list (/db/info): $ANSWER"
        ;;
    esac
    LAST="could not read the etcd member list from https://127.0.0.1:6443/db/info: $ANSWER"
  fi
  if [ "$(date +%s)" -ge "$END" ]; then
    die "$LAST after ${MEMBER_TIMEOUT}s (K3s removes it when the Node is deleted). Its host is not uninstalled yet. Remove the member by hand on this server with etcdctl (not shipped with K3s): ETCDCTL_API=3 etcdctl --endpoints https://127.0.0.1:2379 --cacert /var/lib/rancher/k3s/server/tls/etcd/server-ca.crt --cert /var/lib/rancher/k3s/server/tls/etcd/client.crt --key /var/lib/rancher/k3s/server/tls/etcd/client.key member list, then member remove <its ID>; then run pulumi up again"
  fi
  sleep 2
done
