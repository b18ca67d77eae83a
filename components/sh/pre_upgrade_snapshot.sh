# shellcheck shell=sh
# Before the init server's K3s is upgraded: one on-demand etcd snapshot, named after the
# installed and the new version, so that the upgrade can be undone (README: restore).
# Runs only as the update of a command whose text carries K3S_VERSION (nothing on creation).
# `k3s etcd-snapshot save` takes no snapshot itself: it asks the running K3s server
# (k3s-io/k3s pkg/cli/etcdsnapshot/etcd_snapshot.go save: GET https://127.0.0.1:6443/cacerts,
# then POST /db/snapshot, with the token in server/token), whose embedded etcd writes it
# (pkg/etcd/snapshot_handler.go). So it fails while K3s is stopped here; then nothing is
# upgraded, and the message says to start K3s (the program creates this step only with
# k3s.datastore etcd: on sqlite the server answers "etcd datastore disabled").
# Inputs: K3S_VERSION, the version the install is about to put on the servers.
# lib.sh: log die need_k3s
set -eu
: "${K3S_VERSION:?}"
need_k3s
FROM=$("$K3S" --version 2>/dev/null | sed -n '1s/^k3s version \(v[^ ]*\).*$/\1/p') || FROM=""
[ -n "$FROM" ] || die "cannot read the installed K3s version ($K3S --version) before upgrading to $K3S_VERSION; no snapshot was taken and nothing was upgraded"
if [ "$FROM" = "$K3S_VERSION" ]; then
  log "K3s is already $K3S_VERSION here: no pre-upgrade snapshot needed"
  exit 0
fi
# K3s names the file <name>-<node name>-<unix time>; `+` is not allowed in a name's file.
NAME=$(printf "pre-upgrade-%s-to-%s\n" "$FROM" "$K3S_VERSION" | tr '+' '-')
log "etcd snapshot $NAME before upgrading K3s $FROM to $K3S_VERSION"
if ! "$K3S" etcd-snapshot save --name "$NAME" >&2; then
  if ! systemctl is-active --quiet k3s; then
    die "the pre-upgrade etcd snapshot failed: K3s is not running on this server (k3s $(systemctl is-active k3s 2>/dev/null || true)), and k3s etcd-snapshot save asks the running K3s for the snapshot; nothing was upgraded. Start it (sudo systemctl start k3s; journalctl -u k3s says why it stopped), then run pulumi up again"
  fi
  die "the pre-upgrade etcd snapshot failed (see above); nothing was upgraded. Check the init server's K3s (journalctl -u k3s) and etcd-snapshot settings, then run pulumi up again"
fi
log "pre-upgrade snapshot saved: $("$K3S" etcd-snapshot ls 2>/dev/null | grep -F "$NAME" | head -n 1 || true)"
