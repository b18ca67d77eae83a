# shellcheck shell=sh
# After a removed server's Node is deleted (drain_delete.sh runs first in the same command),
# confirm that its etcd member is gone before its host is uninstalled. K3s removes the member
# in the Node's finalizer (pkg/etcd/member_controller.go, nodes.OnRemove -> RemovePeer), so it
# is usually gone already; this reads K3s's own member list, /db/info on this server (the init
# server), until no member is named <node>-<8 hex digits> (pkg/etcd/etcd.go setName), for at
# most MEMBER_TIMEOUT seconds.
# No credentials: K3s serves /db/info to a client at 127.0.0.1 or ::1 whatever it sends
# (k3s-io/k3s pkg/etcd/etcd.go handler: auth.IsLocalOrHasRole(k3s:server); pkg/server/auth/
# auth.go IsLocalOrHasRole checks only the client address), and before K3s's April 2024
# releases (k3s-io/k3s pull 10001 and its backports) the etcd handler answered it to anyone.
# So K3s never refuses this request for its token: no token is read (the command's stdin is
# left unread) and none is sent.
# Inputs: NODE_NAME, MEMBER_TIMEOUT (seconds), API_PORT (only when K3s's https-listen-port is
# not its default).
# lib.sh: log die deadline
set -eu
: "${NODE_NAME:?}" "${MEMBER_TIMEOUT:?}"
MEMBERS_URL=https://127.0.0.1:${API_PORT:-$K3S_DEFAULT_API_PORT}/db/info
command -v curl >/dev/null 2>&1 \
  || die "curl is not installed on this server: it is needed to confirm that the etcd member of $NODE_NAME is gone; install curl and run pulumi up again"

member_list() {
  curl -sS --fail --max-time 10 --cacert "$SERVER_CA" "$MEMBERS_URL"
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
    LAST="could not read the etcd member list from $MEMBERS_URL: $ANSWER"
  fi
  if [ "$(date +%s)" -ge "$END" ]; then
    die "$LAST after ${MEMBER_TIMEOUT}s (K3s removes it when the Node is deleted). Its host is not uninstalled yet. Remove the member by hand on this server with etcdctl (not shipped with K3s): ETCDCTL_API=3 etcdctl --endpoints https://127.0.0.1:2379 --cacert /var/lib/rancher/k3s/server/tls/etcd/server-ca.crt --cert /var/lib/rancher/k3s/server/tls/etcd/client.crt --key /var/lib/rancher/k3s/server/tls/etcd/client.key member list, then member remove <its ID>; then run pulumi up again"
  fi
  sleep 2
done
