#!/usr/bin/env bash
# Build every WebAssembly tool module from source into its package directory: the built-in tool
# servers (tool-packages/builtin/*) and the SDK examples (tool-packages/examples/*). The .wasm files are build
# outputs (gitignored). Zig comes from PyPI (ziglang, pinned below) into a cache directory outside
# the repository, so no root, venv or system package is needed.
#
# A package directory holds tool.toml (whose `module` names the output) and either C sources
# (*.c, built with `zig cc` and tool-packages/sdk/caxton_tool.h) or Zig sources (main.zig, or its only
# .zig file, built with tool-packages/sdk/caxton.zig as module "caxton"). A package whose inputs have not
# changed since its last build is skipped, so a second run takes well under a second.
#
# Usage: scripts/build-tools.sh [--force]
# Environment: CAXTON_TOOLS_CACHE (default ${XDG_CACHE_HOME:-~/.cache}/caxton): Zig, its build
# cache and the build stamps.
set -euo pipefail
cd "$(dirname "$0")/.."

ZIG_VERSION=0.17.1
ZIG_FLAGS=(build-exe -target wasm32-wasi -fno-entry -rdynamic -O ReleaseSmall --stack 1048576)
CC_FLAGS=(cc --target=wasm32-wasi -Os -mexec-model=reactor -Wl,-z,stack-size=1048576 -Wall -Wextra -Werror -I tool-packages/sdk)

force=0
[ "${1:-}" = "--force" ] && force=1

cache="${CAXTON_TOOLS_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/caxton}"
zigdir="$cache/ziglang-$ZIG_VERSION"
if [ ! -f "$zigdir/.installed" ]; then
    command -v python3 >/dev/null || { echo "build-tools: python3 with pip is needed (apt-get install python3-pip)" >&2; exit 1; }
    echo "build-tools: installing Zig $ZIG_VERSION from PyPI (ziglang) into $zigdir"
    mkdir -p "$cache"
    rm -rf "$zigdir.part"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --no-warn-script-location \
        --target "$zigdir.part" "ziglang==$ZIG_VERSION"
    rm -rf "$zigdir"
    mv "$zigdir.part" "$zigdir"
    touch "$zigdir/.installed"
fi
zig() { PYTHONPATH="$zigdir" python3 -m ziglang "$@"; }
# Zig's own cache (the compiled wasi-libc, per-module artefacts) stays out of the work tree.
export ZIG_GLOBAL_CACHE_DIR="$cache/zig-cache" ZIG_LOCAL_CACHE_DIR="$cache/zig-cache"
mkdir -p "$cache/stamps"

# The build's inputs: the package's sources and manifest, the SDK, the compiler and the flags.
inputs_hash() {
    {
        echo "$ZIG_VERSION ${ZIG_FLAGS[*]} ${CC_FLAGS[*]}"
        find "$1" tool-packages/sdk -type f ! -name '*.wasm' -print0 | sort -z | xargs -0 sha256sum
    } | sha256sum | cut -d' ' -f1
}

built=0
skipped=0
for dir in tool-packages/builtin/*/ tool-packages/examples/*/; do
    dir="${dir%/}"
    [ -f "$dir/tool.toml" ] || continue
    module="$(sed -n 's/^module *= *"\([^"]*\)".*/\1/p' "$dir/tool.toml" | head -n1)"
    if [ -z "$module" ]; then
        echo "build-tools: $dir/tool.toml has no module = \"NAME.wasm\"" >&2
        exit 1
    fi
    out="$dir/$module"
    key="$(printf '%s' "$PWD/$out" | sha256sum | cut -d' ' -f1)"
    stamp="$cache/stamps/$key"
    want="$(inputs_hash "$dir")"
    if [ "$force" = 0 ] && [ -f "$out" ] && [ -f "$stamp" ] &&
        [ "$(cat "$stamp")" = "$want $(sha256sum <"$out" | cut -d' ' -f1)" ]; then
        skipped=$((skipped + 1))
        continue
    fi
    shopt -s nullglob
    c_sources=("$dir"/*.c)
    zig_sources=("$dir"/*.zig)
    shopt -u nullglob
    # Built outside the work tree, so a failed build leaves nothing behind in it, then put in
    # place by a rename, so a reader never sees half a module.
    mkdir -p "$cache/out/$key"
    tmp="$cache/out/$key/$module"
    if [ ${#c_sources[@]} -gt 0 ]; then
        zig "${CC_FLAGS[@]}" -o "$tmp" "${c_sources[@]}"
    elif [ -f "$dir/main.zig" ] || [ ${#zig_sources[@]} -eq 1 ]; then
        root="$dir/main.zig"
        [ -f "$root" ] || root="${zig_sources[0]}"
        zig "${ZIG_FLAGS[@]}" --dep caxton "-Mroot=$root" -Mcaxton=tool-packages/sdk/caxton.zig "-femit-bin=$tmp"
    else
        echo "build-tools: $dir has no C sources, no main.zig and not exactly one .zig file" >&2
        exit 1
    fi
    cp "$tmp" "$out.part"
    mv "$out.part" "$out"
    echo "$want $(sha256sum <"$out" | cut -d' ' -f1)" >"$stamp"
    echo "build-tools: $out ($(wc -c <"$out") bytes)"
    built=$((built + 1))
done
echo "build-tools: $built built, $skipped up to date"
