#!/usr/bin/env bash
# Build the Go components kmdr's tests, lab and benchmarks run, from their
# source modules at the versions pinned in tools/go/*/go.mod (and go.sum):
#   etcd, etcdctl, etcdutl 3.6   (tools/go/etcd-3.6)
#   kine 0.17                    (tools/go/kine-0.17)
# into a versioned cache directory, one per tool set and version:
#   ${KMDR_TOOLS_CACHE:-~/.cache/kmdr/tools}/etcd-v3.6.16/bin/{etcd,etcdctl,etcdutl}
#   ${KMDR_TOOLS_CACHE:-~/.cache/kmdr/tools}/kine-v0.17.5/bin/kine
# Idempotent: a tool set whose binaries and stamp file are there is not
# built again. Prints the bin directories, one per line, on stdout.
# Nothing is downloaded but Go modules from the module proxy.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cache=${KMDR_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kmdr/tools}
command -v go >/dev/null || { echo "build-go-tools: no go on PATH: install Go 1.26 (the module proxy must be reachable)" >&2; exit 1; }

# The version a go.mod pins for a module.
pinned() { awk -v m="$2" '$1 == m && $2 ~ /^v[0-9]/ { print $2; exit }' "$1/go.mod"; }

# build SET-DIR NAME MODULE BIN=PACKAGE...
build() {
  local src=$top/tools/go/$1 name=$2 module=$3
  shift 3
  local version
  version=$(pinned "$src" "$module")
  [ -n "$version" ] || { echo "build-go-tools: $src/go.mod does not pin $module" >&2; exit 1; }
  local dir=$cache/$name-$version
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
      (cd "$src" && CGO_ENABLED=0 go build -trimpath -o "$dir.tmp/bin/${spec%%=*}" "${spec#*=}")
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
