#!/usr/bin/env bash
# S3 throughput (issue 17, item 8): kmdr against restic, backing up and
# restoring the same etcd snapshot to the same S3 server (moto, started by
# scripts/s3-server.sh as in the tests), side by side in one run.
#
#   scripts/bench-s3.sh                 # 200,000 keys of 1 KiB (a 263 MiB db), 5 rounds
#   KEYS=20000 ROUNDS=3 scripts/bench-s3.sh
#
# One etcd 3.6 is loaded (`etcd_load`) and its snapshot saved to a file once.
# Each round, into fresh prefixes of the bucket:
#   backup:  kmdr backup etcd (streams the snapshot from etcd into S3)
#            restic backup of the snapshot file (restic gets its input for free;
#            `etcdctl snapshot save`'s own time is reported beside it)
#   restore: kmdr restore etcd latest --to-file (fetch, authenticate, decrypt,
#            decompress, sha256-check, fsync)  vs  restic restore latest --target
# Rounds alternate which tool goes first. Reported: medians of wall time, of the
# tool's CPU time (user + sys, GNU time) and of the S3 server's CPU time over the
# step (moto is one Python process: its CPU is part of both tools' cost).
# Then one kmdr backup and restore per value of CONCURRENCIES (requests in
# flight, `KMDR_S3_CONCURRENCY`), to show what the default buys.
#
# Settings: KEYS=200000 VALUE_SIZE=1024 ROUNDS=5 CONCURRENCIES="4 8 16 32"
#           BENCH_TMPDIR BENCH_OUT=target/bench-s3.md KEEP_WORKDIR=1
set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KEYS=${KEYS:-200000}
VALUE_SIZE=${VALUE_SIZE:-1024}
ROUNDS=${ROUNDS:-5}
CONCURRENCIES=${CONCURRENCIES:-4 8 16 32}
BENCH_OUT=${BENCH_OUT:-$ROOT/target/bench-s3.md}
KEEP_WORKDIR=${KEEP_WORKDIR:-0}

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# shellcheck disable=SC2046
unset $(compgen -v ETCDCTL_) $(compgen -v RESTIC_) KMDR_REPO KMDR_S3_CONCURRENCY 2>/dev/null || true
# shellcheck source=scripts/tools-env.sh
source "$ROOT/scripts/tools-env.sh"
for t in etcd etcdctl restic jq python3; do command -v "$t" >/dev/null || die "$t not found on PATH"; done
[[ -x /usr/bin/time ]] || die "needs GNU time"

log "building kmdr and etcd_load (release)"
(cd "$ROOT" && cargo build --release --workspace --bins --examples -q) >&2
TARGET_DIR=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
KMDR=$TARGET_DIR/release/kmdr LOADER=$TARGET_DIR/release/examples/etcd_load

WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/kmdr-bench-s3.XXXXXX")
ETCD_PID=
# shellcheck source=scripts/s3-server.sh
source "$ROOT/scripts/s3-server.sh"   # sets an EXIT trap that stops moto; ours below keeps it
cleanup() {
  local rc=$?
  [[ -z $ETCD_PID ]] || { kill "$ETCD_PID" 2>/dev/null || true; wait "$ETCD_PID" 2>/dev/null || true; }
  kill "$KMDR_S3_PID" 2>/dev/null || true
  if [[ $KEEP_WORKDIR == 1 ]]; then log "kept $WORK"; else rm -rf -- "$WORK"; fi
  (( rc == 0 )) || log "failed (exit $rc)"
}
trap cleanup EXIT
export AWS_ENDPOINT_URL=$KMDR_TEST_S3_ENDPOINT KMDR_KEY_FILE=$WORK/kmdr.key RESTIC_PASSWORD=kmdr-bench
BUCKET=$KMDR_TEST_S3_BUCKET

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_of() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }   # utime + stime, clock ticks
TICK=$(getconf CLK_TCK)
declare -A WALL CPU SRV

# timed NAME CMD...: wall, tool CPU (GNU time user+sys) and moto's CPU over the step.
timed() {
  local name=$1 t0 t1 s0 s1; shift
  sync
  s0=$(cpu_of "$KMDR_S3_PID"); t0=$EPOCHREALTIME
  /usr/bin/time -f '%U %S' -o "$WORK/$name.time" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" \
    || { tail -n 20 "$WORK/$name.err" >&2; die "step $name failed"; }
  t1=$EPOCHREALTIME; s1=$(cpu_of "$KMDR_S3_PID")
  WALL[$name]=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
  CPU[$name]=$(tail -n 1 "$WORK/$name.time" | awk '{ printf "%.2f", $1 + $2 }')
  SRV[$name]=$(awk -v a="$s0" -v b="$s1" -v t="$TICK" 'BEGIN { printf "%.2f", (b - a) / t }')
  log "  $name: ${WALL[$name]} s wall, ${CPU[$name]} s CPU, moto ${SRV[$name]} s CPU"
}
drop_prefix() {  # free moto's memory: it keeps every object in RAM
  python3 - "$1" <<'PY'
import boto3, os, sys
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
b, p = os.environ["KMDR_TEST_S3_BUCKET"], sys.argv[1] + "/"
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=b, Prefix=p):
    for o in page.get("Contents", []):
        s3.delete_object(Bucket=b, Key=o["Key"])
PY
}

cp=$(port); pp=$(port); ep=http://127.0.0.1:$cp
etcd --name b --data-dir "$WORK/etcd" --listen-client-urls "$ep" --advertise-client-urls "$ep" \
  --listen-peer-urls "http://127.0.0.1:$pp" --initial-advertise-peer-urls "http://127.0.0.1:$pp" \
  --initial-cluster "b=http://127.0.0.1:$pp" --quota-backend-bytes 8589934592 --log-level error >"$WORK/etcd.log" 2>&1 &
ETCD_PID=$!
until etcdctl --endpoints "$ep" endpoint health >/dev/null 2>&1; do kill -0 "$ETCD_PID" || die "etcd exited"; sleep 0.2; done
log "loading $KEYS keys"
"$LOADER" --endpoint "$ep" --keys "$KEYS" --value-size "$VALUE_SIZE" --seed 1 >&2
timed snap etcdctl --endpoints "$ep" snapshot save "$WORK/snap.db"
SNAP_BYTES=$(stat -c %s "$WORK/snap.db")
want=$(sha256sum "$WORK/snap.db" | cut -d' ' -f1)
# Two snapshots of an idle etcd are never byte-identical (each Snapshot call
# commits etcd's backend first: a new bbolt txid and consistent index), so
# kmdr's stream is checked for the snapshot's size, and its restore against
# the sha256 etcd sent with it (the manifest's).

kmdr_round() {  # kmdr_round NAME PREFIX [CONCURRENCY]
  local n=$1 p=$2
  "$KMDR" -q --repo "s3://$BUCKET/$p" repo init >/dev/null
  timed "${n}_backup" env ${3:+KMDR_S3_CONCURRENCY=$3} "$KMDR" -q -o json --repo "s3://$BUCKET/$p" backup etcd --endpoints "$ep"
  [[ $(jq -r '.files[0].size' "$WORK/${n}_backup.out") == "$SNAP_BYTES" ]] || die "kmdr's snapshot is not the size of etcdctl's"
  local kwant; kwant=$(jq -r '.files[0].sha256' "$WORK/${n}_backup.out")
  rm -f "$WORK/k.db"
  timed "${n}_restore" env ${3:+KMDR_S3_CONCURRENCY=$3} "$KMDR" -q --repo "s3://$BUCKET/$p" restore etcd latest --to-file "$WORK/k.db"
  [[ $(sha256sum "$WORK/k.db" | cut -d' ' -f1) == "$kwant" ]] || die "kmdr restored other bytes"
  rm -f "$WORK/k.db"; drop_prefix "$p"
}
restic_round() {  # restic_round NAME PREFIX
  local n=$1 p=$2 r="s3:$KMDR_TEST_S3_ENDPOINT/$BUCKET/$2"
  restic -q --no-cache -r "$r" init >/dev/null
  timed "${n}_backup" restic -q --no-cache -r "$r" backup "$WORK/snap.db"
  rm -rf "$WORK/r"
  timed "${n}_restore" restic -q --no-cache -r "$r" restore latest --target "$WORK/r"
  [[ $(sha256sum "$WORK/r$WORK/snap.db" | cut -d' ' -f1) == "$want" ]] || die "restic restored other bytes"
  rm -rf "$WORK/r"; drop_prefix "$p"
}

for r in $(seq 1 "$ROUNDS"); do
  log "round $r"
  if (( r % 2 )); then kmdr_round "kmdr$r" "k$r"; restic_round "restic$r" "r$r"
  else restic_round "restic$r" "r$r"; kmdr_round "kmdr$r" "k$r"; fi
done
for c in $CONCURRENCIES; do log "kmdr with $c requests in flight"; kmdr_round "conc$c" "c$c" "$c"; done
kill "$ETCD_PID"; wait "$ETCD_PID" 2>/dev/null || true; ETCD_PID=

med() {  # med ARRAY TOOL STEP: median over the rounds
  local -n a=$1
  for r in $(seq 1 "$ROUNDS"); do echo "${a[$2${r}_$3]}"; done | sort -n \
    | awk '{ v[NR] = $1 } END { printf "%.2f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
runs() { local -n a=$1; for r in $(seq 1 "$ROUNDS"); do printf '%s ' "${a[$2${r}_$3]}"; done; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f×", a / b }'; }
rev=$(cd "$ROOT" && git rev-parse --short HEAD)
[[ -z $(cd "$ROOT" && git status --porcelain --untracked-files=no) ]] || rev="$rev (modified)"
{
  echo "### S3 (moto $(python3 -c 'import moto; print(moto.__version__)')): kmdr vs $(restic version | cut -d' ' -f1-2), $(awk -v b="$SNAP_BYTES" 'BEGIN { printf "%.1f MiB", b / 1048576 }') snapshot ($(date -u +%Y-%m-%d), kmdr $rev, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end)"
  echo
  echo "| step, median of $ROUNDS | kmdr wall | restic wall | ratio | kmdr CPU | restic CPU | ratio | moto CPU (kmdr / restic) |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  for st in backup restore; do
    echo "| $st | $(med WALL kmdr "$st") s | $(med WALL restic "$st") s | **$(ratio "$(med WALL kmdr "$st")" "$(med WALL restic "$st")")** | $(med CPU kmdr "$st") s | $(med CPU restic "$st") s | $(ratio "$(med CPU kmdr "$st")" "$(med CPU restic "$st")") | $(med SRV kmdr "$st") / $(med SRV restic "$st") s |"
  done
  echo
  echo "Runs (wall s): kmdr backup $(runs WALL kmdr backup); restic backup $(runs WALL restic backup); kmdr restore $(runs WALL kmdr restore); restic restore $(runs WALL restic restore). \`etcdctl snapshot save\` (restic's input, not counted above): ${WALL[snap]} s."
  echo
  echo "| kmdr requests in flight | backup wall | restore wall | backup CPU | restore CPU |"
  echo "|---:|---:|---:|---:|---:|"
  for c in $CONCURRENCIES; do
    echo "| $c | ${WALL[conc${c}_backup]} s | ${WALL[conc${c}_restore]} s | ${CPU[conc${c}_backup]} s | ${CPU[conc${c}_restore]} s |"
  done
  echo
  echo "Reproduce: \`$( [[ $KEYS == 200000 ]] || printf 'KEYS=%s ' "$KEYS"; [[ $ROUNDS == 5 ]] || printf 'ROUNDS=%s ' "$ROUNDS")scripts/bench-s3.sh\`"
} >"$WORK/table.md"
mkdir -p "$(dirname "$BENCH_OUT")"; cp "$WORK/table.md" "$BENCH_OUT"; cat "$WORK/table.md"
