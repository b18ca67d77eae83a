# shellcheck shell=sh
# The record of what the last successful install wrote: one `sha256  path` line for each of
# our files present on the host (root, 0600). The drift check (drift_probe.sh, k3s.driftCheck)
# compares the files with it on the host, so no digest of a secret file leaves the host.
# Needs: CONF_DIR, SERVICE (choose_service), lib.sh's put_file.
APPLIED=/var/lib/k3s-rancher/applied

# record_applied: write the record for this node's files as they are now.
record_applied() {
  _record=""
  for _file in "$CONF_DIR/config.yaml" "$CONF_DIR/cluster-token" "$CONF_DIR/registries.yaml" \
    "$CONF_DIR/config.yaml.d/50-k3s-rancher-etcd-s3.yaml" "$CONF_DIR/config.yaml.d/60-k3s-rancher-datastore.yaml" \
    "$CONF_DIR/k3s-rancher-proxy.env" "/etc/systemd/system/$SERVICE.service.d/50-k3s-rancher-proxy.conf"; do
    [ -f "$_file" ] || continue
    _sum=$(sha256sum "$_file") || die "cannot read $_file to record it"
    _record="$_record${_sum%% *}  $_file
"
  done
  # put_file's CHANGED is the install's own (a restart): the record changes none.
  _changed=$CHANGED
  printf "%s" "$_record" | put_file 0600 "$APPLIED"
  CHANGED=$_changed
}
