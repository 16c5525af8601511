#!/usr/bin/env bash
# Builds the testbed's Go binaries from source through the Go module proxy, once per version:
# kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy, kubectl, etcd, helm.
#
# All of them come from ONE generated wrapper module and ONE `go build` listing every main package, so
# the packages they share (apimachinery, client-go, grpc, otel, the etcd client…) compile once. The
# wrapper `replace`s each k8s.io staging module that k8s.io/kubernetes requires at v0.0.0 with its
# published v0.MINOR.PATCH; the list comes from the go.mod the proxy serves, never from this file.
#
# Output: $KPAGES_CACHE/testbed/bin/<key>/ (default ~/.cache/kpages), <key> naming every version.
# A directory with its .complete stamp is never rebuilt. Prints that directory as its last line.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

cache_root="${KPAGES_CACHE:-$HOME/.cache/kpages}/testbed"
key="k8s-${K8S_VERSION}_helm-${HELM_VERSION}"
bin_dir="$cache_root/bin/$key"
binaries=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl etcd helm)

log() { printf '[build-binaries] %s\n' "$*" >&2; }
die() { printf '[build-binaries] ERROR: %s\n' "$*" >&2; exit 1; }

complete() {
  [[ -f "$bin_dir/.complete" ]] || return 1
  local b
  for b in "${binaries[@]}"; do [[ -x "$bin_dir/$b" ]] || return 1; done
}

if complete; then
  log "cached: $bin_dir"
  echo "$bin_dir"
  exit 0
fi

command -v go >/dev/null ||
  die "Go >= 1.25 is required to build Kubernetes ${K8S_VERSION} (install it from go.dev/dl into /usr/local/go; Debian's golang is too old)"
go_minor="$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')"
[[ "$go_minor" -ge 25 ]] || die "Go >= 1.25 is required, found $(go env GOVERSION)"

mkdir -p "$cache_root"
exec 9>"$cache_root/build.lock"
flock 9
if complete; then # another process built it while we waited
  echo "$bin_dir"
  exit 0
fi

export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0
start=$SECONDS

# The go.mod k8s.io/kubernetes publishes: its staging modules, go/godebug lines and etcd version.
k8s_gomod="$(go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" |
  sed -nE 's/^[[:space:]]*"GoMod": "(.*)",?$/\1/p')"
[[ -f "$k8s_gomod" ]] || die "could not download k8s.io/kubernetes@${K8S_VERSION} through the Go module proxy"
staging_version="v0.${K8S_VERSION#v1.}" # v1.35.4 -> v0.35.4
staging=$(awk '/^[[:space:]]*k8s\.io\/[^ ]+ v0\.0\.0$/ {print $1}' "$k8s_gomod" | sort -u)
[[ -n "$staging" ]] || die "found no k8s.io staging modules in $k8s_gomod"
etcd_version=$(awk '$1 == "go.etcd.io/etcd/server/v3" {print $2}' "$k8s_gomod")
[[ -n "$etcd_version" ]] || die "k8s.io/kubernetes@${K8S_VERSION} does not require go.etcd.io/etcd/server/v3"
go_lines=$(grep -E '^(go|godebug) ' "$k8s_gomod")

tools=(
  k8s.io/kubernetes/cmd/kube-apiserver
  k8s.io/kubernetes/cmd/kube-controller-manager
  k8s.io/kubernetes/cmd/kube-scheduler
  k8s.io/kubernetes/cmd/kubelet
  k8s.io/kubernetes/cmd/kube-proxy
  k8s.io/kubernetes/cmd/kubectl
  go.etcd.io/etcd/server/v3 # its root package is etcd's `main`
  helm.sh/helm/v3/cmd/helm
)

work="$cache_root/work/$key"
rm -rf "$work"
mkdir -p "$work"
replaces=$(for m in $staging; do printf '\t%s => %s %s\n' "$m" "$m" "$staging_version"; done)
tool_lines=$(printf '\t%s\n' "${tools[@]%% *}")
awk -v go_lines="$go_lines" -v k8s="$K8S_VERSION" -v helm="$HELM_VERSION" \
  -v replaces="$replaces" -v tools="$tool_lines" '
  { gsub(/@GO_LINES@/, go_lines); gsub(/@K8S_VERSION@/, k8s); gsub(/@HELM_VERSION@/, helm)
    gsub(/@REPLACES@/, replaces); gsub(/@TOOLS@/, tools); print }' \
  "$here/wrapper.go.mod.tmpl" >"$work/go.mod"

log "resolving modules (k8s ${K8S_VERSION}, $(wc -w <<<"$staging") staging modules at ${staging_version}, etcd ${etcd_version}, helm ${HELM_VERSION})"
(cd "$work" && go mod tidy) || die "go mod tidy failed in $work"
resolved_etcd=$(cd "$work" && go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
[[ "$resolved_etcd" == "$etcd_version" ]] ||
  die "etcd resolved to $resolved_etcd, expected $etcd_version (helm ${HELM_VERSION} pulls a newer one?)"

minor="${K8S_VERSION#v1.}"
minor="${minor%%.*}"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=${K8S_VERSION} -X $pkg.gitMajor=1 -X $pkg.gitMinor=${minor}"
  ldflags+=" -X $pkg.gitTreeState=clean"
done
ldflags+=" -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}"
ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=${minor}"
done

out="$work/out"
mkdir -p "$out"
log "compiling ${#tools[@]} programs in one go build (nice 10; several minutes cold on 2 cores)"
(cd "$work" && nice -n 10 go build -trimpath -ldflags "$ldflags" -o "$out/" "${tools[@]}") ||
  die "go build failed in $work"
# go names the binary of go.etcd.io/etcd/server/v3 after "server" (the element before /v3).
for name in server v3; do [[ -x "$out/$name" ]] && mv "$out/$name" "$out/etcd"; done

for b in "${binaries[@]}"; do [[ -x "$out/$b" ]] || die "go build did not produce $b"; done
rm -rf "$bin_dir"
mkdir -p "$(dirname "$bin_dir")"
{
  echo "K8S_VERSION=${K8S_VERSION}"
  echo "ETCD_VERSION=${etcd_version}"
  echo "HELM_VERSION=${HELM_VERSION}"
  echo "GO_VERSION=$(go env GOVERSION)"
  echo "BUILD_SECONDS=$((SECONDS - start))"
} >"$out/versions.env"
cp "$work/go.mod" "$out/wrapper.go.mod"
touch "$out/.complete"
mv "$out" "$bin_dir"
rm -rf "$work"
log "built in $((SECONDS - start))s: $bin_dir"
echo "$bin_dir"
