#!/usr/bin/env bash
# Finding one backup by id on S3 (moto), side by side: `kmdr backups show ID`
# with N other names under backups/ (empty objects, older than ID), by
# another build (KMDR_BEFORE, e.g. one from before the partial-name listing)
# and by this checkout's release build. Three rounds each.
#
#   KMDR_BEFORE=path/to/old/kmdr scripts/bench-resolve.sh [N]   (default 20000)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20000}
: "${KMDR_BEFORE:?set KMDR_BEFORE to the kmdr to compare with}"
cargo build --release -q -p kmdr
source scripts/tools-env.sh
source scripts/s3-server.sh
W=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; kill $KMDR_S3_PID 2>/dev/null; rm -rf "$W"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
CP=$(port); PP=$(port)
etcd --name b --data-dir "$W/etcd" --listen-client-urls http://127.0.0.1:$CP --advertise-client-urls http://127.0.0.1:$CP \
  --listen-peer-urls http://127.0.0.1:$PP --initial-advertise-peer-urls http://127.0.0.1:$PP \
  --initial-cluster b=http://127.0.0.1:$PP --log-level error >/dev/null 2>&1 &
until etcdctl --endpoints 127.0.0.1:$CP endpoint health >/dev/null 2>&1; do sleep 0.2; done
export KMDR_REPO=s3://kmdr-test/resolve-$RANDOM KMDR_KEY_FILE=$W/key AWS_ENDPOINT_URL=$KMDR_TEST_S3_ENDPOINT
NEW=${CARGO_TARGET_DIR:-target}/release/kmdr
$NEW -q repo init
# One real backup in the middle of the names: older dummies before it, newer after.
python3 - "$KMDR_TEST_S3_ENDPOINT" "${KMDR_REPO#s3://kmdr-test/}" "$N" <<'PY'
import boto3, sys, datetime
from concurrent.futures import ThreadPoolExecutor
ep, prefix, n = sys.argv[1:]; n = int(n)
s3 = boto3.client("s3", endpoint_url=ep, region_name="us-east-1")
t0 = datetime.datetime(2026, 1, 1)
def put(i):
    t = t0 + datetime.timedelta(seconds=60 * i)
    s3.put_object(Bucket="kmdr-test", Key=f"{prefix}/backups/{t:%Y%m%dT%H%M%S}.000Z-tenant-{i:06x}", Body=b"")
with ThreadPoolExecutor(16) as ex: list(ex.map(put, range(n)))
PY
ID=$($NEW -q -o json backup etcd --endpoints 127.0.0.1:$CP | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
t() { local t0=$EPOCHREALTIME; "$@" >/dev/null; awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }'; }
for r in 1 2 3; do
  echo "round $r, $N names: $KMDR_BEFORE $(t "$KMDR_BEFORE" backups show "$ID") s, this build $(t "$NEW" backups show "$ID") s"
done
