# shellcheck shell=sh
# Put this release's host scripts on the host (the `<node>-scripts` step): the bundle arrives
# on stdin; its sha256 must be the one the program computed (BUNDLE_SHA256), else nothing is
# changed. It is unpacked into a new root-owned directory and swapped in as
# /var/lib/k3s-rancher/scripts/current, which every node command's entry point sources.
# Idempotent: a host that already has this bundle is left alone. Not part of the bundle (it
# runs before one is there): its lines travel in this step's command text.
# Inputs: BUNDLE_SHA256, BUNDLE_VERSION (the release, for the log), DRIFT_REPAIR (only set
# for a node k3s.driftCheck found drifted: its new number re-runs this step). stdin: the bundle.
# lib.sh: log die need_root
: "${BUNDLE_SHA256:?}" "${BUNDLE_VERSION:?}" "${DRIFT_REPAIR:-}"
command -v sha256sum >/dev/null 2>&1 || die "sha256sum is missing on this host (coreutils or busybox provides it)"
ROOT_DIR=/var/lib/k3s-rancher/scripts
CURRENT=$ROOT_DIR/current
umask 022
mkdir -p "$ROOT_DIR"
chmod 0755 /var/lib/k3s-rancher "$ROOT_DIR"
chown 0:0 /var/lib/k3s-rancher "$ROOT_DIR" 2>/dev/null || true

STREAM=$(mktemp "$ROOT_DIR/.stream.XXXXXX")
NEW=""
trap 'rm -f "$STREAM"; [ -z "$NEW" ] || rm -rf "$NEW"' EXIT
cat > "$STREAM"
GOT=$(sha256sum "$STREAM") && GOT=${GOT%% *}
[ "$GOT" = "$BUNDLE_SHA256" ] || die "the scripts bundle that arrived has sha256 $GOT, not $BUNDLE_SHA256; nothing was changed"

if [ -f "$CURRENT/BUNDLE_SHA256" ] && [ "$(cat "$CURRENT/BUNDLE_SHA256")" = "$BUNDLE_SHA256" ] \
  && (cd "$CURRENT" && sha256sum -c MANIFEST >/dev/null 2>&1); then
  log "scripts $BUNDLE_VERSION (${BUNDLE_SHA256%"${BUNDLE_SHA256#????????????}"}) already in $CURRENT"
  exit 0
fi

NEW=$(mktemp -d "$ROOT_DIR/.new.XXXXXX")
FILE=""
{
  IFS= read -r _header
  while IFS= read -r _line; do
    case $_line in
      "=== "*)
        FILE=${_line#=== }
        case $FILE in '' | *[!a-z0-9_.]* | .*) die "the scripts bundle names a file '$FILE'; nothing was changed" ;; esac
        : > "$NEW/$FILE"
        ;;
      *)
        [ -n "$FILE" ] || die "the scripts bundle has text before its first file; nothing was changed"
        printf "%s\n" "$_line" >> "$NEW/$FILE"
        ;;
    esac
  done
} < "$STREAM"
(cd "$NEW" && sha256sum -- *.sh > MANIFEST)
printf "%s\n" "$BUNDLE_SHA256" > "$NEW/BUNDLE_SHA256"
chmod 0755 "$NEW"
chmod 0644 "$NEW"/*
chown -R 0:0 "$NEW" 2>/dev/null || true

# Swap: the old directory moves aside, the new one takes its name, the old one goes.
rm -rf "$ROOT_DIR/.old"
if [ -d "$CURRENT" ]; then mv "$CURRENT" "$ROOT_DIR/.old"; fi
mv "$NEW" "$CURRENT"
NEW=""
rm -rf "$ROOT_DIR/.old"
log "scripts $BUNDLE_VERSION (${BUNDLE_SHA256%"${BUNDLE_SHA256#????????????}"}) delivered to $CURRENT"
