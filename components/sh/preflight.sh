# shellcheck shell=sh
# The install's read-only checks, at every run (preflight): the host is not a K3s node of the
# other role, holds no other cluster's token or data, takes the upgrade to K3S_VERSION (no
# downgrade, no skipped minor), and runs nothing that breaks K3s (an enforcing SELinux without
# the k3s-selinux policy for an airgap install, nm-cloud-setup; firewalld is warned about).
# Nothing is written before these pass. Sourced by install_node.sh, which sets: ROLE,
# NODE_NAME, K3S_VERSION, TOKEN and ROTATED_FROM (stdin), OTHER_SERVICE, OTHER_ROLE, LIST,
# OTHER_LIST, INIT, API_PORT; AIRGAP_GENERATION may be unset. Paths from consts.sh.
# lib.sh: die log k3s_path
set -eu

# version_key VERSION: vMAJOR.MINOR.PATCH+k3sN as one comparable number (empty if not that form).
version_key() {
  printf "%s\n" "$1" | sed -n 's/^v\([0-9][0-9]*\)\.\([0-9][0-9]*\)\.\([0-9][0-9]*\)+k3s\([0-9][0-9]*\).*$/\1 \2 \3 \4/p' \
    | { read -r _maj _min _pat _rev && echo $(( ((_maj * 1000 + _min) * 1000 + _pat) * 1000 + _rev )); } || true
}

# check_ownership: this host is not the other role's, and any K3s token or data on it is this
# cluster's.
check_ownership() {
  for _unit in "/etc/systemd/system/$OTHER_SERVICE.service" "/etc/init.d/$OTHER_SERVICE"; do
    [ -e "$_unit" ] || continue
    die "$NODE_NAME is already a K3s $OTHER_ROLE (found $_unit); installing it as $ROLE on top would break both. To change a node's role: remove it from '$OTHER_LIST', run pulumi up (it is drained and uninstalled), then add it to '$LIST' and run pulumi up again"
  done
  # Joined before: a server with data, or a node holding the kubelet client certificate that
  # servers hand out only for the right token (K3s pkg/agent/config/config.go, get). A token
  # file from an install that never joined (a wrong token, say) is ours to replace.
  if [ -f "$TOKEN_FILE" ] && { [ -f "$SERVER_TOKEN" ] || [ -f "$JOINED_CERT" ]; }; then
    IFS= read -r OLD_TOKEN < "$TOKEN_FILE" || true
    # During a rotation the token file may still hold the token rotated from.
    [ "$OLD_TOKEN" = "$TOKEN" ] || { [ -n "$ROTATED_FROM" ] && [ "$OLD_TOKEN" = "$ROTATED_FROM" ]; } \
      || die "$NODE_NAME already belongs to a cluster with a different token (found in $TOKEN_FILE); nothing was changed. Servers with data refuse a new token and agents could not join. If you changed k3s-rancher:token, put the old one back and set the new one as newToken instead (pulumi config set --secret newToken <new>): the next up runs 'k3s token rotate' on the init server, then restarts every node once with the new token (the README's lifecycle section says how). If this host belongs to another cluster, uninstall K3s there first"
  elif [ -f "$SERVER_TOKEN" ]; then
    IFS= read -r OLD_TOKEN < "$SERVER_TOKEN" || true
    case $OLD_TOKEN in
      "$TOKEN" | *::server:"$TOKEN") ;;
      # During a rotation a server may still hold the token rotated from (none: $TOKEN again).
      "${ROTATED_FROM:-$TOKEN}" | *::server:"${ROTATED_FROM:-$TOKEN}") ;;
      *) die "$NODE_NAME holds K3s data of another cluster (found $SERVER_TOKEN with a different token); nothing was changed. Uninstall K3s there (k3s-uninstall.sh) or use another host" ;;
    esac
  fi
}

# check_upgrade_path: K3s supports neither a downgrade nor a skipped minor.
check_upgrade_path() {
  OLD_K3S=$(k3s_path) || OLD_K3S=""
  [ -n "$OLD_K3S" ] && [ -d "$K3S_DATA_DIR" ] || return 0
  INSTALLED=$("$OLD_K3S" --version 2>/dev/null | sed -n '1s/^k3s version \(v[^ ]*\).*$/\1/p') || INSTALLED=""
  OLD_KEY=$(version_key "$INSTALLED") NEW_KEY=$(version_key "$K3S_VERSION")
  if [ -n "$OLD_KEY" ] && [ -n "$NEW_KEY" ]; then
    OLD_MINOR=$(( OLD_KEY / 1000000 )) NEW_MINOR=$(( NEW_KEY / 1000000 ))
    [ "$NEW_KEY" -ge "$OLD_KEY" ] || die "$NODE_NAME runs K3s $INSTALLED; $K3S_VERSION would be a downgrade, which K3s does not support: set k3s.version to $INSTALLED or newer"
    [ "$NEW_MINOR" -le $(( OLD_MINOR + 1 )) ] || die "$NODE_NAME runs K3s $INSTALLED; $K3S_VERSION skips a minor version, which K3s does not support: upgrade one minor at a time (first to the newest patch of the next minor)"
  elif [ -n "$OLD_KEY" ] || [ -n "$INSTALLED" ]; then
    log "warning: cannot compare installed K3s '${INSTALLED:-unknown}' with $K3S_VERSION; not checking the upgrade path"
  fi
}

# check_host: SELinux (airgap only), nm-cloud-setup and firewalld.
check_host() {
  if [ -n "${AIRGAP_GENERATION:-}" ]; then
    ENFORCING=0
    if command -v getenforce >/dev/null 2>&1; then
      [ "$(getenforce 2>/dev/null)" != Enforcing ] || ENFORCING=1
    elif [ "$(cat /sys/fs/selinux/enforce 2>/dev/null)" = 1 ]; then
      ENFORCING=1
    fi
    if [ "$ENFORCING" = 1 ] && [ ! -f /usr/share/selinux/packages/k3s.pp ] && ! rpm -q --quiet k3s-selinux 2>/dev/null; then
      die "SELinux is enforcing on $NODE_NAME and the k3s-selinux policy is not installed; an airgap install skips it (INSTALL_K3S_SKIP_DOWNLOAD), and K3s would not run. Install the container-selinux and k3s-selinux RPMs on the host first (from your mirror of rpm.rancher.io), then run pulumi up again"
    fi
  fi
  [ "$INIT" = systemd ] || return 0
  for _unit in nm-cloud-setup.service nm-cloud-setup.timer; do
    systemctl is-enabled --quiet "$_unit" 2>/dev/null || continue
    die "$_unit is enabled on $NODE_NAME: NetworkManager's cloud setup rewrites routing and breaks K3s networking (K3s docs, requirements). Disable it and reboot: systemctl disable nm-cloud-setup.service nm-cloud-setup.timer && reboot; then run pulumi up again"
  done
  if systemctl is-active --quiet firewalld 2>/dev/null; then
    log "warning: firewalld is active on $NODE_NAME. K3s recommends turning it off (systemctl disable --now firewalld); to keep it, allow $API_PORT/tcp (API), 10250/tcp (kubelet), 8472/udp (flannel VXLAN), 2379-2380/tcp between servers (etcd), and trust the pod and service networks (firewall-cmd --permanent --zone=trusted --add-source=$K3S_DEFAULT_CLUSTER_CIDR --add-source=$K3S_DEFAULT_SERVICE_CIDR; firewall-cmd --reload)"
  fi
}
