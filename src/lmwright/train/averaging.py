"""Weight averaging during training (`train.average`, `finetune.average`): an exponential moving average of the
weights, or the plain mean of the weights over the tail of the run (by default the WSD schedule's decay phase).

Both are one running average, updated in place after a sampled optimizer step: `avg += a_n (w - avg)` with
- ema: a_n = (1 - d) / (1 - d^n), the exponential average with Adam's bias correction: the first sample counts
  fully, sample k of n weighs (1 - d) d^(n-k) / (1 - d^n), and no zero-initialisation bias is left;
- tail: a_n = 1 / n, the arithmetic mean of the n samples.
The weights after step s are sampled when s > start x max_steps and (max_steps - s) % every == 0: the last
step always counts, and every = checkpoint_every averages exactly the weights the checkpoints hold.

The loops (`loop.py`, `finetune/loop.py`) swap the average into the model to validate it (`applied`), so the
figures, early stopping's best weights and the saved result are the averaged weights; pretraining records the
trained weights' own figures beside them (`val_bpb_raw`). The state (the average and n) goes into every
checkpoint (`average.safetensors`), so a killed run resumes to the same average. Only trainable parameters are
averaged (a LoRA run averages its adapters; frozen weights are their own average). Each DDP process keeps the
same average of the same weights; FSDP's sharded parameters are refused rather than averaged shard by shard.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from lmwright.errors import LmwrightError


def start_step(cfg, tr) -> int:
    """The last step not sampled: `cfg.start` x max_steps, by default where the WSD decay begins (the schedule's
    own rule in `optim.lr_scale`), or half-way with another schedule."""
    if cfg.start is not None:
        return int(cfg.start * tr.max_steps)
    if getattr(tr, "schedule", None) == "wsd":
        return tr.max_steps - max(1, round(tr.decay_frac * tr.max_steps))
    return tr.max_steps // 2


class Averager:
    """The running average of `model`'s trainable parameters (see the module docstring); a no-op for kind none,
    so the loops call it unconditionally."""

    def __init__(self, cfg, tr, model: torch.nn.Module):
        self.kind, self.decay, self.every = cfg.kind, cfg.ema_decay, cfg.every
        self.start, self.max_steps = start_step(cfg, tr), tr.max_steps
        self.params = {n: p for n, p in model.named_parameters() if p.requires_grad} if self.on else {}
        self.avg: dict[str, torch.Tensor] | None = None
        self.n = 0  # samples so far

    @property
    def on(self) -> bool:
        return self.kind != "none"

    @property
    def started(self) -> bool:
        """Whether the average holds samples (before the first one it is the model's own weights)."""
        return self.n > 0

    def due(self, step: int) -> bool:
        return self.on and step > self.start and (self.max_steps - step) % self.every == 0

    def weight(self, n: int) -> float:
        """a_n: the share of sample n in the average after it."""
        return 1.0 / n if self.kind == "tail" else (1 - self.decay) / (1 - self.decay ** n)

    @torch.no_grad()
    def update(self, step: int) -> bool:
        """Sample the weights after optimizer step `step` if it is due; returns whether it was."""
        if not self.due(step):
            return False
        self.n += 1
        if self.avg is None:  # a_1 = 1 for both kinds
            self.avg = {k: p.detach().clone() for k, p in self.params.items()}
        else:
            keys = list(self.avg)
            torch._foreach_lerp_([self.avg[k] for k in keys], [self.params[k].detach() for k in keys],
                                 self.weight(self.n))
        return True

    @contextlib.contextmanager
    def applied(self) -> Iterator[bool]:
        """The averaged weights in the model for the block (to validate or save them), the trained ones back
        after; yields whether anything was swapped (nothing before the first sample)."""
        if self.avg is None:
            yield False
            return
        backup = {k: p.detach().clone() for k, p in self.params.items()}
        self.copy_to_model()
        try:
            yield True
        finally:
            with torch.no_grad():
                for k, p in self.params.items():
                    p.copy_(backup[k])

    @torch.no_grad()
    def copy_to_model(self) -> None:
        """The average becomes the model's weights (at the end of a run)."""
        for k, p in (self.params.items() if self.avg is not None else ()):
            p.copy_(self.avg[k])

    def state(self) -> tuple[dict[str, Any] | None, dict[str, torch.Tensor] | None]:
        """(the JSON part, the tensors) for a checkpoint; (None, None) when off."""
        if not self.on:
            return None, None
        meta = {"kind": self.kind, "n": self.n, "start": self.start, "every": self.every, "ema_decay": self.decay}
        tensors = {k: v.detach().contiguous().cpu() for k, v in self.avg.items()} if self.avg is not None else None
        return meta, tensors

    @torch.no_grad()
    def restore(self, meta: dict[str, Any] | None, tensors: dict[str, torch.Tensor] | None) -> str | None:
        """Resume from a checkpoint's state; returns a message when it cannot (another averaging setting, or a
        checkpoint written without one): the average then starts again from the next sample."""
        if not self.on:
            return None
        mine = {"kind": self.kind, "start": self.start, "every": self.every, "ema_decay": self.decay}
        if meta is None or any(meta.get(k) != v for k, v in mine.items()):
            return ("the checkpoint holds no weight average for these settings; the average restarts from the "
                    "next sampled step")
        self.n = int(meta["n"])
        if self.n and tensors is not None:
            if set(tensors) != set(self.params):
                raise LmwrightError("the checkpoint's weight average does not match the model's trainable "
                                    "parameters; delete the run's checkpoints to start it again")
            self.avg = {k: tensors[k].to(self.params[k].device, self.params[k].dtype) for k in self.params}
        else:
            self.n, self.avg = 0, None
        return None


def make_averager(cfg, tr, model: torch.nn.Module, sharded: bool = False, key: str = "train.average") -> Averager:
    """The averager a loop asks for (`cfg`: its `average` section; `tr`: its steps and schedule). With FSDP
    (`sharded`) only `none` is accepted: each process holds a shard of every parameter, and the average's
    checkpoints and result would need the same gathering as the weights'."""
    if sharded and cfg.kind != "none":
        raise LmwrightError(f"{key}.kind {cfg.kind} is not supported with train.distributed: fsdp (parameters "
                            f"are sharded across processes); use train.distributed: ddp, or {key}.kind: none")
    return Averager(cfg, tr, model)
