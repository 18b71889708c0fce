#!/usr/bin/env bash
# What a write-only agent key costs (issue 15): `kmdr backup etcd` into a
# repository of format 1 with its full key, and into the same repository
# upgraded to format 2 with a write-only key (objects sealed to the recipient
# key), side by side in one run, on the scripts/bench-etcd.sh data (1 KiB
# pseudo-random values). Both repositories start as copies of one empty
# format-1 repository, so they share the chunker and the chunk-naming key: the
# same data cuts into the same chunks, and any difference in time or bytes is
# the format's. Rounds alternate which repository goes first; the median of
# each side is compared. Then 1% of the keys are rewritten and a second backup
# goes into each: the bytes it adds are compared too.
#
#   scripts/bench-keys.sh [KEYS] [ROUNDS]        (default 200000 keys, 7 rounds)
#   KMDR_BENCH_PROFILE=release (default here) | debug
#
# Prints a Markdown table for docs/benchmarks.md (also written to target/bench-keys.md).
set -euo pipefail
cd "$(dirname "$0")/.."
KEYS=${1:-200000}
ROUNDS=${2:-7}
export KMDR_BENCH_PROFILE=${KMDR_BENCH_PROFILE:-release}
source scripts/bench-common.sh
LOAD=$TARGET/examples/etcd_load
EP=http://127.0.0.1:$CP
unset KMDR_REPO KMDR_KEY_FILE

$LOAD --endpoint "$EP" --keys "$KEYS" --value-size 1024 --seed 1 >/dev/null
# The empty repositories every round copies: v1 with its full key, and the
# same repository upgraded to format 2 with a write-only key added.
$KMDR -q --repo "$W/v1.empty" --key-file "$W/full.key" repo init --format 1 >/dev/null
cp -a "$W/v1.empty" "$W/v2.empty"
cp "$W/full.key" "$W/full2.key"
$KMDR -q --repo "$W/v2.empty" --key-file "$W/full2.key" repo upgrade >/dev/null
$KMDR -q --repo "$W/v2.empty" --key-file "$W/full2.key" key add --write-only --out "$W/agent.key" >/dev/null

# backup NAME: a fresh copy of that side's empty repository, one timed backup.
# Appends the wall seconds to $W/NAME.times.
backup() {
  local name=$1 key repo=$W/$1
  if [ "$name" = v1 ]; then key=$W/full.key; else key=$W/agent.key; fi
  rm -rf "$repo" && cp -a "$W/$name.empty" "$repo"
  sync
  local t0=$EPOCHREALTIME
  /usr/bin/time -f '%U %S' -o "$W/cpu" $KMDR -q --repo "$repo" --key-file "$key" backup etcd --endpoints "$EP" >/dev/null
  awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f\n", b - a }' >>"$W/$name.times"
  awk '{ printf "%.3f\n", $1 + $2 }' "$W/cpu" >>"$W/$name.cpu"
}
# One warm-up of each, not counted: the first read of etcd's db pays its page cache.
backup v1; backup v2; rm -f "$W"/v1.times "$W"/v2.times "$W"/v1.cpu "$W"/v2.cpu
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then backup v1; backup v2; else backup v2; backup v1; fi
done

# The second backup after 1% churn, into the last round's two repositories.
du_b() { du -sb "$1" | cut -f1; }
B1=$(du_b "$W/v1") B2=$(du_b "$W/v2")
$LOAD --endpoint "$EP" --keys "$KEYS" --value-size 1024 --rewrite-percent 1 --seed 2 >/dev/null
$KMDR -q --repo "$W/v1" --key-file "$W/full.key" backup etcd --endpoints "$EP" >/dev/null
$KMDR -q --repo "$W/v2" --key-file "$W/agent.key" backup etcd --endpoints "$EP" >/dev/null
A1=$(( $(du_b "$W/v1") - B1 )) A2=$(( $(du_b "$W/v2") - B2 ))

# The full key reads what the agent wrote, identically (the same snapshot
# revision means the same bytes).
$KMDR -q --repo "$W/v2" --key-file "$W/full2.key" restore etcd latest --to-file "$W/v2.db"
$KMDR -q --repo "$W/v1" --key-file "$W/full.key" restore etcd latest --to-file "$W/v1.db"
DB=$(etcdctl --endpoints "$EP" endpoint status -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Status"]["dbSize"])')
# The same data (etcdutl's hash over keys and values, revision, key count); the
# files of two snapshots need not be byte-identical.
status() { etcdutl snapshot status "$1" -w json | python3 -c 'import json,sys; s=json.load(sys.stdin); print(s["hash"], s["revision"], s["totalKey"])'; }
[ "$(status "$W/v1.db")" = "$(status "$W/v2.db")" ] && SAME="yes: the same keys, values and revision" || SAME="NO: $(status "$W/v1.db") vs $(status "$W/v2.db")"

REV=$(git rev-parse --short HEAD)
[ -z "$(git status --porcelain --untracked-files=no)" ] || REV="$REV (modified)"
python3 - "$W" "$KEYS" "$ROUNDS" "$B1" "$B2" "$A1" "$A2" "$DB" "$SAME" "$REV" "$PROFILE" <<'PY' | tee target/bench-keys.md
import statistics, sys
w, keys, rounds, b1, b2, a1, a2, db, same, rev, profile = sys.argv[1:]
t1 = [float(x) for x in open(f"{w}/v1.times")]
t2 = [float(x) for x in open(f"{w}/v2.times")]
c1 = [float(x) for x in open(f"{w}/v1.cpu")]
c2 = [float(x) for x in open(f"{w}/v2.cpu")]
m1, m2 = statistics.median(t1), statistics.median(t2)
n1, n2 = statistics.median(c1), statistics.median(c2)
mib = lambda b: f"{int(b) / 1048576:.1f} MiB"
print(f"### Write-only keys: format 2 vs format 1 ({int(keys):,} keys of 1 KiB, etcd db {mib(db)}, {profile} build, kmdr {rev})")
print()
print("| | format 1, full key | format 2, write-only key | ratio 2 / 1 |")
print("|---|---:|---:|---:|")
print(f"| `kmdr backup etcd` into an empty repository, median of {rounds} | {m1:.2f} s | {m2:.2f} s | {m2 / m1:.3f}x |")
print(f"| the {rounds} runs (wall s) | {', '.join(f'{x:.2f}' for x in t1)} | {', '.join(f'{x:.2f}' for x in t2)} | |")
print(f"| CPU time (user + sys) of kmdr, median | {n1:.2f} s | {n2:.2f} s | {n2 / n1:.3f}x |")
print(f"| repository after the first backup | {mib(b1)} | {mib(b2)} | {int(b2) / int(b1):.3f}x |")
print(f"| bytes added by a second backup after 1% churn | {mib(a1)} | {mib(a2)} | {int(a2) / int(a1):.3f}x |")
print(f"| the full key restores the agent's and the v1 latest backup, same data | {same} | | |")
print()
print(f"Reproduce: `scripts/bench-keys.sh {keys} {rounds}`")
PY
