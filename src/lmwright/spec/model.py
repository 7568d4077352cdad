"""The `tokenizer` and `model` sections: the BPE vocabulary and the Llama network's shape."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from lmwright.spec.base import Section


class TokenizerSpec(Section):
    vocab_size: int = Field(4096, ge=300, le=200_000)
    min_frequency: int = Field(2, ge=1)


class ModelSpec(Section):
    n_layers: int = Field(4, ge=1)
    d_model: int = Field(192, ge=8)
    n_heads: int = Field(4, ge=1)
    n_kv_heads: int = Field(2, ge=1)
    ffn_dim: int | None = Field(None, ge=1)  # None = 8/3 * d_model rounded up to a multiple of 64 (SwiGLU)
    max_seq_len: int = Field(256, ge=8)
    rope_theta: float = Field(10000.0, gt=0)
    norm_eps: float = Field(1e-5, gt=0)
    tie_embeddings: bool = True
    init: Literal["gpt2", "normal", "xavier", "kaiming"] = "gpt2"  # gpt2 = normal with scaled residual outputs
    init_std: float = Field(0.02, gt=0)  # for normal and gpt2
    zero_init_output: bool = False  # start o_proj and down_proj at zero (each block begins as the identity)
    activation: Literal["silu", "relu2"] = "silu"  # the gated MLP's activation: SwiGLU or squared ReLU
    qk_norm: bool = False  # RMSNorm on each head's queries and keys (saved as a Qwen3 model, Llama has none)
    dropout: float = Field(0.0, ge=0, lt=1)  # attention probabilities and residual branches, training only
    attention_bias: bool = False
    mlp_bias: bool = False

    @model_validator(mode="after")
    def _heads_divide(self) -> ModelSpec:
        if self.qk_norm and self.mlp_bias:
            raise ValueError("qk_norm with mlp_bias has no Hugging Face architecture to save to (Qwen3 has "
                             "QK-norm but no MLP bias); turn one of them off")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads ({self.n_heads}) must be divisible by n_kv_heads ({self.n_kv_heads})")
        if (self.d_model // self.n_heads) % 2:
            raise ValueError("d_model / n_heads (the head size) must be even for rotary embeddings")
        return self
