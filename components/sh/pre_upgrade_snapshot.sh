# shellcheck shell=sh
# Before the init server's K3s is upgraded: one on-demand etcd snapshot, named after the
# installed and the new version, so that the upgrade can be undone (README: restore).
# Runs only as the update of a command whose text carries K3S_VERSION (nothing on creation).
# Inputs: K3S_VERSION, the version the install is about to put on the servers.
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
"$K3S" etcd-snapshot save --name "$NAME" >&2 || die "the pre-upgrade etcd snapshot failed (see above); nothing was upgraded. Check the init server's K3s (journalctl -u k3s) and etcd-snapshot settings, then run pulumi up again"
log "pre-upgrade snapshot saved: $("$K3S" etcd-snapshot ls 2>/dev/null | grep -F "$NAME" | head -n 1 || true)"
