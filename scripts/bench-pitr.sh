#!/usr/bin/env bash
# Point-in-time restore of a whole etcd: the same state restored from a full
# backup (`kmdr restore etcd ID --to-file`) and from an older full backup plus
# the delta segments kmdr serve captured after it (`--at now`, replayed in a
# scratch etcd), side by side, in one run.
#   scripts/bench-pitr.sh [BASE_KEYS] [CHANGES]      (default 20000 keys of 1 KiB, 40000 changes)
set -euo pipefail
cd "$(dirname "$0")/.."
KEYS=${1:-20000}
CHANGES=${2:-40000}
source scripts/bench-common.sh
LOAD=$TARGET/examples/etcd_load
export KMDR_REPO="$W/repo" KMDR_KEY_FILE="$W/key"
$KMDR repo init >/dev/null
$LOAD --endpoint http://127.0.0.1:$CP --keys "$KEYS" --value-size 1024 >/dev/null
cat > "$W/plan.yaml" <<YAML
version: 1
name: bench
repository:
  url: $W/repo
  keyFile: $W/key
layers:
  under-cluster:
    rto: 1h
    rpo: 1h
    etcd:
      endpoints: [http://127.0.0.1:$CP]
YAML
$KMDR serve --plan "$W/plan.yaml" --metrics-addr 127.0.0.1:$MP 2>"$W/serve.log" &
SERVE=$!
until curl -sf localhost:$MP/readyz >/dev/null; do sleep 0.2; done
# CHANGES single-key revisions: rewrites of every key, one put per revision.
done_changes=0; seed=2
while [ $done_changes -lt "$CHANGES" ]; do
  $LOAD --endpoint http://127.0.0.1:$CP --keys "$KEYS" --value-size 1024 --rewrite-percent 100 --batch 1 --seed $seed >/dev/null
  done_changes=$((done_changes + KEYS)); seed=$((seed + 1))
done
REV=$(etcdctl --endpoints 127.0.0.1:$CP endpoint status -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Status"]["header"]["revision"])')
until curl -s localhost:$MP/metrics | grep -q "^kmdr_delta_revision{.*} $REV\$"; do sleep 0.2; done
kill -TERM $SERVE; wait $SERVE
FULL=$($KMDR backup etcd --endpoints http://127.0.0.1:$CP -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
t() { local s; s=$(date +%s.%N); "$@" >/dev/null; python3 -c "print(f'{$(date +%s.%N)-$s:.2f}')"; }
T_FULL=$(t $KMDR restore etcd "$FULL" --to-file "$W/full.db")
T_PITR=$(t $KMDR restore etcd latest --revision "$REV" --to-file "$W/pitr.db")
SEGS=$(find "$W/repo/deltas" -type f | wc -l)
python3 - "$KEYS" "$done_changes" "$REV" "$SEGS" "$T_FULL" "$T_PITR" "$PROFILE" <<'PY'
import sys
keys, changes, rev, segs, full, pitr, profile = sys.argv[1:]
full, pitr, changes = float(full), float(pitr), int(changes)
print(f"etcd with {keys} keys of 1 KiB, then {changes} changes (revision {rev}, {segs} delta segments), {profile} build")
print(f"| full backup of revision {rev} -> snapshot file | {full:.2f} s |")
print(f"| older full backup + {changes} revisions replayed -> snapshot file | {pitr:.2f} s ({changes/max(pitr-full,0.01):,.0f} revisions/s replayed) |")
print(f"| ratio (point in time / full) | {pitr/full:.1f}x |")
PY
