"""The Hugging Face model directory: lmwright's saved-model format.

`save_hf` writes `config.json` (`LlamaForCausalLM`), `model.safetensors`, the tokenizer files and
`generation_config.json`, which `transformers.AutoModelForCausalLM.from_pretrained` loads — the road to vLLM,
llama.cpp and lm-evaluation-harness. A model with QK-norm is written as `Qwen3ForCausalLM`, the Llama-family
architecture that has it (same parameter names plus `q_norm`/`k_norm`). `load_hf` reads such a directory (ours
or any Llama or Qwen3 one) back into `LlamaLM`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from safetensors.torch import load_file, save_file

from lmwright.errors import LmwrightError
from lmwright.model.config import ModelConfig
from lmwright.model.llama import LlamaLM
from lmwright.tokenizer import TOKENIZER_FILES


def hf_config(cfg: ModelConfig, bos_id: int, eos_id: int, pad_id: int) -> dict:
    arch = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "mlp_bias": cfg.mlp_bias}
    if cfg.qk_norm:
        arch = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "use_sliding_window": False,
                "sliding_window": None}
    return {
        **arch,
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "intermediate_size": cfg.ffn_dim,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads,
        "head_dim": cfg.head_dim,
        "hidden_act": cfg.activation,
        "max_position_embeddings": cfg.max_seq_len,
        "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "rope_scaling": None,
        "attention_bias": cfg.attention_bias,
        "attention_dropout": cfg.dropout,
        "tie_word_embeddings": cfg.tie_embeddings,
        "initializer_range": cfg.init_std,
        "bos_token_id": bos_id,
        "eos_token_id": eos_id,
        "pad_token_id": pad_id,
        "torch_dtype": "float32",
        "use_cache": True,
    }


def save_hf(model: LlamaLM, tokenizer_dir: Path, out_dir: Path, ids: dict[str, int]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = model.cfg
    save_file(model.weights(), str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    (out_dir / "config.json").write_text(json.dumps(hf_config(cfg, ids["bos"], ids["eos"], ids["pad"]), indent=2))
    (out_dir / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": ids["bos"], "eos_token_id": ids["eos"], "pad_token_id": ids["pad"],
         "do_sample": False, "max_new_tokens": 128}, indent=2))
    for name in TOKENIZER_FILES:
        if (tokenizer_dir / name).exists():
            shutil.copyfile(tokenizer_dir / name, out_dir / name)


def config_from_hf(c: dict, where: Path) -> ModelConfig:
    if c.get("hidden_act", "silu") not in ("silu", "relu2"):
        raise LmwrightError(f"{where}: hidden_act {c['hidden_act']!r} is not supported (silu or relu2)")
    if (c.get("rope_scaling") or {}).get("rope_type", "default") not in ("default", None):
        raise LmwrightError(f"{where}: rope_scaling {c['rope_scaling']} is not supported yet")
    heads = c["num_attention_heads"]
    if c.get("head_dim") not in (None, c["hidden_size"] // heads):
        raise LmwrightError(f"{where}: head_dim != hidden_size / num_attention_heads is not supported yet")
    theta = c.get("rope_theta") or (c.get("rope_parameters") or {}).get("rope_theta", 10000.0)
    return ModelConfig(
        vocab_size=c["vocab_size"], n_layers=c["num_hidden_layers"], d_model=c["hidden_size"], n_heads=heads,
        n_kv_heads=c.get("num_key_value_heads") or heads, ffn_dim=c["intermediate_size"],
        max_seq_len=c.get("max_position_embeddings", 2048), rope_theta=theta, norm_eps=c.get("rms_norm_eps", 1e-6),
        tie_embeddings=c.get("tie_word_embeddings", False), init_std=c.get("initializer_range", 0.02),
        qk_norm=c.get("model_type") == "qwen3", attention_bias=bool(c.get("attention_bias")),
        mlp_bias=bool(c.get("mlp_bias")), activation=c.get("hidden_act", "silu"),
    )


def read_config(path: Path) -> ModelConfig:
    """The network a Hugging Face Llama or Qwen3 directory holds, from its `config.json`."""
    cfg_file = Path(path) / "config.json"
    if not cfg_file.exists():
        raise LmwrightError(f"{path}: no config.json; expected a Hugging Face model directory")
    c = json.loads(cfg_file.read_text())
    if c.get("model_type") not in ("llama", "qwen3"):
        raise LmwrightError(f"{cfg_file}: model_type is {c.get('model_type')!r}; 'llama' and 'qwen3' models load here")
    return config_from_hf(c, cfg_file)


def load_hf_weights(model: LlamaLM, path: Path) -> None:
    """Load a Hugging Face directory's `model.safetensors` into `model`, built from a config of its shape."""
    file = Path(path) / "model.safetensors"
    if not file.exists():
        raise LmwrightError(f"{path}: no model.safetensors (one safetensors file is read; re-save the model "
                            "with save_pretrained(..., safe_serialization=True, max_shard_size='100GB'))")
    try:
        model.load_weights(load_file(str(file)))
    except (RuntimeError, KeyError) as exc:
        raise LmwrightError(f"{path}: the weights do not match config.json ({str(exc)[:300]})") from None


def load_hf(path: Path) -> LlamaLM:
    model = LlamaLM(read_config(path))
    load_hf_weights(model, path)
    return model.eval()
