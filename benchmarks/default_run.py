"""The README's first command, measured: `lmwright run` on the built-in default project in an empty directory.

Prints the fresh run's wall time against the 10-minute budget, the cached rerun's wall time against its
15-second budget, the validation/test bits-per-byte reached, and the parity of the saved model with Hugging
Face `transformers` (max |logit difference| on validation text, fp32; budget 1e-4), pretraining's MFU and the
peak it is against, each stage's time, and the fine-tuned assistant and classifier against the pretrained base on
held-out rows (ROUGE-L; accuracy and macro-F1).

    pip install -e ".[bench]"          # from the repository root (transformers, for the parity check)
    python benchmarks/default_run.py [--dir DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

BUDGET_RUN_S, BUDGET_CACHED_S, BUDGET_PARITY = 600.0, 15.0, 1e-4


def timed_run(root: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "lmwright", "run", "-C", str(root)], check=True)
    return time.perf_counter() - t0


def parity(model_dir: Path, val_tokens: np.ndarray, seq_len: int = 256, batches: int = 4) -> float:
    from transformers import AutoModelForCausalLM

    import lmwright

    ours = lmwright.load_model(model_dir)
    hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    worst = 0.0
    with torch.no_grad():
        for i in range(batches):
            ids = torch.from_numpy(np.asarray(val_tokens[i * seq_len : (i + 1) * seq_len], dtype=np.int64))[None]
            worst = max(worst, (hf(ids).logits - ours(ids)).abs().max().item())
    return worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, help="project directory (default: a new empty temporary directory)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="lmwright-default-"))
    fresh = timed_run(root)
    cached = timed_run(root)

    from lmwright.core.pipeline import run_pipeline
    from lmwright.core.progress import Reporter
    from lmwright.core.workspace import Workspace
    from lmwright.stages.registry import STAGES

    out = run_pipeline(Workspace.open(root), STAGES, reporter=Reporter(quiet=True))  # all cached: just the paths
    val = np.load(out["tokenize"].path / "val.npy", mmap_mode="r")
    diff = parity(root / "lmwright-out" / "model", val)
    ev, pt, te = out["evaluate"].summary, out["pretrain"].summary, out["test"].summary
    from lmwright.core.store import Store

    ws = Workspace.open(root)
    seconds = {r.stage: round(r.duration_s, 1) for r in Store(ws.store_url).runs(100) if r.status == "done"}
    result = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "fresh_run_s": round(fresh, 1), "fresh_vs_budget": round(fresh / BUDGET_RUN_S, 3),
        "cached_run_s": round(cached, 2), "cached_vs_budget": round(cached / BUDGET_CACHED_S, 3),
        "params": pt["n_params"], "train_tokens": pt["tokens"], "train_tokens_per_s": pt["tokens_per_s"],
        "mfu": pt["mfu"], "mfu_peak_tflops": pt["peak_tflops"], "mfu_peak_source": pt["peak_source"],
        "val_bits_per_byte": round(ev["val"]["bits_per_byte"], 4), "test_bits_per_byte": round(te["test"]["bits_per_byte"], 4),
        "val_generation": {k: round(v, 4) for k, v in ev["val"].get("generation", {}).items()},
        "risk": {k: round(v, 4) for k, v in ev["risk"].items()},
        "requirements": out["report"].summary["requirements"],
        "stage_seconds": seconds,
        # the fine-tuned assistant and classifier against the pretrained base, on held-out rows
        "finetune": {k: {"base": {m: round(v, 4) for m, v in out[k].summary["base_figures"].items()},
                         "tuned": {m: round(v, 4) for m, v in out[k].summary["tuned_figures"].items()},
                         "train_rows": out[k].summary["data"]["train"], "held_out": out[k].summary["data"]["val"],
                         "train_seconds": out[k].summary["seconds"]}
                     for k in ("sft", "classify") if not out[k].summary.get("skipped")},
        "hf_parity_max_abs_logit_diff": diff, "parity_ok": diff <= BUDGET_PARITY,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for k, v in result.items():
        print(f"{k:<32} {v}")


if __name__ == "__main__":
    main()
