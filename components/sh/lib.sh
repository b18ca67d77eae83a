# shellcheck shell=sh
# shellcheck disable=SC2034 # CHANGED is for the scripts that use these helpers
# Helpers every k3s-rancher script starts with. Inputs arrive as shell variables set in a
# preamble (quoted data) and secrets on stdin; nothing from config is ever code.

log() { printf "k3s-rancher: %s\n" "$*" >&2; }
die() { printf "k3s-rancher: error: %s\n" "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "these steps need root; connect as root or give the SSH user passwordless sudo"

# put_file MODE DEST [TEXT]: write TEXT and a newline (without TEXT: stdin) to DEST (mode
# MODE, owner root) only when the content differs; sets CHANGED=1 when it wrote. Writes to a
# temporary file first so a reader never sees half a file. Call it directly, never at the
# end of a pipeline: that runs it in a subshell and CHANGED is lost. printf is a builtin, so
# TEXT (a secret, say) is in no process's arguments.
put_file() {
  _mode=$1 _dest=$2
  mkdir -p "$(dirname "$_dest")"
  _tmp=$(mktemp "$_dest.XXXXXX")
  chmod "$_mode" "$_tmp"
  if [ "$#" -ge 3 ]; then printf "%s\n" "$3" > "$_tmp"; else cat > "$_tmp"; fi
  if [ -f "$_dest" ] && cmp -s "$_tmp" "$_dest"; then
    rm -f "$_tmp"
    chmod "$_mode" "$_dest"
  else
    mv -f "$_tmp" "$_dest"
    CHANGED=1
  fi
  chown 0:0 "$_dest" 2>/dev/null || true
}

# remove_managed DEST: delete a file this program wrote earlier (it carries our marker).
remove_managed() {
  if [ -f "$1" ] && grep -q "^# managed by k3s-rancher" "$1"; then
    rm -f "$1"
    CHANGED=1
  fi
}

# kubectl through the k3s binary, with the admin kubeconfig only root can read.
kc() { k3s kubectl --kubeconfig /etc/rancher/k3s/k3s.yaml "$@"; }

# deadline SECONDS: prints the epoch second at which a bounded wait gives up.
deadline() { echo $(( $(date +%s) + $1 )); }
