#!/usr/bin/env bash
# Try kmdr on the embedded default: a local repository and a local etcd that
# this script starts. It backs the etcd up, verifies the repository, restores
# the snapshot into a new data dir, starts a second etcd on it and compares
# every key. Everything lives in .kmdr-demo/ (removed at the start of each run).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
source scripts/tools-env.sh
cargo build --locked -q -p kmdr
kmdr=$PWD/target/debug/kmdr
demo=$PWD/.kmdr-demo
rm -rf "$demo"; mkdir -p "$demo"
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT
say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_etcd NAME CLIENT_PORT PEER_PORT: a one-member etcd on DIR $demo/NAME.etcd, waited for.
start_etcd() {
  etcd --name "$1" --data-dir "$demo/$1.etcd" --log-level error \
    --listen-client-urls "http://127.0.0.1:$2" --advertise-client-urls "http://127.0.0.1:$2" \
    --listen-peer-urls "http://127.0.0.1:$3" --initial-advertise-peer-urls "http://127.0.0.1:$3" \
    --initial-cluster "$1=http://127.0.0.1:$3" 2>"$demo/$1.log" &
  pids+=($!)
  until etcdctl --endpoints "127.0.0.1:$2" endpoint health >/dev/null 2>&1; do sleep 0.2; done
}
# every key and value of the etcd at CLIENT_PORT, hashed
dump_hash() {
  etcdctl --endpoints "127.0.0.1:$1" get "" --from-key -w json |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print(json.dumps(sorted((k["key"],k["value"]) for k in d.get("kvs",[]))))' | sha256sum
}

c1=$(port); p1=$(port)
start_etcd live "$c1" "$p1"
echo "etcd running on 127.0.0.1:$c1; writing 300 keys" >&2
for i in $(seq 1 300); do etcdctl --endpoints "127.0.0.1:$c1" put "/registry/demo/key-$i" "value-$i-$RANDOM" >/dev/null; done

export KMDR_REPO="$demo/repo" KMDR_KEY_FILE="$demo/kmdr.key"
say kmdr repo init
"$kmdr" repo init
say kmdr backup etcd --endpoints 127.0.0.1:$c1 --tag env=demo
"$kmdr" backup etcd --endpoints "127.0.0.1:$c1" --tag env=demo
etcdctl --endpoints "127.0.0.1:$c1" put /registry/demo/key-1 changed >/dev/null
say kmdr backup etcd --endpoints 127.0.0.1:$c1
"$kmdr" backup etcd --endpoints "127.0.0.1:$c1"
say kmdr backups list
"$kmdr" backups list
say kmdr verify
"$kmdr" verify
p2=$(port); c2=$(port)
say kmdr restore etcd latest --data-dir $demo/restored.etcd --name restored --initial-cluster restored=http://127.0.0.1:$p2 --initial-advertise-peer-urls http://127.0.0.1:$p2
"$kmdr" restore etcd latest --data-dir "$demo/restored.etcd" --name restored \
  --initial-cluster "restored=http://127.0.0.1:$p2" --initial-advertise-peer-urls "http://127.0.0.1:$p2"
start_etcd restored "$c2" "$p2"
a=$(dump_hash "$c1")
b=$(dump_hash "$c2")
say "compare every key and value of the live and the restored etcd"
if [ "$a" = "$b" ]; then echo "identical: the restored member holds every key of the live one"; else echo "DIFFERENT" >&2; exit 1; fi
echo
echo "The repository is in $demo/repo, its key in $demo/kmdr.key. Next: kmdr --help"
