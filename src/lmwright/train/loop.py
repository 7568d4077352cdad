"""Pretraining: the one explicit training loop.

Reads top to bottom: build the model, restore the newest checkpoint if a killed run left one, wrap it for
the process group (DDP/FSDP2, see `distributed.py`) and compile it if asked, then for each step set the
learning rate, draw the step's batch, forward (under autocast for bf16/fp16) and backward over its
micro-batches, unscale (fp16), clip, step;
validate every `eval_every` steps (early stopping, best weights, an overfitting warning) and checkpoint every
`checkpoint_every`. The history (train loss per step, validation loss and bits-per-byte per evaluation) goes
into the output for the report.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from lmwright.core.progress import Reporter
from lmwright.data.batches import check_length, random_batch
from lmwright.data.split import split_path
from lmwright.errors import LmwrightError
from lmwright.evaluate.lm import score_batches, token_bytes
from lmwright.model.config import ModelConfig
from lmwright.model.llama import LlamaLM
from lmwright.model.plan import flops_per_token
from lmwright.train.checkpoint import load_best, read_latest, save_best, save_checkpoint
from lmwright.train.distributed import Dist, full_state, load_full_optimizer_state, wrap
from lmwright.train.mfu import MfuMeter, find_peak
from lmwright.train.optim import lr_scale, make_optimizer
from lmwright.train.trackers import MetricWriters


@dataclass
class TrainResult:
    model: LlamaLM
    history: dict = field(default_factory=dict)
    resumed_from: int = 0
    seconds: float = 0.0
    steps: int = 0
    best_step: int | None = None  # early stopping: the step whose weights are the result
    flops_per_token: int = 0
    peak_flops: float = 0.0  # per process: the MFU denominator
    peak_source: str = ""  # where that peak comes from (datasheet, measured, train.peak_tflops)
    mfu: float = 0.0  # model FLOPs utilisation over this run's steps


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


def set_threads(threads: int | None, world: int = 1) -> None:
    torch.set_num_threads(threads or max(1, (os.cpu_count() or 1) // world))


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise LmwrightError("train.device is cuda but torch sees no CUDA GPU; set train.device: auto or cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise LmwrightError("train.device is mps but this machine has no Metal GPU; set train.device: auto or cpu")
    return torch.device(name)


AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, precision: str):
    """Mixed precision: matmuls in bf16/fp16, the weights (and so the optimizer) stay fp32."""
    dtype = AMP_DTYPES.get(precision)
    return torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()


def validate(model: LlamaLM, val: np.ndarray, tr, seed: int, nbytes: torch.Tensor,
             device: torch.device = torch.device("cpu")) -> tuple[float, float]:
    """Mean loss (nats/token) and bits-per-byte on a fixed sample of `eval_batches` validation batches."""
    batches = (random_batch(val, tr.batch_size, tr.seq_len, seed + 1, i) for i in range(tr.eval_batches))
    with autocast(device, tr.precision):
        m = score_batches(model, batches, nbytes)  # seed + 1: never the training stream
    model.train()
    return m["loss"], m["bits_per_byte"]


def pretrain(spec, shards: Path, tokenizer, work: Path, reporter: Reporter, d: Dist | None = None,
             log_dir: Path | None = None, on_validation=None) -> TrainResult:
    """`on_validation(step, val_loss, val_bpb)` is called after each validation; returning True stops the run
    there (hyper-parameter search prunes poor trials this way)."""
    tr, seed, d = spec.train, spec.project.seed, d or Dist()
    device = pick_device(tr.device)
    if tr.precision == "fp16" and d.mode == "fsdp":
        raise LmwrightError("train.precision fp16 with FSDP is not supported (its gradient scaler is not "
                            "shard-aware); use bf16")
    set_threads(tr.threads, d.world)
    train = np.load(split_path(shards, "train", ".npy"), mmap_mode="r")
    val = np.load(split_path(shards, "val", ".npy"), mmap_mode="r")  # never test: see data/split.py
    check_length(train, tr.seq_len, "train")
    check_length(val, tr.seq_len, "val")
    nbytes = token_bytes(tokenizer)

    torch.manual_seed(seed)
    cfg = ModelConfig.from_spec(spec, tokenizer.get_vocab_size())
    model = LlamaLM(cfg)
    model.init_weights(seed)
    model.activation_checkpointing = tr.activation_checkpointing
    model.fused_loss = not tr.compile  # compiled, inductor fuses the plain loss better than it traces ours
    ckpt = read_latest(work)  # weights go in before sharding; optimizer state after
    if ckpt is not None:
        model.load_weights(ckpt.weights)
    model.to(device).train()
    fwd = wrap(model, d, device) if d.world > 1 else model
    opt = make_optimizer(model, tr)
    step_model = torch.compile(fwd) if tr.compile else fwd
    scaler = torch.amp.GradScaler(device.type, enabled=tr.precision == "fp16")

    # val_seconds: training time (validation excluded) at each validation, for time-to-loss comparisons
    history: dict = {"step": [], "loss": [], "lr": [], "val_step": [], "val_loss": [], "val_bpb": [],
                     "val_seconds": []}
    step, elapsed, resumed_from = 0, 0.0, 0
    best = {"loss": math.inf, "step": None, "bad_evals": 0}  # early stopping
    if ckpt is not None:
        state = ckpt.restore(None, opt, (lambda states: load_full_optimizer_state(model, opt, states))
                             if d.sharded else None)
        step, history, elapsed, best = state["step"], state["history"], state["elapsed"], state["best"]
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        resumed_from = step
        reporter.log(f"  pretrain: resumed from checkpoint at step {step} of {tr.max_steps}")
    es = tr.early_stopping
    per_rank = tr.batch_size // d.world
    micro = per_rank // tr.grad_accum
    writers = MetricWriters(tr.log_to, log_dir, spec.project.name) if d.main else MetricWriters([], None, "")

    def full_weights() -> dict[str, torch.Tensor]:  # a collective under FSDP: every rank calls it
        return full_state(model, [], d)[0] if d.sharded else model.weights()

    tokens_per_step = tr.batch_size * tr.seq_len
    fpt = flops_per_token(cfg, tr.seq_len)
    meter = MfuMeter(find_peak(device, tr.precision, tr.peak_tflops), fpt, d.world, device, tr.precision,
                     warn=lambda msg: reporter.log(f"  [yellow]warning[/yellow]: {msg}"))
    task = reporter.task("pretrain", total=tr.max_steps, info="")
    task.advance(step)
    t_start, t_window, tok_window = time.perf_counter(), time.perf_counter(), 0
    val_time = 0.0  # spent validating in this process, kept out of val_seconds
    tok_s = mfu = 0.0
    while step < tr.max_steps:
        scale = lr_scale(step, tr)
        opt.set_lr(scale)
        x, y = random_batch(train, tr.batch_size, tr.seq_len, seed, step)  # the global batch; this rank's rows:
        x, y = x[d.rank * per_rank : (d.rank + 1) * per_rank], y[d.rank * per_rank : (d.rank + 1) * per_rank]
        loss_sum = torch.zeros((), device=device)
        for i in range(0, per_rank, micro):  # equal micro-batches: their mean is the batch mean
            last = i + micro >= per_rank
            with _grad_sync(fwd, model, d, last), autocast(device, tr.precision):
                loss = step_model(x[i : i + micro].to(device, non_blocking=True),
                                  y[i : i + micro].to(device, non_blocking=True), tr.label_smoothing)
                loss = loss / tr.grad_accum
            scaler.scale(loss).backward()
            loss_sum += loss.detach()
        for o in opt:
            scaler.unscale_(o)  # a no-op unless fp16: clipping sees true gradients
        if tr.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), tr.grad_clip)
        for o in opt:
            scaler.step(o)  # fp16: skipped when a gradient overflowed; the scale then shrinks
        scaler.update()
        opt.zero_grad(set_to_none=True)
        step += 1
        loss_value = d.mean(loss_sum.item())
        if not math.isfinite(loss_value):
            raise FloatingPointError(f"training loss became {loss_value} at step {step}; lower train.lr"
                                     + (" or use bf16" if tr.precision == "fp16" else ""))
        lr = tr.lr * scale
        history["step"].append(step)
        history["loss"].append(loss_value)
        history["lr"].append(lr)
        tok_window += tokens_per_step
        now = time.perf_counter()
        if now - t_window > 2 or step == resumed_from + 3:
            tok_s = tok_window / max(now - t_window, 1e-9)
            mfu = meter(tok_s)  # may re-measure the peak: the next window starts after it
            t_window, tok_window = time.perf_counter(), 0
        info = f"loss {loss_value:.3f} · lr {lr:.1e} · {tok_s:,.0f} tok/s · MFU {100 * mfu:.1f}%"
        writers.scalars(step, {"train/loss": loss_value, "train/lr": lr, "train/tokens_per_s": tok_s,
                               "train/mfu": mfu})
        if step % tr.eval_every == 0 or step == tr.max_steps:
            t_val = time.perf_counter()
            history["val_seconds"].append(elapsed + t_val - t_start - val_time)
            vl, vb = validate(model, val, tr, seed, nbytes, device)
            val_time += time.perf_counter() - t_val
            history["val_step"].append(step)
            history["val_loss"].append(vl)
            history["val_bpb"].append(vb)
            writers.scalars(step, {"val/loss": vl, "val/bits_per_byte": vb})
            info += f" · val {vl:.3f} ({vb:.3f} bpb)"
            reporter.log(f"  pretrain step {step}/{tr.max_steps}: loss {loss_value:.3f}, val loss {vl:.3f}, "
                         f"val {vb:.3f} bits/byte, {tok_s:,.0f} tok/s, MFU {100 * mfu:.1f}%, lr {lr:.2e}")
            if warning := overfitting(history, tr.eval_every):
                reporter.log(f"  [yellow]warning[/yellow] at step {step}: {warning}")
            if es.enabled:
                if vl < best["loss"] - es.min_delta:
                    best = {"loss": vl, "step": step, "bad_evals": 0}
                    weights = full_weights()
                    if d.main:
                        save_best(work, weights)
                else:
                    best["bad_evals"] += 1
            if on_validation is not None and on_validation(step, vl, vb):
                reporter.log(f"  pretrain: stopped at step {step} by the caller (pruned)")
                break
        task.advance(1, info=info)
        stop = es.enabled and best["bad_evals"] >= es.patience
        if step % tr.checkpoint_every == 0 and step < tr.max_steps and not stop:
            state = {"history": history, "elapsed": elapsed + time.perf_counter() - t_start, "best": best,
                     "scaler": scaler.state_dict() if scaler.is_enabled() else None}
            if d.sharded:
                weights, osds = full_state(model, opt, d)
                if d.main:
                    save_checkpoint(work, step, model, opt, state, weights=weights, optim_states=osds)
            elif d.main:
                save_checkpoint(work, step, model, opt, state)
            d.barrier()  # no rank runs ahead of a checkpoint that is still being written
        if stop:
            reporter.log(f"  pretrain: early stop at step {step}: no improvement of {es.min_delta} in validation "
                         f"loss for {es.patience} evaluations; keeping the weights of step {best['step']}")
            break
    d.barrier()
    final = load_best(work) if es.enabled and best["step"] is not None else full_weights()
    result_model = LlamaLM(cfg)  # the result on the CPU, unsharded, uncompiled (rank 0 holds it under FSDP)
    if d.main:
        result_model.load_weights(final)
    seconds = elapsed + time.perf_counter() - t_start
    writers.close()
    mfu = meter((step - resumed_from) * tokens_per_step / max(seconds - elapsed, 1e-9))
    return TrainResult(model=result_model.eval(), history=history, resumed_from=resumed_from, steps=step,
                       seconds=seconds, best_step=best["step"], flops_per_token=fpt, peak_flops=meter.peak.flops,
                       peak_source=meter.peak.source, mfu=mfu)


def _grad_sync(fwd, model, d: Dist, sync: bool):
    """Accumulation across processes: gradients are averaged only after the last micro-batch."""
    if d.sharded:
        model.set_requires_gradient_sync(sync)
        return contextlib.nullcontext()
    if d.world == 1 or sync:
        return contextlib.nullcontext()
    return fwd.no_sync()
