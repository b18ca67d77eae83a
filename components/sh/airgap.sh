# shellcheck shell=sh
# An airgap install's files (airgap): this node's generation (install.sh, k3s, images) copied
# from the SSH user's staging directory into a root-owned place that survives reboots,
# checked against the sha256 sums the program computed, and used only from there; once K3s
# runs, the node's older generations go. Sourced by install_node.sh, which sets: NODE_NAME,
# AIRGAP_GENERATION, AIRGAP_STAGE (relative to the SSH user's home), AIRGAP_SHA256_INSTALLER,
# AIRGAP_SHA256_K3S, AIRGAP_SHA256_IMAGES and AIRGAP_IMAGES (both may be empty), BIN_DIR.
# lib.sh: die put_file sha256_of ssh_user user_home
set -eu

# airgap_ok DIR: every file of this generation is in DIR with the sha256 the program computed.
airgap_ok() {
  [ "$(sha256_of "$1/install.sh" 2>/dev/null)" = "$AIRGAP_SHA256_INSTALLER" ] || return 1
  [ "$(sha256_of "$1/k3s" 2>/dev/null)" = "$AIRGAP_SHA256_K3S" ] || return 1
  [ -z "${AIRGAP_SHA256_IMAGES:-}" ] || [ "$(sha256_of "$1/images" 2>/dev/null)" = "$AIRGAP_SHA256_IMAGES" ]
}

# remove_staged GENERATION: the SSH user's staging directory of GENERATION, never through a
# symlink the user could have planted on the way (this runs as root).
remove_staged() {
  _home=$(user_home "$(ssh_user)") || return 0
  _parent=$_home/${AIRGAP_STAGE%/*}
  [ ! -L "$_home/${AIRGAP_STAGE%%/*}" ] && [ ! -L "$_parent" ] || return 0
  rm -rf "${_parent:?}/$1"
}

# airgap_put INSTALLER: the generation's checked copies in place: the installer at INSTALLER,
# the k3s binary in BIN_DIR, the images in K3s's images directory.
airgap_put() {
  : "${AIRGAP_STAGE:?}" "${AIRGAP_SHA256_INSTALLER:?}" "${AIRGAP_SHA256_K3S:?}"
  STAGE_USER=$(ssh_user)
  GEN_DIR=$AIRGAP_ROOT/$AIRGAP_GENERATION
  if ! airgap_ok "$GEN_DIR"; then
    HOME_DIR=$(user_home "$STAGE_USER") || die "cannot find the home directory of $STAGE_USER on $NODE_NAME"
    STAGED=$HOME_DIR/$AIRGAP_STAGE
    [ -d "$STAGED" ] || die "the airgap files of generation $AIRGAP_GENERATION are neither in $GEN_DIR nor staged in $STAGED; run pulumi refresh, then pulumi up, to copy them again"
    mkdir -p "$AIRGAP_ROOT"
    chmod 0700 "$AIRGAP_ROOT"
    rm -rf "$GEN_DIR.new"
    mkdir -m 0700 "$GEN_DIR.new"
    for _file in install.sh k3s ${AIRGAP_SHA256_IMAGES:+images}; do
      cp "$STAGED/$_file" "$GEN_DIR.new/$_file" || die "airgap file $_file missing in $STAGED"
    done
    chown -R 0:0 "$GEN_DIR.new" 2>/dev/null || true
    if ! airgap_ok "$GEN_DIR.new"; then
      rm -rf "$GEN_DIR.new"
      die "the airgap files staged in $STAGED do not match the sha256 sums of the local files; nothing was run. Run pulumi refresh, then pulumi up, to copy them again"
    fi
    rm -rf "$GEN_DIR"
    mv "$GEN_DIR.new" "$GEN_DIR"
  fi
  # The staged copies are not needed once the root-owned ones are checked: every staged file
  # is removed here, so a failed or refused run later leaves none behind in the home.
  remove_staged "$AIRGAP_GENERATION"
  cp "$GEN_DIR/install.sh" "$1"
  if ! cmp -s "$GEN_DIR/k3s" "$BIN_DIR/k3s"; then
    install -m 0755 "$GEN_DIR/k3s" "$BIN_DIR/k3s.k3s-rancher-new"
    mv -f "$BIN_DIR/k3s.k3s-rancher-new" "$BIN_DIR/k3s"
  fi
  if [ -n "${AIRGAP_IMAGES:-}" ]; then
    put_file 0644 "$IMAGES_DIR/$AIRGAP_IMAGES" < "$GEN_DIR/images"
  fi
}

# is_generation NAME: NAME is a generation's name (a fingerprint) other than this one.
is_generation() {
  case $1 in *[!0-9a-f]*) return 1 ;; esac
  [ "${#1}" -eq "$FINGERPRINT_LENGTH" ] && [ "$1" != "$AIRGAP_GENERATION" ]
}

# airgap_prune: the node's older generations, root-owned and staged; nothing behind a symlink.
airgap_prune() {
  for _old in "$AIRGAP_ROOT"/*; do
    if is_generation "${_old##*/}"; then rm -rf "$_old"; fi
  done
  if HOME_DIR=$(user_home "$(ssh_user)") && [ ! -L "$HOME_DIR/${AIRGAP_STAGE%%/*}" ] && [ ! -L "$HOME_DIR/${AIRGAP_STAGE%/*}" ]; then
    for _old in "$HOME_DIR/${AIRGAP_STAGE%/*}"/*; do
      if is_generation "${_old##*/}"; then rm -rf "$_old"; fi
    done
  fi
}
