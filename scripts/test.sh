#!/usr/bin/env bash
# Run every test against real servers: etcd 3.5 (started by the tests
# themselves, one per test, on free loopback ports) and an S3-compatible
# server (started here). A missing server fails the run (KMDR_TEST_REQUIRE_SERVERS=1).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/check-layout.py  # no module cycles; design.md sections 16 and 17 match the tree
source scripts/tools-env.sh
source scripts/s3-server.sh
export KMDR_TEST_REQUIRE_SERVERS=1
etcd --version >&2  # no "| head": with pipefail, SIGPIPE would fail the run
cargo test --workspace --locked "$@"
if [ -x scripts/test-recover-without-kmdr.sh ] && [ $# -eq 0 ]; then
  cargo build --locked -q -p kmdr
  scripts/test-recover-without-kmdr.sh "${CARGO_TARGET_DIR:-target}/debug/kmdr"
  scripts/test-e2e-cluster.sh "${CARGO_TARGET_DIR:-target}/debug/kmdr"
fi
