# shellcheck shell=sh
# The install's files (files): the token, config.yaml, the etcd S3 and datastore drop-ins
# (secrets from stdin, servers only), registries.yaml, the etcd snapshot directory and the
# proxy's env file and drop-in; each written only when it differs (put_file sets CHANGED).
# Holds the host lock from here to the end of the install, and records that a restart is owed
# before the first write. Sourced by install_node.sh, which sets: ROLE, NODE_NAME, CONFIG_YAML,
# REGISTRIES_YAML, ETCD_SNAPSHOT_DIR (both may be unset), the stdin secrets, and what
# proxy_env.sh needs. Paths from consts.sh.
# lib.sh: log put_file remove_managed host_lock
# shellcheck disable=SC2034 # CHANGED and OWED are read by install_node.sh
set -eu

# yaml_quoted VALUE: VALUE as the inside of a single-quoted YAML scalar ('' is a quote there).
yaml_quoted() { printf "%s\n" "$1" | sed "s/'/''/g"; }

# write_files: every file, then OWED set when an earlier run left a restart owed.
write_files() {
  umask 077
  host_lock "install of $NODE_NAME"
  CHANGED=0
  # Recorded before anything is written and cleared only once K3s runs what is on disk: a run
  # killed between the writes and the restart leaves it, and the next run restarts K3s even
  # though it finds every file already as desired (service.sh).
  OWED=""
  if restart_pending; then
    OWED=1
    log "$NODE_NAME: an earlier run changed K3s's files and did not restart it; restarting now"
  fi
  mark_restart_pending
  put_file 0600 "$TOKEN_FILE" "$TOKEN"
  put_file 0600 "$CONF_DIR/config.yaml" "$CONFIG_YAML"
  # k3s.etcdSnapshots.directory: K3s creates only its default snapshot directory (pkg/etcd
  # snapshotDir, 0700), and every snapshot to a missing one fails. Made as K3s makes its own.
  if [ -n "${ETCD_SNAPSHOT_DIR:-}" ] && [ ! -d "$ETCD_SNAPSHOT_DIR" ]; then
    mkdir -p "$ETCD_SNAPSHOT_DIR"
    chmod 0700 "$ETCD_SNAPSHOT_DIR"
  fi
  # The S3 keys only in a 0600 drop-in on servers, as single-quoted YAML.
  if [ "$ROLE" = server ] && [ -n "$S3_ACCESS_KEY" ]; then
    put_file 0600 "$ETCD_S3_FILE" "$MANAGED_MARKER
etcd-s3-access-key: '$(yaml_quoted "$S3_ACCESS_KEY")'
etcd-s3-secret-key: '$(yaml_quoted "$S3_SECRET_KEY")'"
  else
    remove_managed "$ETCD_S3_FILE"
  fi
  # The external datastore's endpoint (a secret, with its password) in a 0600 drop-in, as
  # single-quoted YAML: K3s reads it verbatim (backslashes, spaces, $ ' " #).
  if [ "$ROLE" = server ] && [ -n "$DATASTORE_ENDPOINT" ]; then
    put_file 0600 "$DATASTORE_FILE" "$MANAGED_MARKER
datastore-endpoint: '$(yaml_quoted "$DATASTORE_ENDPOINT")'"
  else
    remove_managed "$DATASTORE_FILE"
  fi
  # With registry credentials (stdin) the whole file came on stdin, as one JSON line (JSON is
  # YAML to K3s); REGISTRIES_YAML, in the command text, is the same without them.
  if [ -n "$REGISTRIES_WITH_AUTH" ]; then
    put_file 0600 "$CONF_DIR/registries.yaml" "$MANAGED_MARKER (with the registryAuth secret)
$REGISTRIES_WITH_AUTH"
  elif [ -n "${REGISTRIES_YAML:-}" ]; then
    put_file 0600 "$CONF_DIR/registries.yaml" "$REGISTRIES_YAML"
  else
    remove_managed "$CONF_DIR/registries.yaml"
  fi
  # k3s.proxy for K3s and containerd: our own 0600 env file and its systemd drop-in (proxy_env.sh).
  write_proxy_files
}
