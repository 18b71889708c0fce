#!/usr/bin/env bash
# Run scripts/e2e-cluster.sh, the end-to-end script a user runs against their
# own under-cluster, against the lab's real kube-apiserver: `kmdr lab up`
# starts it with the platform's Helm release (installed by helm) and the
# tenants' Kamaji objects in front of the lab's tenant etcd. Also the real
# restore of one tenant (KMDR_E2E_RESTORE=1). Needs kube-apiserver, helm,
# kubectl and the CRDs (source scripts/tools-env.sh); the lab without them
# fails this script, never skips it.
# Usage: scripts/test-e2e-cluster.sh [path/to/kmdr]
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
kmdr=${1:-$top/target/debug/kmdr}
dir=$(mktemp -d)
trap '"$kmdr" -q lab down --dir "$dir" >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
"$kmdr" lab up --dir "$dir" --tenants 3 --keys 200
if [ ! -f "$dir/kube/kubeconfig" ] || ! grep -q '"kamaji": true' "$dir/lab.json"; then
  echo "test-e2e-cluster: the lab runs no Kubernetes API server with the Kamaji objects (see its notes above): source scripts/tools-env.sh" >&2
  exit 1
fi
KMDR=$kmdr KUBECONFIG=$dir/kube/kubeconfig KMDR_E2E_RESTORE=1 \
  "$top/scripts/e2e-cluster.sh" --release kmetal -n kmetal-system --tenant tenants/acme
