#!/usr/bin/env bash
# Build, once, the Pulumi engine binaries that the real-engine tests run, from Go modules
# served by the Go module proxy, and cache them.
#
#   PATH="$(tests/real/engine/build.sh | tail -1):$PATH"
#
# The last line of stdout is the cached bin directory; everything else goes to stderr.
# See README.md beside this file for what is built, from which module versions, and why
# some of them differ from the PyPI packages in the project's virtualenv.
#
# Environment:
#   K3SR_ENGINE_CACHE          cache root (default: $HOME/.cache/k3s-rancher/engine)
#   K3SR_ENGINE_REBUILD=1      rebuild even if the cache entry is complete
#   K3SR_ENGINE_COMMAND_STANDIN=1
#                              when the real pulumi-resource-command cannot be built, build
#                              the project's stand-in (command-standin/: local.Command,
#                              remote.Command over the ssh client, remote.CopyToRemote) in its
#                              place; recorded in STANDINS (its own cache entry)
#   K3SR_ENGINE_REQUIRE_COMMAND=1
#                              fail if no pulumi-resource-command can be built (by default
#                              its absence is recorded in MISSING and the build succeeds)
#   K3SR_ENGINE_STEP_TIMEOUT   limit for one go command, in seconds (default: 3600)
#   GOPROXY, GOMODCACHE, GOCACHE, GOFLAGS ... are the go command's own; GOFLAGS is
#   replaced for the builds (-mod=mod -buildvcs=false).
set -eEuo pipefail
shopt -s inherit_errexit

# ---------------------------------------------------------------------------------------
# Versions. Change one and the cache key changes.
# CLI: github.com/pulumi/pulumi/pkg/v3. The PyPI SDK is 3.272.0, but the module proxy here
# refuses pkg/v3 v3.271.0-v3.273.0 (403 "This module version is not available"); v3.274.1
# is the nearest release it serves. A newer CLI runs programs of an older SDK.
readonly PULUMI_PKG_MODULE=github.com/pulumi/pulumi/pkg/v3
readonly PULUMI_PKG_VERSION=v3.274.1
# The CLI's go.mod replaces (its local `replace sdk/v3 => ../sdk` is not repeated: the
# sdk/v3 of the same tag is required by pkg/v3 itself).
readonly PULUMI_PKG_REPLACES='github.com/atotto/clipboard => github.com/tgummerer/clipboard v0.0.0-20241001131231-d02d263e614e'
# Python SDK release = PyPI pulumi in the venv: source of pulumi-language-python-exec.
readonly PULUMI_SDK_MODULE=github.com/pulumi/pulumi/sdk/v3
readonly PULUMI_SDK_VERSION=v3.272.0
# The language host is our stand-in (langhost/main.go), built against the CLI's sdk/v3,
# because the proxy serves no version of
# github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3.
readonly LANGHOST_SDK_VERSION=v3.274.1
# Kubernetes provider: the proxy serves exactly one version of
# github.com/pulumi/pulumi-kubernetes/provider/v4, a pseudo-version of 2026-01-15 (near
# v4.25.0), and no v4.34.2 (the PyPI SDK). The binary reports that pseudo-version.
readonly K8S_MODULE=github.com/pulumi/pulumi-kubernetes/provider/v4
readonly K8S_MODULE_VERSION=v4.0.0-20260115033456-f47bc2d6f199
readonly K8S_REPLACES=''
# Command provider v1.2.1 (tag commit of github.com/pulumi/pulumi-command). Its provider
# module has no tags of its own; the proxy refuses it at any version (and also refuses its
# dependency github.com/pulumi/pulumi-go-provider). The build probes it each cold build.
readonly COMMAND_MODULE=github.com/pulumi/pulumi-command/provider
readonly COMMAND_VERSION=1.2.1
readonly COMMAND_COMMIT=7f3eb6f3b77cd0fa3895ba437a695dd393f7dd25
# ---------------------------------------------------------------------------------------

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
step_timeout="${K3SR_ENGINE_STEP_TIMEOUT:-3600}"
command_standin="${K3SR_ENGINE_COMMAND_STANDIN:-0}"
cache_root="${K3SR_ENGINE_CACHE:-${HOME:?HOME is not set}/.cache/k3s-rancher/engine}"

log() { printf '[engine-build] %s\n' "$*" >&2; }
die() { printf '[engine-build] ERROR: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null 2>&1 || die "go is not on PATH (Go >= 1.26.6 is needed: pkg/v3 ${PULUMI_PKG_VERSION} says so)"
for tool in flock timeout sha256sum sed; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is not on PATH"
done

# The go command, bounded in time, with settings that do not depend on the caller's.
gorun() {
  local rc=0
  timeout --kill-after=30 "$step_timeout" env GOFLAGS='-mod=mod -buildvcs=false' GOWORK=off \
    GO111MODULE=on CGO_ENABLED=0 go "$@" || rc=$?
  if ((rc == 124 || rc == 137)); then
    log "go $1 timed out after ${step_timeout}s (K3SR_ENGINE_STEP_TIMEOUT)"
  fi
  return "$rc"
}

go_version="$(go env GOVERSION)"
case "$go_version" in
  go1.2[6-9]* | go1.[3-9]* | go[2-9]*) ;;
  *) die "found $go_version; Go >= 1.26.6 is needed (or set GOTOOLCHAIN to a newer toolchain)" ;;
esac

# Cache key: versions, Go version and the sources of this directory that shape the build.
# The base key leaves out the command stand-in's sources: entries with the same base key
# share the CLI, language host and kubernetes binaries (see reuse below).
base_material="$(
  printf '%s\n' "$PULUMI_PKG_VERSION" "$PULUMI_PKG_REPLACES" "$PULUMI_SDK_VERSION" \
    "$LANGHOST_SDK_VERSION" "$K8S_MODULE_VERSION" "$K8S_REPLACES" "$COMMAND_VERSION" \
    "$COMMAND_COMMIT" "$go_version" "$(go env GOOS GOARCH)"
  cat "$here/build.sh" "$here/langhost/main.go"
)"
base_hash="$(printf '%s' "$base_material" | sha256sum | cut -c1-12)"
key_material="$(
  printf '%s\n' "$base_material" "$command_standin"
  if [[ "$command_standin" == 1 ]]; then cat "$here"/command-standin/*.go; fi
)"
key_hash="$(printf '%s' "$key_material" | sha256sum | cut -c1-12)"
key="pulumi-${PULUMI_PKG_VERSION}-py${PULUMI_SDK_VERSION}-k8s-${K8S_MODULE_VERSION%%-*}-cmd-v${COMMAND_VERSION}"
if [[ "$command_standin" == 1 ]]; then key+="-standin"; fi
key+="-${key_hash}"
entry="$cache_root/$key"
bin_dir="$entry/bin"

required=(pulumi pulumi-language-python pulumi-language-python-exec pulumi-resource-kubernetes)

cache_complete() {
  [[ -f "$entry/COMPLETE" ]] || return 1
  local b
  for b in "${required[@]}"; do
    [[ -x "$bin_dir/$b" ]] || return 1
  done
  if [[ "${K3SR_ENGINE_REQUIRE_COMMAND:-0}" == 1 || "$command_standin" == 1 ]]; then
    [[ -x "$bin_dir/pulumi-resource-command" ]] || return 1
  fi
  return 0
}

mkdir -p "$cache_root"
if [[ "${K3SR_ENGINE_REBUILD:-0}" != 1 ]] && cache_complete; then
  log "cache hit: $bin_dir"
  printf '%s\n' "$bin_dir"
  exit 0
fi

# One build at a time per cache root; a second caller waits, then finds the cache filled.
exec 9>"$cache_root/.lock"
if ! flock -w "$((step_timeout * 4))" 9; then
  die "timed out waiting for another build holding $cache_root/.lock"
fi
if [[ "${K3SR_ENGINE_REBUILD:-0}" != 1 ]] && cache_complete; then
  log "cache hit (built by another process): $bin_dir"
  printf '%s\n' "$bin_dir"
  exit 0
fi

work="$(mktemp -d "$cache_root/.work.XXXXXX")"
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
out="$work/out"
mkdir -p "$out/bin"
: >"$out/MISSING"
printf 'pulumi-language-python: stand-in (langhost/main.go); the real host module is not served\n' >"$out/STANDINS"
timings="$work/timings"
: >"$timings"

# A complete entry of the same base key (only the command stand-in differs) lends its
# binaries: editing the stand-in rebuilds the stand-in alone.
reuse_from=''
for candidate in "$cache_root"/*/; do
  candidate="${candidate%/}"
  if [[ "$candidate" != "$entry" && -f "$candidate/COMPLETE" && -f "$candidate/BASE" &&
    "$(cat "$candidate/BASE")" == "$base_hash" ]]; then
    reuse_from="$candidate"
    break
  fi
done
printf '%s\n' "$base_hash" >"$out/BASE"

# Copies binaries from reuse_from (a hard link when possible); fails if there is none.
reuse() { # binary...
  local b
  [[ -n "$reuse_from" ]] || return 1
  for b in "$@"; do [[ -x "$reuse_from/bin/$b" ]] || return 1; done
  for b in "$@"; do
    ln "$reuse_from/bin/$b" "$out/bin/$b" 2>/dev/null || cp "$reuse_from/bin/$b" "$out/bin/$b"
  done
  log "reused $* from $reuse_from (same base key)"
}

if [[ -n "$reuse_from" ]]; then
  log "build into $entry reusing $reuse_from for all but the command provider"
else
  log "cold build into $entry (Go $go_version, $(nproc) CPUs); this takes tens of minutes"
fi

# Prints the module cache directory of module@version, downloading it if needed.
module_dir() {
  local json dir
  if ! json="$(cd "$work" && gorun mod download -json "$1@$2" 2>&1)"; then
    if [[ "$json" == *'"Error"'* ]]; then
      log "$(printf '%s\n' "$json" | sed -n 's/.*"Error": "\(.*\)".*/\1/p' | sed 's/\\n/ /g; s/\\t/ /g')"
    else
      log "$json"
    fi
    return 1
  fi
  dir="$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [[ -n "$dir" && -d "$dir" ]] || { log "no module directory for $1@$2 in: $json"; return 1; }
  printf '%s\n' "$dir"
}

# Writes a wrapper go.mod: module name, then "require" lines, then "replace" lines.
write_gomod() { # dir module go-version requires replaces
  local dir="$1" line
  {
    printf 'module %s\n\ngo %s\n\n' "$2" "$3"
    while IFS= read -r line; do
      if [[ -n "$line" ]]; then printf 'require %s\n' "$line"; fi
    done <<<"$4"
    while IFS= read -r line; do
      if [[ -n "$line" ]]; then printf 'replace %s\n' "$line"; fi
    done <<<"$5"
  } >"$dir/go.mod"
}

current_step=''
# A failing command ends the script (set -e); this says which binary was being built.
# Subshells exit quietly; the main shell reports once.
trap 'rc=$?; if ((BASH_SUBSHELL == 0)); then log "ERROR: building ${current_step:-the engine} failed: exit $rc of: $BASH_COMMAND (see the output above)"; fi; exit "$rc"' ERR

timed() { # name command...
  local name="$1" start end
  shift
  current_step="$name"
  start="$(date +%s)"
  log "building $name ..."
  "$@"
  end="$(date +%s)"
  if grep -q "^$name " "$out/MISSING"; then
    printf '%s skipped\n' "$name" >>"$timings"
    log "skipped $name"
    return 0
  fi
  printf '%s %ss\n' "$name" "$((end - start))" >>"$timings"
  log "built $name in $((end - start))s"
}

build_pulumi_cli() {
  local dir="$work/cli"
  if reuse pulumi; then return 0; fi
  mkdir -p "$dir"
  write_gomod "$dir" k3sr.local/engine/cli 1.26.6 \
    "$PULUMI_PKG_MODULE $PULUMI_PKG_VERSION" "$PULUMI_PKG_REPLACES"
  # Release builds use these tags and this version variable.
  (cd "$dir" && gorun build -trimpath -tags osusergo,grpcnotrace \
    -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$PULUMI_PKG_VERSION" \
    -o "$out/bin/pulumi" "$PULUMI_PKG_MODULE/cmd/pulumi")
}

build_language_host() {
  local dir="$work/langhost" sdk_dir
  if reuse pulumi-language-python pulumi-language-python-exec; then return 0; fi
  mkdir -p "$dir"
  cp "$here/langhost/main.go" "$dir/main.go"
  write_gomod "$dir" k3sr.local/engine/langhost 1.24 \
    "$PULUMI_SDK_MODULE $LANGHOST_SDK_VERSION" ""
  (cd "$dir" && gorun build -trimpath \
    -ldflags "-s -w -X main.Version=${PULUMI_SDK_VERSION#v}" \
    -o "$out/bin/pulumi-language-python" .) || return 1
  # The upstream executor script of the PyPI SDK's release, from the module cache.
  sdk_dir="$(module_dir "$PULUMI_SDK_MODULE" "$PULUMI_SDK_VERSION")" || return 1
  [[ -f "$sdk_dir/python/cmd/pulumi-language-python-exec" ]] ||
    { log "no python/cmd/pulumi-language-python-exec in $sdk_dir"; return 1; }
  install -m 0755 "$sdk_dir/python/cmd/pulumi-language-python-exec" \
    "$out/bin/pulumi-language-python-exec"
}

# Builds cmd/pulumi-resource-NAME of a provider module: the cmd directory is copied from
# the module cache into a wrapper module (its main package go:embeds generated files,
# which a plain `go build module/cmd/...` cannot produce), the embed files are generated
# with the provider's own generate.go when it has one, then built with the version flag.
build_provider() { # name module module-version version-string version-var replaces
  local name="$1" module="$2" modver="$3" version="$4" versionvar="$5" replaces="$6"
  local dir="$work/provider-$name" src
  src="$(module_dir "$module" "$modver")" || return 1
  [[ -d "$src/cmd/pulumi-resource-$name" ]] || { log "no cmd/pulumi-resource-$name in $src"; return 1; }
  mkdir -p "$dir"
  cp -R "$src/cmd/pulumi-resource-$name/." "$dir/"
  chmod -R u+w "$dir"
  write_gomod "$dir" "k3sr.local/engine/provider-$name" 1.24 "$module $modver" "$replaces"
  if [[ -f "$dir/generate.go" ]]; then
    (cd "$dir" && VERSION="$version" gorun run generate.go) || return 1
  fi
  (cd "$dir" && gorun build -trimpath \
    -ldflags "-s -w -X $module/pkg/version.$versionvar=$version" \
    -o "$out/bin/pulumi-resource-$name" .)
}

build_kubernetes() {
  if reuse pulumi-resource-kubernetes; then return 0; fi
  build_provider kubernetes "$K8S_MODULE" "$K8S_MODULE_VERSION" "${K8S_MODULE_VERSION#v}" \
    Version "$K8S_REPLACES"
}

build_command_standin() {
  local dir="$work/command-standin"
  mkdir -p "$dir"
  cp "$here"/command-standin/*.go "$dir/"
  write_gomod "$dir" k3sr.local/engine/command-standin 1.24 \
    "$PULUMI_SDK_MODULE $LANGHOST_SDK_VERSION" ""
  (cd "$dir" && gorun build -trimpath -ldflags "-s -w -X main.Version=$COMMAND_VERSION" \
    -o "$out/bin/pulumi-resource-command" .)
  printf 'pulumi-resource-command: stand-in (command-standin/: local.Command, remote.Command, remote.CopyToRemote)\n' >>"$out/STANDINS"
}

# The real command provider is attempted only if the proxy serves its module now.
build_command() {
  local json modver
  if ! json="$(cd "$work" && gorun mod download -json "$COMMAND_MODULE@$COMMAND_COMMIT" 2>&1)"; then
    log "the real pulumi-resource-command v$COMMAND_VERSION is not buildable here: the Go module proxy refuses $COMMAND_MODULE@$COMMAND_COMMIT:"
    log "  $(printf '%s\n' "$json" | sed -n 's/.*"Error": "\(.*\)".*/\1/p' | sed 's/\\n/ /g; s/\\t/ /g')"
    if [[ "$command_standin" == 1 ]]; then
      log "K3SR_ENGINE_COMMAND_STANDIN=1: building the stand-in (command-standin/) instead"
      build_command_standin
      return 0
    fi
    printf 'pulumi-resource-command v%s: module %s not served by the Go module proxy\n' \
      "$COMMAND_VERSION" "$COMMAND_MODULE" >>"$out/MISSING"
    if [[ "${K3SR_ENGINE_REQUIRE_COMMAND:-0}" == 1 ]]; then
      log "K3SR_ENGINE_REQUIRE_COMMAND=1 and no command provider: failing (K3SR_ENGINE_COMMAND_STANDIN=1 builds a stand-in)"
      return 1
    fi
    return 0
  fi
  modver="$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Version": "\(.*\)",$/\1/p')"
  build_provider command "$COMMAND_MODULE" "$modver" "$COMMAND_VERSION" Version ""
}

total_start="$(date +%s)"
timed pulumi build_pulumi_cli
timed pulumi-language-python build_language_host
timed pulumi-resource-kubernetes build_kubernetes
timed pulumi-resource-command build_command
total_end="$(date +%s)"
printf 'total %ss\n' "$((total_end - total_start))" >>"$timings"

"$out/bin/pulumi" version >"$work/pulumi-version" 2>&1 || die "the built pulumi does not run: $(cat "$work/pulumi-version")"
[[ "$(cat "$work/pulumi-version")" == "$PULUMI_PKG_VERSION" ]] ||
  die "pulumi version printed '$(cat "$work/pulumi-version")', expected $PULUMI_PKG_VERSION"

{
  printf 'pulumi CLI         %s@%s (replace %s)\n' "$PULUMI_PKG_MODULE" "$PULUMI_PKG_VERSION" "$PULUMI_PKG_REPLACES"
  printf 'language host      stand-in langhost/main.go on %s@%s; exec script from %s@%s\n' \
    "$PULUMI_SDK_MODULE" "$LANGHOST_SDK_VERSION" "$PULUMI_SDK_MODULE" "$PULUMI_SDK_VERSION"
  printf 'kubernetes         %s@%s\n' "$K8S_MODULE" "$K8S_MODULE_VERSION"
  printf 'command            %s@%s (v%s)\n' "$COMMAND_MODULE" "$COMMAND_COMMIT" "$COMMAND_VERSION"
  printf 'go                 %s\n' "$go_version"
  printf 'built              %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
} >"$out/VERSIONS"
cp "$timings" "$out/TIMINGS"
printf '%s\n' "$key" >"$out/COMPLETE"

# Publish atomically: replace a stale or partial entry of the same key.
rm -rf "$entry"
mv "$out" "$entry"
log "timings: $(tr '\n' ' ' <"$entry/TIMINGS")"
if [[ -s "$entry/MISSING" ]]; then
  log "not built (see $entry/MISSING): $(tr '\n' ' ' <"$entry/MISSING")"
fi
log "stand-ins (not the upstream binaries): $(tr '\n' ' ' <"$entry/STANDINS")"
log "cache size: $(du -sh "$entry" | cut -f1)"
printf '%s\n' "$bin_dir"
