#!/usr/bin/env bash
# Compaction (issue 17, item 4): a restore to the newest point after EVENTS
# delta events, with compaction (`kmdr serve --compact-after-events THRESHOLD`)
# and without (`--compact-after-events 0`), against a full restore of the same
# state, side by side in one run, for a tenant (`restore tenant --at now` into
# another etcd) and for the whole etcd (`restore etcd --at now --to-file`).
#
# One etcd holds KEYS keys `/bench/key-*` (tenant `bench`, and the whole
# keyspace), two `kmdr serve` capture it into two repositories, then
# etcd_load rewrites keys (transactions of 128 puts) until EVENTS changes were
# made: all but 0.9 x THRESHOLD first, then, once the compacting serve has
# caught up, a tail that brings the longer of its two pending chains to
# 0.9 x THRESHOLD changes after its newest (synthesised) full backup: close
# to the longest tail a compacted chain can have (the worst case for a restore).
#
#   scripts/bench-compact.sh [KEYS] [EVENTS] [THRESHOLD]
#   (default 100000 keys of 256 B, 1000000 events, compaction after 100000)
# etcd, etcdctl and etcdutl come from PATH (else scripts/tools-env.sh);
# KMDR_BENCH_PROFILE=release|debug (default release).
set -euo pipefail
cd "$(dirname "$0")/.."
KEYS=${1:-100000}
EVENTS=${2:-1000000}
THRESH=${3:-100000}
VALUE=${KMDR_BENCH_VALUE_SIZE:-256}
command -v etcd >/dev/null && command -v etcdutl >/dev/null || source scripts/tools-env.sh
PROFILE=${KMDR_BENCH_PROFILE:-release}
FLAG=; [ "$PROFILE" = release ] && FLAG=--release
cargo build $FLAG -q --workspace --bins --examples  # one feature set for every bench script
TARGET=${CARGO_TARGET_DIR:-target}/$PROFILE
KMDR=$TARGET/kmdr
LOAD=$TARGET/examples/etcd_load
W=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait; rm -rf "$W"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start_etcd() { # name client-port peer-port
  etcd --name "$1" --data-dir "$W/$1" --listen-client-urls "http://127.0.0.1:$2" --advertise-client-urls "http://127.0.0.1:$2" \
    --listen-peer-urls "http://127.0.0.1:$3" --initial-advertise-peer-urls "http://127.0.0.1:$3" \
    --initial-cluster "$1=http://127.0.0.1:$3" --quota-backend-bytes 8589934592 --log-level error >/dev/null 2>&1 &
  until etcdctl --endpoints "127.0.0.1:$2" endpoint health >/dev/null 2>&1; do sleep 0.2; done
}
CP=$(port); DP=$(port)
start_etcd src "$CP" "$(port)"
start_etcd dst "$DP" "$(port)"
SRC=http://127.0.0.1:$CP
DST=etcd://127.0.0.1:$DP
$LOAD --endpoint "$SRC" --keys "$KEYS" --value-size "$VALUE" >/dev/null

# Two repositories, one serve each: with compaction ("on") and without ("off").
declare -A MP SERVE
for r in on off; do
  mkdir -p "$W/$r"
  KMDR_REPO="$W/$r/repo" KMDR_KEY_FILE="$W/$r/key" $KMDR repo init >/dev/null
  cat >"$W/$r/plan.yaml" <<YAML
version: 1
name: bench-compact-$r
repository:
  url: $W/$r/repo
  keyFile: $W/$r/key
layers:
  under-cluster:
    rto: 1h
    rpo: 24h
    etcd:
      endpoints: [$SRC]
  tenant-control-planes:
    rto: 1h
    rpo: 24h
    datastores:
      - name: src
        url: etcd://127.0.0.1:$CP
        tenants: [bench]
YAML
  MP[$r]=$(port)
done
$KMDR serve --plan "$W/on/plan.yaml" --metrics-addr "127.0.0.1:${MP[on]}" \
  --compact-after-events "$THRESH" --compact-after-bytes 0 --compact-after-percent 0 2>"$W/on/serve.log" &
SERVE[on]=$!
$KMDR serve --plan "$W/off/plan.yaml" --metrics-addr "127.0.0.1:${MP[off]}" \
  --compact-after-events 0 --compact-after-bytes 0 --compact-after-percent 0 2>"$W/off/serve.log" &
SERVE[off]=$!
for r in on off; do until curl -sf "localhost:${MP[$r]}/readyz" >/dev/null; do sleep 0.2; done; done
metric() { # repo metric unit -> value (0 when absent)
  curl -s "localhost:${MP[$1]}/metrics" | awk -v m="$2" -v u="unit=\"$3\"" 'index($0, m "{") == 1 && index($0, u) { v = $2 } END { print v + 0 }'
}
revision() { etcdctl --endpoints "127.0.0.1:$CP" endpoint status -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Status"]["header"]["revision"])'; }
caught_up() { # every capture of both serves at the source's revision, no compaction due in "on"
  local rev; rev=$(revision)
  for r in on off; do for u in etcd src/bench; do
    [ "$(metric "$r" kmdr_delta_revision "$u")" -ge "$rev" ] || return 1
  done; done
  for u in etcd src/bench; do [ "$(metric on kmdr_delta_events_since_full "$u")" -lt "$THRESH" ] || return 1; done
}
rewrite() { # EVENTS changes of existing keys, 100% passes then the rest
  local n=$1 seed=$2
  while [ "$n" -gt 0 ]; do
    local pct; pct=$(python3 -c "print(min(100.0, 100.0 * $n / $KEYS))")
    $LOAD --endpoint "$SRC" --keys "$KEYS" --value-size "$VALUE" --rewrite-percent "$pct" --seed "$seed" >/dev/null
    n=$((n - KEYS)); seed=$((seed + 1))
  done
}
W0=$(date +%s.%N)
rewrite $((EVENTS - THRESH * 9 / 10)) 2
until caught_up; do sleep 1; done
# The tail: what brings the longer pending chain of the two series to 0.9 x THRESHOLD.
P=$(( $(metric on kmdr_delta_events_since_full etcd) > $(metric on kmdr_delta_events_since_full src/bench) ?
      $(metric on kmdr_delta_events_since_full etcd) : $(metric on kmdr_delta_events_since_full src/bench) ))
TAIL=$(( THRESH * 9 / 10 - P ))
[ "$TAIL" -gt 0 ] && rewrite "$TAIL" 1000
until caught_up; do sleep 1; done
W1=$(date +%s.%N)
REV=$(revision)
CAPTURED=$(metric off kmdr_delta_events_total src/bench)
COMPACTIONS="$(metric on kmdr_compactions_total src/bench) tenant, $(metric on kmdr_compactions_total etcd) etcd"
for r in on off; do kill -TERM "${SERVE[$r]}"; wait "${SERVE[$r]}"; done

# Restores, timed. A point-in-time restore to now: "on" and "off"; then a full
# backup of the same state (into "off", after its point restores) restored.
t() { local s; s=$(date +%s.%N); "$@" >"$W/last.json"; python3 -c "print(f'{$(date +%s.%N)-$s:.2f}')"; }
as() { local r=$1; shift; KMDR_REPO="$W/$r/repo" KMDR_KEY_FILE="$W/$r/key" "$@"; }
jq_() { python3 -c "import json,sys; d=json.load(open('$W/last.json')); print($1)"; }
T_ON_T=$(t as on $KMDR restore tenant latest --source-schema bench --at now --datastore "$DST" --schema on -o json)
SEG_ON_T=$(jq_ 'len(d["point"]["segments"])'); EV_ON_T=$(jq_ 'd["point"]["revision"]-d["point"]["base_revision"]')
T_OFF_T=$(t as off $KMDR restore tenant latest --source-schema bench --at now --datastore "$DST" --schema off -o json)
SEG_OFF_T=$(jq_ 'len(d["point"]["segments"])')
T_ON_E=$(t as on $KMDR restore etcd latest --at now --to-file "$W/on.db" -o json)
SEG_ON_E=$(jq_ 'len(d["point"]["segments"])'); EV_ON_E=$(jq_ 'd["outcome"]["events"]'); SCR_ON_E=$(jq_ 'd["outcome"]["duration_ms"]/1000')
T_OFF_E=$(t as off $KMDR restore etcd latest --at now --to-file "$W/off.db" -o json)
SEG_OFF_E=$(jq_ 'len(d["point"]["segments"])'); EV_OFF_E=$(jq_ 'd["outcome"]["events"]'); SCR_OFF_E=$(jq_ 'd["outcome"]["duration_ms"]/1000')
id_of() { python3 -c 'import json,sys; d=json.load(sys.stdin); print((d[0] if isinstance(d, list) else d)["id"])'; }
FULL_T=$(as off $KMDR backup tenant --datastore "etcd://127.0.0.1:$CP" --schema bench -o json | id_of)
FULL_E=$(as off $KMDR backup etcd --endpoints "$SRC" -o json | id_of)
T_FULL_T=$(t as off $KMDR restore tenant "$FULL_T" --datastore "$DST" --schema full -o json)
T_FULL_E=$(t as off $KMDR restore etcd "$FULL_E" --to-file "$W/full.db" -o json)

# The three restores of each kind hold the same state.
keys() { # count and hash of the keys (relative to /<schema>) and values
  etcdctl --endpoints "127.0.0.1:$DP" get "/$1/" --prefix -w json | python3 -c '
import base64, hashlib, json, sys
kvs = json.load(sys.stdin).get("kvs", [])
n = len(sys.argv[1]) + 1
rows = sorted((base64.b64decode(k["key"])[n:], base64.b64decode(k["value"])) for k in kvs)
print(len(rows), hashlib.sha256(repr(rows).encode()).hexdigest()[:16])' "$1"
}
for s in on off full; do echo "tenant restore /$s/: $(keys $s) (keys, content hash)"; done
for f in on off full; do echo "etcd $f.db: $(etcdutl snapshot status "$W/$f.db" -w json)"; done

python3 - "$KEYS" "$VALUE" "$CAPTURED" "$REV" "$THRESH" "$COMPACTIONS" "$PROFILE" "$(python3 -c "print(f'{$W1-$W0:.0f}')")" \
  "$T_FULL_T" "$T_ON_T" "$T_OFF_T" "$SEG_ON_T" "$EV_ON_T" "$SEG_OFF_T" \
  "$T_FULL_E" "$T_ON_E" "$T_OFF_E" "$SEG_ON_E" "$EV_ON_E" "$SEG_OFF_E" "$EV_OFF_E" "$SCR_ON_E" "$SCR_OFF_E" \
  "$(stat -c %s "$W/full.db")" <<'PY'
import sys
(keys, value, captured, rev, thresh, compactions, profile, wtime,
 ft, ont, offt, segont, revont, segofft,
 fe, one, offe, segone, evone, segoffe, evoffe, scron, scroff, dbsize) = sys.argv[1:]
ft, ont, offt, fe, one, offe = map(float, (ft, ont, offt, fe, one, offe))
print(f"{keys} keys of {value} B; {int(float(captured)):,} delta events captured per series in {wtime} s (revision {rev}); "
      f"compaction after {int(thresh):,} events: {compactions} compactions; {profile} build")
print("| restore to the newest point | tenant `bench` | ratio | whole etcd | ratio |")
print("|---|---|---|---|---|")
print(f"| full backup of the same state | {ft:.2f} s | 1.00x | {fe:.2f} s | 1.00x |")
print(f"| with compaction: synthesised base + {segont} / {segone} segments | {ont:.2f} s | {ont/ft:.2f}x | {one:.2f} s | {one/fe:.2f}x |")
print(f"| without: first base + {segofft} / {segoffe} segments | {offt:.2f} s | {offt/ft:.2f}x | {offe:.2f} s | {offe/fe:.2f}x |")
print(f"(etcd replayed {evone} events with compaction, {evoffe} without, in a scratch etcd that took {float(scron):.2f} s and {float(scroff):.2f} s "
      f"of those restores (etcdutl restore of the base, start, replay, snapshot; snapshot {int(dbsize)/2**20:.0f} MiB); "
      f"the tenant's chain after the synthesised base spans {revont} revisions)")
PY
