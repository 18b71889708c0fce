#!/usr/bin/env bash
# Build the Go components kmdr's tests, lab and benchmarks run, from their
# source modules at the versions pinned in tools/go/*/go.mod (and go.sum):
#   etcd, etcdctl, etcdutl 3.6   (tools/go/etcd-3.6)
#   kine 0.17                    (tools/go/kine-0.17)
#   kube-apiserver 1.34          (tools/go/kube-apiserver-1.34: k8s.io/kubernetes
#                                 v1.34.4, every staging module pinned to v0.34.4)
#   helm 4                       (tools/go/helm-4)
#   kubectl 1.34                 (tools/go/kubectl-1.34: k8s.io/kubectl v0.34.4 and
#                                 Kubernetes' own 20-line main; for scripts/e2e-cluster.sh)
# into a versioned cache directory, one per tool set and version:
#   ${KMDR_TOOLS_CACHE:-~/.cache/kmdr/tools}/etcd-v3.6.16/bin/{etcd,etcdctl,etcdutl}
#   ${KMDR_TOOLS_CACHE:-~/.cache/kmdr/tools}/kine-v0.17.5/bin/kine
#   ${KMDR_TOOLS_CACHE:-~/.cache/kmdr/tools}/kube-apiserver-v1.34.4/bin/kube-apiserver
#   ${KMDR_TOOLS_CACHE:-~/.cache/kmdr/tools}/helm-v4.3.2/bin/helm
#   ${KMDR_TOOLS_CACHE:-~/.cache/kmdr/tools}/kubectl-v0.34.4/bin/kubectl
# kube-apiserver is the long one: 14 minutes cold on 2 busy cores (9.5 CPU-minutes),
# helm 4.5 minutes, kubectl 2 (after kube-apiserver: most packages are shared); etcd and kine a few each.
# KMDR_GO_TOOLS (space-separated names: etcd kine kube-apiserver helm kubectl; default
# all) limits what is built and printed: scripts/try.sh's lab needs only etcd and kine.
# Idempotent: a tool set whose binaries and stamp file are there is not
# built again. Prints the bin directories, one per line, on stdout.
# Nothing is downloaded but Go modules from the module proxy.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cache=${KMDR_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kmdr/tools}
command -v go >/dev/null || { echo "build-go-tools: no go on PATH: install Go 1.26 (the module proxy must be reachable)" >&2; exit 1; }

# The version a go.mod pins for a module.
pinned() { awk -v m="$2" '$1 == m && $2 ~ /^v[0-9]/ { print $2; exit }' "$1/go.mod"; }

# [ldflags=FLAGS] build SET-DIR NAME MODULE BIN=PACKAGE...
# ldflags may name the pinned version as @VERSION@.
build() {
  local src=$top/tools/go/$1 name=$2 module=$3
  case " ${KMDR_GO_TOOLS:-etcd kine kube-apiserver helm kubectl} " in *" $name "*) ;; *) return 0 ;; esac
  shift 3
  local version
  version=$(pinned "$src" "$module")
  [ -n "$version" ] || { echo "build-go-tools: $src/go.mod does not pin $module" >&2; exit 1; }
  local dir=$cache/$name-$version
  local ldflags=${ldflags:-}
  local ok=1
  [ -f "$dir/built" ] || ok=0
  for spec in "$@"; do
    [ -x "$dir/bin/${spec%%=*}" ] || ok=0
  done
  if [ $ok = 0 ]; then
    local start=$SECONDS
    echo "build-go-tools: building $name $version into $dir (first time on this machine: a few minutes)" >&2
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp/bin"
    for spec in "$@"; do
      (cd "$src" && CGO_ENABLED=0 go build -trimpath -ldflags "${ldflags//@VERSION@/$version}" \
        -o "$dir.tmp/bin/${spec%%=*}" "${spec#*=}")
    done
    echo "$name $version, built $(date -u +%FT%TZ) with $(go env GOVERSION)" >"$dir.tmp/built"
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
    echo "build-go-tools: $name $version built in $((SECONDS - start))s" >&2
  fi
  echo "$dir/bin"
}

build etcd-3.6 etcd go.etcd.io/etcd/server/v3 \
  etcd=go.etcd.io/etcd/server/v3 etcdctl=go.etcd.io/etcd/etcdctl/v3 etcdutl=go.etcd.io/etcd/etcdutl/v3
build kine-0.17 kine github.com/k3s-io/kine kine=github.com/k3s-io/kine
# Both say their version only when the build sets it, as their release builds
# do (Kubernetes' hack/lib/version.sh, helm's Makefile): without it
# kube-apiserver's /version says v0.0.0-master, which clients (helm's
# kubeVersion checks among them) compare against.
kv='-X k8s.io/component-base/version.gitVersion=@VERSION@ -X k8s.io/component-base/version.gitTreeState=clean'
kv+=' -X k8s.io/client-go/pkg/version.gitVersion=@VERSION@ -X k8s.io/client-go/pkg/version.gitTreeState=clean'
kv+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=34"
ldflags=$kv build kube-apiserver-1.34 kube-apiserver k8s.io/kubernetes \
  kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver
ldflags='-X helm.sh/helm/v4/internal/version.version=@VERSION@' build helm-4 helm helm.sh/helm/v4 helm=helm.sh/helm/v4/cmd/helm
# kubectl says the Kubernetes release its staging module v0.X.Y belongs to, v1.X.Y.
kctl=$(pinned "$top/tools/go/kubectl-1.34" k8s.io/kubectl)
ldflags=${kv//@VERSION@/v1.${kctl#v0.}} build kubectl-1.34 kubectl k8s.io/kubectl kubectl=.
