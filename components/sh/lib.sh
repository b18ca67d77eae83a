# shellcheck shell=sh
# shellcheck disable=SC2034 # CHANGED and K3S are for the scripts that use these helpers
# Helpers every k3s-rancher script starts with. Inputs arrive as shell variables set in a
# preamble (quoted data) and secrets on stdin; nothing from config is ever code.
# Over 150 lines: one small helper a block, the few every script may list on its `# lib.sh:`
# line; a script sent whole in its command text carries only the blocks it lists.

# The host's paths, K3s's defaults and the secrets' stdin readers, rendered into the bundle by
# components/host_facts.py. Only where the bundle is: a script sent whole in its command text
# (the scripts step's own) gets the helpers it lists, never this.
# shellcheck source=/dev/null
. "$K3SR_SCRIPTS/consts.sh"

log() { printf "k3s-rancher: %s\n" "$*" >&2; }
die() { printf "k3s-rancher: error: %s\n" "$*" >&2; exit 1; }

# need_root: stop unless this runs as root (every step but the airgap staging, which runs as the
# SSH user: SFTP writes there as that user).
need_root() {
  [ "$(id -u)" -eq 0 ] || die "these steps need root; connect as root or give the SSH user passwordless sudo"
}

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

# sha256_of FILE: FILE's sha256, in hex.
sha256_of() { _sum=$(sha256sum "$1") && printf "%s\n" "${_sum%% *}"; }

# remove_managed DEST: delete a file this program wrote earlier (it carries our marker).
remove_managed() {
  if [ -f "$1" ] && grep -q "^$MANAGED_MARKER" "$1"; then
    rm -f "$1"
    CHANGED=1
  fi
}

# k3s_path: the k3s binary by absolute path: where the installer puts it (/usr/local/bin, or
# /opt/bin when /usr/local/bin is read-only), else from PATH (the rancher/k3s image has
# /bin/k3s). Never a bare `k3s`: sudo's secure_path on RHEL-family hosts lacks /usr/local/bin.
k3s_path() {
  for _k3s in /usr/local/bin/k3s /opt/bin/k3s; do
    if [ -x "$_k3s" ]; then
      printf "%s\n" "$_k3s"
      return 0
    fi
  done
  command -v k3s 2>/dev/null
}

# need_k3s: set K3S to the k3s binary, or stop: what calls it cannot work without K3s.
need_k3s() {
  K3S=$(k3s_path) || die "K3s is not installed on this host (no k3s in /usr/local/bin, /opt/bin or PATH)"
}

# kubectl through the k3s binary, with the admin kubeconfig only root can read (or, where a
# script set KC_KUBECONFIG, that one: an agent's own, the kubelet's).
kc() {
  [ -n "${K3S:-}" ] || need_k3s
  "$K3S" kubectl --kubeconfig "${KC_KUBECONFIG:-$ADMIN_KUBECONFIG}" "$@"
}

# node_state NAME: the Node's kubelet version and Ready status ("v1.33.5+k3s1 True"), empty
# when the API does not answer for it.
node_state() {
  kc get node "$1" -o 'jsonpath={.status.nodeInfo.kubeletVersion} {.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null || true
}

# drain_node NAME SECONDS: evict NAME's pods (DaemonSets stay, emptyDir data goes, bare pods
# too), bounded; kubectl's output goes to the log; fails as kubectl drain fails.
drain_node() {
  kc drain "$1" --ignore-daemonsets --delete-emptydir-data --force --timeout="${2}s" >&2
}

# node_registered NAME: 0 when the Node exists, 1 when the API answers NotFound; any other
# answer (API unreachable, no kubeconfig) stops with kubectl's reason.
node_registered() {
  _found=$(kc get node "$1" --ignore-not-found -o name 2>&1) \
    || die "cannot tell whether node $1 is registered: $_found"
  [ -n "$_found" ]
}

# ssh_user: the user the SSH session logged in as (sudo records it in SUDO_USER).
ssh_user() { printf "%s\n" "${SUDO_USER:-$(id -un)}"; }

# user_home USER: USER's home directory from the user database (where sshd starts USER's
# commands and SFTP sessions, so where relative SFTP paths land).
user_home() {
  _home=$(getent passwd "$1" 2>/dev/null | cut -d: -f6) || _home=""
  [ -n "$_home" ] || _home=$(awk -F: -v u="$1" '$1 == u { print $6 }' /etc/passwd)
  [ -n "$_home" ] || return 1
  printf "%s\n" "$_home"
}

# deadline SECONDS: prints the epoch second at which a bounded wait gives up.
deadline() { echo $(( $(date +%s) + $1 )); }

# host_lock STEP: one k3s-rancher step that changes this host at a time. A killed `pulumi up`
# leaves its provider running the command it had started (it finishes it), and the next up
# may start the same step on the same host meanwhile: the second waits, bounded, for the
# first. A lock whose process is gone is taken over. Released on exit (the EXIT trap runs
# on_exit, where a script adds its own clean-up with at_exit). HOST_LOCK is in consts.sh.
host_lock() {
  mkdir -p "${HOST_LOCK%/*}"
  _lock_end=$(deadline "${LOCK_TIMEOUT:-600}")
  until mkdir "$HOST_LOCK" 2>/dev/null; do
    _holder=$(cat "$HOST_LOCK/pid" 2>/dev/null || true)
    if [ -n "$_holder" ] && ! kill -0 "$_holder" 2>/dev/null; then
      log "taking over the lock of k3s-rancher step '$(cat "$HOST_LOCK/step" 2>/dev/null)' (process $_holder is gone)"
      rm -rf "$HOST_LOCK"
      continue
    fi
    if [ "$(date +%s)" -ge "$_lock_end" ]; then
      die "another k3s-rancher step ('$(cat "$HOST_LOCK/step" 2>/dev/null)', process ${_holder:-unknown}) still holds $HOST_LOCK after ${LOCK_TIMEOUT:-600}s; nothing was changed. It is likely the provider of an earlier, killed pulumi up finishing its command: let it finish (or stop it on this host), then run pulumi up again"
    fi
    sleep 2
  done
  printf "%s\n" "$$" > "$HOST_LOCK/pid"
  printf "%s\n" "$1" > "$HOST_LOCK/step"
  # shellcheck disable=SC2016 # expanded when the script exits
  at_exit 'rm -rf "$HOST_LOCK"'
}

# at_exit COMMAND: run COMMAND when the script exits (each added command runs, last first).
AT_EXIT=""
at_exit() {
  AT_EXIT="$1${AT_EXIT:+; $AT_EXIT}"
  # shellcheck disable=SC2064 # expanded now on purpose: the commands collected so far
  trap "$AT_EXIT" EXIT
}


# redact FILTER: copy stdin to stdout with every line that holds a secret replaced; FILTER is a
# function that calls `_hide SECRET WHAT` for each secret (consts.sh hide_node_secrets).
redact() {
  while IFS= read -r _line || [ -n "$_line" ]; do
    "$1"
    printf "%s\n" "$_line"
  done
}
# _hide SECRET WHAT: replace _line when it holds SECRET (not empty).
_hide() {
  [ -n "$1" ] || return 0
  case $_line in *"$1"*) _line="[line hidden: it contained $2]" ;; esac
}
