#!/usr/bin/env bash
# A large etcd (issue 17, item 5): `kmdr backup etcd` against `etcdctl snapshot
# save` + `zstd -3 -T2`, and `kmdr restore etcd` against `etcdutl snapshot
# restore` alone, side by side in one run, with kmdr's own phase (the snapshot
# file written: fetch, authenticate, decrypt, decompress) timed alone as
# `kmdr restore etcd --to-file`.
#
#   DB_GIB=8 scripts/bench-etcd-large.sh    # etcd's maximum quota: needs ~45 GB of disk
#   DB_GIB=2 ROUNDS=3 scripts/bench-etcd-large.sh
#
# The etcd is filled with keys of VALUE_SIZE pseudo-random bytes (`etcd_load`)
# until its snapshot is about DB_GIB GiB. Each round, alternating which side goes
# first: backup (kmdr into a fresh local repository; etcdctl to a file, then
# zstd), restore (kmdr from that repository into a data dir; etcdutl from the
# plain file, both with --bump-revision 1000000000 --mark-compacted). Medians of
# wall time, of CPU time (user + sys of the command and its children, GNU time)
# and peak RSS. Files are removed as soon as a step is done, so the peak disk use
# is about 5x the db.
#
# Settings: DB_GIB=8 VALUE_SIZE=4096 KEYS (default: from DB_GIB) ROUNDS=3 BENCH_TMPDIR BENCH_OUT=target/bench-etcd-large.md
set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DB_GIB=${DB_GIB:-8}
VALUE_SIZE=${VALUE_SIZE:-4096}
ROUNDS=${ROUNDS:-3}
BENCH_OUT=${BENCH_OUT:-$ROOT/target/bench-etcd-large.md}

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# shellcheck disable=SC2046
unset $(compgen -v ETCDCTL_) KMDR_REPO KMDR_ETCDUTL 2>/dev/null || true
# shellcheck source=scripts/tools-env.sh
source "$ROOT/scripts/tools-env.sh"
for t in etcd etcdctl etcdutl zstd jq; do command -v "$t" >/dev/null || die "$t not found on PATH"; done

log "building kmdr and etcd_load (release)"
(cd "$ROOT" && cargo build --release --workspace --bins --examples -q) >&2
TARGET_DIR=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
KMDR=$TARGET_DIR/release/kmdr LOADER=$TARGET_DIR/release/examples/etcd_load

WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/kmdr-bench-etcd-large.XXXXXX")
ETCD_PID=
# `|| true`: under set -e, etcd's 143 from wait would end the trap before the rm.
trap '[[ -z $ETCD_PID ]] || { kill $ETCD_PID; wait $ETCD_PID || true; } 2>/dev/null; rm -rf -- "$WORK"' EXIT
export KMDR_KEY_FILE=$WORK/kmdr.key
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
declare -A WALL CPU RSS V

timed() {  # timed NAME CMD...
  local name=$1 t0 t1; shift
  sync
  t0=$EPOCHREALTIME
  /usr/bin/time -f '%U %S %M' -o "$WORK/$name.time" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" \
    || { tail -n 20 "$WORK/$name.err" >&2; die "step $name failed"; }
  t1=$EPOCHREALTIME
  WALL[$name]=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
  read -r u s m < <(tail -n 1 "$WORK/$name.time")
  CPU[$name]=$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }')
  RSS[$name]=$(( m / 1024 ))
  log "  $name: ${WALL[$name]} s wall, ${CPU[$name]} s CPU, ${RSS[$name]} MiB"
}

cp=$(port); pp=$(port); ep=http://127.0.0.1:$cp
flags=(--name b --initial-cluster "b=http://127.0.0.1:$pp" --initial-advertise-peer-urls "http://127.0.0.1:$pp")
etcd "${flags[@]}" --data-dir "$WORK/etcd" --listen-client-urls "$ep" --advertise-client-urls "$ep" \
  --listen-peer-urls "http://127.0.0.1:$pp" --quota-backend-bytes 8589934592 --log-level error >"$WORK/etcd.log" 2>&1 &
ETCD_PID=$!
until etcdctl --endpoints "$ep" endpoint health >/dev/null 2>&1; do kill -0 "$ETCD_PID" || die "etcd exited"; sleep 0.2; done
# Keys for DB_GIB GiB: about 1.07x the values' bytes once in bbolt (measured at 1 and 4 KiB values).
# KEYS overrides it: a value of exactly 4096 bytes spills each record over two
# bbolt pages (about 6 KiB a key), so DB_GIB=8 at 4096 hits the 8 GiB quota at
# 1.4 million keys; VALUE_SIZE=3800 KEYS=1800000 is one page a key, about 7 GiB.
KEYS=${KEYS:-$(( DB_GIB * 1024 * 1024 * 1024 / VALUE_SIZE * 100 / 107 ))}
log "loading $KEYS keys of $VALUE_SIZE bytes"
timed load "$LOADER" --endpoint "$ep" --keys "$KEYS" --value-size "$VALUE_SIZE" --seed 1

kmdr_backup() {
  rm -rf "$WORK/repo"; "$KMDR" -q --repo "$WORK/repo" repo init >/dev/null
  timed "kmdr_backup_$1" "$KMDR" -q -o json --repo "$WORK/repo" backup etcd --endpoints "$ep"
}
tool_backup() {
  rm -f "$WORK/snap.db" "$WORK/snap.db.zst"
  timed "snap_$1" etcdctl --endpoints "$ep" snapshot save "$WORK/snap.db"
  timed "zstd_$1" zstd -q -3 -T2 -f "$WORK/snap.db" -o "$WORK/snap.db.zst"
  rm -f "$WORK/snap.db.zst"
  WALL[pair_$1]=$(awk -v a="${WALL[snap_$1]}" -v b="${WALL[zstd_$1]}" 'BEGIN { printf "%.2f", a + b }')
  CPU[pair_$1]=$(awk -v a="${CPU[snap_$1]}" -v b="${CPU[zstd_$1]}" 'BEGIN { printf "%.2f", a + b }')
}
kmdr_restore() {
  rm -rf "$WORK/r-kmdr"
  timed "kmdr_restore_$1" "$KMDR" -q -o json --repo "$WORK/repo" restore etcd latest --data-dir "$WORK/r-kmdr" "${flags[@]}" --etcdutl "$(command -v etcdutl)"
  rm -rf "$WORK/r-kmdr"
  # kmdr's own phase alone: the snapshot file (fetch, authenticate, decrypt, decompress, sha256, fsync).
  rm -f "$WORK/k.db"
  timed "tofile_$1" "$KMDR" -q --repo "$WORK/repo" restore etcd latest --to-file "$WORK/k.db"
  rm -f "$WORK/k.db"
}
tool_restore() {
  rm -rf "$WORK/r-plain"
  timed "etcdutl_$1" etcdutl snapshot restore "$WORK/snap.db" --data-dir "$WORK/r-plain" "${flags[@]}" --bump-revision 1000000000 --mark-compacted
  rm -rf "$WORK/r-plain"
}

for r in $(seq 1 "$ROUNDS"); do
  log "round $r: backup"
  if (( r % 2 )); then kmdr_backup "$r"; tool_backup "$r"; else tool_backup "$r"; kmdr_backup "$r"; fi
  (( r > 1 )) || { V[db]=$(stat -c %s "$WORK/snap.db"); V[repo]=$(du -sb "$WORK/repo" | cut -f1); }
  # Sizes, not bytes: each Snapshot call commits etcd's backend first (a new txid).
  [[ $(jq -r '.files[0].size' "$WORK/kmdr_backup_$r.out") == "$(stat -c %s "$WORK/snap.db")" ]] \
    || die "kmdr's snapshot differs from etcdctl's of the same moment"
  log "round $r: restore"
  if (( r % 2 )); then kmdr_restore "$r"; tool_restore "$r"; else tool_restore "$r"; kmdr_restore "$r"; fi
done
kill "$ETCD_PID"; wait "$ETCD_PID" 2>/dev/null || true; ETCD_PID=

med() {  # med ARRAY PREFIX
  local -n a=$1
  for r in $(seq 1 "$ROUNDS"); do echo "${a[$2_$r]}"; done | sort -n \
    | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.2f", m }'
}
runs() { local -n a=$1; for r in $(seq 1 "$ROUNDS"); do printf '%s ' "${a[$2_$r]}"; done; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f×", a / b }'; }
rev=$(cd "$ROOT" && git rev-parse --short HEAD)
[[ -z $(cd "$ROOT" && git status --porcelain --untracked-files=no) ]] || rev="$rev (modified)"
{
  echo "### A $(awk -v b="${V[db]}" 'BEGIN { printf "%.2f GiB", b / 1073741824 }') etcd ($KEYS keys of $VALUE_SIZE B; $(date -u +%Y-%m-%d), kmdr $rev, etcd $(etcd --version | sed -n 's/^etcd Version: //p'), load average $(cut -d' ' -f1-3 /proc/loadavg) at the end)"
  echo
  echo "| median of $ROUNDS | wall | CPU (user + sys) | peak RSS | runs (wall s) |"
  echo "|---|---:|---:|---:|---|"
  echo "| \`kmdr backup etcd\` (fresh local repository) | $(med WALL kmdr_backup) s | $(med CPU kmdr_backup) s | $(med RSS kmdr_backup) MiB | $(runs WALL kmdr_backup) |"
  echo "| \`etcdctl snapshot save\` | $(med WALL snap) s | $(med CPU snap) s | $(med RSS snap) MiB | $(runs WALL snap) |"
  echo "| \`zstd -3 -T2\` | $(med WALL zstd) s | $(med CPU zstd) s | $(med RSS zstd) MiB | $(runs WALL zstd) |"
  echo "| etcdctl + zstd | $(med WALL pair) s | $(med CPU pair) s | | $(runs WALL pair) |"
  echo "| **ratio kmdr / (etcdctl + zstd)** | **$(ratio "$(med WALL kmdr_backup)" "$(med WALL pair)")** | $(ratio "$(med CPU kmdr_backup)" "$(med CPU pair)") | | |"
  echo "| \`kmdr restore etcd --data-dir\` | $(med WALL kmdr_restore) s | $(med CPU kmdr_restore) s | $(med RSS kmdr_restore) MiB | $(runs WALL kmdr_restore) |"
  echo "| kmdr's phase alone: \`restore etcd --to-file\` (fetch, authenticate, decrypt, decompress; + sha256, fsync) | $(med WALL tofile) s | $(med CPU tofile) s | $(med RSS tofile) MiB | $(runs WALL tofile) |"
  echo "| \`etcdutl snapshot restore\` from the plain file | $(med WALL etcdutl) s | $(med CPU etcdutl) s | $(med RSS etcdutl) MiB | $(runs WALL etcdutl) |"
  echo "| **ratio kmdr / etcdutl** | **$(ratio "$(med WALL kmdr_restore)" "$(med WALL etcdutl)")** | $(ratio "$(med CPU kmdr_restore)" "$(med CPU etcdutl)") | | |"
  echo
  echo "Snapshot $(awk -v b="${V[db]}" 'BEGIN { printf "%.0f MiB", b / 1048576 }'), kmdr repository $(awk -v b="${V[repo]}" 'BEGIN { printf "%.0f MiB", b / 1048576 }'). Reproduce: \`DB_GIB=$DB_GIB ROUNDS=$ROUNDS$( [[ $VALUE_SIZE == 4096 ]] || printf ' VALUE_SIZE=%s' "$VALUE_SIZE") KEYS=$KEYS scripts/bench-etcd-large.sh\`"
} >"$WORK/table.md"
mkdir -p "$(dirname "$BENCH_OUT")"; cp "$WORK/table.md" "$BENCH_OUT"; cat "$WORK/table.md"
