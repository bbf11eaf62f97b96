#!/usr/bin/env bash
# Clients the test suite drives Caxton with, from the package registries: the official MCP
# Python SDK (PyPI `mcp`, pinned) for the /mcp endpoint's conformance test. Installed into a
# cache directory outside the repository (no root, no venv); skipped when already there.
# Environment: CAXTON_TOOLS_CACHE (default ${XDG_CACHE_HOME:-~/.cache}/caxton).
set -euo pipefail
MCP_VERSION=2.3.0
cache="${CAXTON_TOOLS_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/caxton}"
dest="$cache/python-mcp-$MCP_VERSION"
if [ -f "$dest/.installed" ]; then
    exit 0
fi
echo "install-test-clients: installing the MCP Python SDK $MCP_VERSION from PyPI into $dest"
mkdir -p "$cache"
rm -rf "$dest.part"
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-warn-script-location \
    --target "$dest.part" "mcp==$MCP_VERSION"
rm -rf "$dest"
mv "$dest.part" "$dest"
touch "$dest/.installed"
