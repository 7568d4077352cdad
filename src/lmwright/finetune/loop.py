"""The fine-tuning loop: the pretraining loop's steps (`train/step.py`) over task rows instead of a token stream.

Each step draws its rows from an RNG seeded by (seed, step), so a resumed run sees the batches an uninterrupted one
would; checkpoints (`train/checkpoint.py`: weights, optimizer, RNG states, history, and with `finetune.average` the
running average of the weights, `train/averaging.py`) hold the whole trainable state, LoRA adapters included, so
resuming is exact. With averaging on, the average is what is validated, kept and returned. The device and precision
follow pretraining's rule (`pick_device`: CUDA when there is one, else the CPU, or `finetune.device`); accumulation,
autocast mixed precision, clipping, the learning-rate schedule, validation with early stopping and best weights work
as in pretraining. A separate, smaller loop and not the pretraining one: pretraining's is built around token shards,
FSDP and MFU, which fine-tuning does not use. With `finetune.nproc` > 1 it runs under torchrun with DDP
(`finetune/worker.py`): each process takes its share of every step's rows, gradients are averaged, and only the
first process writes checkpoints.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from lmwright.core.progress import Reporter
from lmwright.train import step as shared  # the step rules pretraining uses too
from lmwright.train.averaging import make_averager
from lmwright.train.checkpoint import load_best, read_latest, save_best, save_checkpoint
from lmwright.train.distributed import Dist, wrap
from lmwright.train.optim import lr_scale, make_optimizer


def rows_for_step(n_rows: int, batch: int, seed: int, step: int) -> np.ndarray:
    return np.random.default_rng([seed, step]).integers(0, n_rows, size=batch)


def train(model: torch.nn.Module, tr, n_rows: int, loss_fn: Callable[[torch.nn.Module, np.ndarray], torch.Tensor],
          val_fn: Callable[[], dict[str, float]], work, reporter: Reporter, seed: int, name: str,
          early_stopping=None, d: Dist | None = None) -> dict:
    """`loss_fn(net, row indices)` -> mean loss of those rows, computed by calling `net` (the model, or its DDP
    wrapper) on tensors it moves to the model's device; `val_fn()` -> {"loss": ..., other figures}. `tr` is a
    TrainSpec (steps, lr, schedule, batch_size, grad_accum, device, precision, eval_every, checkpoint_every).
    Trains on `tr`'s device and returns the model to the CPU. Returns the history, with the step whose weights
    the model ends with."""
    d = d or Dist()
    device = shared.pick_device(tr.device, "finetune.device")
    # resolved once, by the first process, for all: ranks on different hardware must not train differently
    tr = tr.model_copy(update={"precision": d.share(shared.resolve_precision(tr.precision, device))})
    model.to(device)  # before the optimizer is made: its state lives beside the parameters
    opt = make_optimizer(model, tr)
    averager = make_averager(tr.average, tr, model, key="finetune.average")
    history: dict = {"step": [], "loss": [], "lr": [], "val_step": [], "val": []}
    step, elapsed, best, state = 0, 0.0, shared.new_best(), {}
    resumed_from = 0
    ckpt = read_latest(work)
    if ckpt is not None:
        model.load_weights(ckpt.weights)
        state = ckpt.restore(None, opt)
        step, history, elapsed, best = state["step"], state["history"], state["elapsed"], state["best"]
        resumed_from = step
        reporter.log(f"  {name}: resumed from checkpoint at step {step} of {tr.max_steps}")
        if message := averager.restore(state.get("average"), ckpt.average):
            reporter.log(f"  {name}: {message}")
    model.train()
    net = wrap(model, d, device) if d.world > 1 else model  # DDP: gradients averaged across processes
    es = early_stopping
    per_rank = tr.batch_size // d.world
    task = reporter.task(name, total=tr.max_steps, info="")
    task.advance(step)
    t0 = time.perf_counter()
    trainable = [p for p in model.parameters() if p.requires_grad]
    scaler = shared.make_scaler(device, tr.precision, state.get("scaler"))
    while step < tr.max_steps:
        scale = lr_scale(step, tr)
        opt.set_lr(scale)
        idx = rows_for_step(n_rows, tr.batch_size, seed, step)[d.rank * per_rank: (d.rank + 1) * per_rank]
        losses = shared.optimizer_step(model, net, opt, scaler, d, tr, device, per_rank,
                                       lambda rows, idx=idx: loss_fn(net, idx[rows]), trainable)
        total = d.mean(sum(loss.item() for loss in losses))  # as Python floats, as fine-tuning always summed them
        step += 1
        averager.update(step)
        shared.check_finite(total, step, f"{name}: the loss", "lower the learning rate")
        history["step"].append(step)
        history["loss"].append(total)
        history["lr"].append(tr.lr * scale)
        info = f"loss {total:.3f}"
        if shared.evaluation_due(step, tr):
            model.eval()
            with torch.no_grad(), shared.autocast(device, tr.precision), averager.applied():
                figures = val_fn()
            model.train()
            history["val_step"].append(step)
            history["val"].append(figures)
            info += " · " + ", ".join(f"val {k} {v:.3f}" for k, v in figures.items())
            reporter.log(f"  {name} step {step}/{tr.max_steps}: loss {total:.3f}, "
                         + ", ".join(f"val {k} {v:.4f}" for k, v in figures.items()))
            if es is not None and es.enabled:
                best, improved = shared.record_evaluation(best, figures["loss"], step, es)
                if improved:  # every process evaluates alike: the same verdict on each
                    if d.main:
                        with averager.applied():
                            save_best(work, model.weights())
                    d.barrier()
        task.advance(1, info=info)
        stop = shared.should_stop(best, es)
        if shared.checkpoint_due(step, tr, stop):
            avg_meta, avg_tensors = averager.state()
            if d.main:
                save_checkpoint(work, step, model, opt, {"history": history, "best": best,
                                                         "elapsed": elapsed + time.perf_counter() - t0,
                                                         "scaler": scaler.state_dict() if scaler.is_enabled() else None,
                                                         "average": avg_meta}, average=avg_tensors)
            d.barrier()  # no process runs ahead of a checkpoint still being written
        if stop:
            reporter.log(f"  {name}: early stop at step {step}; keeping the weights of step {best['step']}")
            break
    if es is not None and es.enabled and best["step"] is not None:
        model.load_weights(load_best(work))
    else:
        averager.copy_to_model()  # the average, when the run keeps one
    model.eval().to("cpu")  # the result is saved, merged and evaluated on the CPU, as the base model is
    history["seconds"] = elapsed + time.perf_counter() - t0
    history["resumed_from"] = resumed_from
    history["best_step"] = best["step"] or step
    return history
