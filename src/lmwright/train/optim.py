"""Optimizers from `torch.optim` with weight decay on matrices only, and the learning-rate schedules."""

from __future__ import annotations

import math

import torch


def make_optimizer(model: torch.nn.Module, tr) -> torch.optim.Optimizer:
    params = {id(p): p for p in model.parameters() if p.requires_grad}.values()  # tied weights once
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": tr.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if tr.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=tr.lr, betas=(tr.beta1, tr.beta2), eps=1e-8)
    if tr.optimizer == "adam":  # L2 penalty in the gradient, as torch's Adam does it
        return torch.optim.Adam(groups, lr=tr.lr, betas=(tr.beta1, tr.beta2), eps=1e-8)
    if tr.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=tr.lr, momentum=tr.momentum, nesterov=tr.nesterov and tr.momentum > 0)
    if tr.optimizer == "adagrad":
        return torch.optim.Adagrad(groups, lr=tr.lr)
    if tr.optimizer == "adadelta":
        return torch.optim.Adadelta(groups, lr=tr.lr)
    if tr.optimizer == "rmsprop":
        return torch.optim.RMSprop(groups, lr=tr.lr, momentum=tr.momentum)
    raise ValueError(f"unknown optimizer {tr.optimizer!r}")


def lr_at(step: int, tr) -> float:
    """Linear warmup to `lr`, then the schedule down to `lr * min_lr_ratio` at `max_steps`.

    cosine: half a cosine; linear: a straight line; constant: `lr` throughout; wsd (warmup-stable-decay):
    `lr` until the last `decay_frac` of the steps, then a straight line to the floor.
    """
    if tr.warmup_steps and step < tr.warmup_steps:
        return tr.lr * (step + 1) / tr.warmup_steps
    floor = tr.lr * tr.min_lr_ratio
    if tr.schedule == "constant":
        return tr.lr
    if tr.schedule == "wsd":
        decay_start = tr.max_steps - max(1, round(tr.decay_frac * tr.max_steps))
        if step < decay_start:
            return tr.lr
        return tr.lr + (floor - tr.lr) * min(1.0, (step - decay_start) / max(1, tr.max_steps - decay_start))
    span = max(1, tr.max_steps - tr.warmup_steps)
    progress = min(1.0, (step - tr.warmup_steps) / span)
    if tr.schedule == "linear":
        return tr.lr + (floor - tr.lr) * progress
    return floor + (tr.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))
