"""Two saved models on the same documents: each one's bits per byte and the paired difference (B minus A) with a
bootstrap interval that draws the same documents for both. A change's effect on the default run's validation
figure, free of the spread between documents that a split-level interval carries (±0.07 on 178 documents).

    python benchmarks/paired_bpb.py MODEL_A MODEL_B SPLIT.parquet [--seq-len 256] [--resamples 2000] [--json]

MODEL_A and MODEL_B are Hugging Face directories lmwright saved (`lmwright-out/model` of two runs) with the same
tokenizer; SPLIT.parquet is a split file of the split stage's artifact (`.lmwright/artifacts/DIGEST/val.parquet`).
Documents are scored joined in windows of `--seq-len` tokens (the run's `train.seq_len`), as the evaluate stage
does, so each model's figure equals its evaluate stage's on that split.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from lmwright.data.document import read_docs
from lmwright.evaluate.lm import doc_scores
from lmwright.evaluate.stats import bits_per_byte, bootstrap_ci
from lmwright.model.hf import load_hf
from lmwright.tokenizer import load_tokenizer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_a", type=Path)
    ap.add_argument("model_b", type=Path)
    ap.add_argument("split", type=Path)
    ap.add_argument("--seq-len", type=int, default=256, help="the runs' train.seq_len")
    ap.add_argument("--resamples", type=int, default=2000)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.model_a.joinpath("tokenizer.json").read_bytes() != a.model_b.joinpath("tokenizer.json").read_bytes():
        raise SystemExit("the two models have different tokenizers: their documents' bytes would not pair")
    texts = [d["text"] for d in read_docs(a.split)]
    with torch.no_grad():
        nats = {k: doc_scores(load_hf(m), load_tokenizer(m), texts, a.seq_len)
                for k, m in (("a", a.model_a), ("b", a.model_b))}
    nbytes = nats["a"]["bytes"]

    def diff(i: np.ndarray) -> float:
        return bits_per_byte(nats["b"]["text_nats"], nbytes, i) - bits_per_byte(nats["a"]["text_nats"], nbytes, i)

    every = np.arange(len(texts))
    out = {"documents": len(texts), "a": bits_per_byte(nats["a"]["text_nats"], nbytes, every),
           "b": bits_per_byte(nats["b"]["text_nats"], nbytes, every), "b_minus_a": diff(every),
           "ci95": list(bootstrap_ci(diff, len(texts), a.resamples, 0.95, 0))}
    if a.json:
        print(json.dumps(out))
    else:
        print(f"{out['documents']} documents: A {out['a']:.4f}, B {out['b']:.4f} bits/byte; B - A {out['b_minus_a']:+.4f} "
              f"[{out['ci95'][0]:+.4f}, {out['ci95'][1]:+.4f}] (95%, paired bootstrap)")


if __name__ == "__main__":
    main()
