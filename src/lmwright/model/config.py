"""Model configuration with derived sizes (parameter count)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    n_layers: int = 4
    d_model: int = 256
    n_heads: int = 4
    n_kv_heads: int = 2
    ffn_dim: int = 704
    max_seq_len: int = 256
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = True
    init: str = "gpt2"
    init_std: float = 0.02
    zero_init_output: bool = False
    qk_norm: bool = False
    dropout: float = 0.0
    attention_bias: bool = False
    mlp_bias: bool = False
    activation: str = "silu"

    @classmethod
    def from_spec(cls, spec, vocab_size: int) -> ModelConfig:
        m = spec.model
        ffn = m.ffn_dim or 64 * -(-(8 * m.d_model // 3) // 64)
        return cls(vocab_size=vocab_size, n_layers=m.n_layers, d_model=m.d_model, n_heads=m.n_heads,
                   n_kv_heads=m.n_kv_heads, ffn_dim=ffn, max_seq_len=m.max_seq_len, rope_theta=m.rope_theta,
                   norm_eps=m.norm_eps, tie_embeddings=m.tie_embeddings, init=m.init, init_std=m.init_std,
                   zero_init_output=m.zero_init_output, qk_norm=m.qk_norm, dropout=m.dropout,
                   attention_bias=m.attention_bias, mlp_bias=m.mlp_bias, activation=m.activation)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def n_params(self, embeddings: bool = True) -> int:
        d, kv = self.d_model, self.n_kv_heads * self.head_dim
        per_layer = d * d * 2 + d * kv * 2 + 3 * d * self.ffn_dim + 2 * d
        if self.attention_bias:
            per_layer += 2 * d + 2 * kv
        if self.mlp_bias:
            per_layer += 2 * self.ffn_dim + d
        if self.qk_norm:
            per_layer += 2 * self.head_dim
        emb = self.vocab_size * d * (1 if self.tie_embeddings else 2)
        return self.n_layers * per_layer + d + (emb if embeddings else 0)

    def to_dict(self) -> dict:
        return asdict(self)
