"""The training planner: parameters, FLOPs per token and training memory of a model config, before any run.

FLOPs follow the PaLM/nanoGPT convention used for MFU: a training token costs 6 FLOPs per weight it is
multiplied by (forward 2, backward 4), the embedding lookup excepted and the output head included, plus
12 x layers x width x sequence for attention's score and value products.

Memory is what a training step holds at its peak: weights (fp32 masters), their gradients, the optimizer's
state, the low-precision weight copies autocast keeps, and the activations saved for backward. The activation
count is derived from this implementation's forward (which tensors autograd keeps, layer by layer); a test
holds it against what `torch.autograd.graph.saved_tensors_hooks` records on a real step.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from lmwright.model.config import ModelConfig

GIB = 1024**3

# usable memory of common accelerators, GiB (the name a user passes to `--device`)
DEVICES = {
    "h200": 141, "h100": 80, "a100-80": 80, "a100-40": 40, "l40s": 48, "a6000": 48, "a10g": 24, "l4": 24,
    "rtx4090": 24, "rtx3090": 24, "v100": 32, "t4": 16, "rtx4080": 16, "mps-16": 16,
}
EMULATED_BF16 = {"v100", "t4", "mps-16"}  # of DEVICES, those without bf16 matrix units: precision auto is fp32 there

# fp32 tensors of optimizer state per parameter
OPTIMIZER_STATES = {"adamw": 2, "adam": 2, "sgd": 1, "adagrad": 1, "adadelta": 2, "rmsprop": 2, "muon": 2}

PRECISION_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}


def matmul_params(cfg: ModelConfig) -> int:
    """Weights that a token is multiplied by: every Linear, the output head included, not the embedding."""
    d, kv = cfg.d_model, cfg.n_kv_heads * cfg.head_dim
    per_layer = 2 * d * d + 2 * d * kv + 3 * d * cfg.ffn_dim
    return cfg.n_layers * per_layer + cfg.vocab_size * d


def flops_per_token(cfg: ModelConfig, seq_len: int, training: bool = True) -> int:
    forward = 2 * matmul_params(cfg) + 4 * cfg.n_layers * cfg.d_model * seq_len
    return 3 * forward if training else forward


def activation_bytes(cfg: ModelConfig, batch: int, seq_len: int, precision: str = "fp32",
                     checkpointing: bool = False) -> tuple[int, int]:
    """Bytes autograd keeps for backward after one forward pass, and the peak during backward (no dropout).

    Counted from this implementation, per layer and token. fp32: each RMSNorm keeps its input, 1/rms, its
    output and the flattened input of the matmul after it (3d + 1, twice); attention keeps the fused q|k|v
    output (d + 2kv), the rotated q and k, its output (which o_proj reads as a view) and a log-sum-exp per
    head — RoPE keeps nothing per token, its tables are constants; the gated MLP keeps the fused gate|up output (2f),
    act(gate) and the product (4f). Under bf16/fp16 autocast the residual stream, norms and log-sum-exp stay
    fp32 (4d + 2 + heads) and the rest is low precision (5d + 3kv + 4f). The loss, fused with the output
    projection, keeps the final norm's tensors and the gradients it formed in forward: one per token for the
    hidden state and one vocabulary x width for the head. Plus the int64 token ids. With checkpointing only
    each block's fp32 input is kept; backward recomputes one block at a time, so the peak adds one block.
    """
    d, f, h = cfg.d_model, cfg.ffn_dim, cfg.n_heads
    kv = cfg.n_kv_heads * cfg.head_dim
    tokens = batch * seq_len
    if precision == "fp32":
        layer = 4 * (9 * d + 3 * kv + h + 2 + 4 * f)
        head = 4 * (3 * d + 1)
        fixed = 4 * cfg.vocab_size * d
    else:
        low = PRECISION_BYTES[precision]
        layer = 4 * (4 * d + h + 2) + low * (5 * d + 3 * kv + 4 * f)
        head = 4 * (2 * d + 1) + low * d
        fixed = low * cfg.vocab_size * d
    if cfg.qk_norm:  # each norm keeps its output and 1/rms per head (its input is the q|k|v output)
        layer += 4 * (d + kv + h + cfg.n_kv_heads)
    ids = 8  # int64 token ids, kept by the embedding's backward
    if checkpointing:
        saved = tokens * (cfg.n_layers * 4 * d + head + ids) + fixed
        return saved, saved + tokens * layer
    saved = tokens * (cfg.n_layers * layer + head + ids) + fixed
    return saved, saved


@dataclass
class Plan:
    params: int
    params_non_embedding: int
    flops_per_token: int
    flops_per_step: int
    weights_bytes: int
    grads_bytes: int
    optimizer_bytes: int
    weight_copies_bytes: int
    activations_bytes: int
    total_bytes: int
    device: str | None = None
    device_bytes: int | None = None
    fits: bool | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def plan(cfg: ModelConfig, batch: int, seq_len: int, precision: str = "fp32", optimizer: str = "adamw",
         checkpointing: bool = False, device: str | None = None, memory_gib: float | None = None) -> Plan:
    n = cfg.n_params()
    low = PRECISION_BYTES[precision]
    weights = 4 * n  # fp32 master weights in every precision (autocast computes in low precision from them)
    grads = 4 * n
    opt = 4 * n * OPTIMIZER_STATES[optimizer]
    if optimizer == "muon":  # Muon keeps one momentum buffer per matrix, AdamW two for the rest
        hidden = matmul_params(cfg) - cfg.vocab_size * cfg.d_model
        opt = 4 * (hidden + 2 * (n - hidden))
    # the concatenated q|k|v and gate|up weights each layer builds for its fused matmuls, and under autocast
    # the low-precision casts of every matmul weight
    d, kv = cfg.d_model, cfg.n_kv_heads * cfg.head_dim
    copies = low * cfg.n_layers * (d * (d + 2 * kv) + 2 * d * cfg.ffn_dim)
    if precision != "fp32":
        copies += low * matmul_params(cfg)
    _, act = activation_bytes(cfg, batch, seq_len, precision, checkpointing)
    total = weights + grads + opt + copies + act
    limit = None
    if memory_gib is not None:
        limit = int(memory_gib * GIB)
    elif device is not None:
        limit = DEVICES[device] * GIB
    fpt = flops_per_token(cfg, seq_len)
    return Plan(params=n, params_non_embedding=cfg.n_params(embeddings=False), flops_per_token=fpt,
                flops_per_step=fpt * batch * seq_len, weights_bytes=weights, grads_bytes=grads,
                optimizer_bytes=opt, weight_copies_bytes=copies, activations_bytes=act, total_bytes=total,
                device=device, device_bytes=limit, fits=None if limit is None else total <= limit)
