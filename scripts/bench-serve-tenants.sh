#!/usr/bin/env bash
# kmdr serve with many tenants on one etcd (issue 17, item 2), in one run:
#  1. TENANTS tenants x KEYS keys seeded on one etcd 3.6 and backed up once
#     (`backup tenant --all`), then `kmdr serve` (tenants: all) started on the
#     repository: time until every capture runs, and etcd's own count of watch
#     streams and watchers (its /metrics) while serve runs;
#  2. RATE puts/s spread round-robin over the tenants for SECONDS: delta lag
#     (put acknowledged -> segment file renamed into the repository) p50/p99/max,
#     segment objects per second, serve's CPU (utime+stime from /proc) and RSS;
#     side by side, `etcdctl watch --prefix ""` (one watch of the same keyspace,
#     its output thrown away) and its CPU over the same load;
#  3. IDLE seconds with no write: the segment objects the idle tenants wrote,
#     as objects per hour per tenant.
#
#   scripts/bench-serve-tenants.sh [TENANTS] [KEYS] [RATE] [SECONDS] [IDLE]   (default 1000 20 2000 60 120)
#   KMDR_BENCH_PROFILE=release (default here) | debug
#   KMDR_BENCH_PERF=1: also `perf record` serve for 20 s of the load (target/bench-serve-tenants.perf.txt)
#
# Prints a Markdown table for docs/benchmarks.md (also target/bench-serve-tenants.md).
set -euo pipefail
cd "$(dirname "$0")/.."
TENANTS=${1:-1000}
KEYS=${2:-20}
RATE=${3:-2000}
SECS=${4:-60}
IDLE=${5:-120}
export KMDR_BENCH_PROFILE=${KMDR_BENCH_PROFILE:-release}
source scripts/bench-common.sh
EP=127.0.0.1:$CP
DS=etcd://$EP
export KMDR_REPO=$W/repo KMDR_KEY_FILE=$W/key
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }                  # clock ticks
pct() { awk -v a="$1" -v b="$2" -v hz="$(getconf CLK_TCK)" -v s="$3" 'BEGIN { printf "%.1f%%", (b - a) / hz / s * 100 }'; }
rss() { awk '/VmRSS/ { printf "%.0f MiB", $2 / 1024 }' "/proc/$1/status"; }
metric() { curl -s "http://$EP/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
segments() { { find "$W/repo/deltas" -type f -not -name '.*' 2>/dev/null || true; } | wc -l; }

echo "seeding $TENANTS tenants x $KEYS keys" >&2
$TARGET/examples/tenant_seed --datastore "$DS" --schema t --tenants "$TENANTS" --keys "$KEYS" --value-size 1024 >&2
$KMDR -q repo init
$KMDR -q backup tenant --datastore "$DS" --all >/dev/null
cat > "$W/plan.yaml" <<YAML
version: 1
name: bench
repository:
  url: $W/repo
  keyFile: $W/key
layers:
  tenant-control-planes:
    rto: 1h
    rpo: 1h
    datastores:
      - name: shared
        url: $DS
        tenants: all
YAML

# 1. serve, every capture running.
W0=$(metric etcd_debugging_mvcc_watcher_total); S0=$(metric etcd_debugging_mvcc_watch_stream_total)
t0=$EPOCHREALTIME
$KMDR serve --plan "$W/plan.yaml" --metrics-addr 127.0.0.1:$MP 2>"$W/serve.log" &
SERVE=$!
until [ "$(curl -sf localhost:$MP/metrics | grep -c '^kmdr_delta_up{.*} 1')" -ge "$TENANTS" ]; do
  kill -0 $SERVE || { tail "$W/serve.log" >&2; exit 1; }
  sleep 0.5
done
READY=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
sleep 3
WATCHERS=$(( $(metric etcd_debugging_mvcc_watcher_total) - W0 )); STREAMS=$(( $(metric etcd_debugging_mvcc_watch_stream_total) - S0 ))
echo "all $TENANTS captures running after $READY s; etcd counts $WATCHERS watchers on $STREAMS watch streams" >&2

# 2. The load, serve and one etcdctl watch of the same keyspace side by side.
etcdctl --endpoints "$EP" watch --prefix "" >/dev/null &
PEER=$!
sleep 1
c0=$(cpu $SERVE); p0=$(cpu $PEER); seg0=$(segments)
if [ "${KMDR_BENCH_PERF:-0}" = 1 ]; then
  (sleep 10; perf record -F 499 -g -p $SERVE -o "$W/perf.data" -- sleep 20 >/dev/null 2>&1) &
fi
LAG=$($TARGET/examples/tenants_lag "http://$EP" "$W/repo" "$W/key" t "$TENANTS" "$RATE" "$SECS")
c1=$(cpu $SERVE); p1=$(cpu $PEER); seg1=$(segments)
SERVE_RSS=$(rss $SERVE); PEER_RSS=$(rss $PEER)
kill $PEER; wait $PEER 2>/dev/null || true
echo "$LAG" >&2
if [ "${KMDR_BENCH_PERF:-0}" = 1 ]; then
  wait %?perf 2>/dev/null || sleep 1
  perf report -i "$W/perf.data" --no-children --sort dso,symbol --percent-limit 1 --stdio 2>/dev/null | grep -v '^$' | head -80 > target/bench-serve-tenants.perf.txt || true
fi

# 3. Idle.
sleep 5
i0=$(segments); ci0=$(cpu $SERVE)
sleep "$IDLE"
i1=$(segments); ci1=$(cpu $SERVE)
IDLE_OBJ=$(( i1 - i0 ))
PER_HOUR=$(awk -v n="$IDLE_OBJ" -v t="$TENANTS" -v s="$IDLE" 'BEGIN { printf "%.2f", n / t / s * 3600 }')
kill -TERM $SERVE; wait $SERVE || true

REV=$(git rev-parse --short HEAD)
[ -z "$(git status --porcelain --untracked-files=no)" ] || REV="$REV (modified)"
{
  echo "### $TENANTS tenants on one etcd under \`kmdr serve\` ($(date -u +%Y-%m-%d), $PROFILE build, kmdr $REV)"
  echo
  echo "$TENANTS tenants x $KEYS keys seeded and backed up once; serve with \`tenants: all\`, flush every 1 s. $(nproc) CPUs."
  echo
  echo "| | figure |"
  echo "|---|---|"
  echo "| every capture running after serve starts | $READY s |"
  echo "| etcd watchers / watch streams opened by serve | $WATCHERS / $STREAMS |"
  echo "| load ($SECS s, round-robin over the tenants) | $LAG |"
  echo "| serve CPU under load | $(pct "$c0" "$c1" "$((SECS + 5))") of one core, RSS $SERVE_RSS |"
  echo "| peer: \`etcdctl watch --prefix \"\"\` CPU, same load | $(pct "$p0" "$p1" "$((SECS + 5))") of one core, RSS $PEER_RSS |"
  echo "| segment objects during the load | $(( seg1 - seg0 )) ($(awk -v n=$(( seg1 - seg0 )) -v s=$((SECS + 5)) 'BEGIN { printf "%.0f", n / s }')/s) |"
  echo "| idle ($IDLE s, no write): objects written, per idle tenant per hour | $IDLE_OBJ, $PER_HOUR |"
  echo "| serve CPU idle | $(pct "$ci0" "$ci1" "$IDLE") of one core |"
  echo
  echo "Reproduce: \`scripts/bench-serve-tenants.sh $TENANTS $KEYS $RATE $SECS $IDLE\`"
} | tee target/bench-serve-tenants.md
