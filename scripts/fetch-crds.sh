#!/usr/bin/env bash
# The CustomResourceDefinitions of the projects kmdr backs up, as each project
# publishes them in its own Go source module at a pinned version, never
# written by hand: read from the module the Go module proxy serves
# (`go mod download -json MODULE@VERSION` names the extracted directory) and
# copied into a versioned cache directory, one per set of pins:
#   ${KMDR_CRDS_CACHE:-~/.cache/kmdr}/crds-<hash of the pins>/*.yaml
# with SOURCES there saying which module, version and path each file is.
# Idempotent: a set already copied is not fetched again. Prints the directory.
#
# Not in the set, because the module proxy serves no version of it:
#   github.com/clastix/cluster-api-control-plane-provider-kamaji (KamajiControlPlane).
# Kamaji publishes Go module versions only for its stable tags; v1.0.0 is the
# newest one served (its later "edge" releases are not module versions): its
# TenantControlPlane has no spec.dataStoreSchema / spec.dataStoreUsername yet.
set -euo pipefail
command -v go >/dev/null || { echo "fetch-crds: no go on PATH: install Go 1.26 (the module proxy must be reachable)" >&2; exit 1; }

# MODULE VERSION PATH-IN-MODULE, one CRD file a line.
pins='
github.com/clastix/kamaji v1.0.0 config/crd/bases/kamaji.clastix.io_tenantcontrolplanes.yaml
github.com/clastix/kamaji v1.0.0 config/crd/bases/kamaji.clastix.io_datastores.yaml
sigs.k8s.io/cluster-api v1.13.6 config/crd/bases/cluster.x-k8s.io_clusters.yaml
github.com/kubernetes-csi/external-snapshotter/client/v8 v8.7.0 config/crd/snapshot.storage.k8s.io_volumesnapshots.yaml
github.com/kubernetes-csi/external-snapshotter/client/v8 v8.7.0 config/crd/snapshot.storage.k8s.io_volumesnapshotcontents.yaml
github.com/kubernetes-csi/external-snapshotter/client/v8 v8.7.0 config/crd/snapshot.storage.k8s.io_volumesnapshotclasses.yaml
github.com/vmware-tanzu/velero v1.18.3 config/crd/v1/bases/velero.io_backups.yaml
github.com/vmware-tanzu/velero v1.18.3 config/crd/v1/bases/velero.io_restores.yaml
github.com/vmware-tanzu/velero v1.18.3 config/crd/v1/bases/velero.io_schedules.yaml
'

set_id=$(printf '%s' "$pins" | sha256sum | cut -c1-12)
dir=${KMDR_CRDS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kmdr}/crds-$set_id
if [ ! -f "$dir/SOURCES" ]; then
  echo "fetch-crds: reading the CRDs from their Go modules into $dir" >&2
  rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
  work=$(mktemp -d) && trap 'rm -rf "$work"' EXIT
  # Outside any module, so that no go.mod around here changes what is fetched.
  declare -A module_dir=()
  while read -r module version path; do
    [ -n "$module" ] || continue
    key=$module@$version
    if [ -z "${module_dir[$key]:-}" ]; then
      json=$(cd "$work" && go mod download -json "$key") || {
        echo "fetch-crds: the module proxy did not serve $key:" >&2
        echo "$json" | sed -n 's/.*"Error": //p' >&2
        exit 1
      }
      module_dir[$key]=$(echo "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    fi
    src=${module_dir[$key]}/$path
    [ -f "$src" ] || { echo "fetch-crds: $key has no $path" >&2; exit 1; }
    install -m 644 "$src" "$dir.tmp/"
    echo "$(basename "$path") $key $path" >>"$dir.tmp/SOURCES"
  done <<<"$pins"
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
fi
echo "$dir"
