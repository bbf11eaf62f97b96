#!/usr/bin/env bash
# The whole test suite: unit tests, the protocol property tests and the end-to-end tests that
# start real daemons and workers. Run scripts/setup.sh once first.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
# The end-to-end tests run the binaries as built: `cargo test` alone does not rebuild the
# worker (another package's binary), so a protocol change would meet a stale worker.
cargo build --locked --workspace
cargo test --locked --workspace
