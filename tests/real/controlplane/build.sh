#!/usr/bin/env bash
# Build, once, the Kubernetes control-plane binaries that test tier 3 runs (kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl), kwok and the helm CLI, from Go modules
# served by the Go module proxy, and cache them.
#
#   PATH="$(tests/real/controlplane/build.sh | tail -1):$PATH"
#
# The last line of stdout is the cached bin directory; everything else goes to stderr.
# With --cached it only looks: prints the directory if the cache has it, else exits 3.
# etcd is not built here: it is Debian's etcd-server package (install-etcd.sh beside this).
#
# Environment:
#   K3SR_CONTROLPLANE_CACHE         cache root (default: $HOME/.cache/k3s-rancher/controlplane)
#   K3SR_CONTROLPLANE_REBUILD=1     rebuild even if the cache entry is complete
#   K3SR_CONTROLPLANE_STEP_TIMEOUT  limit for one go command, in seconds (default: 3600)
#   GOPROXY                         the proxy to use; any ",direct"/"|direct" and "off"
#                                   entries are dropped (there is no way out but the proxy)
#   GOMODCACHE, GOCACHE ...         the go command's own; GOFLAGS is replaced for the builds.
set -eEuo pipefail
shopt -s inherit_errexit
# The whole script is one { ... } group: bash parses it completely before running it, so
# editing this file while a build runs cannot make the running build execute shifted lines.
# (Inside a group shellcheck takes the functions run through `timed` for unused ones.)
# shellcheck disable=SC2329
{

# ---------------------------------------------------------------------------------------
# Versions. Change one and the cache key changes.
# Kubernetes: a v1.33 patch the proxy serves (Rancher 2.12's chart requires kubeVersion
# < 1.34). The ./staging modules are replaced by their published tags v0.<minor>.<patch>.
readonly KUBERNETES_VERSION=v1.33.13
readonly STAGING_VERSION=v0.33.13
# The staging modules k8s.io/kubernetes requires that are not published on the proxy
# (403): they are used by its tests and samples only, so their require lines are dropped.
readonly UNPUBLISHED_STAGING='k8s.io/sample-apiserver k8s.io/sample-controller k8s.io/sample-cli-plugin'
readonly KUBERNETES_CMDS='kube-apiserver kube-controller-manager kube-scheduler kubectl'
# kwok: simulated nodes and pod lifecycle (no kubelet, no container runtime). No replaces.
readonly KWOK_MODULE=sigs.k8s.io/kwok
readonly KWOK_VERSION=v0.7.0
# helm CLI: a v3 release built against k8s.io v0.33 (go.mod: k8s.io/client-go v0.33.3).
readonly HELM_MODULE=helm.sh/helm/v3
readonly HELM_VERSION=v3.18.6
# ---------------------------------------------------------------------------------------

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
step_timeout="${K3SR_CONTROLPLANE_STEP_TIMEOUT:-3600}"
cache_root="${K3SR_CONTROLPLANE_CACHE:-${HOME:?HOME is not set}/.cache/k3s-rancher/controlplane}"

log() { printf '[controlplane-build] %s\n' "$*" >&2; }
die() { printf '[controlplane-build] ERROR: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null 2>&1 || die "go is not on PATH (Go >= 1.24 is needed)"
for tool in flock timeout sha256sum sed tar; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is not on PATH"
done

# The proxy alone: "direct" would try to reach the VCS hosts, which cannot work here and
# would only hang or fail late.
proxy_list="${GOPROXY:-$(go env GOPROXY)}"
goproxy="$(printf '%s\n' "$proxy_list" | tr '|,' '\n' | sed '/^direct$/d; /^off$/d; /^$/d' | paste -sd, -)"
[[ -n "$goproxy" ]] || die "GOPROXY ($proxy_list) names no proxy"

# The go command, bounded in time, with settings that do not depend on the caller's.
gorun() {
  local rc=0
  timeout --kill-after=30 "$step_timeout" env GOPROXY="$goproxy" \
    GOFLAGS='-mod=mod -buildvcs=false' GOWORK=off GO111MODULE=on CGO_ENABLED=0 \
    go "$@" || rc=$?
  if ((rc == 124 || rc == 137)); then
    log "go $1 timed out after ${step_timeout}s (K3SR_CONTROLPLANE_STEP_TIMEOUT)"
  fi
  return "$rc"
}

go_version="$(go env GOVERSION)"
case "$go_version" in
  go1.2[4-9]* | go1.[3-9]* | go[2-9]*) ;;
  *) die "found $go_version; Go >= 1.24 is needed (k8s.io/kubernetes $KUBERNETES_VERSION says so)" ;;
esac

key_material="$(
  printf '%s\n' "$KUBERNETES_VERSION" "$STAGING_VERSION" "$UNPUBLISHED_STAGING" \
    "$KUBERNETES_CMDS" "$KWOK_VERSION" "$HELM_VERSION" "$go_version" "$(go env GOOS GOARCH)"
  cat "$here/build.sh"
)"
key="k8s-${KUBERNETES_VERSION}-kwok-${KWOK_VERSION}-helm-${HELM_VERSION}-$(printf '%s' "$key_material" | sha256sum | cut -c1-12)"
entry="$cache_root/$key"
bin_dir="$entry/bin"

read -r -a kube_cmds <<<"$KUBERNETES_CMDS"
required=("${kube_cmds[@]}" kwok helm)

cache_complete() {
  [[ -f "$entry/COMPLETE" ]] || return 1
  local b
  for b in "${required[@]}"; do
    [[ -x "$bin_dir/$b" ]] || return 1
  done
}

if [[ "${1:-}" == --cached ]]; then
  if cache_complete; then printf '%s\n' "$bin_dir"; exit 0; fi
  log "not built yet: $entry (run tests/real/controlplane/build.sh)"
  exit 3
fi

mkdir -p "$cache_root"
if [[ "${K3SR_CONTROLPLANE_REBUILD:-0}" != 1 ]] && cache_complete; then
  log "cache hit: $bin_dir"
  printf '%s\n' "$bin_dir"
  exit 0
fi

# One build at a time per cache root; a second caller waits, then finds the cache filled.
exec 9>"$cache_root/.lock"
if ! flock -w "$((step_timeout * 4))" 9; then
  die "timed out waiting for another build holding $cache_root/.lock"
fi
if [[ "${K3SR_CONTROLPLANE_REBUILD:-0}" != 1 ]] && cache_complete; then
  log "cache hit (built by another process): $bin_dir"
  printf '%s\n' "$bin_dir"
  exit 0
fi

work="$(mktemp -d "$cache_root/.work.XXXXXX")"
cleanup() { chmod -R u+w "$work" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
out="$work/out"
mkdir -p "$out/bin"
timings="$work/timings"
: >"$timings"
log "cold build into $entry (Go $go_version, $(nproc) CPUs, GOPROXY=$goproxy); this takes tens of minutes"

# Prints the module cache directory of module@version, downloading it if needed.
module_dir() {
  local json dir
  if ! json="$(cd "$work" && gorun mod download -json "$1@$2" 2>&1)"; then
    log "cannot download $1@$2: $json"
    return 1
  fi
  dir="$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [[ -n "$dir" && -d "$dir" ]] || { log "no module directory for $1@$2 in: $json"; return 1; }
  printf '%s\n' "$dir"
}

current_step=''
trap 'rc=$?; if ((BASH_SUBSHELL == 0)); then log "ERROR: building ${current_step:-the control plane} failed: exit $rc of: $BASH_COMMAND (see the output above)"; fi; exit "$rc"' ERR

timed() { # name command...
  local name="$1" start end
  shift
  current_step="$name"
  start="$(date +%s)"
  log "building $name ..."
  "$@"
  end="$(date +%s)"
  printf '%s %ss\n' "$name" "$((end - start))" >>"$timings"
  log "built $name in $((end - start))s"
}

# The -X flags hack/lib/version.sh (kube::version::ldflags) sets, so that /version and
# `kubectl version` report the release (Helm checks a chart's kubeVersion against it).
kube_ldflags() {
  local minor="${KUBERNETES_VERSION#v1.}" pkg key val flags='-s -w'
  minor="${minor%%.*}"
  for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    for key in gitVersion:"$KUBERNETES_VERSION" gitMajor:1 gitMinor:"$minor" \
      gitTreeState:clean buildDate:"$(date -u +%Y-%m-%dT%H:%M:%SZ)"; do
      val="${key#*:}"
      flags+=" -X $pkg.${key%%:*}=$val"
    done
  done
  printf '%s\n' "$flags"
}

# k8s.io/kubernetes from the proxy, made buildable outside its git tree: its go.mod
# replaces the k8s.io/* staging modules with ./staging (v0.0.0) and go.work ties them
# together; here the published staging tags are required instead, go.work and vendor/ are
# left out, and -mod=mod lets go complete go.sum.
build_kubernetes() {
  local src dir="$work/kubernetes" m cmd
  src="$(module_dir k8s.io/kubernetes "$KUBERNETES_VERSION")"
  mkdir -p "$dir"
  (cd "$src" && tar --exclude=./vendor --exclude=./staging --exclude=./go.work \
    --exclude=./go.work.sum --exclude=./.git -cf - .) | (cd "$dir" && tar -xf -)
  chmod -R u+w "$dir"
  # Drop the replace block, pin the staging modules, drop the unpublished ones.
  sed -i -e '/^replace (/,/^)/d' \
    -e "s#^\(\tk8s\.io/[a-z0-9-]*\) v0\.0\.0\$#\1 $STAGING_VERSION#" "$dir/go.mod"
  for m in $UNPUBLISHED_STAGING; do
    sed -i "\#^\t${m//./\\.} #d" "$dir/go.mod"
  done
  ! grep -q '=> \./staging' "$dir/go.mod" || { log "a ./staging replace is left in go.mod"; return 1; }
  local -a pkgs=()
  for cmd in "${kube_cmds[@]}"; do pkgs+=("./cmd/$cmd"); done
  (cd "$dir" && gorun build -trimpath -ldflags "$(kube_ldflags)" -o "$out/bin/" "${pkgs[@]}")
}

# A module's command built through a wrapper module that requires it.
build_wrapped() { # name module version package ldflags
  local dir="$work/wrap-$1"
  mkdir -p "$dir"
  printf 'module k3sr.local/controlplane/%s\n\ngo 1.24.0\n\nrequire %s %s\n' "$1" "$2" "$3" >"$dir/go.mod"
  # -mod=mod adds the requirements and go.sum lines the package needs.
  (cd "$dir" && gorun build -trimpath -ldflags "$5" -o "$out/bin/$1" "$4")
}

build_kwok() {
  build_wrapped kwok "$KWOK_MODULE" "$KWOK_VERSION" "$KWOK_MODULE/cmd/kwok" \
    "-s -w -X $KWOK_MODULE/pkg/consts.Version=${KWOK_VERSION#v}"
}

# As helm's Makefile: besides the version, the Kubernetes version `helm template` assumes
# (without it, v1.20.0) is the minor of the k8s.io modules, here the staging version's.
build_helm() {
  local minor="${STAGING_VERSION#v0.}" flags pkg
  minor="${minor%%.*}"
  flags="-s -w -X $HELM_MODULE/internal/version.version=$HELM_VERSION -X $HELM_MODULE/internal/version.gitTreeState=clean"
  for pkg in pkg/chartutil pkg/lint/rules; do
    flags+=" -X $HELM_MODULE/$pkg.k8sVersionMajor=1 -X $HELM_MODULE/$pkg.k8sVersionMinor=$minor"
  done
  build_wrapped helm "$HELM_MODULE" "$HELM_VERSION" "$HELM_MODULE/cmd/helm" "$flags"
}

total_start="$(date +%s)"
timed kubernetes build_kubernetes
timed kwok build_kwok
timed helm build_helm
total_end="$(date +%s)"
printf 'total %ss\n' "$((total_end - total_start))" >>"$timings"

current_step='version check'
reported="$("$out/bin/kube-apiserver" --version 2>&1)" || die "kube-apiserver does not run: $reported"
[[ "$reported" == "Kubernetes $KUBERNETES_VERSION" ]] ||
  die "kube-apiserver --version printed '$reported', expected Kubernetes $KUBERNETES_VERSION"

{
  printf 'kubernetes  k8s.io/kubernetes@%s with k8s.io/* staging modules at %s (%s)\n' \
    "$KUBERNETES_VERSION" "$STAGING_VERSION" "$KUBERNETES_CMDS"
  printf 'kwok        %s@%s\n' "$KWOK_MODULE" "$KWOK_VERSION"
  printf 'helm        %s@%s\n' "$HELM_MODULE" "$HELM_VERSION"
  printf 'go          %s\n' "$go_version"
  printf 'built       %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
} >"$out/VERSIONS"
cp "$timings" "$out/TIMINGS"
printf '%s\n' "$key" >"$out/COMPLETE"

# Publish atomically: replace a stale or partial entry of the same key.
rm -rf "$entry"
mv "$out" "$entry"
log "timings: $(tr '\n' ' ' <"$entry/TIMINGS")"
log "cache size: $(du -sh "$entry" | cut -f1)"
printf '%s\n' "$bin_dir"
exit 0
}
