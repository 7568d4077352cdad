"""The Llama-architecture decoder: RMSNorm, rotary embeddings, SwiGLU, grouped-query attention.

Parameter names are those of Hugging Face's `LlamaForCausalLM` (`model.layers.0.self_attn.q_proj.weight`, ...)
so a state dict moves between the two without renaming, and the maths follows the same conventions
(rotate-half RoPE computed in fp32, RMSNorm in fp32) so logits agree to fp32 rounding. Attention goes through
`torch.nn.functional.scaled_dot_product_attention`, which picks a fused kernel where one exists.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules import module as _module
from torch.utils.checkpoint import checkpoint

from lmwright.model.config import ModelConfig
from lmwright.model.fused_ce import linear_cross_entropy, lm_loss
from lmwright.model.onednn import linear


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32:  # one fused kernel; the same maths as below
            return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


def rope_tables(cfg: ModelConfig, seq_len: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, cfg.head_dim, 2, dtype=torch.int64, device=device).float()
                                         / cfg.head_dim))
    freqs = torch.outer(torch.arange(seq_len, device=device).float(), inv_freq)
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos(), emb.sin()


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate-half RoPE: x * cos + rotate_half(x) * sin."""
    if torch.compiler.is_compiling():  # inductor fuses the textbook form into one kernel
        return (x * cos + _rotate_half(x) * sin).to(x.dtype)
    return _Rope.apply(x, cos, sin)


class _Rope(torch.autograd.Function):
    """The same rotation written half by half into one output: no negated copy, no concatenation, nothing
    saved but the constant tables; backward is the inverse rotation. In eager mode on CPU the textbook form's
    `cat` and temporaries cost several percent of a training step."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        h = x.shape[-1] // 2
        c, s = cos[..., :h], sin[..., :h]  # the tables repeat their first half
        ctx.save_for_backward(c, s)
        return _rotate(x, c, s, 1.0)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        c, s = ctx.saved_tensors
        return _rotate(g, c, s, -1.0), None, None


def _rotate(x: torch.Tensor, c: torch.Tensor, s: torch.Tensor, sign: float) -> torch.Tensor:
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    out = torch.empty_like(x)
    lo, hi = out[..., :h], out[..., h:]
    torch.mul(x1, c, out=lo)
    lo.addcmul_(x2, s, value=-sign)
    torch.mul(x2, c, out=hi)
    hi.addcmul_(x1, s, value=sign)
    return out


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads, self.n_kv, self.hd, self.dropout = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.dropout
        bias = cfg.attention_bias
        self.q_proj = nn.Linear(cfg.d_model, cfg.n_heads * self.hd, bias=bias)
        self.k_proj = nn.Linear(cfg.d_model, cfg.n_kv_heads * self.hd, bias=bias)
        self.v_proj = nn.Linear(cfg.d_model, cfg.n_kv_heads * self.hd, bias=bias)
        self.o_proj = nn.Linear(cfg.n_heads * self.hd, cfg.d_model, bias=bias)
        if cfg.qk_norm:  # RMSNorm over each head's query and key before RoPE (Qwen3's layout and names)
            self.q_norm = RMSNorm(self.hd, cfg.norm_eps)
            self.k_norm = RMSNorm(self.hd, cfg.norm_eps)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        if _plain(self.q_proj, self.k_proj, self.v_proj):
            # one matmul for q, k and v (a wider GEMM runs faster than three narrow ones); weights stay separate
            # parameters so names and checkpoints match Hugging Face's
            qkv = linear(x, torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight]),
                         torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias])
                         if self.q_proj.bias is not None else None)
            q, k, v = qkv.split([self.n_heads * self.hd, self.n_kv * self.hd, self.n_kv * self.hd], dim=-1)
        else:  # adapters (LoRA) wrap some projections: each must run its own forward
            q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        q, k, v = q.view(b, t, self.n_heads, self.hd), k.view(b, t, self.n_kv, self.hd), v.view(b, t, self.n_kv, self.hd)
        if hasattr(self, "q_norm"):
            q, k = self.q_norm(q), self.k_norm(k)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        # grouped-query: each kv head serves n_heads / n_kv query heads, without copying k and v
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.n_kv != self.n_heads,
                                           dropout_p=self.dropout if self.training else 0.0)
        return project(self.o_proj, y.transpose(1, 2).reshape(b, t, -1))


ACTIVATIONS = {"silu": F.silu, "relu2": lambda x: F.relu(x).square()}  # gated: act(gate(x)) * up(x)


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.d_model, cfg.ffn_dim, bias=cfg.mlp_bias)
        self.up_proj = nn.Linear(cfg.d_model, cfg.ffn_dim, bias=cfg.mlp_bias)
        self.down_proj = nn.Linear(cfg.ffn_dim, cfg.d_model, bias=cfg.mlp_bias)
        self.act = ACTIVATIONS[cfg.activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _plain(self.gate_proj, self.up_proj):  # adapters: each projection's own forward
            return project(self.down_proj, self.act(self.gate_proj(x)) * self.up_proj(x))
        bias = torch.cat([self.gate_proj.bias, self.up_proj.bias]) if self.gate_proj.bias is not None else None
        gate_up = linear(x, torch.cat([self.gate_proj.weight, self.up_proj.weight]), bias)
        gate, up = gate_up.chunk(2, dim=-1)
        return project(self.down_proj, self.act(gate) * up)


def _plain(*layers: nn.Module) -> bool:
    """True when every layer is a bare `nn.Linear`, so their weights can be fused into one matmul."""
    return all(type(layer) is nn.Linear for layer in layers)


def project(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`layer(x)`; a bare `nn.Linear` without hooks through `onednn.linear` (oneDNN on CPU in fp32), an adapter
    or a hooked layer as itself."""
    if _plain(layer) and not _hooked(layer):
        return linear(x, layer.weight, layer.bias)
    return layer(x)


def _hooked(layer: nn.Module) -> bool:
    """Whether calling `layer` would run hooks (its own or every module's), which its weights alone would skip."""
    return bool(layer._forward_hooks or layer._forward_pre_hooks or layer._backward_hooks
                or layer._backward_pre_hooks or _module._global_forward_hooks or _module._global_forward_pre_hooks
                or _module._global_backward_hooks or _module._global_backward_pre_hooks)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.mlp = MLP(cfg)
        # on each residual branch's output while training; absent at 0, where it would still keep a mask
        self.dropout = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.self_attn(self.input_layernorm(x), cos, sin))
        return x + self.dropout(self.mlp(self.post_attention_layernorm(x)))


class Decoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)


class LlamaLM(nn.Module):
    """`forward(ids)` returns logits (batch, time, vocab); `forward(ids, targets)` returns only the mean
    cross-entropy (targets of -100 ignored), computed fused with the output projection so the full logits are
    never materialised (`fused_ce.py`)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.model = Decoder(cfg)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        cos, sin = rope_tables(cfg, cfg.max_seq_len)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.activation_checkpointing = False  # recompute each block in backward instead of keeping activations
        self.fused_loss = True  # eager: the loss fused with the output projection; under compile inductor fuses

    def init_weights(self, seed: int) -> None:
        """Initialise from `seed` with the configured strategy; norms start at one, biases at zero.

        - gpt2: normal(0, init_std), the residual output projections (o_proj, down_proj) scaled by
          1/sqrt(2 x layers) so the residual stream's variance does not grow with depth;
        - normal: normal(0, init_std) everywhere;
        - xavier: normal with std sqrt(2 / (fan_in + fan_out)) (Glorot);
        - kaiming: normal with std 1/sqrt(fan_in) (He, linear gain);
        - zero_init_output: o_proj and down_proj start at zero, so each block starts as the identity.
        """
        g = torch.Generator().manual_seed(seed)
        cfg = self.cfg
        for name, p in self.named_parameters():
            if p.dim() < 2:
                with torch.no_grad():
                    p.fill_(1.0 if name.endswith("norm.weight") else 0.0)
                continue
            fan_out, fan_in = p.shape  # Linear is (out, in); Embedding is (vocab, d): treated alike
            residual = name.endswith(("o_proj.weight", "down_proj.weight"))
            if cfg.init == "xavier":
                std = math.sqrt(2.0 / (fan_in + fan_out))
            elif cfg.init == "kaiming":
                std = 1.0 / math.sqrt(fan_in)
            elif cfg.init == "gpt2" and residual:
                std = cfg.init_std / math.sqrt(2 * cfg.n_layers)
            else:
                std = cfg.init_std
            with torch.no_grad():
                p.copy_(torch.randn(p.shape, generator=g) * std)
                if residual and cfg.zero_init_output:
                    p.zero_()

    def hidden(self, ids: torch.Tensor) -> torch.Tensor:
        """The final normed hidden states (batch, time, d): what the output head (or a classifier) reads."""
        t = ids.shape[1]
        if t > self.cfg.max_seq_len:
            raise ValueError(f"sequence of {t} tokens exceeds max_seq_len {self.cfg.max_seq_len}")
        x = self.model.embed_tokens(ids)
        cos, sin = self.rope_cos[:t].to(x.dtype), self.rope_sin[:t].to(x.dtype)
        for block in self.model.layers:
            if self.activation_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, cos, sin, use_reentrant=False)
            else:
                x = block(x, cos, sin)
        return self.model.norm(x)

    def forward(self, ids: torch.Tensor, targets: torch.Tensor | None = None,
                label_smoothing: float = 0.0) -> torch.Tensor:
        h = self.hidden(ids)
        if targets is None:
            return project(self.lm_head, h)
        if not self.fused_loss:
            return lm_loss(self.lm_head(h), targets, label_smoothing)
        if torch.is_autocast_enabled(h.device.type):  # the fused op runs outside autocast: cast as it would
            h = h.to(torch.get_autocast_dtype(h.device.type))
            with torch.autocast(h.device.type, enabled=False):
                return linear_cross_entropy(h, self.lm_head.weight.to(h.dtype), targets, label_smoothing)
        return linear_cross_entropy(h, self.lm_head.weight, targets, label_smoothing)

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def weights(self) -> dict[str, torch.Tensor]:
        """The state dict as saved: contiguous CPU tensors, and no `lm_head.weight` when it is tied to the
        embedding (safetensors refuses shared storage; loaders re-tie from the config)."""
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        if self.cfg.tie_embeddings:
            state.pop("lm_head.weight", None)
        return state

    def load_weights(self, state: dict[str, torch.Tensor]) -> None:
        """Load a state dict saved by `weights()` (or a Hugging Face Llama's), strictly."""
        state = {k: v for k, v in state.items() if "rotary_emb" not in k}
        if self.cfg.tie_embeddings:
            state["lm_head.weight"] = state["model.embed_tokens.weight"]
        self.load_state_dict(state)
