#!/usr/bin/env bash
# Assemble and package, once, the REAL cert-manager Helm chart for test tier 3, from the Go
# module github.com/cert-manager/cert-manager at the version the program pins, and cache the
# archive beside the control-plane binaries (tests/real/controlplane/build.sh).
#
#   chart="$(tests/real/controlplane/cert-manager-chart.sh | tail -1)"   # .../cert-manager-v1.18.2.tgz
#
# The last line of stdout is the chart archive; everything else goes to stderr. With --cached
# it only looks: prints the archive if the cache has it, else exits 3.
#
# The module holds the chart's sources (deploy/charts/cert-manager) and the CRDs (deploy/crds),
# not a packaged chart. The archive is made as upstream's `make helm-chart` makes it
# (make/manifests.mk in the module, v1.18.2):
#   - templates/*.yaml, _helpers.tpl, NOTES.txt, values.yaml and values.schema.json copied
#     (manifests.mk:98-114);
#   - templates/crds.yaml = hack/concat-yaml.sh over deploy/crds/*.yaml (manifests.mk:107-108;
#     the module's own script is run; GNU make's $(wildcard) sorts, so the files go in name
#     order): all six CRDs, each gated by `crds.enabled or installCRDs` in its own text;
#   - README.md = README.template.md with {{RELEASE_VERSION}} replaced (manifests.mk:116-117);
#   - Chart.yaml = Chart.template.yaml with annotations."artifacthub.io/signKey" set to the
#     text of signkey_annotation.txt, annotations."artifacthub.io/prerelease" = IS_PRERELEASE
#     ("true" when the version has a "-", Makefile:81), version and appVersion = the version
#     (manifests.mk:119-126; upstream uses yq, here sed: `helm package` rewrites Chart.yaml
#     from the parsed metadata anyway, so only the values count);
#   - `helm package --app-version=V --version=V` (manifests.mk:89-90).
# Not done: the .prov signature (manifests.mk:92-96; needs cert-manager's release key).
#
# Environment:
#   K3SR_CONTROLPLANE_CACHE         cache root (default: $HOME/.cache/k3s-rancher/controlplane)
#   K3SR_CERT_MANAGER_VERSION       the version (default: the program's pin, the default of
#                                   rancher.certManager.version in components/data/config.schema.json)
#   K3SR_CONTROLPLANE_REBUILD=1     assemble again even if the cache entry is complete
#   K3SR_CONTROLPLANE_STEP_TIMEOUT  limit for one step, in seconds (default: 600)
#   HELM                            the helm that packages the chart (default: build.sh's)
#   GOPROXY                         the proxy to use; any ",direct"/"|direct" and "off"
#                                   entries are dropped (there is no way out but the proxy)
set -eEuo pipefail
shopt -s inherit_errexit nullglob
# One { ... } group: bash parses it all before running it (safe to edit during a run).
# (Inside a group shellcheck takes the trap-only cleanup function for an unused one.)
# shellcheck disable=SC2329
{

readonly MODULE=github.com/cert-manager/cert-manager
readonly CHART=cert-manager
readonly CHART_DIR=deploy/charts/cert-manager
readonly CRDS_DIR=deploy/crds

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
step_timeout="${K3SR_CONTROLPLANE_STEP_TIMEOUT:-600}"
cache_root="${K3SR_CONTROLPLANE_CACHE:-${HOME:?HOME is not set}/.cache/k3s-rancher/controlplane}"

log() { printf '[cert-manager-chart-build] %s\n' "$*" >&2; }
die() { printf '[cert-manager-chart-build] ERROR: %s\n' "$*" >&2; exit 1; }

for tool in go flock timeout sha256sum sed python3; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is not on PATH"
done

version="${K3SR_CERT_MANAGER_VERSION:-$(python3 -c '
import json, sys
schema = json.load(open(sys.argv[1]))
print(schema["properties"]["rancher"]["properties"]["certManager"]["properties"]["version"]["default"])
' "$root/components/data/config.schema.json")}"
[[ "$version" =~ ^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]] || die "not a cert-manager version: '$version'"

helm="${HELM:-}"
if [[ -z "$helm" ]]; then
  bin_dir="$(bash "$here/build.sh" --cached 2>/dev/null | tail -1)" ||
    die "no helm: build the control plane first (tests/real/controlplane/build.sh) or set HELM"
  helm="$bin_dir/helm"
fi
[[ -x "$helm" ]] || die "helm not found at $helm"
helm_version="$("$helm" version --template '{{.Version}}')" || die "$helm does not run"

# The proxy alone, as build.sh: "direct" would try to reach the VCS host.
proxy_list="${GOPROXY:-$(go env GOPROXY)}"
goproxy="$(printf '%s\n' "$proxy_list" | tr '|,' '\n' | sed '/^direct$/d; /^off$/d; /^$/d' | paste -sd, -)"
[[ -n "$goproxy" ]] || die "GOPROXY ($proxy_list) names no proxy"

key="$(printf '%s\n' "$MODULE" "$version" "$helm_version" "$(cat "$here/cert-manager-chart.sh")" | sha256sum | cut -c1-12)"
entry="$cache_root/cert-manager-chart-$version-$key"
archive="$entry/$CHART-$version.tgz"

cache_complete() { [[ -f "$entry/COMPLETE" && -s "$archive" ]]; }

if [[ "${1:-}" == --cached ]]; then
  if cache_complete; then printf '%s\n' "$archive"; exit 0; fi
  log "not assembled yet: $entry (run tests/real/controlplane/cert-manager-chart.sh)"
  exit 3
fi

mkdir -p "$cache_root"
if [[ "${K3SR_CONTROLPLANE_REBUILD:-0}" != 1 ]] && cache_complete; then
  log "cache hit: $archive"
  printf '%s\n' "$archive"
  exit 0
fi

# One assembly at a time (its own lock: not behind a control-plane build holding build.sh's).
exec 9>"$cache_root/.lock-cert-manager-chart"
flock -w "$((step_timeout * 2))" 9 || die "timed out waiting for another run holding $cache_root/.lock-cert-manager-chart"
if [[ "${K3SR_CONTROLPLANE_REBUILD:-0}" != 1 ]] && cache_complete; then
  log "cache hit (assembled by another process): $archive"
  printf '%s\n' "$archive"
  exit 0
fi

work="$(mktemp -d "$cache_root/.work-chart.XXXXXX")"
cleanup() { chmod -R u+w "$work" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
trap 'rc=$?; if ((BASH_SUBSHELL == 0)); then log "ERROR: exit $rc of: $BASH_COMMAND"; fi; exit "$rc"' ERR
out="$work/out"
mkdir -p "$out"
timings="$work/timings"
: >"$timings"
started="$(date +%s)"
log "assembling $CHART $version from $MODULE@$version into $entry (GOPROXY=$goproxy, $helm_version)"

bounded() { # command... : bounded by the step timeout, with a clear message when it hits it
  local rc=0
  timeout --kill-after=30 "$step_timeout" "$@" || rc=$?
  if ((rc == 124 || rc == 137)); then
    log "$1 timed out after ${step_timeout}s (K3SR_CONTROLPLANE_STEP_TIMEOUT)"
  fi
  return "$rc"
}

# --- the module ------------------------------------------------------------------------
log "downloading $MODULE@$version (go mod download) ..."
step_start="$(date +%s)"
if ! json="$(cd "$work" && bounded env GOPROXY="$goproxy" GOFLAGS=-mod=mod GOWORK=off GO111MODULE=on \
  go mod download -json "$MODULE@$version" 2>&1)"; then
  die "cannot download $MODULE@$version: $json"
fi
src="$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
sum="$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Sum": "\(.*\)",$/\1/p')"
origin="$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Hash": "\(.*\)",$/\1/p')"
[[ -n "$src" && -d "$src/$CHART_DIR" && -d "$src/$CRDS_DIR" ]] ||
  die "no $CHART_DIR or $CRDS_DIR in the module ($json)"
printf 'download %ss\n' "$(($(date +%s) - step_start))" >>"$timings"
log "module at $src ($sum)"

# --- the chart directory, as make/manifests.mk lays it out ---------------------------------
step_start="$(date +%s)"
chart_src="$src/$CHART_DIR"
dir="$work/helm/$CHART"
mkdir -p "$dir/templates"
templates=("$chart_src"/templates/*.yaml)
((${#templates[@]} > 0)) || die "no templates in $chart_src/templates"
cp "${templates[@]}" "$chart_src/templates/_helpers.tpl" "$chart_src/templates/NOTES.txt" "$dir/templates/"
cp "$chart_src/values.yaml" "$chart_src/values.schema.json" "$dir/"
sed -e "s:{{RELEASE_VERSION}}:$version:g" <"$chart_src/README.template.md" >"$dir/README.md"

# templates/crds.yaml: every CRD source, in name order, by the module's own concat script.
crds=()
while IFS= read -r f; do crds+=("$f"); done < <(LC_ALL=C find "$src/$CRDS_DIR" -maxdepth 1 -name '*.yaml' | LC_ALL=C sort)
((${#crds[@]} > 0)) || die "no CRDs in $src/$CRDS_DIR"
bash "$src/hack/concat-yaml.sh" "${crds[@]}" >"$dir/templates/crds.yaml"
crd_names="$(for f in "${crds[@]}"; do printf '%s\n' "${f##*/}"; done | paste -sd' ' -)"
log "templates/crds.yaml from ${#crds[@]} CRD files: $crd_names"

# Chart.yaml: the template's placeholders filled in. Each must be there exactly once, so a
# changed template fails here instead of giving a chart with v0.0.0 in it.
if [[ "$version" == *-* ]]; then prerelease=true; else prerelease=false; fi
template="$chart_src/Chart.template.yaml"
for pattern in '^  artifacthub.io/prerelease: "{{IS_PRERELEASE}}"$' '^version: v0.0.0$' '^appVersion: v0.0.0$'; do
  count="$(grep -c -- "$pattern" "$template" || true)"
  [[ "$count" == 1 ]] || die "Chart.template.yaml has '$pattern' $count times (expected once): the template changed"
done
if grep -q '^  artifacthub.io/signKey:' "$template"; then
  die "Chart.template.yaml already has a signKey annotation: the template changed"
fi
# (ENVIRON, not -v: awk would interpret backslashes in a -v value)
SIGN_KEY="$(sed 's/^/    /' "$chart_src/signkey_annotation.txt")" PRE="$prerelease" VER="$version" awk '
  /^  artifacthub\.io\/prerelease: "\{\{IS_PRERELEASE\}\}"$/ {
    printf "  artifacthub.io/prerelease: \"%s\"\n  artifacthub.io/signKey: |\n%s\n", ENVIRON["PRE"], ENVIRON["SIGN_KEY"]
    next
  }
  /^version: v0\.0\.0$/ { print "version: " ENVIRON["VER"]; next }
  /^appVersion: v0\.0\.0$/ { print "appVersion: " ENVIRON["VER"]; next }
  { print }
' "$template" >"$dir/Chart.yaml"
chmod -R u+w,go+r "$dir"
printf 'assemble %ss\n' "$(($(date +%s) - step_start))" >>"$timings"

# --- the archive -----------------------------------------------------------------------------
step_start="$(date +%s)"
log "helm package --app-version=$version --version=$version ..."
(cd "$work/helm" && bounded env HELM_CACHE_HOME="$work/hc" HELM_CONFIG_HOME="$work/hf" HELM_DATA_HOME="$work/hd" \
  "$helm" package --app-version="$version" --version="$version" --destination "$out" "./$CHART" >&2)
[[ -s "$out/$CHART-$version.tgz" ]] || die "helm package made no $CHART-$version.tgz"
shown="$("$helm" show chart "$out/$CHART-$version.tgz")"
for line in "name: $CHART" "version: $version" "appVersion: $version"; do
  grep -qx -- "$line" <<<"$shown" || die "the packaged Chart.yaml lacks '$line':"$'\n'"$shown"
done
printf 'package %ss\n' "$(($(date +%s) - step_start))" >>"$timings"
printf 'total %ss\n' "$(($(date +%s) - started))" >>"$timings"

{
  printf 'chart    %s %s (make/manifests.mk helm-chart, unsigned)\n' "$CHART" "$version"
  printf 'module   %s@%s %s\n' "$MODULE" "$version" "$sum"
  printf 'commit   %s\n' "${origin:-unknown}"
  printf 'crds     %s\n' "$crd_names"
  printf 'helm     %s\n' "$helm_version"
  printf 'built    %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
} >"$out/SOURCE"
cp "$timings" "$out/TIMINGS"
printf '%s\n' "$key" >"$out/COMPLETE"

rm -rf "$entry"
mv "$out" "$entry"
log "timings: $(tr '\n' ' ' <"$entry/TIMINGS")"
printf '%s\n' "$archive"
exit 0
}
