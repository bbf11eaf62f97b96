#!/usr/bin/env bash
# The whole test suite: unit tests, the protocol property tests and the end-to-end tests that
# start real daemons and workers. Run scripts/setup.sh once first.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
cargo test --locked --workspace
