# shellcheck shell=sh
# The airgap staging step's delete, as the SSH user (like the staging itself): remove the
# generation's staging directory, and its parents if they are empty. The install removes it
# as soon as it has checked the root-owned copies; this covers a generation that was staged
# and never installed (a refused or failed install, a node removed before it ran).
# Inputs: AIRGAP_STAGE (directory relative to the home directory).
# lib.sh: log die
set -eu
: "${AIRGAP_STAGE:?}"
if [ -L "${AIRGAP_STAGE%%/*}" ] || [ -L "${AIRGAP_STAGE%/*}" ]; then
  die "$PWD/${AIRGAP_STAGE%/*} is a link: remove it by hand"
fi
rm -rf "$AIRGAP_STAGE"
rmdir "${AIRGAP_STAGE%/*}" "${AIRGAP_STAGE%%/*}" 2>/dev/null || true
log "airgap staging directory removed: $PWD/$AIRGAP_STAGE"
