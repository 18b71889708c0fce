#!/usr/bin/env bash
# Check `kmdr backup platform` and `kmdr restore platform --dry-run` against a
# REAL cluster: the current kubectl context (or KUBECONFIG / --context below).
#
# Not run in CI: crates/kmdr/tests/cli/platform_real.rs runs the same commands
# against a real kube-apiserver with real helm, and scripts/e2e-cluster.sh
# (tested in CI against the lab) covers backup/restore platform too. Run it by
# hand on a machine whose kubectl reaches the under cluster:
#
#   scripts/check-platform-backup-real-cluster.sh [RELEASE] [NAMESPACE] [NS/SECRET ...]
#   RELEASE defaults to kmetal, NAMESPACE to kmetal-system.
#   KMDR=path/to/kmdr        (default: target/debug/kmdr, built if missing)
#   KUBE_CONTEXT=name        (default: kubectl's current context)
#
# It only READS the cluster (get/list Secrets in NAMESPACE, get each listed
# Secret): the backup goes to a throw-away repository in a temp dir, which is
# removed at the end, and the restore is a --dry-run plus a write into that
# temp dir. Nothing is installed. It then compares the captured values.yaml
# with `helm get values RELEASE -n NAMESPACE -o yaml` when helm is installed.
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
release=${1:-kmetal}
namespace=${2:-kmetal-system}
shift $(( $# > 2 ? 2 : $# ))
kmdr=${KMDR:-$top/target/debug/kmdr}
[ -x "$kmdr" ] || (cd "$top" && cargo build -p kmdr)

context_args=()
if [ -n "${KUBE_CONTEXT:-}" ]; then
  context_args=(--context "$KUBE_CONTEXT")
fi
echo "cluster: $(kubectl "${context_args[@]}" config current-context 2>/dev/null || echo '(in-cluster or KUBECONFIG)')"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export KMDR_REPO=$work/repo KMDR_KEY_FILE=$work/kmdr.key
"$kmdr" -q repo init

secret_args=()
for s in "$@"; do
  secret_args+=(--secret "$s")
done

echo "== kmdr backup platform --release $release -n $namespace ${secret_args[*]}"
"$kmdr" backup platform --release "$release" -n "$namespace" "${secret_args[@]}" "${context_args[@]}"
"$kmdr" backups show latest

echo "== kmdr restore platform latest --dry-run"
"$kmdr" restore platform latest --to "$work/restore" --dry-run "${context_args[@]}"

echo "== kmdr restore platform latest (files only, into a temp dir)"
"$kmdr" restore platform latest --to "$work/restore" "${context_args[@]}"

if command -v helm >/dev/null; then
  helm get values "$release" -n "$namespace" -o json ${KUBE_CONTEXT:+--kube-context "$KUBE_CONTEXT"} > "$work/helm-values.json"
  python3 - "$work/restore/values.yaml" "$work/helm-values.json" <<'EOF'
import json, sys
try:
    import yaml
except ImportError:
    print("PyYAML not installed: compare by eye:", sys.argv[1], sys.argv[2]); sys.exit(0)
ours = yaml.safe_load(open(sys.argv[1])) or {}
helms = json.load(open(sys.argv[2])) or {}
if ours != helms:
    print("MISMATCH: kmdr's values.yaml differs from `helm get values`"); sys.exit(1)
print("OK: values.yaml equals `helm get values`")
EOF
else
  echo "helm not installed: skipped the comparison with \`helm get values\`"
fi
