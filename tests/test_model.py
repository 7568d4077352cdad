"""The Llama decoder against Hugging Face `transformers`: same logits, same parameter count, round trip."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, Qwen3ForCausalLM

from lmwright.model import onednn
from lmwright.model.config import ModelConfig
from lmwright.model.hf import load_hf, save_hf
from lmwright.model.llama import LlamaLM
from lmwright.tokenizer import save_tokenizer, train_tokenizer


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tok")
    save_tokenizer(train_tokenizer(["some text to learn from, over and over"] * 10, 300, 1), d)
    return d


@pytest.mark.parametrize("tie,kv,options,arch", [
    (True, 2, {}, LlamaForCausalLM),
    (False, 4, {}, LlamaForCausalLM),
    (True, 1, {}, LlamaForCausalLM),
    (True, 2, {"attention_bias": True, "mlp_bias": True, "activation": "relu2"}, LlamaForCausalLM),
    (False, 2, {"qk_norm": True, "attention_bias": True}, Qwen3ForCausalLM),
])
def test_saved_model_loads_in_transformers_with_same_logits(tmp_path, tokenizer_dir, tie, kv, options, arch):
    cfg = ModelConfig(vocab_size=300, n_layers=2, d_model=64, n_heads=4, n_kv_heads=kv, ffn_dim=96,
                      max_seq_len=64, rope_theta=5000.0, tie_embeddings=tie, **options)
    model = LlamaLM(cfg)
    model.init_weights(3)
    with torch.no_grad():  # non-trivial norms and biases so a mistake in their handling shows
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
    save_hf(model, tokenizer_dir, tmp_path, {"bos": 0, "eos": 1, "pad": 2})
    hf = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    assert type(hf) is arch
    ids = torch.randint(0, 300, (3, 50), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (hf(ids).logits - model.eval()(ids)).abs().max().item()
    assert diff <= 1e-4
    assert sum(p.numel() for p in hf.parameters()) == model.n_params() == cfg.n_params()
    back = load_hf(tmp_path)
    with torch.no_grad():
        assert torch.equal(back(ids), model(ids))


def test_loads_a_checkpoint_made_by_transformers(tmp_path):
    hf_cfg = LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32)
    torch.manual_seed(0)
    LlamaForCausalLM(hf_cfg).eval().save_pretrained(tmp_path)
    hf = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    ours = load_hf(tmp_path)
    ids = torch.randint(0, 128, (2, 20))
    with torch.no_grad():
        assert (hf(ids).logits - ours(ids)).abs().max().item() <= 1e-4
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "llama"


def test_loss_matches_cross_entropy_and_gradients_flow():
    cfg = ModelConfig(vocab_size=50, n_layers=1, d_model=16, n_heads=2, n_kv_heads=1, ffn_dim=32, max_seq_len=16)
    model = LlamaLM(cfg)
    model.init_weights(0)
    ids = torch.randint(0, 50, (2, 16))
    loss = model(ids[:, :-1], ids[:, 1:])  # fused with the output projection
    model.fused_loss = False  # the plain path, used under torch.compile
    assert torch.allclose(model(ids[:, :-1], ids[:, 1:]), loss, atol=1e-6)
    model.fused_loss = True
    logits = model(ids[:, :-1])
    ref = torch.nn.functional.cross_entropy(logits.reshape(-1, 50), ids[:, 1:].reshape(-1))
    assert torch.allclose(loss, ref, atol=1e-6)
    loss.backward()
    fused = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    ref.backward()
    assert all(torch.allclose(a, p.grad, atol=1e-6) for a, p in zip(fused, model.parameters(), strict=True))
    with pytest.raises(ValueError, match="exceeds max_seq_len"):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_dropout_acts_only_in_training_and_checkpointing_keeps_gradients():
    cfg = ModelConfig(vocab_size=50, n_layers=2, d_model=16, n_heads=2, n_kv_heads=1, ffn_dim=32, max_seq_len=16,
                      dropout=0.3)
    model = LlamaLM(cfg)
    model.init_weights(0)
    ids = torch.randint(0, 50, (2, 16), generator=torch.Generator().manual_seed(1))
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(ids), model(ids))  # eval: deterministic
    model.train()
    with torch.no_grad():
        assert not torch.equal(model(ids), model(ids))  # training: dropout draws differ

    no_drop = LlamaLM(ModelConfig(**{**cfg.to_dict(), "dropout": 0.0}))
    no_drop.init_weights(0)
    grads = []
    for ckpt in (False, True):  # activation checkpointing recomputes; the gradients are the same
        no_drop.zero_grad()
        no_drop.activation_checkpointing = ckpt
        no_drop(ids[:, :-1], ids[:, 1:]).backward()
        grads.append([p.grad.clone() for p in no_drop.parameters()])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*grads, strict=True))


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_fused_linear_cross_entropy_equals_the_reference(smoothing):
    from lmwright.model.fused_ce import linear_cross_entropy

    g = torch.Generator().manual_seed(0)
    h = torch.randn(300, 64, generator=g, requires_grad=True)
    w = torch.randn(500, 64, generator=g, requires_grad=True)
    t = torch.randint(0, 500, (300,), generator=g)
    t[[3, 77]] = -100  # ignored positions
    ref = torch.nn.functional.cross_entropy(h @ w.t(), t, label_smoothing=smoothing)
    ref.backward()
    gh, gw = h.grad.clone(), w.grad.clone()
    h.grad = w.grad = None
    out = linear_cross_entropy(h, w, t, smoothing, chunk=128)  # several chunks, the last one short
    (2 * out).backward()
    assert torch.allclose(out, ref, atol=1e-6)
    assert torch.allclose(h.grad, 2 * gh, atol=1e-6) and torch.allclose(w.grad, 2 * gw, atol=1e-6)
    with torch.no_grad():  # validation: the loss alone, no gradients formed
        assert torch.allclose(linear_cross_entropy(h, w, t, smoothing, chunk=128), ref, atol=1e-6)
    h.grad = None
    frozen = w.detach()  # a frozen head (LoRA): the hidden states' gradient alone
    linear_cross_entropy(h, frozen, t, smoothing, chunk=128).backward()
    assert torch.allclose(h.grad, gh, atol=1e-6) and frozen.grad is None


def test_fused_linear_cross_entropy_in_bf16_follows_autocasts_plain_loss():
    from lmwright.model.fused_ce import linear_cross_entropy

    g = torch.Generator().manual_seed(0)
    h = torch.randn(600, 64, generator=g).bfloat16().requires_grad_()
    w = (torch.randn(500, 64, generator=g) * 0.3).bfloat16().requires_grad_()
    t = torch.randint(0, 500, (600,), generator=g)
    ref = torch.nn.functional.cross_entropy((h @ w.t()).float(), t)  # what autocast's plain path computes
    ref.backward()
    gh, gw = h.grad.clone(), w.grad.clone()
    h.grad = w.grad = None
    out = linear_cross_entropy(h, w, t, 0.0, chunk=256)
    out.backward()
    assert torch.allclose(out, ref, atol=1e-3)
    for ours, theirs in ((h.grad, gh), (w.grad, gw)):
        assert ours.dtype == torch.bfloat16
        assert (ours.float() - theirs.float()).norm() <= 0.02 * theirs.float().norm()


def test_rope_without_concatenation_equals_rotate_half_and_its_gradient_checks():
    from lmwright.model.llama import _rotate_half, apply_rope

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 8, 16, dtype=torch.float64, generator=g, requires_grad=True)
    half = torch.randn(8, 8, dtype=torch.float64, generator=g)
    cos, sin = torch.cat([half.cos()] * 2, -1), torch.cat([half.sin()] * 2, -1)
    assert torch.allclose(apply_rope(x, cos, sin), x * cos + _rotate_half(x) * sin, atol=1e-12)
    assert torch.autograd.gradcheck(lambda t: apply_rope(t, cos, sin), (x,))


onednn_only = pytest.mark.skipif(not onednn.ENABLED, reason="this torch has no oneDNN linear op")


@onednn_only
def test_onednn_linear_equals_f_linear_and_is_used_only_where_it_pays(monkeypatch):
    calls = []
    real = onednn._linear_pointwise
    monkeypatch.setattr(onednn, "_linear_pointwise", lambda *a: calls.append(a[0].shape) or real(*a))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 512, 96, generator=g, requires_grad=True)  # 2,048 rows x 96 x 192: above MIN_MACS
    w = torch.randn(192, 96, generator=g, requires_grad=True)
    b = torch.randn(192, generator=g, requires_grad=True)
    up = torch.randn(4, 512, 192, generator=g)
    out = onednn.linear(x, w, b)
    (out * up).sum().backward()
    assert len(calls) == 2  # the product and the input's gradient; the weight's stays on MKL
    grads = [t.grad.clone() for t in (x, w, b)]
    for t in (x, w, b):
        t.grad = None
    ref = torch.nn.functional.linear(x, w, b)
    (ref * up).sum().backward()
    assert torch.allclose(out, ref, rtol=1e-5, atol=1e-5)
    assert all(torch.allclose(a, t.grad, rtol=1e-5, atol=1e-4) for a, t in zip(grads, (x, w, b), strict=True))

    # a gradient of the gradient (a gradient penalty) is torch's: the oneDNN op has no derivative of its own
    for t in (x, w, b):
        t.grad = None
    (gx,) = torch.autograd.grad((onednn.linear(x, w, b) * up).sum(), x, create_graph=True)
    gx.square().sum().backward()
    penalty = w.grad.clone()
    w.grad = None
    (gx,) = torch.autograd.grad((torch.nn.functional.linear(x, w, b) * up).sum(), x, create_graph=True)
    gx.square().sum().backward()
    assert torch.allclose(penalty, w.grad, rtol=1e-4, atol=1e-2) and penalty.abs().max() > 0

    calls.clear()
    with torch.no_grad():  # inference: a new shape at every turn, where oneDNN builds a kernel per shape
        onednn.linear(x, w, b)
    onednn.linear(x[:, :8], w, b).sum().backward()  # 32 rows: too small to pay
    with torch.autocast("cpu", dtype=torch.bfloat16):  # bf16 products go to oneDNN already
        onednn.linear(x, w, b)
    assert calls == []


@onednn_only
def test_a_training_step_through_onednn_equals_the_one_through_mkl(monkeypatch):
    cfg = ModelConfig(vocab_size=512, n_layers=2, d_model=96, n_heads=4, n_kv_heads=2, ffn_dim=256, max_seq_len=256)
    model = LlamaLM(cfg)
    model.init_weights(0)
    ids = torch.randint(0, 512, (8, 257), generator=torch.Generator().manual_seed(1))
    calls = []
    real = onednn._linear_pointwise
    monkeypatch.setattr(onednn, "_linear_pointwise", lambda *a: calls.append(a[0].shape) or real(*a))
    results = []
    for enabled in (True, False):
        monkeypatch.setattr(onednn, "ENABLED", enabled)
        model.zero_grad()
        loss = model(ids[:, :-1], ids[:, 1:])
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
        # on: per layer q|k|v, o, gate|up and down, forward and input gradient; the head's two products per chunk
        assert len(calls) == (2 * 4 * cfg.n_layers + 2 * 2 if enabled else 0)
        calls.clear()
    (a, ga), (b, gb) = results
    seen = []  # a hooked layer runs as a module, so its hooks still run
    model.model.layers[0].self_attn.o_proj.register_forward_hook(lambda mod, i, o: seen.append(o.shape))
    model(ids[:, :-1], ids[:, 1:])
    assert seen == [(8, 256, 96)]
    assert torch.allclose(a, b, atol=1e-5)
    assert all(torch.allclose(x, y, rtol=1e-4, atol=1e-6) for x, y in zip(ga, gb, strict=True))
