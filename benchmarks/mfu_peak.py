"""How steady the MFU denominator is: the old peak (one matmul timing of about 0.2 s) against the new one (the best
of 20 timings of about 20 ms, `lmwright.train.mfu.measured_peak`), each taken several times in a row, beside the
FLOP rate that training the default model actually reaches on this machine (timed the same way, best of several
windows). A peak below the training rate is what printed MFU above 100 %.

    pip install -e ".[bench]"          # from the repository root
    python benchmarks/mfu_peak.py [--repeats 8] [--json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from lmwright.model.config import ModelConfig
from lmwright.model.llama import LlamaLM
from lmwright.model.plan import flops_per_token
from lmwright.spec import Spec
from lmwright.train.mfu import measured_peak
from lmwright.train.optim import make_optimizer


def old_peak(n: int = 1024) -> float:
    """The previous measurement, as it was: one timing of at least 3 matmuls and 0.2 s."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        a @ b
    reps, t0 = 0, time.perf_counter()
    while reps < 3 or time.perf_counter() - t0 < 0.2:
        a @ b
        reps += 1
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def training_rate(steps: int = 6, windows: int = 5) -> float:
    """FLOP/s of the default model's training step (default batch and sequence, fp32): the best window."""
    spec = Spec()
    tr = spec.train.model_copy(update={"precision": "fp32"})  # fp32 throughout, Muon's iteration too
    cfg = ModelConfig.from_spec(spec, spec.tokenizer.vocab_size)
    model = LlamaLM(cfg)
    model.init_weights(0)
    opt = make_optimizer(model, tr)
    x = torch.randint(0, cfg.vocab_size, (tr.batch_size, tr.seq_len))

    def step() -> None:
        loss = model(x, x)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()  # warm-up
    best = 0.0
    for _ in range(windows):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        best = max(best, steps * tr.batch_size * tr.seq_len / (time.perf_counter() - t0))
    return best * flops_per_token(cfg, tr.seq_len)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=8)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    threads = torch.get_num_threads()
    rate = training_rate()
    old, new = [], []
    for _ in range(args.repeats):  # interleaved, so both see the same moments of a shared machine
        old.append(old_peak())
        measured_peak.cache_clear()
        new.append(measured_peak("cpu", "fp32", threads))

    def summary(xs: list[float]) -> dict:
        return {"min_gflops": round(min(xs) / 1e9, 1), "median_gflops": round(statistics.median(xs) / 1e9, 1),
                "max_gflops": round(max(xs) / 1e9, 1), "spread": round((max(xs) - min(xs)) / statistics.median(xs), 3),
                "mfu_of_training_at_median": round(rate / statistics.median(xs), 3),
                "share_giving_mfu_over_1": round(sum(rate > x for x in xs) / len(xs), 3)}

    res = {"machine": f"{platform.machine()}, {threads} threads, torch {torch.__version__}",
           "training_gflops": round(rate / 1e9, 1), "old_peak": summary(old), "new_peak": summary(new)}
    if args.json:
        print(json.dumps(res, indent=2))
        return
    for k, v in res.items():
        print(f"{k:<18} {v}")


if __name__ == "__main__":
    main()
