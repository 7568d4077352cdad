"""Speedrun: wall-clock time to a validation loss, lmwright's default recipe against a tuned baseline.

On the default corpus's token shards (built with `lmwright run --until tokenize`):
- baseline: `transformers`' LlamaForCausalLM with lmwright's default shape (same parameter count, SwiGLU),
  AdamW (betas 0.9/0.95, weight decay 0.1 on matrices, clipping 1.0), linear warmup then cosine to 10%, the
  schedule laid over a fixed wall-clock budget; its learning rate is tuned first by a short sweep;
- lmwright: the default spec's model and training recipe, unchanged, through lmwright's training loop.
Both draw the same batches (RNG(seed, step)) and are validated on the same fixed validation batches; time spent
validating is not counted. Prints the time each needs to reach the baseline's final validation loss, and the
ratio (target: lmwright <= 0.67 x the baseline's time).

    pip install -e ".[bench]"          # from the repository root (transformers)
    python benchmarks/train_speedrun.py [--budget 300] [--tune-budget 100] [--lrs 1.5e-3,3e-3,6e-3] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

import lmwright
from lmwright.core.progress import Reporter
from lmwright.data.batches import random_batch
from lmwright.model.config import ModelConfig
from lmwright.spec import load_spec
from lmwright.tokenizer import load_tokenizer
from lmwright.train.loop import pretrain

TARGET = 0.67
EVAL_BATCHES = 16


def val_batches(val: np.ndarray, batch: int, seq: int, seed: int) -> list:
    return [random_batch(val, batch, seq, seed + 1, i) for i in range(EVAL_BATCHES)]  # lmwright's own sample


@torch.no_grad()
def val_loss(model, batches) -> float:
    model.eval()
    total = sum(F.cross_entropy(model(input_ids=x).logits.float().flatten(0, 1), y.flatten()).item()
                for x, y in batches)
    model.train()
    return total / len(batches)


def baseline(cfg: ModelConfig, train: np.ndarray, vb: list, lr: float, budget: float, spec,
             evals: int = 15) -> dict:
    hf_cfg = LlamaConfig(vocab_size=cfg.vocab_size, hidden_size=cfg.d_model, intermediate_size=cfg.ffn_dim,
                         num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
                         num_key_value_heads=cfg.n_kv_heads, max_position_embeddings=cfg.max_seq_len,
                         tie_word_embeddings=cfg.tie_embeddings, rope_theta=cfg.rope_theta,
                         attn_implementation="sdpa")
    torch.manual_seed(spec.project.seed)
    model = LlamaForCausalLM(hf_cfg).train()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.95))
    tr = spec.train
    warmup = tr.warmup_steps
    curve: list[tuple[float, float]] = []
    trained, step, next_eval = 0.0, 0, budget / evals
    while trained < budget:
        t0 = time.perf_counter()
        progress = min(1.0, trained / budget)
        scale = (step + 1) / warmup if step < warmup else 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))
        for g in opt.param_groups:
            g["lr"] = lr * scale
        x, y = random_batch(train, tr.batch_size, tr.seq_len, spec.project.seed, step)
        logits = model(input_ids=x).logits
        loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        trained += time.perf_counter() - t0
        if trained >= next_eval or trained >= budget:
            curve.append((trained, val_loss(model, vb)))
            next_eval += budget / evals
    return {"lr": lr, "steps": step, "tokens_per_s": round(step * tr.batch_size * tr.seq_len / trained),
            "final_val_loss": curve[-1][1], "curve": curve}


def time_to(curve: list[tuple[float, float]], target: float) -> float | None:
    """First time the validation loss is at or below `target`, interpolated between evaluations."""
    prev_t, prev_v = 0.0, math.inf
    for t, v in curve:
        if v <= target:
            if math.isinf(prev_v):
                return t
            return prev_t + (t - prev_t) * (prev_v - target) / (prev_v - v)
        prev_t, prev_v = t, v
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", type=float, default=300.0, help="baseline wall-clock training budget, seconds")
    ap.add_argument("--tune-budget", type=float, default=100.0, help="per learning rate in the baseline sweep")
    ap.add_argument("--lrs", default="1.5e-3,3e-3,6e-3", help="baseline learning rates to sweep")
    ap.add_argument("--dir", type=Path, default=None, help="project directory (default: a temporary one)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    say = (lambda *x: None) if a.json else (lambda *x: print(*x, flush=True))

    root = a.dir or Path(tempfile.mkdtemp(prefix="lmwright-speedrun-"))
    root.mkdir(parents=True, exist_ok=True)
    outs = lmwright.run(root, until="tokenize", reporter=Reporter(quiet=True))
    spec = load_spec(None)  # the default recipe, unchanged
    tok = load_tokenizer(outs["tokenizer"].path)
    train = np.load(outs["tokenize"].path / "train.npy", mmap_mode="r")
    val = np.load(outs["tokenize"].path / "val.npy", mmap_mode="r")
    vb = val_batches(val, spec.train.batch_size, spec.train.seq_len, spec.project.seed)
    cfg = ModelConfig.from_spec(spec, tok.get_vocab_size())

    sweep = []
    for lr in (float(x) for x in a.lrs.split(",")):
        r = baseline(cfg, train, vb, lr, a.tune_budget, spec)
        sweep.append({"lr": lr, "val_loss": r["final_val_loss"]})
        say(f"baseline sweep: lr {lr:g} -> val loss {r['final_val_loss']:.4f} after {a.tune_budget:.0f} s")
    best_lr = min(sweep, key=lambda s: s["val_loss"])["lr"]
    base = baseline(cfg, train, vb, best_lr, a.budget, spec)
    target = base["final_val_loss"]
    say(f"baseline: lr {best_lr:g}, {base['steps']} steps in {a.budget:.0f} s ({base['tokens_per_s']:,} tok/s), "
        f"final val loss {target:.4f}")

    # fp32 like the baseline: what is compared is the recipe, not bf16 autocast (train.precision auto takes bf16 on
    # CPUs with bf16 units)
    ours_spec = load_spec(None, [f"train.eval_batches={EVAL_BATCHES}", "train.eval_every=25", "train.precision=fp32"])
    with tempfile.TemporaryDirectory() as work:
        r = pretrain(ours_spec, outs["tokenize"].path, tok, Path(work), Reporter(quiet=True))
    ours_curve = list(zip(r.history["val_seconds"], r.history["val_loss"], strict=True))
    t_base = time_to(base["curve"], target)
    t_ours = time_to(ours_curve, target)
    res = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "budget_s": a.budget, "baseline_sweep": sweep, "baseline_lr": best_lr,
        "baseline_tokens_per_s": base["tokens_per_s"], "baseline_final_val_loss": round(target, 4),
        "baseline_time_to_target_s": round(t_base, 1),
        "lmwright_recipe": {"optimizer": spec.train.optimizer, "schedule": spec.train.schedule,
                            "activation": spec.model.activation, "tie_embeddings": spec.model.tie_embeddings,
                            "qk_norm": spec.model.qk_norm, "steps": r.steps},
        # the last validation is at the last step: its time is the whole run's training time
        "lmwright_tokens_per_s": round(r.steps * spec.train.batch_size * spec.train.seq_len / ours_curve[-1][0]),
        "lmwright_final_val_loss": round(r.history["val_loss"][-1], 4),
        "lmwright_time_to_target_s": None if t_ours is None else round(t_ours, 1),
        "params": r.model.n_params(),
        "curves": {"baseline": base["curve"], "lmwright": ours_curve},
    }
    res["ratio"] = None if t_ours is None else round(t_ours / t_base, 3)
    res["target"], res["meets_target"] = TARGET, res["ratio"] is not None and res["ratio"] <= TARGET
    if a.json:
        print(json.dumps(res, indent=2))
    else:
        say(f"lmwright: {res['lmwright_tokens_per_s']:,} tok/s, final val loss {res['lmwright_final_val_loss']:.4f}")
        say(f"time to val loss {target:.4f}: baseline {t_base:.0f} s, lmwright "
            f"{'not reached' if t_ours is None else f'{t_ours:.0f} s'}; ratio "
            f"{'n/a' if res['ratio'] is None else res['ratio']} (target <= {TARGET})")


if __name__ == "__main__":
    main()
