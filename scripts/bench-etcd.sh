#!/usr/bin/env bash
# Benchmark `kmdr backup etcd` / `kmdr restore etcd` against the by-hand way
# (`etcdctl snapshot save` + `zstd`, `etcdutl snapshot restore`) and restic's
# deduplication, side by side in one run, and print a Markdown table for
# docs/benchmarks.md (stdout; also written to $BENCH_OUT).
#
#   scripts/bench-etcd.sh                               # 50,000 and 200,000 keys of 1 KiB
#   SIZE_SMALL=2000 SIZE_LARGE=5000 scripts/bench-etcd.sh   # a quick check
#
# Settings (environment):
#   SIZE_SMALL=50000 SIZE_LARGE=200000   keys per run
#   VALUE_SIZE=1024                      bytes per value (pseudo-random, incompressible)
#   REWRITE_PERCENT=1                    share of keys rewritten before the second backup
#   ETCD_CLIENT_PORT=24379 ETCD_PEER_PORT=24380
#   ETCD_QUOTA_BACKEND_BYTES=8589934592
#   BENCH_TMPDIR=$TMPDIR|/tmp            where the scratch dir goes (needs ~15x the large db)
#   BENCH_OUT=target/bench-etcd.md       copy of the table
#   KEEP_WORKDIR=1                       keep the scratch dir (for debugging)
#
# Needs: cargo, python3, go (scripts/build-go-tools.sh builds etcd 3.6 once);
# installs (if missing) Debian's restic, zstd, jq and time. Starts one etcd 3.6
# on 127.0.0.1 at a time and kills only that process; removes its scratch dir
# on exit. Both restores bump the revision by 1,000,000,000 and mark the old
# revisions compacted (kmdr's default, and the Kubernetes restore procedure).
set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SIZE_SMALL=${SIZE_SMALL:-50000}
SIZE_LARGE=${SIZE_LARGE:-200000}
VALUE_SIZE=${VALUE_SIZE:-1024}
REWRITE_PERCENT=${REWRITE_PERCENT:-1}
ETCD_CLIENT_PORT=${ETCD_CLIENT_PORT:-24379}
ETCD_PEER_PORT=${ETCD_PEER_PORT:-24380}
ETCD_QUOTA_BACKEND_BYTES=${ETCD_QUOTA_BACKEND_BYTES:-8589934592}
BENCH_OUT=${BENCH_OUT:-$ROOT/target/bench-etcd.md}
KEEP_WORKDIR=${KEEP_WORKDIR:-0}

EP=http://127.0.0.1:$ETCD_CLIENT_PORT
PEER=http://127.0.0.1:$ETCD_PEER_PORT
MEMBER=bench
CLUSTER=$MEMBER=$PEER

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

for n in SIZE_SMALL SIZE_LARGE VALUE_SIZE; do
  [[ ${!n} =~ ^[1-9][0-9]*$ ]] || die "$n must be a positive integer (got '${!n}')"
done
(( SIZE_SMALL < SIZE_LARGE )) || die "SIZE_SMALL ($SIZE_SMALL) must be below SIZE_LARGE ($SIZE_LARGE)"

# Nothing from the caller's environment may redirect a tool elsewhere.
# shellcheck disable=SC2046
unset $(compgen -v ETCDCTL_) $(compgen -v RESTIC_) KMDR_REPO KMDR_ETCDUTL 2>/dev/null || true

# ---------------------------------------------------------------- cleanup ---
WORK=
ETCD_PID=
stop_etcd() {
  if [[ -n $ETCD_PID ]]; then
    kill "$ETCD_PID" 2>/dev/null || true
    wait "$ETCD_PID" 2>/dev/null || true
    ETCD_PID=
  fi
}
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

# ------------------------------------------------------------------ tools ---
apt_need=()
command -v restic >/dev/null || apt_need+=(restic)
command -v zstd >/dev/null || apt_need+=(zstd)
command -v jq >/dev/null || apt_need+=(jq)
[[ -x /usr/bin/time ]] || apt_need+=(time)
if (( ${#apt_need[@]} )); then
  log "installing Debian packages: ${apt_need[*]}"
  SUDO=; (( EUID == 0 )) || SUDO=sudo
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_need[@]}" >/dev/null
fi
# etcd 3.6 (etcd, etcdctl, etcdutl), built from source into a versioned cache.
ETCD_BIN=$("$ROOT/scripts/build-go-tools.sh" | grep '/etcd-' | head -n 1)
ETCD=$ETCD_BIN/etcd ETCDCTL=$ETCD_BIN/etcdctl ETCDUTL=$ETCD_BIN/etcdutl
for b in "$ETCD" "$ETCDCTL" "$ETCDUTL"; do [[ -x $b ]] || die "missing $b (scripts/build-go-tools.sh)"; done
ETCD_VERSION=$("$ETCD" --version | sed -n 's/^etcd Version: //p')
[[ $ETCD_VERSION == 3.6.* ]] || die "expected etcd 3.6 from scripts/build-go-tools.sh, got $ETCD_VERSION"
export PATH=$ETCD_BIN:$PATH

# ------------------------------------------------------------------ build ---
log "building kmdr and the loader (release)"
(cd "$ROOT" && cargo build --release --workspace --bins --examples -q)
TARGET_DIR=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
KMDR=$TARGET_DIR/release/kmdr
LOADER=$TARGET_DIR/release/examples/etcd_load
[[ -x $KMDR && -x $LOADER ]] || die "build did not produce $KMDR and $LOADER"

WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/kmdr-bench-etcd.XXXXXX")
export KMDR_KEY_FILE=$WORK/kmdr.key
export RESTIC_PASSWORD=kmdr-bench
log "scratch dir $WORK"

# ---------------------------------------------------------------- helpers ---
declare -A WALL RSS V   # wall seconds, peak RSS KiB, other values; keyed by step name

# timed NAME CMD...: run CMD under GNU time; WALL[NAME] (ms precision), RSS[NAME] (KiB).
# stdout goes to $WORK/NAME.out, stderr to $WORK/NAME.err.
timed() {
  local name=$1 t0 t1; shift
  # Flush earlier steps' dirty pages first, so no step pays another's writeback.
  sync
  t0=$EPOCHREALTIME
  if ! /usr/bin/time -f '%e %M' -o "$WORK/$name.time" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err"; then
    log "step $name failed: $*"
    tail -n 20 "$WORK/$name.err" >&2
    exit 1
  fi
  t1=$EPOCHREALTIME
  WALL[$name]=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
  RSS[$name]=$(tail -n 1 "$WORK/$name.time" | awk '{ print $2 }')
}

bytes_of() { stat -c %s "$1"; }
du_b() { du -sb "$1" | cut -f1; }
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_etcd() {
  local dir=$1 i
  for p in "$ETCD_CLIENT_PORT" "$ETCD_PEER_PORT"; do
    ! port_in_use "$p" || die "port $p on 127.0.0.1 is in use: set ETCD_CLIENT_PORT/ETCD_PEER_PORT"
  done
  mkdir -p "$dir"
  "$ETCD" --name "$MEMBER" --data-dir "$dir/etcd-data" \
    --listen-client-urls "$EP" --advertise-client-urls "$EP" \
    --listen-peer-urls "$PEER" --initial-advertise-peer-urls "$PEER" \
    --initial-cluster "$CLUSTER" --initial-cluster-state new \
    --quota-backend-bytes "$ETCD_QUOTA_BACKEND_BYTES" --log-level warn \
    >"$dir/etcd.log" 2>&1 &
  ETCD_PID=$!
  for i in $(seq 1 150); do
    kill -0 "$ETCD_PID" 2>/dev/null || { tail -n 20 "$dir/etcd.log" >&2; ETCD_PID=; die "etcd exited at start"; }
    if "$ETCDCTL" --endpoints="$EP" endpoint health >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  die "etcd did not become healthy in 30 s (see $dir/etcd.log)"
}

db_size() { "$ETCDCTL" --endpoints="$EP" endpoint status -w json | jq -r '.[0].Status.dbSize'; }
# snapshot status as "hash revision totalKey"
snap_status() { "$ETCDUTL" snapshot status "$1" -w json | jq -r '"\(.hash) \(.revision) \(.totalKey)"'; }

human() {  # bytes -> KiB/MiB/GiB
  awk -v b="$1" 'BEGIN { split("B KiB MiB GiB TiB", u, " "); i = 1; while (b >= 1024 && i < 5) { b /= 1024; i++ }
    if (i == 1) printf "%d B", b; else printf "%.1f %s", b, u[i] }'
}
secs() { awk -v s="$1" 'BEGIN { if (s < 10) printf "%.2f s", s; else printf "%.1f s", s }'; }
kib() { human $(( $1 * 1024 )); }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else print "n/a" }'; }
sum() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a + b }'; }
commas() { sed ':a;s/\B[0-9]\{3\}\>/,&/;ta' <<<"$1"; }

restore_flags=(--name "$MEMBER" --initial-cluster "$CLUSTER" --initial-advertise-peer-urls "$PEER")

# bench_size LABEL KEYS: load, back up both ways, (large: rewrite, back up again, restic), restore both ways, check.
bench_size() {
  local s=$1 keys=$2 d="$WORK/$1" last lastjson
  log "[$s] etcd with $keys keys of $VALUE_SIZE bytes"
  start_etcd "$d"
  timed "load_$s" "$LOADER" --endpoint "$EP" --keys "$keys" --value-size "$VALUE_SIZE" --seed 1
  log "[$s] $(cat "$WORK/load_$s.out")"
  "$KMDR" -q --repo "$d/repo" repo init ${KMDR_CHUNK_AVG_KIB:+--chunk-avg-kib "$KMDR_CHUNK_AVG_KIB"} >/dev/null

  # a. one full backup each way, at the same moment (no writes in between).
  log "[$s] etcdctl snapshot save + zstd"
  timed "snap_$s" "$ETCDCTL" --endpoints="$EP" snapshot save "$d/snap1.db"
  V[db_$s]=$(db_size)   # after the snapshot: it commits etcd's pending batch, so the size is current
  timed "zstd_$s" zstd -q -3 -T2 -f "$d/snap1.db" -o "$d/snap1.db.zst"
  log "[$s] kmdr backup etcd"
  timed "kmdr_backup_$s" "$KMDR" -q -o json --repo "$d/repo" backup etcd --endpoints "$EP"
  V[snap_bytes_$s]=$(bytes_of "$d/snap1.db")
  V[zst_bytes_$s]=$(bytes_of "$d/snap1.db.zst")
  V[repo1_$s]=$(du_b "$d/repo")
  last=$d/snap1.db lastjson=$WORK/kmdr_backup_$s.out

  # b. incremental: rewrite a share of the keys, then a second backup each way.
  if [[ $s == large ]]; then
    log "[$s] rewriting $REWRITE_PERCENT% of the keys"
    timed "rewrite_$s" "$LOADER" --endpoint "$EP" --keys "$keys" --value-size "$VALUE_SIZE" --rewrite-percent "$REWRITE_PERCENT" --seed 2
    log "[$s] $(cat "$WORK/rewrite_$s.out")"
    V[rewritten]=$(awk '{ print $2 }' "$WORK/rewrite_$s.out")
    timed "snap2_$s" "$ETCDCTL" --endpoints="$EP" snapshot save "$d/snap2.db"
    V[db2_$s]=$(db_size)
    timed "zstd2_$s" zstd -q -3 -T2 -f "$d/snap2.db" -o "$d/snap2.db.zst"
    timed "kmdr_backup2_$s" "$KMDR" -q -o json --repo "$d/repo" backup etcd --endpoints "$EP"
    V[repo2_$s]=$(du_b "$d/repo")
    V[zst2_bytes_$s]=$(bytes_of "$d/snap2.db.zst")
    V[kmdr_new_chunks]=$(jq -r '"\(.stats.new_chunks) of \(.stats.chunks)"' "$WORK/kmdr_backup2_$s.out")
    last=$d/snap2.db lastjson=$WORK/kmdr_backup2_$s.out
  fi
  stop_etcd   # everything below works on files

  if [[ $s == large ]]; then
    log "[$s] restic backup of the same two snapshot files"
    mkdir -p "$d/restic-src"
    restic -q --no-cache -r "$d/restic" init >/dev/null
    ln -f "$d/snap1.db" "$d/restic-src/snapshot.db"
    timed restic_backup1 restic -q --no-cache -r "$d/restic" backup "$d/restic-src/snapshot.db"
    V[restic1]=$(du_b "$d/restic")
    ln -f "$d/snap2.db" "$d/restic-src/snapshot.db"
    timed restic_backup2 restic -q --no-cache -r "$d/restic" backup "$d/restic-src/snapshot.db"
    V[restic2]=$(du_b "$d/restic")
  fi

  # c. restore: kmdr (fetch, verify, decrypt, etcdutl) vs etcdutl from the plain file.
  log "[$s] kmdr restore etcd latest"
  timed "kmdr_restore_$s" "$KMDR" -q --repo "$d/repo" restore etcd latest --data-dir "$d/restore-kmdr" "${restore_flags[@]}" --etcdutl "$ETCDUTL"
  log "[$s] etcdutl snapshot restore --bump-revision --mark-compacted"
  timed "etcdutl_restore_$s" "$ETCDUTL" snapshot restore "$last" --data-dir "$d/restore-plain" "${restore_flags[@]}" --bump-revision 1000000000 --mark-compacted
  timed "unzstd_$s" zstd -q -d -f "$last.zst" -o "$d/unzstd.db"
  # Correctness: kmdr's snapshot and the etcdctl one of the same moment hold the same
  # data (etcdutl's hash over keys and values, revision, key count); the files need not
  # be byte-identical. Same for the two restored members.
  log "[$s] checking"
  timed "kmdr_tofile_$s" "$KMDR" -q --repo "$d/repo" restore etcd latest --to-file "$d/kmdr-snapshot.db"
  local a b
  a=$(snap_status "$d/kmdr-snapshot.db"); b=$(snap_status "$last")
  [[ $a == "$b" ]] || die "[$s] kmdr's snapshot ($a) differs from etcdctl's of the same moment ($b) (hash revision keys)"
  local want
  want=$(jq -r '.files[0].sha256' "$lastjson")
  [[ $(sha256sum "$d/kmdr-snapshot.db" | cut -d' ' -f1) == "$want" ]] || die "[$s] --to-file output does not hash to the manifest's sha256 $want"
  [[ $(cut -d' ' -f2 <<<"$a") == $(jq -r '.source.revision' "$lastjson") ]] || die "[$s] snapshot revision $a differs from the manifest's $(jq -r '.source.revision' "$lastjson")"
  a=$(snap_status "$d/restore-kmdr/member/snap/db"); b=$(snap_status "$d/restore-plain/member/snap/db")
  [[ $a == "$b" ]] || die "[$s] restored members differ: kmdr $a, etcdutl $b (hash revision keys)"
  [[ -d $d/restore-kmdr/member/wal ]] || die "[$s] kmdr's restored data dir has no member/wal"
  V[check_$s]="ok (rev $(cut -d' ' -f2 <<<"$a"), hash $(cut -d' ' -f1 <<<"$a"))"
  log "[$s] snapshots and restored members match: ${V[check_$s]}"
  # A test restore (issue 16) against what it stands for: a restore plus an
  # etcd started on the restored data until it answers (after the checks: a start
  # changes the member's db).
  log "[$s] kmdr verify --restore"
  timed "kmdr_prove_$s" "$KMDR" -q --repo "$d/repo" verify --restore "$(jq -r .id "$lastjson")" --etcdutl "$ETCDUTL" --etcd "$ETCD"
  log "[$s] etcd started on the restored data dir"
  timed "etcd_start_$s" bash -c '"$1" --name "$2" --data-dir "$3" --listen-client-urls "$4" --advertise-client-urls "$4" --listen-peer-urls "$5" --initial-advertise-peer-urls "$5" --initial-cluster "$6" --log-level error >/dev/null 2>&1 & pid=$!
    for i in $(seq 1 300); do "$7" --endpoints="$4" endpoint health >/dev/null 2>&1 && break; sleep 0.05; done
    kill $pid; wait $pid 2>/dev/null; true' _ "$ETCD" "$MEMBER" "$d/restore-plain" "$EP" "$PEER" "$CLUSTER" "$ETCDCTL"

  rm -rf -- "$d/restore-kmdr" "$d/restore-plain" "$d/unzstd.db" "$d/kmdr-snapshot.db"
  [[ $s == large ]] || rm -rf -- "$d"
}

bench_size small "$SIZE_SMALL"
bench_size large "$SIZE_LARGE"

# ----------------------------------------------------------------- report ---
for s in small large; do
  WALL[pair_$s]=$(sum "${WALL[snap_$s]}" "${WALL[zstd_$s]}")
done
kmdr_added=$(( V[repo2_large] - V[repo1_large] ))
restic_added=$(( V[restic2] - V[restic1] ))
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
mem=$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)
rev=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
[[ -z $(cd "$ROOT" && git status --porcelain --untracked-files=no 2>/dev/null) ]] || rev="$rev (modified)"
repro=
for n in SIZE_SMALL SIZE_LARGE VALUE_SIZE REWRITE_PERCENT; do
  case $n:${!n} in SIZE_SMALL:50000|SIZE_LARGE:200000|VALUE_SIZE:1024|REWRITE_PERCENT:1) ;; *) repro+="$n=${!n} " ;; esac
done
repro+="scripts/bench-etcd.sh"
S=$(commas "$SIZE_SMALL") L=$(commas "$SIZE_LARGE")
row() { printf '| %s | %s | %s |\n' "$@"; }

{
  echo "### etcd: kmdr vs etcdctl + zstd, restic ($(date -u +%Y-%m-%d))"
  echo
  echo "- Machine: $(nproc) CPUs, $cpu, $mem RAM; scratch dir on $(df -P "$WORK" | awk 'NR == 2 { print $1 }')"
  echo "- kmdr $rev, etcd $ETCD_VERSION (built from source), $(restic version | cut -d' ' -f1-2), zstd $(zstd -V | sed -n 's/.* v\([0-9.]*\),.*/\1/p')"
  echo "- Data: keys \`/bench/key-%08d\` with $VALUE_SIZE-byte pseudo-random values, loaded in transactions of 128 puts; one etcd member on 127.0.0.1, local repositories"
  echo
  row "" "$S keys" "$L keys"
  row "---" "---:" "---:"
  row "etcd db size" "$(human "${V[db_small]}")" "$(human "${V[db_large]}")"
  row "snapshot file" "$(human "${V[snap_bytes_small]}")" "$(human "${V[snap_bytes_large]}")"
  row "**backup:** \`kmdr backup etcd\` (fresh repository)" "$(secs "${WALL[kmdr_backup_small]}")" "$(secs "${WALL[kmdr_backup_large]}")"
  row "\`etcdctl snapshot save\`" "$(secs "${WALL[snap_small]}")" "$(secs "${WALL[snap_large]}")"
  row "\`zstd -3 -T2\` of that file" "$(secs "${WALL[zstd_small]}")" "$(secs "${WALL[zstd_large]}")"
  row "etcdctl + zstd" "$(secs "${WALL[pair_small]}")" "$(secs "${WALL[pair_large]}")"
  row "ratio kmdr / (etcdctl + zstd)" "$(ratio "${WALL[kmdr_backup_small]}" "${WALL[pair_small]}")" "$(ratio "${WALL[kmdr_backup_large]}" "${WALL[pair_large]}")"
  row "peak RSS, \`kmdr backup etcd\`" "$(kib "${RSS[kmdr_backup_small]}")" "$(kib "${RSS[kmdr_backup_large]}")"
  row "peak RSS, \`etcdctl snapshot save\`" "$(kib "${RSS[snap_small]}")" "$(kib "${RSS[snap_large]}")"
  row "stored: kmdr repository / \`.zst\` file" "$(human "${V[repo1_small]}") / $(human "${V[zst_bytes_small]}")" "$(human "${V[repo1_large]}") / $(human "${V[zst_bytes_large]}")"
  row "**restore:** \`kmdr restore etcd latest --data-dir\`" "$(secs "${WALL[kmdr_restore_small]}")" "$(secs "${WALL[kmdr_restore_large]}")"
  row "\`etcdutl snapshot restore --bump-revision 1000000000 --mark-compacted\` from the plain file" "$(secs "${WALL[etcdutl_restore_small]}")" "$(secs "${WALL[etcdutl_restore_large]}")"
  row "ratio kmdr / etcdutl" "$(ratio "${WALL[kmdr_restore_small]}" "${WALL[etcdutl_restore_small]}")" "$(ratio "${WALL[kmdr_restore_large]}" "${WALL[etcdutl_restore_large]}")"
  row "(\`zstd -d\` of the \`.zst\`, not included above)" "$(secs "${WALL[unzstd_small]}")" "$(secs "${WALL[unzstd_large]}")"
  row "peak RSS, \`kmdr restore etcd\` (the largest of kmdr and its etcdutl child)" "$(kib "${RSS[kmdr_restore_small]}")" "$(kib "${RSS[kmdr_restore_large]}")"
  row "\`kmdr restore etcd --to-file\` (fetch, verify, decrypt only): time / peak RSS" "$(secs "${WALL[kmdr_tofile_small]}") / $(kib "${RSS[kmdr_tofile_small]}")" "$(secs "${WALL[kmdr_tofile_large]}") / $(kib "${RSS[kmdr_tofile_large]}")"
  row "peak RSS, \`etcdutl snapshot restore\` (maps the whole db)" "$(kib "${RSS[etcdutl_restore_small]}")" "$(kib "${RSS[etcdutl_restore_large]}")"
  row "check: snapshot status of \`--to-file\` = etcdctl's, restored members equal" "${V[check_small]}" "${V[check_large]}"
  row "**test restore:** \`kmdr verify --restore ID\` (byte check, restore, scratch etcd, read back)" "$(secs "${WALL[kmdr_prove_small]}")" "$(secs "${WALL[kmdr_prove_large]}")"
  row "\`kmdr restore etcd\` + an etcd started on the restored data until it answers" "$(secs "$(sum "${WALL[kmdr_restore_small]}" "${WALL[etcd_start_small]}")")" "$(secs "$(sum "${WALL[kmdr_restore_large]}" "${WALL[etcd_start_large]}")")"
  row "ratio test restore / (restore + start)" "$(ratio "${WALL[kmdr_prove_small]}" "$(sum "${WALL[kmdr_restore_small]}" "${WALL[etcd_start_small]}")")" "$(ratio "${WALL[kmdr_prove_large]}" "$(sum "${WALL[kmdr_restore_large]}" "${WALL[etcd_start_large]}")")"
  row "peak RSS, \`kmdr verify --restore\`" "$(kib "${RSS[kmdr_prove_small]}")" "$(kib "${RSS[kmdr_prove_large]}")"
  echo
  echo "Second backup of the $L-key db after rewriting ${V[rewritten]} random keys ($REWRITE_PERCENT%); etcd db $(human "${V[db_large]}") → $(human "${V[db2_large]}"). The etcdctl snapshots were taken right before each kmdr backup, with no writes in between, and restic backed up those two files."
  echo
  printf '| %s | %s | %s | %s |\n' "" "kmdr" "restic" "etcdctl + zstd (full copy)"
  printf '| %s | %s | %s | %s |\n' "---" "---:" "---:" "---:"
  printf '| %s | %s | %s | %s |\n' "bytes added by the second backup" "$(human "$kmdr_added")" "$(human "$restic_added")" "$(human "${V[zst2_bytes_large]}")"
  printf '| %s | %s | %s | %s |\n' "ratio to kmdr" "1.00×" "$(ratio "$restic_added" "$kmdr_added")" "$(ratio "${V[zst2_bytes_large]}" "$kmdr_added")"
  printf '| %s | %s | %s | %s |\n' "repository after both backups" "$(human "${V[repo2_large]}")" "$(human "${V[restic2]}")" "$(human $(( V[zst_bytes_large] + V[zst2_bytes_large] )))"
  printf '| %s | %s | %s | %s |\n' "wall time of the second backup" "$(secs "${WALL[kmdr_backup2_large]}")" "$(secs "${WALL[restic_backup2]}") (from the file)" "$(secs "$(sum "${WALL[snap2_large]}" "${WALL[zstd2_large]}")")"
  printf '| %s | %s | %s | %s |\n' "new chunks (kmdr)" "${V[kmdr_new_chunks]}" "" ""
  echo
  echo "Times are wall clock; peak RSS from GNU time (\`%M\`). Reproduce: \`$repro\`"
} > "$WORK/table.md"

mkdir -p "$(dirname "$BENCH_OUT")"
cp "$WORK/table.md" "$BENCH_OUT"
cat "$WORK/table.md"
log "table also written to $BENCH_OUT"
