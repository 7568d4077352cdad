"""Optimizers from `torch.optim` with weight decay on matrices only, and the learning-rate schedules.

Muon (`torch.optim.Muon`) orthogonalises the update of 2-D matrices only, so `optimizer: muon` pairs it with
AdamW for the rest (embeddings, the output head, norms, biases): `Optimizers` steps both as one. Every param
group carries its `peak_lr`; the schedule scales all of them by the same factor each step.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch


def fast_bf16(device: torch.device) -> bool:
    """Whether bf16 matrix multiplication beats fp32 on `device`: CUDA (which GPUs have bf16 tensor cores is
    `train.step.resolve_precision`'s question), or a CPU with AVX512-BF16 or AMX."""
    if device.type == "cuda":
        return True
    if device.type != "cpu":
        return False
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private, so looked up, not assumed
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


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
    """`torch.optim.Muon`'s maths, hyper-parameters and state (`momentum_buffer`, so checkpoints move between the
    two), stepped a shape at a time rather than a matrix at a time.

    - Matrices of one shape (each layer's q|k|v, say) are orthogonalised together: one batched Newton-Schulz
      iteration instead of one per matrix, and the momentum and the update as foreach operations. On a GPU
      torch's per-matrix loop launches ~30 small kernels per matrix; for a 124M model on an H200 that left the
      GPU waiting on launches (benchmarks/gpu.py, RESULTS.md).
    - The iteration runs in bf16, as torch's does, on CUDA, and on a CPU with bf16 matrix instructions (AVX512-BF16
      or AMX: 2.5-3x fp32's throughput on a 2-core EPYC, taking the default model's Muon step from ~50 to ~28 ms).
      On other CPUs it runs in fp32: without those units bf16 is an order of magnitude slower (a 300-step run took
      over 8 minutes). `low_precision` overrides the detection off CUDA: False keeps an fp32 run in fp32 throughout
      (so it matches other fp32 runs, one process or several, to fp32 rounding), True follows a bf16 run; the
      loops pass the precision they resolved once for every process, so DDP replicas never step differently.
    """

    # the most a stacked group may take (fp32): torch held one matrix at a time; a 124M model's largest group is
    # 113 MB, a 7B model's gate and up projections would be 11.5 GB
    stack_bytes = 256 * 2**20

    def __init__(self, params, *args, low_precision: bool | None = None, **kwargs):
        super().__init__(params, *args, **kwargs)
        self.low_precision = low_precision  # None: bf16 where this device's bf16 matmuls are fast

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            by_shape: dict[tuple, list[torch.nn.Parameter]] = {}
            for p in group["params"]:
                if p.grad is not None:
                    by_shape.setdefault((p.shape, p.device, p.dtype), []).append(p)
            for params in by_shape.values():
                per = max(1, self.stack_bytes // (params[0].numel() * 4))  # a large model's group in pieces
                for i in range(0, len(params), per):
                    self._step_shape(group, params[i:i + per])
        return loss

    def ns_dtype(self, device: torch.device) -> torch.dtype:
        if device.type == "cuda":
            return torch.bfloat16
        low = fast_bf16(device) if self.low_precision is None else self.low_precision
        return torch.bfloat16 if low else torch.float32

    def _step_shape(self, group: dict, params: list[torch.nn.Parameter]) -> None:
        """One step of `params`, matrices of one shape, device and dtype."""
        shape, grads, dtype = params[0].shape, [p.grad for p in params], self.ns_dtype(params[0].device)
        bufs = []
        for p in params:
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p.grad, memory_format=torch.preserve_format)
            bufs.append(state["momentum_buffer"])
        torch._foreach_lerp_(bufs, grads, 1 - group["momentum"])
        updates = torch._foreach_lerp(grads, bufs, group["momentum"]) if group["nesterov"] else bufs
        tall = shape[0] > shape[1]
        x = torch.stack([u.to(dtype) for u in updates])  # (matrices, rows, cols), no fp32 copy of them all
        if tall:
            x = x.mT
        x = x / x.norm(dim=(-2, -1), keepdim=True).clamp(min=group["eps"])  # spectral norm at most 1
        a, b, c = group["ns_coefficients"]
        for _ in range(group["ns_steps"]):
            gram = x @ x.mT
            x = torch.baddbmm(x, torch.baddbmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
        if tall:
            x = x.mT
        lr = float(group["lr"])  # torch allows a tensor
        torch._foreach_mul_(params, 1 - lr * group["weight_decay"])
        adjust = 0.2 * max(shape) ** 0.5 if group["adjust_lr_fn"] == "match_rms_adamw" \
            else max(1, shape[0] / shape[1]) ** 0.5  # torch's default, "original"
        torch._foreach_add_(params, list(x.to(params[0].dtype).unbind(0)), alpha=-lr * adjust)


def _groups(params: list[torch.nn.Parameter], lr: float, weight_decay: float) -> list[dict]:
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay, "peak_lr": lr},
            {"params": no_decay, "weight_decay": 0.0, "peak_lr": lr}]


def make_optimizer(model: torch.nn.Module, tr) -> Optimizers:
    named = {id(p): (n, p) for n, p in model.named_parameters() if p.requires_grad}.values()  # tied weights once
    params = [p for _, p in named]
    # Adam(W)'s fused kernel: 3x faster than the foreach default for the default model on a CPU, and one launch
    # instead of several per tensor group on a GPU
    fused = {"fused": True} if all(p.device.type in ("cpu", "cuda") for p in params) else {}
    if tr.optimizer == "muon":
        # hidden matrices to Muon; the embedding and output head are lookups/classifiers, not linear maps
        # between hidden states, and stay with AdamW, as in the Muon paper
        hidden = [p for n, p in named if p.dim() == 2 and "embed_tokens" not in n and "lm_head" not in n]
        rest = [p for p in params if all(p is not h for h in hidden)]
        muon = Muon([{"params": hidden, "peak_lr": tr.muon_lr}], lr=tr.muon_lr, weight_decay=tr.weight_decay,
                    momentum=tr.muon_momentum, nesterov=True,
                    low_precision={"fp32": False, "bf16": True}.get(tr.precision))  # auto, fp16: as fast
        adamw = torch.optim.AdamW(_groups(rest, tr.lr, tr.weight_decay), lr=tr.lr, betas=(tr.beta1, tr.beta2),
                                  eps=1e-8, **fused)
        return Optimizers(muon, adamw)
    groups = _groups(params, tr.lr, tr.weight_decay)
    if tr.optimizer == "adamw":
        return Optimizers(torch.optim.AdamW(groups, lr=tr.lr, betas=(tr.beta1, tr.beta2), eps=1e-8, **fused))
    if tr.optimizer == "adam":  # L2 penalty in the gradient, as torch's Adam does it
        return Optimizers(torch.optim.Adam(groups, lr=tr.lr, betas=(tr.beta1, tr.beta2), eps=1e-8, **fused))
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


def with_kernels_of(opt: torch.optim.Optimizer, state: dict) -> dict:
    """A saved optimizer state with `opt`'s own kernel choice (`fused`, `foreach`) in its groups. torch's
    `load_state_dict` takes every group setting from the saved state, so a checkpoint written before AdamW was
    fused (or on a device without the fused kernel) would otherwise keep the rest of the run on the slower
    path; with `fused` set, torch also moves each `step` to the parameter's device as the fused kernel needs."""
    kernels = [{k: g[k] for k in ("fused", "foreach") if k in g} for g in opt.param_groups]
    groups = [{**saved, **now} for saved, now in zip(state["param_groups"], kernels, strict=False)]
    return {**state, "param_groups": groups + state["param_groups"][len(groups):]}  # a count mismatch: torch says so


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
