"""Optimizers from `torch.optim` with weight decay on matrices only, and the learning-rate schedules.

Muon (`torch.optim.Muon`) orthogonalises the update of 2-D matrices only, so `optimizer: muon` pairs it with
AdamW for the rest (embeddings, the output head, norms, biases): `Optimizers` steps both as one. Every param
group carries its `peak_lr`; the schedule scales all of them by the same factor each step.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch


class Optimizers:
    """Several torch optimizers stepped together, with the optimizer interface the training loop uses."""

    def __init__(self, *optimizers: torch.optim.Optimizer):
        self.optimizers = list(optimizers)

    @property
    def param_groups(self) -> list[dict]:
        return [g for o in self.optimizers for g in o.param_groups]

    def step(self) -> None:
        for o in self.optimizers:
            o.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.optimizers:
            o.zero_grad(set_to_none=set_to_none)

    def __iter__(self) -> Iterator[torch.optim.Optimizer]:
        return iter(self.optimizers)

    def set_lr(self, scale: float) -> None:
        for g in self.param_groups:
            g["lr"] = g["peak_lr"] * scale


class Muon(torch.optim.Muon):
    """`torch.optim.Muon`, with its Newton-Schulz orthogonalisation in fp32 off the GPU.

    torch runs the iteration in bf16, right for GPUs; on a CPU without bf16 matrix units (most x86 before
    AVX512-BF16/AMX) that is an order of magnitude slower than fp32 — here it made a 300-step run take over
    8 minutes instead of about 2. The maths, hyper-parameters and state (`momentum_buffer`) are torch's, so
    checkpoints move between the two; on CUDA this defers to torch's own step.
    """

    @torch.no_grad()
    def step(self, closure=None):
        if all(p.device.type == "cuda" for g in self.param_groups for p in g["params"]):
            return super().step(closure)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            a, b, c = group["ns_coefficients"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p.grad, memory_format=torch.preserve_format)
                buf = state["momentum_buffer"]
                buf.lerp_(p.grad, 1 - group["momentum"])
                update = p.grad.lerp(buf, group["momentum"]) if group["nesterov"] else buf
                x = update.float()
                if x.size(0) > x.size(1):
                    x = x.T
                x = x / x.norm().clamp(min=group["eps"])  # spectral norm at most 1
                for _ in range(group["ns_steps"]):
                    gram = x @ x.T
                    x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
                if update.size(0) > update.size(1):
                    x = x.T
                lr = group["lr"]
                p.mul_(1 - lr * group["weight_decay"])
                p.add_(x.to(p.dtype), alpha=-lr * max(1, p.size(0) / p.size(1)) ** 0.5)  # torch's "original"
        return loss


def _groups(params: list[torch.nn.Parameter], lr: float, weight_decay: float) -> list[dict]:
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay, "peak_lr": lr},
            {"params": no_decay, "weight_decay": 0.0, "peak_lr": lr}]


def make_optimizer(model: torch.nn.Module, tr) -> Optimizers:
    named = {id(p): (n, p) for n, p in model.named_parameters() if p.requires_grad}.values()  # tied weights once
    params = [p for _, p in named]
    if tr.optimizer == "muon":
        # hidden matrices to Muon; the embedding and output head are lookups/classifiers, not linear maps
        # between hidden states, and stay with AdamW, as in the Muon paper
        hidden = [p for n, p in named if p.dim() == 2 and "embed_tokens" not in n and "lm_head" not in n]
        rest = [p for p in params if all(p is not h for h in hidden)]
        muon = Muon([{"params": hidden, "peak_lr": tr.muon_lr}], lr=tr.muon_lr,
                                weight_decay=tr.weight_decay, momentum=tr.muon_momentum, nesterov=True)
        adamw = torch.optim.AdamW(_groups(rest, tr.lr, tr.weight_decay), lr=tr.lr, betas=(tr.beta1, tr.beta2),
                                  eps=1e-8)
        return Optimizers(muon, adamw)
    groups = _groups(params, tr.lr, tr.weight_decay)
    if tr.optimizer == "adamw":
        return Optimizers(torch.optim.AdamW(groups, lr=tr.lr, betas=(tr.beta1, tr.beta2), eps=1e-8))
    if tr.optimizer == "adam":  # L2 penalty in the gradient, as torch's Adam does it
        return Optimizers(torch.optim.Adam(groups, lr=tr.lr, betas=(tr.beta1, tr.beta2), eps=1e-8))
    if tr.optimizer == "sgd":
        return Optimizers(torch.optim.SGD(groups, lr=tr.lr, momentum=tr.momentum,
                                          nesterov=tr.nesterov and tr.momentum > 0))
    if tr.optimizer == "adagrad":
        return Optimizers(torch.optim.Adagrad(groups, lr=tr.lr))
    if tr.optimizer == "adadelta":
        return Optimizers(torch.optim.Adadelta(groups, lr=tr.lr))
    if tr.optimizer == "rmsprop":
        return Optimizers(torch.optim.RMSprop(groups, lr=tr.lr, momentum=tr.momentum))
    raise ValueError(f"unknown optimizer {tr.optimizer!r}")


def lr_scale(step: int, tr) -> float:
    """The schedule as a factor of the peak learning rate: linear warmup to 1, then down to `min_lr_ratio`.

    cosine: half a cosine; linear: a straight line; constant: 1 throughout; wsd (warmup-stable-decay):
    1 until the last `decay_frac` of the steps, then a straight line to the floor.
    """
    if tr.warmup_steps and step < tr.warmup_steps:
        return (step + 1) / tr.warmup_steps
    floor = tr.min_lr_ratio
    if tr.schedule == "constant":
        return 1.0
    if tr.schedule == "wsd":
        decay_start = tr.max_steps - max(1, round(tr.decay_frac * tr.max_steps))
        if step < decay_start:
            return 1.0
        return 1.0 + (floor - 1.0) * min(1.0, (step - decay_start) / max(1, tr.max_steps - decay_start))
    span = max(1, tr.max_steps - tr.warmup_steps)
    progress = min(1.0, (step - tr.warmup_steps) / span)
    if tr.schedule == "linear":
        return 1.0 + (floor - 1.0) * progress
    return floor + (1.0 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def lr_at(step: int, tr) -> float:
    """The learning rate of `train.lr`'s groups at `step`."""
    return tr.lr * lr_scale(step, tr)
