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
    output and the flattened copy its Linear consumers keep (3d + 1, twice); attention keeps the rotated q,
    the (repeated) k and v and its output (4d), a log-sum-exp per head, and o_proj's input (d) — RoPE keeps
    nothing per token, its tables are constants; the gated MLP keeps gate, up, act(gate) and their product
    (4f). Under bf16/fp16 autocast the residual stream, norms and log-sum-exp stay fp32 (4d + 2 + heads)
    while each Linear keeps its own low-precision copy of its input and outputs are low precision (9d + 4f).
    After the layers: the final norm and the fp32 log-softmax over the vocabulary, and the token ids and
    targets (int64). With checkpointing only each block's fp32 input is kept; backward recomputes one block
    at a time, so the peak adds one block's activations.
    """
    d, f, h = cfg.d_model, cfg.ffn_dim, cfg.n_heads
    kv = cfg.n_kv_heads * cfg.head_dim
    tokens = batch * seq_len
    if precision == "fp32":
        layer = 4 * (10 * d + h + 2 + 4 * f)
        head = 4 * (3 * d + 1 + cfg.vocab_size)
    else:
        low = PRECISION_BYTES[precision]
        layer = 4 * (4 * d + h + 2) + low * (9 * d + 4 * f)
        head = 4 * (2 * d + 1 + cfg.vocab_size) + low * d
    if cfg.qk_norm:  # each norm keeps its input, output and 1/rms per head
        layer += 4 * (2 * d + 2 * kv + h + cfg.n_kv_heads)
    ids = 16  # int64 inputs and targets
    if checkpointing:
        saved = tokens * (cfg.n_layers * 4 * d + head + ids)
        return saved, saved + tokens * layer
    saved = tokens * (cfg.n_layers * layer + head + ids)
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
    copies = low * matmul_params(cfg) if precision != "fp32" else 0  # autocast's cached weight casts
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
