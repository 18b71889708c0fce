#!/usr/bin/env bash
# Delta lag of kmdr serve: write acknowledged -> durable in the repository,
# p50/p99 at RATE puts/s (default 1000) into one tenant of a local etcd (or,
# with KMDR_BENCH_DATASTORE=postgres, kine rows into one tenant of a local
# PostgreSQL), on a local repository and (with KMDR_BENCH_S3=1, after
# `source scripts/s3-server.sh`) on the S3 server; and the CPU kmdr serve used meanwhile.
#   scripts/bench-delta.sh [RATE] [SECONDS]
#   KMDR_BENCH_DATASTORE=postgres scripts/bench-delta.sh 1000 20
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${1:-1000}
SECS=${2:-30}
source scripts/bench-common.sh
LAG=$TARGET/examples/delta_lag
etcdctl --endpoints 127.0.0.1:$CP put /bench/seed x >/dev/null
DS=etcd://127.0.0.1:$CP
WRITE_URL=http://127.0.0.1:$CP
if [ "${KMDR_BENCH_DATASTORE:-etcd}" = postgres ]; then
  # kmdr-testkit's server (runs as the postgres OS user); it stops on the
  # SIGTERM the exit trap sends every background job.
  mkfifo "$W/pg.url"
  $TARGET/examples/pg_server "$W" >"$W/pg.url" &
  read -r DS <"$W/pg.url"
  WRITE_URL=$DS
fi
run() {
  local repo=$1
  $KMDR repo init --repo "$repo" --key-file "$W/key" >/dev/null
  cat > "$W/plan.yaml" <<YAML
version: 1
name: bench
repository:
  url: $repo
  keyFile: $W/key
layers:
  tenant-control-planes:
    rto: 1h
    rpo: 1h
    datastores:
      - name: b
        url: $DS
        tenants:
          - bench
YAML
  $KMDR serve --plan "$W/plan.yaml" --metrics-addr 127.0.0.1:$MP 2>"$W/serve.log" &
  local pid=$!
  until curl -sf localhost:$MP/readyz >/dev/null; do sleep 0.2; done
  # The tenant's capture runs once its first full backup is taken.
  until curl -sf localhost:$MP/metrics | grep -q 'kmdr_delta_up{.*unit="b/bench"} 1'; do sleep 0.2; done
  local t0; t0=$(awk '{print $14+$15}' /proc/$pid/stat)
  $LAG "$WRITE_URL" "$repo" "$W/key" "$RATE" "$SECS"
  local t1; t1=$(awk '{print $14+$15}' /proc/$pid/stat)
  echo "kmdr serve CPU: $(python3 -c "print(f'{($t1-$t0)/$(getconf CLK_TCK)/($SECS+5)*100:.1f}% of one core')") ($PROFILE build)"
  kill -TERM $pid; wait $pid
}
echo "== local repository"; run "$W/repo"
if [ "${KMDR_BENCH_S3:-0}" = 1 ]; then
  export AWS_ENDPOINT_URL=${AWS_ENDPOINT_URL:-$KMDR_TEST_S3_ENDPOINT}
  echo "== S3 ($AWS_ENDPOINT_URL)"; run "s3://${KMDR_TEST_S3_BUCKET:-kmdr-test}/bench-$(date +%s)"
fi
