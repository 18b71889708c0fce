#!/usr/bin/env bash
# End to end against a REAL kMetal under-cluster: the Kubernetes layers of
# kmdr (backup tenants, restore tenants --dry-run and real, backup/restore
# platform, watch). CI runs it against the lab's real kube-apiserver
# (scripts/test-e2e-cluster.sh: `kmdr lab up` with the platform's Helm
# release and Kamaji objects), so the script is itself tested.
#
# Usage:
#   scripts/e2e-cluster.sh [--release NAME] [-n NAMESPACE] [--tenant NS/NAME]
#   KUBECONFIG / KUBE_CONTEXT=name   which cluster (default: the current context)
#   KMDR=path/to/kmdr                (default: target/debug/kmdr, built if missing)
#   KMDR_E2E_DATASTORE_ENDPOINT=DS=HOST:PORT   when kmdr cannot reach a DataStore's
#                                    spec.endpoints from here (e.g. a kubectl port-forward)
#   KMDR_E2E_RESTORE=1               ALSO run a real `restore tenants --force --only TENANT`:
#                                    it rewrites that tenant's datastore schema with the
#                                    backup just taken (writes made in between are lost)
#                                    and re-applies its manifests. Use a scratch tenant.
#   KMDR_E2E_PLAN=kmdr.yaml          ALSO the persistent-data layer: a plan whose
#                                    persistent-data layer has `volumes:` entries (CSI,
#                                    Velero, Kasten; docs/volumes.md). Its backup drives the
#                                    tool for real (a VolumeSnapshot / Velero Backup / K10
#                                    RunAction is created); the restore is --dry-run only.
#
# What it does (a throw-away repository in a temp dir, removed at the end):
#   1. kmdr backup tenants --all (or --tenant): reads TCPs, DataStores, KCPs,
#      Clusters, Secrets and each tenant's datastore data;
#   2. kmdr restore tenants latest --dry-run: the plan; the script checks that
#      the TCPs' schemas match (no refusal) and that nothing was written;
#   3. kmdr restore tenants latest (no --force): expected to be REFUSED with
#      exit 8, because the live datastore still holds the tenants' keys, and to
#      change nothing; with KMDR_E2E_RESTORE=1, the real restore of one tenant;
#   4. kmdr backup platform + restore platform --dry-run (never --execute here);
#   5. with KMDR_E2E_PLAN: backup --plan --layer persistent-data, status, and
#      restore --plan --layer persistent-data --dry-run;
#   6. kmdr watch --until-healthy --timeout 5m.
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
release=kmetal
namespace=kmetal-system
tenant=
while [ $# -gt 0 ]; do
  case $1 in
    --release) release=$2; shift 2 ;;
    -n|--namespace) namespace=$2; shift 2 ;;
    --tenant) tenant=$2; shift 2 ;;
    -h|--help) sed -n '2,35p' "$0"; exit 0 ;;
    *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
kmdr=${KMDR:-$top/target/debug/kmdr}
[ -x "$kmdr" ] || (cd "$top" && cargo build -p kmdr)

kube_args=()
[ -n "${KUBE_CONTEXT:-}" ] && kube_args+=(--context "$KUBE_CONTEXT")
ds_args=()
[ -n "${KMDR_E2E_DATASTORE_ENDPOINT:-}" ] && ds_args+=(--datastore-endpoint "$KMDR_E2E_DATASTORE_ENDPOINT")
echo "cluster: $(kubectl "${kube_args[@]}" config current-context 2>/dev/null || echo '(KUBECONFIG or in-cluster)')"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export KMDR_REPO=$work/repo KMDR_KEY_FILE=$work/kmdr.key
"$kmdr" -q repo init

step() { echo; echo "== $*"; }
fail() { echo "E2E FAILED: $*" >&2; exit 1; }

step "1. backup tenants"
if [ -n "$tenant" ]; then sel=("$tenant"); else sel=(--all); fi
"$kmdr" backup tenants "${sel[@]}" "${kube_args[@]}" "${ds_args[@]}" -o json > "$work/tenants.json"
python3 - "$work/tenants.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
for t in m["source"]["tenants"]:
    assert t["schema"] and t["username"], t
    print(f'  {t["namespace"]}/{t["name"]}: schema {t["schema"]} user {t["username"]} '
          f'({", ".join(t["filled_from_status"]) or "from spec"}), {t["data"]["key_count"]} keys, '
          f'{len(t["secrets"])} Secrets, KCP {t["kamaji_control_plane"]}, Cluster {t["capi_cluster"]}')
    if not any(s == f'{t["name"]}-ca' for s in t["secrets"]):
        print(f'  WARNING: no {t["name"]}-ca Secret captured for {t["namespace"]}/{t["name"]}')
PY

step "2. restore tenants --dry-run"
before=$(kubectl "${kube_args[@]}" get tcp -A -o jsonpath='{range .items[*]}{.metadata.resourceVersion}{" "}{end}')
"$kmdr" restore tenants latest --dry-run --force "${kube_args[@]}" "${ds_args[@]}"
after=$(kubectl "${kube_args[@]}" get tcp -A -o jsonpath='{range .items[*]}{.metadata.resourceVersion}{" "}{end}')
[ "$before" = "$after" ] || fail "--dry-run changed a TenantControlPlane"

step "3. restore tenants (expected: refused, the datastore still holds the keys)"
set +e
"$kmdr" restore tenants latest "${kube_args[@]}" "${ds_args[@]}"
code=$?
set -e
[ $code -eq 8 ] || fail "expected exit 8 (refused), got $code"
after=$(kubectl "${kube_args[@]}" get tcp -A -o jsonpath='{range .items[*]}{.metadata.resourceVersion}{" "}{end}')
[ "$before" = "$after" ] || fail "a refused restore changed a TenantControlPlane"
if [ "${KMDR_E2E_RESTORE:-}" = 1 ]; then
  [ -n "$tenant" ] || fail "KMDR_E2E_RESTORE=1 needs --tenant NS/NAME (a scratch tenant)"
  step "3b. restore tenants --force --only $tenant"
  "$kmdr" restore tenants latest --force --only "$tenant" --timeout 15m "${kube_args[@]}" "${ds_args[@]}"
fi

step "4. backup platform, restore platform --dry-run"
"$kmdr" backup platform --release "$release" -n "$namespace" "${kube_args[@]}"
"$kmdr" restore platform latest --to "$work/platform" --dry-run

if [ -n "${KMDR_E2E_PLAN:-}" ]; then
  step "5. persistent-data: backup, status, restore --dry-run (plan $KMDR_E2E_PLAN)"
  # The plan names its own repository; use the throw-away one instead.
  sed "/^repository:/,/^[a-z]/{s#^\(\s*url:\).*#\1 $work/repo#; s#^\(\s*keyFile:\).*#\1 $work/kmdr.key#}" "$KMDR_E2E_PLAN" > "$work/plan.yaml"
  "$kmdr" plan check "$work/plan.yaml"
  "$kmdr" backup --plan "$work/plan.yaml" --layer persistent-data
  "$kmdr" status --plan "$work/plan.yaml" || true   # other layers have no backup here
  "$kmdr" restore --plan "$work/plan.yaml" --layer persistent-data --dry-run
fi

step "6. watch --until-healthy"
"$kmdr" watch --until-healthy --timeout 5m --interval 10s "${kube_args[@]}"

echo
echo "E2E OK"
