# shellcheck shell=sh
# Make the directory the airgap files of one generation are staged in, as the SSH user
# (no sudo): CopyToRemote writes there over SFTP as that user. 0700 and owned by the user,
# so no other local user can put files there; the install still runs nothing from it (it
# copies the files into a root-owned place and checks their sha256 there first). The path
# is relative: sshd starts commands and the SFTP server in the user's home directory, so
# both resolve it to the same place, which (unlike /tmp) survives a reboot.
# Inputs: AIRGAP_STAGE (directory relative to the home directory), DRIFT_REIMAGED (only on a
# host k3s.driftCheck found reimaged: it makes this step, and the copies after it, run again).
# lib.sh: log die
set -eu
: "${AIRGAP_STAGE:?}"
umask 077
mkdir -p "$AIRGAP_STAGE"
DIR=$AIRGAP_STAGE
while :; do
  if [ -L "$DIR" ] || [ -z "$(find "$DIR" -maxdepth 0 -user "$(id -u)")" ]; then
    die "$PWD/$DIR is a link or not owned by $(id -un): remove it and run pulumi up again"
  fi
  chmod 0700 "$DIR"
  case $DIR in */*) DIR=${DIR%/*} ;; *) break ;; esac
done
log "airgap staging directory: $PWD/$AIRGAP_STAGE (0700)"
