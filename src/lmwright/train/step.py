"""One training step and its bookkeeping, shared by pretraining (`train/loop.py`) and fine-tuning
(`finetune/loop.py`), so the two loops differ only in what they train on.

- `pick_device` picks where a loop runs (CUDA when there is one, else the CPU, or what the spec names: the one
  rule for pretraining and fine-tuning alike); `resolve_precision` turns `auto` into bf16 where bf16 is fast;
  `autocast` runs matmuls in its precision's dtype (`AMP_DTYPES`).
- `optimizer_step` is one step over a batch's micro-batches, given a loss closure: forward under autocast, the
  backward pass through the fp16 gradient scaler (`make_scaler`), gradients averaged across processes after the
  last micro-batch only (`grad_sync`), then unscale, clip, step, update the scale and zero the gradients.
- `check_finite`, `evaluation_due`, `checkpoint_due`: the rules around a step.
- `new_best`, `record_evaluation`, `should_stop`: early stopping, its state a plain dict that checkpoints store.

Each loop still reads top to bottom and calls these in order; there is no trainer class with hooks.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

from lmwright.errors import LmwrightError
from lmwright.train.distributed import Dist
from lmwright.train.optim import fast_bf16

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def pick_device(name: str, key: str = "train.device") -> torch.device:
    """`auto`: CUDA when torch sees a GPU, else the CPU; a named device must be there (`key` names the
    setting in the error)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise LmwrightError(f"{key} is cuda but torch sees no CUDA GPU; set {key}: auto or cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise LmwrightError(f"{key} is mps but this machine has no Metal GPU; set {key}: auto or cpu")
    return torch.device(name)


def resolve_precision(precision: str, device: torch.device) -> str:
    """`auto`: bf16 where bf16 matmuls beat fp32 (`fast_bf16`: a CUDA GPU with bf16 tensor cores, compute
    capability 8.0 on, a CPU with AVX512-BF16 or AMX), else fp32. A named precision is kept."""
    if precision != "auto":
        return precision
    if device.type == "cuda" and torch.cuda.get_device_capability(device) < (8, 0):  # T4, V100: emulated bf16
        return "fp32"
    return "bf16" if fast_bf16(device) else "fp32"


def autocast(device: torch.device, precision: str):
    """Mixed precision: matmuls in bf16/fp16, the weights (and so the optimizer) stay fp32."""
    dtype = AMP_DTYPES.get(precision)
    return torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()


def make_scaler(device: torch.device, precision: str, state: dict | None = None) -> torch.amp.GradScaler:
    """fp16's gradient scaler (a pass-through in other precisions), restored from a checkpoint's `state`."""
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    if state:
        scaler.load_state_dict(state)
    return scaler


def grad_sync(fwd: torch.nn.Module, model: torch.nn.Module, d: Dist, sync: bool):
    """Accumulation across processes: gradients are averaged only after the last micro-batch."""
    if d.sharded:
        model.set_requires_gradient_sync(sync)
        return contextlib.nullcontext()
    if d.world == 1 or sync:
        return contextlib.nullcontext()
    return fwd.no_sync()


def optimizer_step(model: torch.nn.Module, fwd: torch.nn.Module, opt, scaler: torch.amp.GradScaler, d: Dist,
                   tr, device: torch.device, rows: int, micro_loss: Callable[[slice], torch.Tensor],
                   params: Iterable[torch.nn.Parameter] | None = None) -> list[torch.Tensor]:
    """One optimizer step over this process's `rows` rows of the batch, in `tr.grad_accum` equal micro-batches:
    `micro_loss(rows)` -> the mean loss of those rows, computed through `fwd` (the model, or its DDP/compiled
    wrapper). Clips `params` (default: every parameter of `model`) to `tr.grad_clip`. Returns each
    micro-batch's loss divided by `tr.grad_accum` (detached), whose sum is the batch's mean loss; the caller
    adds them up (on the device or as Python floats) and sets the learning rate before calling."""
    micro = rows // tr.grad_accum
    losses = []
    for i in range(0, rows, micro):  # equal micro-batches: their mean is the batch mean
        with grad_sync(fwd, model, d, i + micro >= rows), autocast(device, tr.precision):
            loss = micro_loss(slice(i, i + micro)) / tr.grad_accum
        scaler.scale(loss).backward()
        losses.append(loss.detach())
    for o in opt:
        scaler.unscale_(o)  # a no-op unless fp16: clipping sees true gradients
    if tr.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters() if params is None else params, tr.grad_clip)
    for o in opt:
        scaler.step(o)  # fp16: skipped when a gradient overflowed; the scale then shrinks
    scaler.update()
    opt.zero_grad(set_to_none=True)
    return losses


def check_finite(loss: float, step: int, what: str, fix: str) -> None:
    """A diverged run stops, saying `fix`, rather than training on NaNs."""
    if not math.isfinite(loss):
        raise FloatingPointError(f"{what} became {loss} at step {step}; {fix}")


def evaluation_due(step: int, tr) -> bool:
    """Validate every `eval_every` steps and after the last one."""
    return step % tr.eval_every == 0 or step == tr.max_steps


def checkpoint_due(step: int, tr, stop: bool) -> bool:
    """Checkpoint every `checkpoint_every` steps, but not after the last step or an early stop (the result is
    written then)."""
    return step % tr.checkpoint_every == 0 and step < tr.max_steps and not stop


# -- early stopping ------------------------------------------------------------------------------------------------

def new_best() -> dict[str, Any]:
    """Early stopping's state: the best validation loss, its step and the evaluations since (JSON for checkpoints)."""
    return {"loss": math.inf, "step": None, "bad_evals": 0}


def record_evaluation(best: dict[str, Any], loss: float, step: int, es) -> tuple[dict[str, Any], bool]:
    """The state after an evaluation, and whether it is a new best (the caller then saves the weights): an
    improvement of more than `es.min_delta` resets the count of evaluations without one."""
    if loss < best["loss"] - es.min_delta:
        return {"loss": loss, "step": step, "bad_evals": 0}, True
    return {**best, "bad_evals": best["bad_evals"] + 1}, False


def should_stop(best: dict[str, Any], es) -> bool:
    """Stop after `es.patience` evaluations without an improvement (`es` None or disabled: never)."""
    return es is not None and es.enabled and best["bad_evals"] >= es.patience
