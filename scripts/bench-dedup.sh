#!/usr/bin/env bash
# Deduplication after churn, kmdr against restic, in one run (issue 17, item 6):
# what a second backup of an etcd adds after 1% of its keys were rewritten.
#
#   scripts/bench-dedup.sh                         # 60,000 and 200,000 keys of 1 KiB, 5 seeds
#   SIZES=5000 SEEDS="1 2" scripts/bench-dedup.sh  # a quick check
#
# Per size: an etcd 3.6 is loaded with SIZE keys (`etcd_load`), snapshotted
# (`etcdctl snapshot save`), and backed up by `kmdr backup etcd` into one new
# repository per seed run (each `repo init` draws its own chunker seed; default
# chunker parameters); then 1% of the keys are rewritten, and the same again.
# Two snapshots of an idle etcd are never byte-identical (each Snapshot call
# commits etcd's backend: a new bbolt txid and consistent index, a few pages),
# so each kmdr backup must have its etcdctl snapshot's size: kmdr and restic
# see the same keys at the same revisions, with only those pages apart. restic 0.14 backs up the two snapshot files. What
# a second backup adds is the growth of the repository directory (`du -sb`:
# chunks, manifest or index and snapshot, everything).
# Then the dedup example (crates/kmdr-repo/examples/dedup.rs) chunks the same
# two files for each average chunk size in AVGS, each chunker seed in SEEDS and
# each cut alignment in ALIGNS (1: FastCDC's own cut points; 4096: moved down to
# bbolt's page boundaries), and reports what a backup would store: the new
# chunks sealed (zstd-3 + encryption + header) and the manifest's chunk list.
#
# Settings (environment):
#   SIZES="60000 200000" SEEDS="1 2 3 4 5" AVGS="64 128 256 512" ALIGNS="1 4096"
#   VALUE_SIZE=1024 REWRITE_PERCENT=1
#   BENCH_TMPDIR=$TMPDIR|/tmp  BENCH_OUT=target/bench-dedup.md  KEEP_WORKDIR=1
#
# Needs: cargo, jq, restic, etcd 3.6 (scripts/tools-env.sh). Starts one etcd on
# free loopback ports and stops it by pid; removes its scratch dir on exit.
set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SIZES=${SIZES:-60000 200000}
SEEDS=${SEEDS:-1 2 3 4 5}
AVGS=${AVGS:-64 128 256 512}
ALIGNS=${ALIGNS:-1 4096}
VALUE_SIZE=${VALUE_SIZE:-1024}
REWRITE_PERCENT=${REWRITE_PERCENT:-1}
BENCH_OUT=${BENCH_OUT:-$ROOT/target/bench-dedup.md}
KEEP_WORKDIR=${KEEP_WORKDIR:-0}

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# shellcheck disable=SC2046
unset $(compgen -v ETCDCTL_) $(compgen -v RESTIC_) KMDR_REPO 2>/dev/null || true
# shellcheck source=scripts/tools-env.sh
source "$ROOT/scripts/tools-env.sh"
for t in etcd etcdctl restic jq; do command -v "$t" >/dev/null || die "$t not found on PATH"; done

WORK= ETCD_PID=
stop_etcd() { [[ -z $ETCD_PID ]] || { kill "$ETCD_PID" 2>/dev/null || true; wait "$ETCD_PID" 2>/dev/null || true; ETCD_PID=; }; }
cleanup() {
  local rc=$?
  trap - EXIT
  stop_etcd
  if [[ -n $WORK && -d $WORK ]]; then
    if [[ $KEEP_WORKDIR == 1 ]]; then log "kept scratch dir $WORK"; else rm -rf -- "$WORK"; fi
  fi
  (( rc == 0 )) || log "failed (exit $rc)"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "building kmdr, etcd_load and dedup (release)"
(cd "$ROOT" && cargo build --release --workspace --bins --examples -q) >&2
TARGET_DIR=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
KMDR=$TARGET_DIR/release/kmdr LOADER=$TARGET_DIR/release/examples/etcd_load DEDUP=$TARGET_DIR/release/examples/dedup

WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/kmdr-bench-dedup.XXXXXX")
export KMDR_KEY_FILE=$WORK/kmdr.key RESTIC_PASSWORD=kmdr-bench
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
du_b() { du -sb "$1" | cut -f1; }
mib() { awk -v b="$1" 'BEGIN { printf "%.2f", b / 1048576 }'; }
# median and range of numbers on stdin (one per line), in MiB: "median (min-max)"
stats() { sort -n | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2;
  printf "%.2f (%.2f-%.2f)", m / 1048576, v[1] / 1048576, v[NR] / 1048576 }'; }
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

declare -A R   # results
TABLE=$WORK/table.md
for n in $SIZES; do
  d=$WORK/$n; mkdir -p "$d"
  cp=$(port); pp=$(port); ep=http://127.0.0.1:$cp
  etcd --name b --data-dir "$d/etcd" --listen-client-urls "$ep" --advertise-client-urls "$ep" \
    --listen-peer-urls "http://127.0.0.1:$pp" --initial-advertise-peer-urls "http://127.0.0.1:$pp" \
    --initial-cluster "b=http://127.0.0.1:$pp" --quota-backend-bytes 8589934592 --log-level error >"$d/etcd.log" 2>&1 &
  ETCD_PID=$!
  until etcdctl --endpoints "$ep" endpoint health >/dev/null 2>&1; do kill -0 "$ETCD_PID" || die "etcd exited"; sleep 0.2; done
  log "[$n] loading $n keys"
  "$LOADER" --endpoint "$ep" --keys "$n" --value-size "$VALUE_SIZE" --seed 1 >&2
  for pass in 1 2; do
    if [[ $pass == 2 ]]; then
      log "[$n] rewriting $REWRITE_PERCENT% of the keys"
      "$LOADER" --endpoint "$ep" --keys "$n" --value-size "$VALUE_SIZE" --rewrite-percent "$REWRITE_PERCENT" --seed 2 >&2
    fi
    etcdctl --endpoints "$ep" snapshot save "$d/snap$pass.db" >/dev/null
    want=$(stat -c %s "$d/snap$pass.db")
    for s in $SEEDS; do
      [[ $pass == 2 ]] || "$KMDR" -q --repo "$d/kmdr-$s" repo init >/dev/null
      "$KMDR" -q -o json --repo "$d/kmdr-$s" backup etcd --endpoints "$ep" >"$d/kmdr-$s-$pass.json"
      got=$(jq -r '.files[0].size' "$d/kmdr-$s-$pass.json")
      [[ $got == "$want" ]] || die "[$n] kmdr's snapshot is $got bytes, etcdctl's $want: etcd changed in between"
      R[kmdr_${n}_${s}_$pass]=$(du_b "$d/kmdr-$s")
    done
  done
  stop_etcd
  R[db_$n]=$(stat -c %s "$d/snap1.db")
  log "[$n] restic"
  restic -q --no-cache -r "$d/restic" init >/dev/null
  mkdir -p "$d/src"
  for pass in 1 2; do
    ln -f "$d/snap$pass.db" "$d/src/snapshot.db"
    restic -q --no-cache -r "$d/restic" backup "$d/src/snapshot.db" >/dev/null
    R[restic_${n}_$pass]=$(du_b "$d/restic")
  done
  R[restic_$n]=$(( R[restic_${n}_2] - R[restic_${n}_1] ))
  : >"$d/kmdr-added"
  for s in $SEEDS; do echo $(( R[kmdr_${n}_${s}_2] - R[kmdr_${n}_${s}_1] )) >>"$d/kmdr-added"; done
  R[kmdr_list_$n]=$(while read -r b; do mib "$b"; echo; done <"$d/kmdr-added" | paste -sd, | sed 's/,/, /g')
  R[kmdr_stats_$n]=$(stats <"$d/kmdr-added")
  R[kmdr_ratio_$n]=$(awk -v a="$(median <"$d/kmdr-added")" -v b="${R[restic_$n]}" 'BEGIN { printf "%.2f×", a / b }')
  R[kmdr_chunks_$n]=$(jq -r '"\(.stats.new_chunks) of \(.stats.chunks)"' "$d/kmdr-$(set -- $SEEDS; echo "$1")-2.json")
  log "[$n] kmdr ${R[kmdr_stats_$n]} MiB, restic $(mib "${R[restic_$n]}") MiB"
  log "[$n] chunker parameters (dedup example)"
  for avg in $AVGS; do
    for al in $ALIGNS; do
      : >"$d/ex-$avg-$al"
      for s in $SEEDS; do
        line=$("$DEDUP" "$d/snap1.db" "$d/snap2.db" "$avg" "$s" "$al")
        echo "$line" >>"$d/ex.log"
        eval "$(tr ' ' '\n' <<<"$line" | sed 's/^/local_/' )"   # local_added_bytes= etc.
        # shellcheck disable=SC2154
        echo "$(( local_added_bytes + local_manifest_bytes )) $local_added_bytes $local_manifest_bytes $local_new_chunks" >>"$d/ex-$avg-$al"
      done
      R[ex_total_${n}_${avg}_$al]=$(cut -d' ' -f1 "$d/ex-$avg-$al" | stats)
      R[ex_chunks_${n}_${avg}_$al]=$(cut -d' ' -f2 "$d/ex-$avg-$al" | stats)
      R[ex_manifest_${n}_${avg}_$al]=$(cut -d' ' -f3 "$d/ex-$avg-$al" | median | awk '{ printf "%.0f KiB", $1 / 1024 }')
      R[ex_count_${n}_${avg}_$al]=$(cut -d' ' -f4 "$d/ex-$avg-$al" | median)
      R[ex_ratio_${n}_${avg}_$al]=$(cut -d' ' -f1 "$d/ex-$avg-$al" | median | awk -v b="${R[restic_$n]}" '{ printf "%.2f×", $1 / b }')
      log "[$n] avg $avg KiB align $al: ${R[ex_total_${n}_${avg}_$al]} MiB"
    done
  done
  rm -rf -- "$d"
done

rev=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
[[ -z $(cd "$ROOT" && git status --porcelain --untracked-files=no 2>/dev/null) ]] || rev="$rev (modified)"
{
  echo "### Dedup after $REWRITE_PERCENT% churn: kmdr vs restic ($(date -u +%Y-%m-%d), kmdr $rev, $(restic version | cut -d' ' -f1-2), etcd $(etcd --version | sed -n 's/^etcd Version: //p'))"
  echo
  echo "| keys (db) | restic: added by the 2nd backup | kmdr (default chunker), median (range) over seeds | the runs | ratio kmdr / restic (median) | new chunks (first seed) |"
  echo "|---|---:|---:|---|---:|---:|"
  for n in $SIZES; do
    echo "| $n ($(mib "${R[db_$n]}") MiB) | $(mib "${R[restic_$n]}") MiB | ${R[kmdr_stats_$n]} MiB | ${R[kmdr_list_$n]} | **${R[kmdr_ratio_$n]}** | ${R[kmdr_chunks_$n]} |"
  done
  echo
  echo "Chunker parameters, dedup example over seeds $SEEDS: added = new chunks sealed + the manifest's chunk list; median (range) in MiB."
  echo
  echo "| keys | avg chunk | cut points | added, all | of which chunks | manifest list | new chunks (median) | ratio to restic |"
  echo "|---|---:|---|---:|---:|---:|---:|---:|"
  for n in $SIZES; do for avg in $AVGS; do for al in $ALIGNS; do
    lab=FastCDC; [[ $al == 1 ]] || lab="aligned to $al"
    echo "| $n | $avg KiB | $lab | ${R[ex_total_${n}_${avg}_$al]} | ${R[ex_chunks_${n}_${avg}_$al]} | ${R[ex_manifest_${n}_${avg}_$al]} | ${R[ex_count_${n}_${avg}_$al]} | ${R[ex_ratio_${n}_${avg}_$al]} |"
  done; done; done
  echo
  echo "Reproduce: \`$( [[ $SIZES == "60000 200000" ]] || printf 'SIZES="%s" ' "$SIZES"; [[ $SEEDS == "1 2 3 4 5" ]] || printf 'SEEDS="%s" ' "$SEEDS")scripts/bench-dedup.sh\`"
} >"$TABLE"
mkdir -p "$(dirname "$BENCH_OUT")"
cp "$TABLE" "$BENCH_OUT"
cat "$TABLE"
