"""Pretraining: the one explicit training loop.

Reads top to bottom: build the model (a random init, or for continued pretraining the weights and
architecture of `train.init_from`), restore the newest checkpoint if a killed run left one, wrap it for the
process group (DDP/FSDP2, see `distributed.py`) and compile it if asked, then for each step set the learning
rate, draw the step's batch and take one optimizer step over its micro-batches (`step.py`, shared with
fine-tuning: autocast for bf16/fp16, the fp16 gradient scaler, clipping, gradient sync); validate every
`eval_every` steps (early stopping, best weights, an overfitting warning) and checkpoint every
`checkpoint_every`. With `train.average` on, a running average of the weights (`averaging.py`) is what is
validated, kept and returned, and the trained weights' own figures are recorded beside it. The history (train
loss per step, validation loss and bits-per-byte per evaluation) goes into the output for the report.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
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
from lmwright.train import step as shared  # the step rules fine-tuning uses too
from lmwright.train.averaging import make_averager
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


def validate(model: LlamaLM, val: np.ndarray, tr, seed: int, nbytes: torch.Tensor,
             device: torch.device = torch.device("cpu")) -> tuple[float, float]:
    """Mean loss (nats/token) and bits-per-byte on a fixed sample of `eval_batches` validation batches."""
    batches = (random_batch(val, tr.batch_size, tr.seq_len, seed + 1, i) for i in range(tr.eval_batches))
    with shared.autocast(device, tr.precision):
        m = score_batches(model, batches, nbytes)  # seed + 1: never the training stream
    model.train()
    return m["loss"], m["bits_per_byte"]


# what a model's weights were trained with: the init model's, never the model section's
ARCHITECTURE = ("n_layers", "d_model", "n_heads", "n_kv_heads", "ffn_dim", "vocab_size", "tie_embeddings",
                "qk_norm", "activation", "attention_bias", "mlp_bias", "rope_theta", "norm_eps")


def model_config(spec, vocab_size: int, init: Path | None = None,
                 log: Callable[[str], None] = lambda msg: None) -> ModelConfig:
    """The network to train: the model section's, or with an init model (`train.init_from`) that model's own,
    so its weights load and keep their meaning; the spec still sets dropout, and may lengthen max_seq_len
    (RoPE has no position weights). A disagreeing model section is logged once, not an error: nobody should
    have to copy a shape."""
    if init is None:
        return ModelConfig.from_spec(spec, vocab_size)
    from lmwright.model.hf import read_config

    ours, theirs = ModelConfig.from_spec(spec, spec.tokenizer.vocab_size), read_config(init)
    cfg = dataclasses.replace(theirs, dropout=ours.dropout,
                              max_seq_len=max(theirs.max_seq_len, ours.max_seq_len))
    differ = [f"{k} {getattr(ours, k)} -> {getattr(cfg, k)}" for k in ARCHITECTURE
              if getattr(ours, k) != getattr(cfg, k)]
    if differ:
        log("  pretrain: the architecture is train.init_from's, not the model and tokenizer sections': "
            + ", ".join(differ))
    return cfg


def pretrain(spec, shards: Path, tokenizer, work: Path, reporter: Reporter, d: Dist | None = None,
             log_dir: Path | None = None, on_validation=None, init: Path | None = None,
             on_step: Callable[[int, LlamaLM], None] | None = None) -> TrainResult:
    """`on_validation(step, val_loss, val_bpb)` is called after each validation; returning True stops the run
    there (hyper-parameter search prunes poor trials this way). `on_step(step, model)` is called after each
    optimizer step with the trained (unwrapped) model, to observe it (benchmarks/averaging.py keeps averages
    there). `init`, a Hugging Face model directory (the resolved `train.init_from`), replaces the random init
    with its weights and architecture; a checkpoint left by a killed run still wins, so continued pretraining
    resumes like any other run."""
    tr, seed, d = spec.train, spec.project.seed, d or Dist()
    device = shared.pick_device(tr.device)
    # resolved once, by the first process, for all: ranks on different hardware must not train differently
    tr = tr.model_copy(update={"precision": d.share(shared.resolve_precision(tr.precision, device))})
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
    cfg = model_config(spec, tokenizer.get_vocab_size(), init, reporter.log)
    if tokenizer.get_vocab_size() > cfg.vocab_size:
        raise LmwrightError(f"train.init_from: the tokenizer has {tokenizer.get_vocab_size()} tokens but "
                            f"the model {init} {cfg.vocab_size} embeddings; use the model's own tokenizer")
    model = LlamaLM(cfg)
    model.activation_checkpointing = tr.activation_checkpointing
    model.fused_loss = not tr.compile  # compiled, inductor fuses the plain loss better than it traces ours
    ckpt = read_latest(work)  # weights go in before sharding; optimizer state after
    if ckpt is not None:  # resumed: the checkpoint, however the run started
        model.load_weights(ckpt.weights)
    elif init is not None:
        from lmwright.model.hf import load_hf_weights

        load_hf_weights(model, init)
    else:
        model.init_weights(seed)
    model.to(device).train()
    fwd = wrap(model, d, device) if d.world > 1 else model
    opt = make_optimizer(model, tr)
    averager = make_averager(tr.average, tr, model, d.sharded)
    step_model = torch.compile(fwd) if tr.compile else fwd

    # val_seconds: training time (validation excluded) at each validation, for time-to-loss comparisons
    history: dict = {"step": [], "loss": [], "lr": [], "val_step": [], "val_loss": [], "val_bpb": [],
                     "val_seconds": []}
    step, elapsed, resumed_from = 0, 0.0, 0
    best, state = shared.new_best(), {}  # early stopping
    if ckpt is not None:
        state = ckpt.restore(None, opt, (lambda states: load_full_optimizer_state(model, opt, states))
                             if d.sharded else None)
        step, history, elapsed, best = state["step"], state["history"], state["elapsed"], state["best"]
        resumed_from = step
        reporter.log(f"  pretrain: resumed from checkpoint at step {step} of {tr.max_steps}")
        if message := averager.restore(state.get("average"), ckpt.average):
            reporter.log(f"  pretrain: {message}")
    if averager.on:  # the validation figures are the average's; these are the trained weights' own
        history.setdefault("val_loss_raw", [])
        history.setdefault("val_bpb_raw", [])
    scaler = shared.make_scaler(device, tr.precision, state.get("scaler"))
    es = tr.early_stopping
    per_rank = tr.batch_size // d.world
    writers = MetricWriters(tr.log_to, log_dir, spec.project.name) if d.main else MetricWriters([], None, "")

    def full_weights() -> dict[str, torch.Tensor]:  # a collective under FSDP: every rank calls it
        with averager.applied() as swapped:  # the average, once it holds samples
            weights = full_state(model, [], d)[0] if d.sharded else model.weights()
            # on the CPU these share the parameters' storage, which gets the trained weights back after the block
            return {k: v.clone() for k, v in weights.items()} if swapped else weights

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

        def micro_loss(rows: slice, x=x, y=y) -> torch.Tensor:
            return step_model(x[rows].to(device, non_blocking=True), y[rows].to(device, non_blocking=True),
                              tr.label_smoothing)

        losses = shared.optimizer_step(model, fwd, opt, scaler, d, tr, device, per_rank, micro_loss)
        step += 1
        averager.update(step)
        if on_step is not None:
            on_step(step, model)
        loss_value = d.mean(sum(losses, torch.zeros((), device=device)).item())  # summed on the device: one sync
        fix = "lower train.lr" + (" or use bf16" if tr.precision == "fp16" else "")
        shared.check_finite(loss_value, step, "training loss", fix)
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
        if shared.evaluation_due(step, tr):
            t_val = time.perf_counter()
            history["val_seconds"].append(elapsed + t_val - t_start - val_time)
            vl, vb = validate(model, val, tr, seed, nbytes, device)
            if averager.on:
                history["val_loss_raw"].append(vl)
                history["val_bpb_raw"].append(vb)
                with averager.applied() as swapped:
                    if swapped:
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
                best, improved = shared.record_evaluation(best, vl, step, es)
                if improved:
                    weights = full_weights()  # a collective under FSDP: every rank calls it
                    if d.main:
                        save_best(work, weights)
            if on_validation is not None and on_validation(step, vl, vb):
                reporter.log(f"  pretrain: stopped at step {step} by the caller (pruned)")
                break
        task.advance(1, info=info)
        stop = shared.should_stop(best, es)
        if shared.checkpoint_due(step, tr, stop):
            avg_meta, avg_tensors = averager.state()
            state = {"history": history, "elapsed": elapsed + time.perf_counter() - t_start, "best": best,
                     "scaler": scaler.state_dict() if scaler.is_enabled() else None, "average": avg_meta}
            if d.sharded:
                weights, osds = full_state(model, opt, d)
                if d.main:
                    save_checkpoint(work, step, model, opt, state, weights=weights, optim_states=osds)
            elif d.main:
                save_checkpoint(work, step, model, opt, state, average=avg_tensors)
            d.barrier()  # no rank runs ahead of a checkpoint that is still being written
        if stop:
            reporter.log(f"  pretrain: early stop at step {step}: no improvement of {es.min_delta} in validation "
                         f"loss for {es.patience} evaluations; keeping the weights of step {best['step']}")
            break
    d.barrier()
    if es.enabled and best["step"] is not None:
        final = load_best(work)  # the average's, if it had started by then
    else:
        final = full_weights()
        if averager.started:
            reporter.log(f"  pretrain: the result is the {averager.kind} average of the weights of {averager.n} "
                         f"steps after step {averager.start}")
    result_model = LlamaLM(cfg)  # the result on the CPU, unsharded, uncompiled (rank 0 holds it under FSDP)
    if d.main:
        result_model.load_weights(final)
    seconds = elapsed + time.perf_counter() - t_start
    writers.close()
    mfu = meter((step - resumed_from) * tokens_per_step / max(seconds - elapsed, 1e-9))
    return TrainResult(model=result_model.eval(), history=history, resumed_from=resumed_from, steps=step,
                       seconds=seconds, best_step=best["step"], flops_per_token=fpt, peak_flops=meter.peak.flops,
                       peak_source=meter.peak.source, mfu=mfu)
