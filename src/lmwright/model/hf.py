"""The Hugging Face model directory: lmwright's saved-model format.

`save_hf` writes `config.json` (`LlamaForCausalLM`), `model.safetensors`, the tokenizer files and
`generation_config.json`, which `transformers.AutoModelForCausalLM.from_pretrained` loads — the road to vLLM,
llama.cpp and lm-evaluation-harness. `load_hf` reads such a directory (ours or any Llama-family one without
biases) back into `LlamaLM`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from safetensors.torch import load_file, save_file

from lmwright.errors import LmwrightError
from lmwright.model.config import ModelConfig
from lmwright.model.llama import LlamaLM

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def hf_config(cfg: ModelConfig, bos_id: int, eos_id: int, pad_id: int) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "intermediate_size": cfg.ffn_dim,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.max_seq_len,
        "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "rope_scaling": None,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
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
    if c.get("attention_bias") or c.get("mlp_bias"):
        raise LmwrightError(f"{where}: attention/MLP biases are not supported by lmwright's Llama yet")
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
    )


def load_hf(path: Path) -> LlamaLM:
    path = Path(path)
    cfg_file = path / "config.json"
    if not cfg_file.exists():
        raise LmwrightError(f"{path}: no config.json; expected a Hugging Face model directory")
    c = json.loads(cfg_file.read_text())
    if c.get("model_type") != "llama":
        raise LmwrightError(f"{cfg_file}: model_type is {c.get('model_type')!r}; only 'llama' models load here")
    cfg = config_from_hf(c, cfg_file)
    model = LlamaLM(cfg)
    try:
        model.load_weights(load_file(str(path / "model.safetensors")))
    except (RuntimeError, KeyError) as exc:
        raise LmwrightError(f"{path}: the weights do not match config.json ({str(exc)[:300]})") from None
    return model.eval()


