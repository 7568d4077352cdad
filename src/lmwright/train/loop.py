"""Pretraining: the one explicit training loop.

Reads top to bottom: build the model, restore the newest checkpoint if a killed run left one, then for each
step set the learning rate, draw the step's batch, forward, backward, clip, step; validate every `eval_every`
steps and checkpoint every `checkpoint_every`. The history (train loss per step, validation loss and
bits-per-byte per evaluation) goes into the output for the report.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from lmwright.core.progress import Reporter
from lmwright.evaluate.lm import token_bytes
from lmwright.model.config import ModelConfig
from lmwright.model.llama import LlamaLM
from lmwright.train.checkpoint import load_latest, save_checkpoint
from lmwright.train.data import check_length, random_batch
from lmwright.train.optim import lr_at, make_optimizer


@dataclass
class TrainResult:
    model: LlamaLM
    history: dict = field(default_factory=dict)
    resumed_from: int = 0
    seconds: float = 0.0


def set_threads(threads: int | None) -> None:
    torch.set_num_threads(threads or os.cpu_count() or 1)


@torch.no_grad()
def validate(model: LlamaLM, val: np.ndarray, tr, seed: int, nbytes: torch.Tensor) -> tuple[float, float]:
    """Mean loss (nats/token) and bits-per-byte on a fixed sample of `eval_batches` validation batches."""
    model.eval()
    total_nats = total_tokens = text_nats = text_bytes = 0.0
    for i in range(tr.eval_batches):
        x, y = random_batch(val, tr.batch_size, tr.seq_len, seed + 1, i)  # +1: never the train stream
        logits = model(x)
        nats = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="none")
        b = nbytes[y.flatten()]
        total_nats += nats.sum().item()
        total_tokens += nats.numel()
        text_nats += nats[b > 0].sum().item()
        text_bytes += b.sum().item()
    model.train()
    return total_nats / total_tokens, text_nats / (math.log(2) * max(text_bytes, 1))


def pretrain(spec, shards: Path, tokenizer, work: Path, reporter: Reporter) -> TrainResult:
    tr, seed = spec.train, spec.project.seed
    set_threads(tr.threads)
    train = np.load(shards / "train.npy", mmap_mode="r")
    val = np.load(shards / "val.npy", mmap_mode="r")
    check_length(train, tr.seq_len, "train")
    check_length(val, tr.seq_len, "val")
    nbytes = token_bytes(tokenizer)

    torch.manual_seed(seed)
    cfg = ModelConfig.from_spec(spec, tokenizer.get_vocab_size())
    model = LlamaLM(cfg)
    model.init_weights(seed)
    model.train()
    opt = make_optimizer(model, tr)

    history: dict = {"step": [], "loss": [], "lr": [], "val_step": [], "val_loss": [], "val_bpb": []}
    step, elapsed, resumed_from = 0, 0.0, 0
    state = load_latest(work, model, opt)
    if state is not None:
        step, history, elapsed = state["step"], state["history"], state["elapsed"]
        resumed_from = step
        reporter.log(f"  pretrain: resumed from checkpoint at step {step} of {tr.max_steps}")

    tokens_per_step = tr.batch_size * tr.seq_len
    task = reporter.task("pretrain", total=tr.max_steps, info="")
    task.advance(step)
    t_start, t_window, tok_window = time.perf_counter(), time.perf_counter(), 0
    while step < tr.max_steps:
        lr = lr_at(step, tr)
        for group in opt.param_groups:
            group["lr"] = lr
        x, y = random_batch(train, tr.batch_size, tr.seq_len, seed, step)
        _, loss = model(x, y)
        loss.backward()
        if tr.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), tr.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            raise FloatingPointError(f"training loss became {loss_value} at step {step}; lower train.lr")
        history["step"].append(step)
        history["loss"].append(loss_value)
        history["lr"].append(lr)
        tok_window += tokens_per_step
        now = time.perf_counter()
        tok_s = tok_window / max(now - t_window, 1e-9)
        if now - t_window > 5:
            t_window, tok_window = now, 0
        info = f"loss {loss_value:.3f} · {tok_s:,.0f} tok/s"
        if step % tr.eval_every == 0 or step == tr.max_steps:
            vl, vb = validate(model, val, tr, seed, nbytes)
            history["val_step"].append(step)
            history["val_loss"].append(vl)
            history["val_bpb"].append(vb)
            info += f" · val {vl:.3f} ({vb:.3f} bpb)"
            reporter.log(f"  pretrain step {step}/{tr.max_steps}: loss {loss_value:.3f}, val loss {vl:.3f}, "
                         f"val {vb:.3f} bits/byte, {tok_s:,.0f} tok/s, lr {lr:.2e}")
        task.advance(1, info=info)
        if step % tr.checkpoint_every == 0 and step < tr.max_steps:
            save_checkpoint(work, step, model, opt,
                            {"history": history, "elapsed": elapsed + time.perf_counter() - t_start})
    return TrainResult(model=model, history=history, resumed_from=resumed_from,
                       seconds=elapsed + time.perf_counter() - t_start)
