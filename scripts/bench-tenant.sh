#!/usr/bin/env bash
# Benchmark kmdr's per-tenant backup and restore (`kmdr backup tenant`,
# `kmdr restore tenant`) against the tools an operator would otherwise use, side
# by side in one run, for each Kamaji datastore driver, and print a Markdown
# table (stdout; also written to $BENCH_OUT).
#
#   scripts/bench-tenant.sh              # 100,000 keys of ~1 KiB
#   KEYS=5000 scripts/bench-tenant.sh    # a quick check
#
# Per driver, on one tenant of KEYS Kubernetes-shaped keys (kmdr_testkit::data::kube_records,
# seeded with the tenant_seed example through kmdr's own import path):
#   etcd      backup:  kmdr backup tenant  vs  etcdctl get /bench/ --prefix -w json > file
#             restore: kmdr restore tenant into an empty etcd  vs  etcdctl make-mirror into
#                      another empty etcd (start -> the destination holds KEYS keys)
#   postgres  backup:  kmdr  vs  pg_dump -Fc -t kine, and vs etcdctl get /registry/ --prefix -w json
#                      through kine serving that database (what an operator could do with
#                      the tenant's own etcd API)
#             restore: kmdr into a new database  vs  createdb && pg_restore
#   mariadb   backup:  kmdr  vs  mysqldump --single-transaction bench kine > file
#             restore: kmdr into a new database  vs  CREATE DATABASE && mysql < file
#   nats      backup and restore with kmdr only (keys/s); no stock tool to compare with
#
# Settings (environment):
#   KEYS=100000 VALUE_SIZE=1024       keys in the tenant, mean value size in bytes
#                                     (values are VALUE_SIZE/2..1.5*VALUE_SIZE pseudo-random bytes)
#   DRIVERS="etcd postgres mariadb nats"   which drivers to run
#   PORT_BASE=26400                   etcd uses PORT_BASE..+5, postgres +10, mariadb +11, nats +12, kine +13
#   BENCH_TMPDIR=$TMPDIR|/tmp         where the scratch dir goes
#   BENCH_OUT=target/bench-tenant.md  copy of the table
#   KEEP_WORKDIR=1                    keep the scratch dir (for debugging)
#   MY_ROUNDS=5                       MariaDB backup rounds (kmdr and mysqldump alternate
#                                     going first; medians of wall, CPU and server CPU)
#
# Needs: cargo, python3, jq, GNU time, and the servers/tools that scripts/tools-env.sh
# puts on PATH (etcd 3.6 and kine from Go source, nats-server, PostgreSQL 15) plus Debian's MariaDB.
# Starts its servers on 127.0.0.1 and kills only those (by pid); removes its
# scratch dir on exit. PostgreSQL runs as the `postgres` OS user.
set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KEYS=${KEYS:-100000}
VALUE_SIZE=${VALUE_SIZE:-1024}
DRIVERS=${DRIVERS:-etcd postgres mariadb nats}
PORT_BASE=${PORT_BASE:-26400}
BENCH_OUT=${BENCH_OUT:-$ROOT/target/bench-tenant.md}
KEEP_WORKDIR=${KEEP_WORKDIR:-0}
MY_ROUNDS=${MY_ROUNDS:-5}
ETCD_QUOTA_BACKEND_BYTES=8589934592
PW=kmdr-bench-pw

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

for n in KEYS VALUE_SIZE PORT_BASE; do
  [[ ${!n} =~ ^[1-9][0-9]*$ ]] || die "$n must be a positive integer (got '${!n}')"
done

# Nothing from the caller's environment may redirect a tool elsewhere.
# shellcheck disable=SC2046
unset $(compgen -v ETCDCTL_) $(compgen -v PG) $(compgen -v MYSQL_) KMDR_REPO KMDR_DATASTORE_PASSWORD 2>/dev/null || true

# shellcheck source=scripts/tools-env.sh
source "$ROOT/scripts/tools-env.sh"

# ---------------------------------------------------------------- cleanup ---
WORK=
declare -A PIDS=()   # name -> pid of a server (or background tool) this script started
stop() {  # stop NAME: kill the process started under NAME and wait for it
  local pid=${PIDS[$1]:-}
  [[ -n $pid ]] || return 0
  kill "$pid" 2>/dev/null || true
  local i
  for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset "PIDS[$1]"
}
cleanup() {
  local rc=$? n
  trap - EXIT
  for n in "${!PIDS[@]}"; do stop "$n"; done
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
[[ -x /usr/bin/time ]] || die "needs GNU time (/usr/bin/time): apt-get install time"
for t in jq etcd etcdctl kine nats-server initdb postgres pg_isready psql pg_dump pg_restore createdb \
         mariadbd mariadb-install-db mariadb mysql mysqldump setpriv; do
  command -v "$t" >/dev/null || die "$t not found on PATH"
done

ETCD_VERSION=$(etcd --version | sed -n 's/^etcd Version: //p')

# ------------------------------------------------------------------ build ---
log "building kmdr and tenant_seed (release)"
(cd "$ROOT" && cargo build --release --workspace --bins --examples -q)
TARGET_DIR=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
KMDR=$TARGET_DIR/release/kmdr
SEED=$TARGET_DIR/release/examples/tenant_seed
[[ -x $KMDR && -x $SEED ]] || die "build did not produce $KMDR and $SEED"

WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/kmdr-bench-tenant.XXXXXX")
export KMDR_REPO=$WORK/repo KMDR_KEY_FILE=$WORK/kmdr.key
log "scratch dir $WORK"
"$KMDR" -q repo init --repo "$KMDR_REPO" --key-file "$KMDR_KEY_FILE" >/dev/null

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
  log "  $name: ${WALL[$name]} s, peak RSS ${RSS[$name]} KiB"
}

# timed_cpu NAME PID CMD...: timed, plus CPU[NAME] (the command's user + sys, s) and
# SRV[NAME] (the CPU the server PID used meanwhile, s).
declare -A CPU SRV
timed_cpu() {
  local name=$1 pid=$2 s0 s1; shift 2
  s0=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
  timed "$name" /usr/bin/time -f 'cpu %U %S' -o "$WORK/$name.cpu" "$@"
  s1=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
  CPU[$name]=$(awk '/^cpu / { printf "%.2f", $2 + $3 }' "$WORK/$name.cpu")
  SRV[$name]=$(awk -v a="$s0" -v b="$s1" -v t="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", (b - a) / t }')
  log "  $name: CPU ${CPU[$name]} s, server CPU ${SRV[$name]} s"
}
# median_of NAME...: WALL/RSS/CPU/SRV[NAME] = medians of NAME_1..NAME_$MY_ROUNDS; RUNS[NAME] lists the walls.
declare -A RUNS
median_of() {
  local n r a
  for n in "$@"; do
    for a in WALL RSS CPU SRV; do
      local -n arr=$a
      arr[$n]=$(for r in $(seq 1 "$MY_ROUNDS"); do echo "${arr[${n}_$r]}"; done | sort -n \
        | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; print m }')
    done
    RUNS[$n]=$(for r in $(seq 1 "$MY_ROUNDS"); do printf '%s, ' "${WALL[${n}_$r]}"; done | sed 's/, $//')
  done
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() { ! port_in_use "$1" || die "port $1 on 127.0.0.1 is in use: set PORT_BASE"; }
human() {  # bytes -> KiB/MiB/GiB
  awk -v b="$1" 'BEGIN { split("B KiB MiB GiB TiB", u, " "); i = 1; while (b >= 1024 && i < 5) { b /= 1024; i++ }
    if (i == 1) printf "%d B", b; else printf "%.1f %s", b, u[i] }'
}
secs() { awk -v s="$1" 'BEGIN { if (s < 10) printf "%.2f s", s; else printf "%.1f s", s }'; }
kib() { human $(( $1 * 1024 )); }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else print "n/a" }'; }
rate() { awk -v n="$KEYS" -v s="$1" 'BEGIN { if (s > 0) printf "%.0f keys/s", n / s; else print "n/a" }'; }
commas() { sed ':a;s/\B[0-9]\{3\}\>/,&/;ta' <<<"$1"; }
# The keys a kmdr restore wrote, from its JSON output (any field named "written").
kmdr_written() { jq -r '[.. | objects | .written? // empty] | first // "?"' "$WORK/$1.out"; }
want_keys() {  # want_keys WHAT GOT
  [[ $2 == "$KEYS" ]] || die "$1 holds $2 keys, expected $KEYS"
}

# ------------------------------------------------------------------- etcd ---
start_etcd() {  # start_etcd NAME CLIENT_PORT PEER_PORT
  local name=$1 cp=$2 pp=$3 dir=$WORK/$1 i
  free_port "$cp"; free_port "$pp"
  mkdir -p "$dir"
  etcd --name "$name" --data-dir "$dir/data" \
    --listen-client-urls "http://127.0.0.1:$cp" --advertise-client-urls "http://127.0.0.1:$cp" \
    --listen-peer-urls "http://127.0.0.1:$pp" --initial-advertise-peer-urls "http://127.0.0.1:$pp" \
    --initial-cluster "$name=http://127.0.0.1:$pp" --initial-cluster-state new \
    --quota-backend-bytes "$ETCD_QUOTA_BACKEND_BYTES" --log-level warn >"$dir/etcd.log" 2>&1 &
  PIDS[$name]=$!
  for i in $(seq 1 150); do
    kill -0 "${PIDS[$name]}" 2>/dev/null || { tail -n 20 "$dir/etcd.log" >&2; unset "PIDS[$name]"; die "etcd $name exited at start"; }
    if etcdctl --endpoints="127.0.0.1:$cp" endpoint health >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  die "etcd $name did not become healthy in 30 s (see $dir/etcd.log)"
}
etcd_count() {
  etcdctl --endpoints="127.0.0.1:$1" get /bench/ --prefix --count-only -w fields | awk '$1 == "\"Count\"" { print $3; f = 1 } END { if (!f) print 0 }'
}

# mirror_until_full SRC DST: time `etcdctl make-mirror` from its start until DST holds KEYS keys.
mirror_until_full() {
  local src=$1 dst=$2 t0 t1 n=0 tpid mpid
  sync
  t0=$EPOCHREALTIME
  /usr/bin/time -f '%e %M' -o "$WORK/etcd_mirror.time" \
    etcdctl --endpoints="127.0.0.1:$src" make-mirror --prefix /bench/ "127.0.0.1:$dst" \
    >"$WORK/etcd_mirror.out" 2>"$WORK/etcd_mirror.err" &
  tpid=$!
  PIDS[mirror_time]=$tpid
  while :; do
    sleep 0.1
    n=$(etcd_count "$dst")
    (( n >= KEYS )) && break
    kill -0 "$tpid" 2>/dev/null || { tail -n 20 "$WORK/etcd_mirror.err" >&2; die "make-mirror exited after $n keys"; }
  done
  t1=$EPOCHREALTIME
  # End make-mirror itself (the child of GNU time), so time still writes its peak RSS.
  mpid=$(ps -o pid= --ppid "$tpid" | tr -d ' ' | head -n 1)
  [[ -n $mpid ]] && kill "$mpid" 2>/dev/null || true
  wait "$tpid" 2>/dev/null || true
  unset "PIDS[mirror_time]"
  WALL[etcd_tool_restore]=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
  RSS[etcd_tool_restore]=$(grep -E '^[0-9.]+ [0-9]+$' "$WORK/etcd_mirror.time" | tail -n 1 | awk '{ print $2 }')
  RSS[etcd_tool_restore]=${RSS[etcd_tool_restore]:-0}
  log "  etcd_tool_restore: ${WALL[etcd_tool_restore]} s (make-mirror start -> $n keys in the destination)"
}

bench_etcd() {
  local a=$((PORT_BASE)) b=$((PORT_BASE + 2)) c=$((PORT_BASE + 4))
  log "[etcd] three etcd $ETCD_VERSION members on 127.0.0.1:$a, :$b, :$c"
  start_etcd etcd-src "$a" $((a + 1))
  start_etcd etcd-kmdr "$b" $((b + 1))
  start_etcd etcd-mirror "$c" $((c + 1))
  log "[etcd] seeding $KEYS keys under /bench/"
  timed etcd_seed "$SEED" --datastore "etcd://127.0.0.1:$a" --schema bench --keys "$KEYS" --value-size "$VALUE_SIZE" --seed 1
  want_keys "source etcd" "$(etcd_count "$a")"
  log "[etcd] backup"
  timed etcd_kmdr_backup "$KMDR" -q -o json backup tenant --datastore "etcd://127.0.0.1:$a" --schema bench
  timed etcd_tool_backup bash -c 'etcdctl --endpoints="$1" get /bench/ --prefix -w json > "$2"' _ "127.0.0.1:$a" "$WORK/etcd-get.json"
  V[etcd_tool_file]=$(stat -c %s "$WORK/etcd-get.json")
  want_keys "etcdctl get output" "$(jq -r '.count' "$WORK/etcd-get.json")"
  rm -f -- "$WORK/etcd-get.json"
  log "[etcd] restore"
  timed etcd_kmdr_restore "$KMDR" -o json restore tenant latest --source-schema bench --datastore "etcd://127.0.0.1:$b"
  want_keys "etcd restored by kmdr" "$(etcd_count "$b")"
  mirror_until_full "$a" "$c"
  want_keys "etcd filled by make-mirror" "$(etcd_count "$c")"
  stop etcd-src; stop etcd-kmdr; stop etcd-mirror
  rm -rf -- "$WORK/etcd-src" "$WORK/etcd-kmdr" "$WORK/etcd-mirror"
  V[etcd_tool_backup_name]='`etcdctl get /bench/ --prefix -w json`'
  V[etcd_tool_restore_name]='`etcdctl make-mirror --prefix /bench/` (until N keys)'
}

# --------------------------------------------------------------- postgres ---
bench_postgres() {
  local port=$((PORT_BASE + 10)) dir=$WORK/pg i
  free_port "$port"
  log "[postgres] PostgreSQL 15 on 127.0.0.1:$port"
  chmod 711 "$WORK"
  mkdir -p "$dir/sock"
  printf '%s' "$PW" >"$dir/pwfile"
  chown -R postgres:postgres "$dir"
  (cd "$dir" && setpriv --reuid=postgres --regid=postgres --init-groups \
    initdb -D "$dir/data" -U kmdr --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C --no-sync \
    --pwfile="$dir/pwfile" >"$WORK/pg_initdb.log" 2>&1) || { tail -n 20 "$WORK/pg_initdb.log" >&2; die "initdb failed"; }
  # The testkit's settings: no fsync (the same for kmdr and the stock tools).
  (cd "$dir" && exec setpriv --reuid=postgres --regid=postgres --init-groups \
    postgres -D "$dir/data" -p "$port" -c listen_addresses=127.0.0.1 -c "unix_socket_directories=$dir/sock" \
    -c fsync=off -c full_page_writes=off -c max_connections=200) >/dev/null 2>"$dir/server.log" &
  PIDS[postgres]=$!
  for i in $(seq 1 300); do
    kill -0 "${PIDS[postgres]}" 2>/dev/null || { tail -n 20 "$dir/server.log" >&2; unset "PIDS[postgres]"; die "postgres exited at start"; }
    pg_isready -q -h 127.0.0.1 -p "$port" && break
    sleep 0.1
  done
  pg_isready -q -h 127.0.0.1 -p "$port" || die "postgres did not become ready (see $dir/server.log)"
  export PGHOST=127.0.0.1 PGPORT=$port PGUSER=kmdr PGPASSWORD=$PW
  local url="postgres://kmdr:$PW@127.0.0.1:$port"
  pgcount() { psql -X -q -A -t -d "$1" -c 'SELECT count(*) FROM kine WHERE deleted = 0 AND name LIKE '"'"'/registry/%'"'"''; }
  log "[postgres] seeding $KEYS keys into database bench"
  timed pg_seed "$SEED" --datastore "$url" --schema bench --keys "$KEYS" --value-size "$VALUE_SIZE" --seed 2
  want_keys "postgres database bench" "$(pgcount bench)"
  psql -X -q -d bench -c 'VACUUM ANALYZE kine' >/dev/null
  log "[postgres] backup"
  timed pg_kmdr_backup "$KMDR" -q -o json backup tenant --datastore "$url" --schema bench
  timed pg_tool_backup pg_dump -Fc -t kine -d bench -f "$WORK/bench.pgdump"
  V[pg_tool_file]=$(stat -c %s "$WORK/bench.pgdump")
  local kport=$((PORT_BASE + 13)) i
  free_port "$kport"
  log "[postgres] kine on database bench, 127.0.0.1:$kport"
  kine --endpoint "$url/bench?sslmode=disable" --listen-address "127.0.0.1:$kport" --metrics-bind-address 0 >"$dir/kine.log" 2>&1 &
  PIDS[kine]=$!
  for i in $(seq 1 150); do
    etcdctl --endpoints "http://127.0.0.1:$kport" endpoint status >/dev/null 2>&1 && break
    kill -0 "${PIDS[kine]}" 2>/dev/null || { tail -n 20 "$dir/kine.log" >&2; unset "PIDS[kine]"; die "kine exited at start"; }
    sleep 0.2
  done
  timed pgkine_tool_backup bash -c 'etcdctl --endpoints "$1" get /registry/ --prefix -w json > "$2"' _ "http://127.0.0.1:$kport" "$WORK/kine.json"
  # kine adds its own /registry/health key when it starts.
  want_keys "etcdctl get through kine" "$(( $(jq '.kvs | length' "$WORK/kine.json") - 1 ))"
  V[pgkine_tool_file]=$(stat -c %s "$WORK/kine.json")
  rm -f -- "$WORK/kine.json"
  stop kine
  WALL[pgkine_kmdr_backup]=${WALL[pg_kmdr_backup]} RSS[pgkine_kmdr_backup]=${RSS[pg_kmdr_backup]}
  V[pgkine_tool_backup_name]='`etcdctl get /registry/ --prefix -w json` through kine'
  log "[postgres] restore"
  timed pg_kmdr_restore "$KMDR" -o json restore tenant latest --source-schema bench --datastore "$url" --schema bench_k
  want_keys "postgres database bench_k (kmdr)" "$(pgcount bench_k)"
  timed pg_tool_restore bash -c 'createdb bench_p && pg_restore -d bench_p "$1"' _ "$WORK/bench.pgdump"
  want_keys "postgres database bench_p (pg_restore)" "$(pgcount bench_p)"
  rm -f -- "$WORK/bench.pgdump"
  unset PGHOST PGPORT PGUSER PGPASSWORD
  stop postgres
  rm -rf -- "$dir"
  V[pg_tool_backup_name]='`pg_dump -Fc -t kine`'
  V[pg_tool_restore_name]='`createdb` + `pg_restore`'
}

# ---------------------------------------------------------------- mariadb ---
bench_mariadb() {
  local port=$((PORT_BASE + 11)) dir=$WORK/mariadb i
  free_port "$port"
  log "[mariadb] $(mariadbd --version | awk '{ print $3 }') on 127.0.0.1:$port"
  mkdir -p "$dir"
  (cd "$dir" && mariadb-install-db --no-defaults --datadir="$dir/data" --auth-root-authentication-method=normal \
    --user=root --skip-test-db --innodb-use-native-aio=0 >"$WORK/mariadb_install.log" 2>&1) \
    || { tail -n 20 "$WORK/mariadb_install.log" >&2; die "mariadb-install-db failed"; }
  # The testkit's settings: relaxed log flushing, no binlog (the same for kmdr and the stock tools).
  (cd "$dir" && exec mariadbd --no-defaults --user=root --datadir="$dir/data" --socket="$dir/mysqld.sock" \
    --pid-file="$dir/mysqld.pid" --log-error="$dir/error.log" --port="$port" \
    --bind-address=127.0.0.1 --skip-name-resolve --skip-log-bin --max-allowed-packet=64M \
    --innodb-flush-log-at-trx-commit=2 --innodb-doublewrite=0 --innodb-use-native-aio=0) >/dev/null 2>&1 &
  PIDS[mariadb]=$!
  local sockq=(mariadb --no-defaults --socket="$dir/mysqld.sock" -u root --batch --skip-column-names)
  for i in $(seq 1 300); do
    kill -0 "${PIDS[mariadb]}" 2>/dev/null || { tail -n 20 "$dir/error.log" >&2; unset "PIDS[mariadb]"; die "mariadbd exited at start"; }
    "${sockq[@]}" -e 'SELECT 1' >/dev/null 2>&1 && break
    sleep 0.1
  done
  "${sockq[@]}" -e "ALTER USER root@'127.0.0.1' IDENTIFIED BY '$PW'; ALTER USER root@'::1' IDENTIFIED BY '$PW'; FLUSH PRIVILEGES;" \
    || die "mariadbd did not become ready (see $dir/error.log)"
  local url="mysql://root:$PW@127.0.0.1:$port"
  local tcp=(--no-defaults -h 127.0.0.1 -P "$port" -u root "-p$PW")
  mycount() { "${sockq[@]}" -e "SELECT count(*) FROM \`$1\`.kine WHERE deleted = 0 AND name LIKE '/registry/%'"; }
  log "[mariadb] seeding $KEYS keys into database bench"
  timed my_seed "$SEED" --datastore "$url" --schema bench --keys "$KEYS" --value-size "$VALUE_SIZE" --seed 3
  want_keys "mariadb database bench" "$(mycount bench)"
  log "[mariadb] backup, $MY_ROUNDS rounds, alternating which goes first"
  local r mpid
  mpid=$(cat "$dir/mysqld.pid")
  # Each kmdr round backs up into a new repository (the first backup: every
  # chunk compressed, encrypted and written); the restore below reads a backup
  # taken afterwards into the script's repository.
  my_kmdr() {
    "$KMDR" -q repo init --repo "$WORK/my-repo-$1" >/dev/null
    timed_cpu "my_kmdr_backup_$1" "$mpid" "$KMDR" -q -o json --repo "$WORK/my-repo-$1" backup tenant --datastore "$url" --schema bench
    rm -rf -- "$WORK/my-repo-$1"
  }
  my_tool() {
    timed_cpu "my_tool_backup_$1" "$mpid" bash -c 'f=$1; shift; mysqldump "$@" --single-transaction bench kine > "$f"' _ "$WORK/bench.sql" "${tcp[@]}"
  }
  for r in $(seq 1 "$MY_ROUNDS"); do
    if (( r % 2 )); then my_kmdr "$r"; my_tool "$r"; else my_tool "$r"; my_kmdr "$r"; fi
  done
  median_of my_kmdr_backup my_tool_backup
  "$KMDR" -q -o json backup tenant --datastore "$url" --schema bench >/dev/null
  V[my_tool_file]=$(stat -c %s "$WORK/bench.sql")
  log "[mariadb] restore"
  timed my_kmdr_restore "$KMDR" -o json restore tenant latest --source-schema bench --datastore "$url" --schema bench_k
  want_keys "mariadb database bench_k (kmdr)" "$(mycount bench_k)"
  timed my_tool_restore bash -c 'f=$1; shift; mysql "$@" -e "CREATE DATABASE bench_m" && mysql "$@" bench_m < "$f"' _ "$WORK/bench.sql" "${tcp[@]}"
  want_keys "mariadb database bench_m (mysql)" "$(mycount bench_m)"
  rm -f -- "$WORK/bench.sql"
  stop mariadb
  rm -rf -- "$dir"
  V[my_tool_backup_name]='`mysqldump --single-transaction bench kine`'
  V[my_tool_restore_name]='`CREATE DATABASE` + `mysql < dump`'
}

# ------------------------------------------------------------------- nats ---
bench_nats() {
  local port=$((PORT_BASE + 12)) dir=$WORK/nats i
  free_port "$port"
  log "[nats] nats-server $(nats-server --version | awk '{ print $NF }') with JetStream on 127.0.0.1:$port"
  mkdir -p "$dir/store"
  nats-server -js -sd "$dir/store" -a 127.0.0.1 -p "$port" --user kmdr --pass "$PW" >/dev/null 2>"$dir/nats.log" &
  PIDS[nats]=$!
  for i in $(seq 1 200); do
    kill -0 "${PIDS[nats]}" 2>/dev/null || { tail -n 20 "$dir/nats.log" >&2; unset "PIDS[nats]"; die "nats-server exited at start"; }
    port_in_use "$port" && break
    sleep 0.1
  done
  local url="nats://kmdr:$PW@127.0.0.1:$port"
  log "[nats] seeding $KEYS keys into bucket bench"
  timed nats_seed "$SEED" --datastore "$url" --schema bench --keys "$KEYS" --value-size "$VALUE_SIZE" --seed 4
  want_keys "nats bucket bench (seed)" "$(awk '{ print $2 }' "$WORK/nats_seed.out")"
  log "[nats] backup"
  timed nats_kmdr_backup "$KMDR" -q -o json backup tenant --datastore "$url" --schema bench
  log "[nats] restore"
  timed nats_kmdr_restore "$KMDR" -o json restore tenant latest --source-schema bench --datastore "$url" --schema bench_k
  stop nats
  rm -rf -- "$dir"
}

for d in $DRIVERS; do
  case $d in
    etcd) bench_etcd ;;
    postgres) bench_postgres ;;
    mariadb) bench_mariadb ;;
    nats) bench_nats ;;
    *) die "unknown driver $d (etcd postgres mariadb nats)" ;;
  esac
done

# Keys the kmdr restores report (checked against KEYS where the JSON has it).
for p in etcd pg my nats; do
  [[ -f $WORK/${p}_kmdr_restore.out ]] || continue
  w=$(kmdr_written "${p}_kmdr_restore")
  V[${p}_written]=$w
  want_keys "kmdr restore ($p) report" "$w"
done
V[repo]=$(du -sb "$KMDR_REPO" | cut -f1)

# ----------------------------------------------------------------- report ---
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
mem=$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)
rev=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
[[ -z $(cd "$ROOT" && git status --porcelain --untracked-files=no 2>/dev/null) ]] || rev="$rev (modified)"
repro=
[[ $KEYS == 100000 ]] || repro+="KEYS=$KEYS "
[[ $VALUE_SIZE == 1024 ]] || repro+="VALUE_SIZE=$VALUE_SIZE "
[[ $DRIVERS == "etcd postgres mariadb nats" ]] || repro+="DRIVERS=\"$DRIVERS\" "
repro+="scripts/bench-tenant.sh"
row() { printf '|'; printf ' %s |' "$@"; printf '\n'; }

declare -A LABEL=([etcd]="etcd $ETCD_VERSION" [pg]="PostgreSQL 15" [pgkine]="PostgreSQL 15, through kine" [my]="MariaDB" [nats]="NATS JetStream KV")
{
  echo "### Tenant backup and restore: kmdr vs stock tools ($(date -u +%Y-%m-%d))"
  echo
  echo "- Machine: $(nproc) CPUs, $cpu, $mem RAM; scratch dir on $(df -P "$WORK" | awk 'NR == 2 { print $1 }')"
  echo "- kmdr $rev; one tenant of $(commas "$KEYS") Kubernetes-shaped keys (\`kube_records\`), values of $((VALUE_SIZE / 2))..$((VALUE_SIZE * 3 / 2)) pseudo-random bytes (mean ≈ $VALUE_SIZE), seeded with \`tenant_seed\`; servers on 127.0.0.1, kmdr repository on local disk"
  echo
  row "driver" "step" "kmdr" "stock tool" "tool time" "kmdr / tool" "kmdr peak RSS" "tool peak RSS"
  row "---" "---" "---:" "---" "---:" "---:" "---:" "---:"
  for p in etcd pg pgkine my nats; do
    [[ -n ${WALL[${p}_kmdr_backup]:-} ]] || continue
    if [[ $p == nats ]]; then
      row "${LABEL[$p]}" "backup" "$(secs "${WALL[nats_kmdr_backup]}") ($(rate "${WALL[nats_kmdr_backup]}"))" "none" "" "" "$(kib "${RSS[nats_kmdr_backup]}")" ""
      row "${LABEL[$p]}" "restore" "$(secs "${WALL[nats_kmdr_restore]}") ($(rate "${WALL[nats_kmdr_restore]}"))" "none" "" "" "$(kib "${RSS[nats_kmdr_restore]}")" ""
      continue
    fi
    row "${LABEL[$p]}" "backup" "$(secs "${WALL[${p}_kmdr_backup]}")" "${V[${p}_tool_backup_name]}" "$(secs "${WALL[${p}_tool_backup]}")" \
      "$(ratio "${WALL[${p}_kmdr_backup]}" "${WALL[${p}_tool_backup]}")" "$(kib "${RSS[${p}_kmdr_backup]}")" "$(kib "${RSS[${p}_tool_backup]}")"
    [[ $p == pgkine ]] && continue   # restore: the PostgreSQL row above
    row "${LABEL[$p]}" "restore" "$(secs "${WALL[${p}_kmdr_restore]}")" "${V[${p}_tool_restore_name]}" "$(secs "${WALL[${p}_tool_restore]}")" \
      "$(ratio "${WALL[${p}_kmdr_restore]}" "${WALL[${p}_tool_restore]}")" "$(kib "${RSS[${p}_kmdr_restore]}")" "$(kib "${RSS[${p}_tool_restore]}")"
  done
  if [[ -n ${RUNS[my_kmdr_backup]:-} ]]; then
    echo
    echo "MariaDB backup, median of $MY_ROUNDS rounds (kmdr and mysqldump alternate going first; load average $(cut -d' ' -f1-3 /proc/loadavg) at the end):"
    echo
    row "" "wall" "client CPU (user + sys)" "mariadbd CPU" "client + server CPU" "runs (wall s)"
    row "---" "---:" "---:" "---:" "---:" "---"
    for n in my_kmdr_backup my_tool_backup; do
      row "$([[ $n == my_kmdr_backup ]] && echo '`kmdr backup tenant`' || echo '`mysqldump`')" "$(secs "${WALL[$n]}")" "${CPU[$n]} s" "${SRV[$n]} s" \
        "$(awk -v a="${CPU[$n]}" -v b="${SRV[$n]}" 'BEGIN { printf "%.2f s", a + b }')" "${RUNS[$n]}"
    done
    row "ratio kmdr / mysqldump" "**$(ratio "${WALL[my_kmdr_backup]}" "${WALL[my_tool_backup]}")**" "$(ratio "${CPU[my_kmdr_backup]}" "${CPU[my_tool_backup]}")" "$(ratio "${SRV[my_kmdr_backup]}" "${SRV[my_tool_backup]}")" \
      "$(ratio "$(awk -v a="${CPU[my_kmdr_backup]}" -v b="${SRV[my_kmdr_backup]}" 'BEGIN { print a + b }')" "$(awk -v a="${CPU[my_tool_backup]}" -v b="${SRV[my_tool_backup]}" 'BEGIN { print a + b }')")" ""
  fi
  echo
  out=
  for p in etcd pg pgkine my; do
    [[ -n ${V[${p}_tool_file]:-} ]] && out+="${LABEL[$p]} $(human "${V[${p}_tool_file]}"), "
  done
  [[ -z $out ]] || echo "Stock tools' backup files: ${out%, }. kmdr repository after all backups (encrypted, compressed, deduplicated): $(human "${V[repo]}")."
  echo
  echo "Every restored etcd, PostgreSQL and MariaDB target was counted afterwards and holds exactly $(commas "$KEYS") keys; every kmdr restore (NATS included) reported $(commas "$KEYS") keys written. Times are wall clock after \`sync\`; peak RSS from GNU time (\`%M\`; for the two-command stock restores, of the larger process). The kmdr / tool ratio is lower-is-better for kmdr. make-mirror never exits: its time runs from its start until the destination etcd counts $(commas "$KEYS") keys (polled every 0.1 s). The kine row reads the same database as the PostgreSQL row, through kine v0.17 (its peak RSS is etcdctl's, not kine's). PostgreSQL runs with fsync=off and MariaDB with innodb-flush-log-at-trx-commit=2 (kmdr_testkit's settings, the same for both sides). Reproduce: \`$repro\`"
} > "$WORK/table.md"

mkdir -p "$(dirname "$BENCH_OUT")"
cp "$WORK/table.md" "$BENCH_OUT"
cat "$WORK/table.md"
log "table also written to $BENCH_OUT"
