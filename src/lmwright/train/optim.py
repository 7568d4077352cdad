"""AdamW with weight decay on matrices only, and the warmup + cosine learning-rate schedule."""

from __future__ import annotations

import math

import torch


def make_optimizer(model: torch.nn.Module, tr) -> torch.optim.Optimizer:
    params = {id(p): p for p in model.parameters() if p.requires_grad}.values()  # tied weights once
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": tr.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=tr.lr, betas=(tr.beta1, tr.beta2), eps=1e-8)


def lr_at(step: int, tr) -> float:
    """Linear warmup to `lr`, then cosine decay to `lr * min_lr_ratio` at `max_steps`."""
    if tr.warmup_steps and step < tr.warmup_steps:
        return tr.lr * (step + 1) / tr.warmup_steps
    span = max(1, tr.max_steps - tr.warmup_steps)
    progress = min(1.0, (step - tr.warmup_steps) / span)
    floor = tr.lr * tr.min_lr_ratio
    return floor + (tr.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))
