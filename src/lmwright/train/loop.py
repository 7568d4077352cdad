"""Pretraining: the one explicit training loop.

Reads top to bottom: build the model, restore the newest checkpoint if a killed run left one, then for each
step set the learning rate, draw the step's batch, forward and backward over its micro-batches, clip, step;
validate every `eval_every` steps (early stopping, best weights, an overfitting warning) and checkpoint every
`checkpoint_every`. The history (train loss per step, validation loss and bits-per-byte per evaluation) goes
into the output for the report.
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
from lmwright.evaluate.lm import score_batches, token_bytes
from lmwright.model.config import ModelConfig
from lmwright.model.llama import LlamaLM
from lmwright.train.checkpoint import load_best, load_latest, save_best, save_checkpoint
from lmwright.train.data import check_length, random_batch
from lmwright.train.optim import lr_at, make_optimizer


@dataclass
class TrainResult:
    model: LlamaLM
    history: dict = field(default_factory=dict)
    resumed_from: int = 0
    seconds: float = 0.0
    steps: int = 0
    best_step: int | None = None  # early stopping: the step whose weights are the result


def lm_loss(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1),
                                             ignore_index=-100, label_smoothing=label_smoothing)


def overfitting(history: dict, window: int) -> str | None:
    """A warning when validation loss rose at the last evaluation while training loss fell."""
    if len(history["val_loss"]) < 2 or len(history["loss"]) < 2 * window:
        return None
    now, before = history["loss"][-window:], history["loss"][-2 * window : -window]
    train_fell = sum(now) / len(now) < sum(before) / len(before)
    if history["val_loss"][-1] > history["val_loss"][-2] and train_fell:
        return (f"validation loss rose ({history['val_loss'][-2]:.4f} -> {history['val_loss'][-1]:.4f}) while "
                "training loss fell: the model may be overfitting; consider early stopping, more data or dropout")
    return None


def set_threads(threads: int | None) -> None:
    torch.set_num_threads(threads or os.cpu_count() or 1)


def validate(model: LlamaLM, val: np.ndarray, tr, seed: int, nbytes: torch.Tensor) -> tuple[float, float]:
    """Mean loss (nats/token) and bits-per-byte on a fixed sample of `eval_batches` validation batches."""
    batches = (random_batch(val, tr.batch_size, tr.seq_len, seed + 1, i) for i in range(tr.eval_batches))
    m = score_batches(model, batches, nbytes)  # seed + 1: never the training stream
    model.train()
    return m["loss"], m["bits_per_byte"]


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
    best = {"loss": math.inf, "step": None, "bad_evals": 0}  # early stopping
    state = load_latest(work, model, opt)
    if state is not None:
        step, history, elapsed, best = state["step"], state["history"], state["elapsed"], state["best"]
        resumed_from = step
        reporter.log(f"  pretrain: resumed from checkpoint at step {step} of {tr.max_steps}")
    es = tr.early_stopping
    micro = tr.batch_size // tr.grad_accum

    tokens_per_step = tr.batch_size * tr.seq_len
    task = reporter.task("pretrain", total=tr.max_steps, info="")
    task.advance(step)
    t_start, t_window, tok_window = time.perf_counter(), time.perf_counter(), 0
    while step < tr.max_steps:
        lr = lr_at(step, tr)
        for group in opt.param_groups:
            group["lr"] = lr
        x, y = random_batch(train, tr.batch_size, tr.seq_len, seed, step)
        loss_sum = 0.0
        for i in range(0, tr.batch_size, micro):  # equal micro-batches: their mean is the batch mean
            loss = lm_loss(model(x[i : i + micro]), y[i : i + micro], tr.label_smoothing) / tr.grad_accum
            loss.backward()
            loss_sum += loss.item()
        if tr.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), tr.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        loss_value = loss_sum
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
            if warning := overfitting(history, tr.eval_every):
                reporter.log(f"  [yellow]warning[/yellow] at step {step}: {warning}")
            if es.enabled:
                if vl < best["loss"] - es.min_delta:
                    best = {"loss": vl, "step": step, "bad_evals": 0}
                    save_best(work, model)
                else:
                    best["bad_evals"] += 1
        task.advance(1, info=info)
        stop = es.enabled and best["bad_evals"] >= es.patience
        if step % tr.checkpoint_every == 0 and step < tr.max_steps and not stop:
            save_checkpoint(work, step, model, opt,
                            {"history": history, "elapsed": elapsed + time.perf_counter() - t_start, "best": best})
        if stop:
            reporter.log(f"  pretrain: early stop at step {step}: no improvement of {es.min_delta} in validation "
                         f"loss for {es.patience} evaluations; keeping the weights of step {best['step']}")
            break
    if es.enabled and best["step"] is not None:
        load_best(work, model)
    return TrainResult(model=model, history=history, resumed_from=resumed_from, steps=step,
                       seconds=elapsed + time.perf_counter() - t_start, best_step=best["step"])
