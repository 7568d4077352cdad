"""`lmwright export`: ONNX against onnxruntime, int8 weights with their size, speed and loss change, GGUF read
back (and run by llama.cpp when llama-cpp-python is installed), refusals with reasons."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import lmwright
from lmwright.cli import app
from lmwright.errors import LmwrightError
from lmwright.export import export
from lmwright.export.gguf import permute_rope


@pytest.fixture(scope="module")
def model_dir(tiny_run):
    root, _ = tiny_run
    return root / "lmwright-out" / "model"


def test_onnx_matches_pytorch_and_int8_reports_its_cost(tiny_copy):
    r = CliRunner().invoke(app, ["export", "--format", "int8", "-C", str(tiny_copy), "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["format"] == "int8" and res["model"] == "tiny"
    assert abs(res["loss_change"]) < 0.05 and res["texts"] > 5  # measured on validation documents
    assert res["fp32"]["bytes"] > 0 and res["int8"]["ms_per_forward"] > 0
    out = tiny_copy / "lmwright-out" / "export" / "int8"
    assert (out / "model.onnx").exists() and (out / "tokenizer.json").exists()

    import onnxruntime as ort

    model = lmwright.load_model(tiny_copy)
    sess = ort.InferenceSession(str(out / "model.onnx"))
    for shape in ((1, 5), (4, 33)):  # dynamic batch and length
        ids = torch.randint(0, model.cfg.vocab_size, shape)
        got = sess.run(None, {"input_ids": ids.numpy()})[0]
        with torch.no_grad():
            assert np.abs(got - model(ids).numpy()).max() <= 1e-4


def test_gguf_reads_back_with_llama_names_and_the_tokenizer(model_dir, tmp_path):
    import gguf
    from safetensors.numpy import load_file

    res = export(model_dir, "gguf", tmp_path)
    reader = gguf.GGUFReader(res["path"])
    fields = {k: v for k, v in reader.fields.items()}

    def value(key):
        f = fields[key]
        return f.contents() if hasattr(f, "contents") else f.parts[f.data[0]].tolist()

    cfg = json.loads((model_dir / "config.json").read_text())
    assert value("general.architecture") == "llama"
    assert value("llama.block_count") == cfg["num_hidden_layers"]
    assert value("llama.attention.head_count_kv") == cfg["num_key_value_heads"]
    assert value("llama.context_length") == cfg["max_position_embeddings"]
    tok = json.loads((model_dir / "tokenizer.json").read_text())
    tokens = value("tokenizer.ggml.tokens")
    assert tokens == [t for t, _ in sorted(tok["model"]["vocab"].items(), key=lambda kv: kv[1])]
    assert value("tokenizer.ggml.bos_token_id") == tok["model"]["vocab"].get("<|bos|>", 0)
    state = load_file(str(model_dir / "model.safetensors"))
    tensors = {t.name: np.asarray(t.data).reshape([int(x) for x in reversed(t.shape)]) for t in reader.tensors}
    assert np.array_equal(tensors["token_embd.weight"], state["model.embed_tokens.weight"])
    q = state["model.layers.1.self_attn.q_proj.weight"]
    assert np.array_equal(tensors["blk.1.attn_q.weight"], permute_rope(q, cfg["num_attention_heads"]))
    assert np.array_equal(tensors["blk.0.ffn_down.weight"], state["model.layers.0.mlp.down_proj.weight"])
    half = export(model_dir, "gguf", tmp_path / "f16", dtype="f16")
    assert half["bytes"] < res["bytes"] * 0.75


def test_llama_cpp_runs_the_gguf(model_dir, tmp_path):
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (it builds from source)")
    path = export(model_dir, "gguf", tmp_path)["path"]
    llm = llama_cpp.Llama(model_path=path, n_ctx=64, logits_all=True, verbose=False)
    model, tok = lmwright.load_model(model_dir), lmwright.load_tokenizer(model_dir)
    ids = tok.encode("The json module encodes").ids
    assert llm.tokenize(b"The json module encodes", add_bos=True, special=False) == ids
    llm.eval(ids)
    theirs = np.asarray(llm.scores[: len(ids)])
    with torch.no_grad():
        ours = model(torch.tensor([ids]))[0].numpy()
    assert np.abs(theirs - ours).max() < 5e-3  # llama.cpp's f32 kernels sum in another order
    llm.reset()
    out = llm("The json module", max_tokens=8, temperature=0)["choices"][0]["text"]
    assert out == lmwright.generate(model, tok, "The json module", max_new_tokens=8)


def test_export_refuses_what_llama_cpp_cannot_run(tmp_path):
    from lmwright.model.config import ModelConfig
    from lmwright.model.hf import save_hf
    from lmwright.model.llama import LlamaLM
    from lmwright.tokenizer import save_tokenizer, train_tokenizer

    tok = train_tokenizer(["some text to learn from"] * 20, 300, 1)
    save_tokenizer(tok, tmp_path / "tok")
    m = LlamaLM(ModelConfig(vocab_size=tok.get_vocab_size(), n_layers=1, d_model=16, n_heads=2, n_kv_heads=1,
                            ffn_dim=32, max_seq_len=16, activation="relu2"))
    save_hf(m, tmp_path / "tok", tmp_path / "m", {"bos": 0, "eos": 1, "pad": 2})
    with pytest.raises(LmwrightError, match="SwiGLU"):
        export(tmp_path / "m", "gguf", tmp_path / "out")
    with pytest.raises(LmwrightError, match="choose one of"):
        export(tmp_path / "m", "tflite", tmp_path / "out")
