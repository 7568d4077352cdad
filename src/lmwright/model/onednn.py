"""fp32 linear layers on CPU through oneDNN, the library PyTorch ships beside MKL, for training.

PyTorch sends an fp32 `F.linear` on CPU to MKL's sgemm. On the AMD EPYC these figures come from, oneDNN's
linear (`torch.ops.mkldnn._linear_pointwise`, which inductor emits for frozen bf16 CPU linears) ran a training
step's forward products and their input gradients 4-23% faster: x @ W.T at (4,096 x 256) x (256 x 1,408) in
13.9 against 15.3 ms, the output head's (1,024 x 256) x (256 x 4,096) at 203 against 165 GFLOP/s. MKL stays
faster for the weight gradients, whose inner dimension is every token of the batch (g.T @ x: 14.9 against
20.3 ms), so those stay on it. Both are fp32 products; only the order of the sums differs.

Where it does not pay, it is not used:
- small products (under `MIN_MACS` multiply-adds): oneDNN's call costs more (37 against 20 us at 256 x 32 x 96;
  the two even at 6.3M);
- inference (no gradient): oneDNN builds a kernel for each new shape (0.5-1.2 ms), and evaluation and serving
  see a new sequence length at every turn, where a training step repeats one shape;
- bf16 autocast, where the products already go to oneDNN; `torch.compile`, where inductor picks its own; a torch
  without the op, or with `torch.backends.mkldnn` turned off;
- CPUs other than x86-64: measured on none (aarch64 builds route oneDNN through other kernels).
`LMWRIGHT_CPU_MATMUL=mkl` (or `off`) turns it off, for a CPU where MKL turns out faster.
"""

from __future__ import annotations

import os
import platform

import torch
import torch.nn.functional as F

try:
    _linear_pointwise = torch.ops.mkldnn._linear_pointwise
except (AttributeError, RuntimeError):  # a build without oneDNN, or a torch that renamed the op
    _linear_pointwise = None

ENABLED = (_linear_pointwise is not None and torch.backends.mkldnn.is_available()
           and platform.machine().lower() in ("x86_64", "amd64")
           and os.environ.get("LMWRIGHT_CPU_MATMUL", "onednn").lower() not in ("mkl", "off", "0", "false"))
MIN_MACS = 1 << 23  # multiply-adds from which oneDNN's product beats MKL's (measured: 1.00x at 6.3M, 1.09x at 13M)


def applies(x: torch.Tensor, w: torch.Tensor) -> bool:
    """Whether x @ w.T goes through oneDNN: fp32 on CPU, outside autocast and compilation, at least `MIN_MACS`."""
    return (ENABLED and torch.backends.mkldnn.enabled and x.device.type == "cpu" and x.dtype == torch.float32
            and w.dtype == torch.float32
            and not torch.is_autocast_enabled("cpu") and not torch.compiler.is_compiling()
            and x.numel() * w.shape[0] >= MIN_MACS)


def _product(a: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """a @ w.T (+ b) by oneDNN, for 2-D `a`: the linear op with no fused activation."""
    return _linear_pointwise(a, w, b, "none", [], "")


def matmul_nt(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """a @ w.T for 2-D tensors, without autograd (the fused loss's products, formed while training): oneDNN where
    it `applies`, else torch's matmul. `w` may be a transposed view (a @ w for w.t())."""
    return _product(a, w) if applies(a, w) else a @ w.t()


def linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """`F.linear(x, w, b)`; while training, through oneDNN where it `applies`."""
    training = torch.is_grad_enabled() and (x.requires_grad or w.requires_grad
                                            or (b is not None and b.requires_grad))
    return _Linear.apply(x, w, b) if training and applies(x, w) else F.linear(x, w, b)


class _Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        x2 = x.reshape(-1, x.shape[-1])
        ctx.save_for_backward(x2, w)
        ctx.x_shape, ctx.has_bias = x.shape, b is not None
        return _product(x2, w, b).view(*x.shape[:-1], w.shape[0])

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        x2, w = ctx.saved_tensors
        g2 = g.reshape(-1, g.shape[-1])
        gx = None
        if ctx.needs_input_grad[0]:
            # a gradient of this gradient (create_graph: a gradient penalty) needs torch's product, which has one
            gx = (g2 @ w if torch.is_grad_enabled() else _product(g2, w.t())).view(ctx.x_shape)
        gw = g2.t() @ x2 if ctx.needs_input_grad[1] else None  # MKL: faster over the batch's tokens
        gb = g2.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gx, gw, gb
