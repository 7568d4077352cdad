"""GGUF for llama.cpp, written with the `gguf` package (ggml's own writer).

llama.cpp's `llama` architecture: hyper-parameters under `llama.*`, tensors under its names (`token_embd`,
`blk.N.attn_q`, ...), and the BPE tokenizer (`gpt2` model: the byte-level vocabulary, merges, special-token
ids and types). llama.cpp rotates adjacent pairs in RoPE where Hugging Face rotates halves, so the q and k
projections are permuted per head, as llama.cpp's own converter does. Models llama.cpp's llama graph cannot
run (QK-norm, squared-ReLU, MLP biases) are refused with the reason.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lmwright.errors import LmwrightError


def permute_rope(w: np.ndarray, n_head: int) -> np.ndarray:
    """Hugging Face's rotate-half rows of each head -> llama.cpp's interleaved pairs."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(model_dir: Path, path: Path, dtype: str = "f32") -> dict:
    import gguf
    from safetensors.numpy import load_file

    cfg = json.loads((model_dir / "config.json").read_text())
    if cfg.get("model_type") != "llama":
        raise LmwrightError(f"{model_dir}: GGUF export is for llama models; this is {cfg.get('model_type')!r} "
                            "(QK-norm models save as qwen3)")
    if cfg.get("hidden_act", "silu") != "silu" or cfg.get("mlp_bias"):
        raise LmwrightError(f"{model_dir}: llama.cpp's llama graph has a SwiGLU MLP without biases; this model has "
                            f"hidden_act={cfg.get('hidden_act')!r}, mlp_bias={cfg.get('mlp_bias')}")
    tok = json.loads((model_dir / "tokenizer.json").read_text())
    tok_cfg = json.loads((model_dir / "tokenizer_config.json").read_text())
    state = load_file(str(model_dir / "model.safetensors"))
    np_dtype = {"f32": np.float32, "f16": np.float16}[dtype]
    n_head, n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]

    w = gguf.GGUFWriter(str(path), arch="llama")
    w.add_name(model_dir.name)
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_rope_dimension_count(cfg["hidden_size"] // n_head)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_rope_freq_base(cfg.get("rope_theta", 10000.0))
    w.add_vocab_size(cfg["vocab_size"])
    w.add_file_type(gguf.LlamaFileType.ALL_F32 if dtype == "f32" else gguf.LlamaFileType.MOSTLY_F16)

    vocab = sorted(tok["model"]["vocab"].items(), key=lambda kv: kv[1])
    special = {t["content"]: t["id"] for t in tok.get("added_tokens", [])}
    for content, idx in special.items():
        if idx >= len(vocab) or vocab[idx][1] != idx:
            raise LmwrightError(f"{model_dir}/tokenizer.json: special token {content!r} is outside the vocabulary")
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list([t for t, _ in vocab])
    w.add_token_types([gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL for t, _ in vocab])
    merges = tok["model"]["merges"]
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    for key, setter in (("bos_token", w.add_bos_token_id), ("eos_token", w.add_eos_token_id),
                        ("pad_token", w.add_pad_token_id)):
        if tok_cfg.get(key) in special:
            setter(special[tok_cfg[key]])
    w.add_add_bos_token(True)
    if tok_cfg.get("chat_template"):
        w.add_chat_template(tok_cfg["chat_template"])

    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    per_layer = {"input_layernorm.weight": "attn_norm.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
                 "self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
                 "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
                 "self_attn.q_proj.bias": "attn_q.bias", "self_attn.k_proj.bias": "attn_k.bias",
                 "self_attn.v_proj.bias": "attn_v.bias", "self_attn.o_proj.bias": "attn_output.bias",
                 "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
                 "mlp.down_proj.weight": "ffn_down.weight"}
    count = 0
    for key, value in state.items():
        if key.startswith("model.layers."):
            _, _, i, rest = key.split(".", 3)
            name = f"blk.{i}.{per_layer[rest]}"
            if rest.startswith("self_attn.q_proj"):
                value = permute_rope(value, n_head)
            elif rest.startswith("self_attn.k_proj"):
                value = permute_rope(value, n_kv)
        else:
            name = names[key]
        # norms and biases stay f32 (llama.cpp's own choice); matrices take the chosen type
        w.add_tensor(name, np.ascontiguousarray(value.astype(np_dtype if value.ndim == 2 else np.float32)))
        count += 1
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return {"format": "gguf", "path": str(path), "bytes": path.stat().st_size, "tensors": count,
            "vocab": len(vocab), "dtype": dtype}
