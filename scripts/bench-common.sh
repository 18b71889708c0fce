# Sourced by the delta benchmarks (bench-delta.sh, bench-pitr.sh): etcd 3.5
# tools on PATH, kmdr and the examples built in the profile asked for
# (KMDR_BENCH_PROFILE=debug|release), a temp dir $W removed on exit with
# every background job, and a fresh etcd on free loopback ports ($CP).
source scripts/tools-env.sh
PROFILE=${KMDR_BENCH_PROFILE:-debug}
if [ "$PROFILE" = release ]; then cargo build --release --workspace --bins --examples -q; else cargo build --workspace --bins --examples -q; fi
TARGET=${CARGO_TARGET_DIR:-target}/$PROFILE
KMDR=$TARGET/kmdr
# The scripts keep a copy of their table in ./target/, which a clone built
# with CARGO_TARGET_DIR elsewhere does not have.
mkdir -p target
W=$(mktemp -d)
# wait: a job may still be stopping a server whose files are in $W.
trap 'kill $(jobs -p) 2>/dev/null; wait; rm -rf "$W"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
CP=$(port); PP=$(port); MP=$(port)
etcd --name b --data-dir "$W/etcd" --listen-client-urls http://127.0.0.1:$CP --advertise-client-urls http://127.0.0.1:$CP \
  --listen-peer-urls http://127.0.0.1:$PP --initial-advertise-peer-urls http://127.0.0.1:$PP \
  --initial-cluster b=http://127.0.0.1:$PP --quota-backend-bytes 8589934592 --log-level error >/dev/null 2>&1 &
until etcdctl --endpoints 127.0.0.1:$CP endpoint health >/dev/null 2>&1; do sleep 0.2; done
