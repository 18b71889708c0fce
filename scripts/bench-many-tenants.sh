#!/usr/bin/env bash
# Many tenants on one datastore (issue 17, item 1), side by side in one run:
#  1. `kmdr backup tenant --all` of TENANTS tenants x KEYS keys of ~1 KiB on one
#     etcd 3.6, against `etcdctl get "" --prefix -w json` of the same keyspace
#     (the read an operator would script), with peak RSS; the first backup into
#     an empty repository and a second one of the unchanged keyspace;
#  2. with the repository grown to BACKUPS backups (further `--all` runs), the
#     lookups an operator makes on a bad day: `kmdr backups list` (the newest
#     100), `backups list --unit tenant/X`, and `restore tenant latest
#     --source-schema X` into a new schema, `backups show latest`; and
#     `backups list --all` (every manifest read, with peak RSS) for scale.
#     With S3=1 (after `source scripts/s3-server.sh`), the same lookups on a
#     copy of the repository on the S3 server.
#
#   scripts/bench-many-tenants.sh [TENANTS] [KEYS] [BACKUPS]   (default 1000 250 100000)
#   KMDR_BENCH_PROFILE=release (default here) | debug
#   KMDR_BEFORE=path/to/another/kmdr: also time its `backups list`, --unit and `show latest`, side by side
#
# Prints a Markdown table for docs/benchmarks.md (also target/bench-many-tenants.md).
set -euo pipefail
cd "$(dirname "$0")/.."
TENANTS=${1:-1000}
KEYS=${2:-250}
BACKUPS=${3:-100000}
export KMDR_BENCH_PROFILE=${KMDR_BENCH_PROFILE:-release}
source scripts/bench-common.sh
SEED=$TARGET/examples/tenant_seed
EP=127.0.0.1:$CP
DS=etcd://$EP
export KMDR_REPO=$W/repo KMDR_KEY_FILE=$W/key
declare -A WALL RSS

# timed NAME CMD...: wall seconds and peak RSS (KiB) of CMD, its stdout in $W/NAME.out.
timed() {
  local name=$1; shift
  sync
  local t0=$EPOCHREALTIME
  /usr/bin/time -f '%M' -o "$W/$name.rss" "$@" >"$W/$name.out" 2>"$W/$name.err" || { cat "$W/$name.err" >&2; exit 1; }
  WALL[$name]=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }')
  RSS[$name]=$(tail -n 1 "$W/$name.rss")
}

echo "seeding $TENANTS tenants x $KEYS keys" >&2
$SEED --datastore "$DS" --schema t --tenants "$TENANTS" --keys "$KEYS" --value-size 1024 >&2
$KMDR -q repo init
DB=$(etcdctl --endpoints "$EP" endpoint status -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Status"]["dbSize"])')

# 1. One read of every tenant, each way, twice (kmdr: into the empty repository, then again).
timed etcdctl1 etcdctl --endpoints "$EP" get "" --prefix -w json
timed kmdr1 $KMDR -q -o json backup tenant --datastore "$DS" --all
timed etcdctl2 etcdctl --endpoints "$EP" get "" --prefix -w json
timed kmdr2 $KMDR -q -o json backup tenant --datastore "$DS" --all
N1=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$W/kmdr1.out")
[ "$N1" = "$TENANTS" ] || { echo "kmdr backed up $N1 tenants, not $TENANTS" >&2; exit 1; }
JSON_BYTES=$(stat -c %s "$W/etcdctl1.out")

# 2. Grow the repository to BACKUPS backups, then the lookups.
runs=$(( (BACKUPS + TENANTS - 1) / TENANTS - 2 ))
echo "growing the repository: $runs more runs of --all" >&2
t0=$EPOCHREALTIME
for _ in $(seq 1 $runs); do $KMDR -q backup tenant --datastore "$DS" --all >/dev/null; done
GROW=$(awk -v a="$t0" -v b="$EPOCHREALTIME" -v n="$runs" 'BEGIN { printf "%.2f", (n > 0 ? (b - a) / n : 0) }')
COUNT=$(find "$W/repo/backups" -type f | wc -l)
X=t-$(printf %04d $(( TENANTS / 2 )))
lookups() {  # lookups SUFFIX: the three lookups and --all, on the repository in KMDR_REPO
  local s=$1
  timed list$s $KMDR backups list
  timed unit$s $KMDR backups list --unit "tenant/$X"
  timed restore$s $KMDR -q restore tenant latest --source-schema "$X" --datastore "$DS" --schema "r$s-$X"
  timed show$s $KMDR backups show latest
  timed listall$s $KMDR backups list --all
  if [ -n "${KMDR_BEFORE:-}" ]; then  # the same lookups by another build, side by side
    timed listb$s "$KMDR_BEFORE" backups list
    timed unitb$s "$KMDR_BEFORE" backups list --unit "tenant/$X"
    timed showb$s "$KMDR_BEFORE" backups show latest
    [ -n "$s" ] || timed listallb "$KMDR_BEFORE" backups list --all  # for its RSS; on S3 it takes minutes
  fi
}
lookups ""
S3ROW=
if [ "${S3:-0}" = 1 ]; then
  : "${KMDR_TEST_S3_ENDPOINT:?S3=1 needs the S3 server: source scripts/s3-server.sh}"
  prefix=bench-many-$RANDOM$RANDOM
  echo "copying the repository to s3://${KMDR_TEST_S3_BUCKET:-kmdr-test}/$prefix" >&2
  python3 - "$W/repo" "$KMDR_TEST_S3_ENDPOINT" "${KMDR_TEST_S3_BUCKET:-kmdr-test}" "$prefix" <<'PY'
import boto3, os, sys
from concurrent.futures import ThreadPoolExecutor
root, endpoint, bucket, prefix = sys.argv[1:]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
files = [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if not f.startswith(".")]
def put(p):
    with open(p, "rb") as f:
        s3.put_object(Bucket=bucket, Key=f"{prefix}/{os.path.relpath(p, root)}", Body=f.read())
with ThreadPoolExecutor(16) as ex:
    list(ex.map(put, files))
PY
  export KMDR_REPO=s3://${KMDR_TEST_S3_BUCKET:-kmdr-test}/$prefix AWS_ENDPOINT_URL=$KMDR_TEST_S3_ENDPOINT
  lookups _s3
  S3ROW=1
fi

REV=$(git rev-parse --short HEAD)
[ -z "$(git status --porcelain --untracked-files=no)" ] || REV="$REV (modified)"
{
  f() { printf '%.2f s' "${WALL[$1]}"; }
  mib() { awk -v k="$1" 'BEGIN { printf "%.0f MiB", k / 1024 }'; }
  r() { awk -v a="${WALL[$1]}" -v b="${WALL[$2]}" 'BEGIN { printf "%.2fx", a / b }'; }
  echo "### $TENANTS tenants x $KEYS keys on one etcd ($(date -u +%Y-%m-%d), $PROFILE build, kmdr $REV)"
  echo
  echo "etcd db $(awk -v b="$DB" 'BEGIN { printf "%.0f MiB", b / 1048576 }'), $((TENANTS * KEYS)) keys; etcdctl's JSON $(awk -v b="$JSON_BYTES" 'BEGIN { printf "%.0f MiB", b / 1048576 }'). $(nproc) CPUs."
  echo
  echo "| | kmdr | etcdctl get \"\" --prefix -w json | ratio | kmdr peak RSS |"
  echo "|---|---:|---:|---:|---:|"
  echo "| \`backup tenant --all\`, empty repository | $(f kmdr1) | $(f etcdctl1) | $(r kmdr1 etcdctl1) | $(mib "${RSS[kmdr1]}") |"
  echo "| again, keyspace unchanged | $(f kmdr2) | $(f etcdctl2) | $(r kmdr2 etcdctl2) | $(mib "${RSS[kmdr2]}") |"
  echo
  echo "Repository grown to $COUNT backups ($runs more runs of \`--all\`, $GROW s each); tenant $X:"
  echo
  echo "| | local | ${S3ROW:+S3 (moto) |}"
  echo "|---|---:|${S3ROW:+---:|}"
  row() { echo "| $2 | $(f "$1") | ${S3ROW:+$(f "${1}_s3") |}"; }  # row NAME LABEL: local and S3 wall time
  row list "\`backups list\` (newest 100)"
  row unit "\`backups list --unit tenant/$X\`"
  row restore "\`restore tenant latest --source-schema $X\` ($KEYS keys, new schema)"
  row show "\`backups show latest\` (finds the newest id)"
  echo "| \`backups list --all\` (every manifest read) | $(f listall), $(mib "${RSS[listall]}") | ${S3ROW:+$(f listall_s3), $(mib "${RSS[listall_s3]}") |}"
  if [ -n "${KMDR_BEFORE:-}" ]; then
    row listb "\`backups list\`, KMDR_BEFORE build"
    row unitb "\`backups list --unit tenant/$X\`, KMDR_BEFORE build"
    row showb "\`backups show latest\`, KMDR_BEFORE build"
    echo "| \`backups list --all\`, KMDR_BEFORE build | $(f listallb), $(mib "${RSS[listallb]}") | ${S3ROW:+not run |}"
  fi
  echo
  echo "Reproduce: \`${S3:+S3=1 }${KMDR_BEFORE:+KMDR_BEFORE=$KMDR_BEFORE }scripts/bench-many-tenants.sh $TENANTS $KEYS $BACKUPS\`"
} | tee target/bench-many-tenants.md
