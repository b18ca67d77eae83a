# shellcheck shell=sh
# The record of what the last successful install wrote: one `sha256  path` line for each of
# our files present on the host (root, 0600). The drift check (drift_probe.sh, k3s.driftCheck)
# compares the files with it on the host, so no digest of a secret file leaves the host.
# Needs: PROXY_DROP_IN (proxy_env.sh proxy_paths); the paths of consts.sh.
# lib.sh: die put_file
set -eu

# record_applied: write the record for this node's files as they are now.
record_applied() {
  _record=""
  for _file in "$CONF_DIR/config.yaml" "$TOKEN_FILE" "$CONF_DIR/registries.yaml" "$ETCD_S3_FILE" \
    "$DATASTORE_FILE" "$PROXY_ENV_FILE" "$PROXY_DROP_IN"; do
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
