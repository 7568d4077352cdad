"""`lmwright model plan` against what PyTorch measures: parameters, weights, gradients, optimizer state and the
activations autograd keeps (counted with saved_tensors_hooks on a real training step)."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from lmwright.cli import app
from lmwright.model.config import ModelConfig
from lmwright.model.fused_ce import lm_loss
from lmwright.model.llama import LlamaLM
from lmwright.model.plan import activation_bytes, flops_per_token, plan
from lmwright.spec import TrainSpec
from lmwright.train.optim import make_optimizer

CFG = dict(vocab_size=512, n_layers=3, d_model=64, n_heads=4, n_kv_heads=2, ffn_dim=160, max_seq_len=64)


def saved_activation_bytes(model: LlamaLM, batch: int, seq: int, dtype: torch.dtype | None = None) -> int:
    """Bytes of the distinct storages autograd saves for backward in one forward, weights excluded."""
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    weights |= {b.untyped_storage().data_ptr() for b in model.buffers()}
    # weight-shaped copies (autocast casts, the concatenated q|k|v and gate|up weights): the plan counts them
    # as weight copies; the output head's gradient is also vocab x width but is an activation
    c = model.cfg
    kv = c.n_kv_heads * c.head_dim
    copies = {(c.d_model, c.d_model), (c.d_model, kv), (c.d_model, c.ffn_dim), (c.ffn_dim, c.d_model),
              (c.d_model, c.d_model + 2 * kv), (c.d_model, 2 * c.ffn_dim)}
    copies |= {(b, a) for a, b in copies}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in weights and not (t.dim() == 2 and tuple(t.shape) in copies):
            seen[ptr] = t.untyped_storage().nbytes()
        return t

    ids = torch.randint(0, model.cfg.vocab_size, (batch, seq + 1), generator=torch.Generator().manual_seed(0))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
            torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
        model(ids[:, :-1], ids[:, 1:])  # the training path: loss fused with the output projection
    return sum(seen.values())


@pytest.mark.parametrize("options", [{}, {"n_kv_heads": 4}, {"n_kv_heads": 1}, {"qk_norm": True},
                                     {"tie_embeddings": False}])
def test_parameters_and_fp32_activations_match_pytorch(options):
    cfg = ModelConfig(**{**CFG, **options})
    model = LlamaLM(cfg).train()
    p = plan(cfg, 4, 64)
    assert p.params == sum(t.numel() for t in model.parameters())
    measured = saved_activation_bytes(model, 4, 64)
    assert abs(p.activations_bytes - measured) / measured < 0.01, (p.activations_bytes, measured)


def test_bf16_and_checkpointed_activations_match_pytorch():
    cfg = ModelConfig(**CFG)
    model = LlamaLM(cfg).train()
    measured = saved_activation_bytes(model, 4, 64, torch.bfloat16)
    estimate = activation_bytes(cfg, 4, 64, "bf16")[0]
    assert abs(estimate - measured) / measured < 0.05, (estimate, measured)
    model.activation_checkpointing = True
    measured = saved_activation_bytes(model, 4, 64)
    saved, peak = activation_bytes(cfg, 4, 64, checkpointing=True)
    assert abs(saved - measured) / measured < 0.01 and peak > saved


@pytest.mark.parametrize("name", ["adamw", "sgd", "adagrad", "rmsprop", "muon"])
def test_weights_gradients_and_optimizer_state_match_pytorch(name):
    cfg = ModelConfig(**CFG)
    model = LlamaLM(cfg)
    opt = make_optimizer(model, TrainSpec(optimizer=name, momentum=0.9))
    ids = torch.randint(0, 512, (2, 17))
    lm_loss(model(ids[:, :-1]), ids[:, 1:]).backward()
    grads = sum(p.grad.nbytes for p in model.parameters())
    opt.step()
    state = sum(v.nbytes for o in opt for s in o.state.values() for k, v in s.items()
                if isinstance(v, torch.Tensor) and v.dim() > 0)  # step counters are scalars
    p = plan(cfg, 2, 16, optimizer=name)
    assert p.weights_bytes == sum(t.nbytes for t in model.parameters())
    assert p.grads_bytes == grads
    assert p.optimizer_bytes == state, (name, p.optimizer_bytes, state)


def test_flops_and_the_device_fit():
    cfg = ModelConfig(**CFG)
    # 6 x weights multiplied per token (embedding lookup excluded, output head included) + attention
    linear = sum(m.weight.numel() for m in LlamaLM(cfg).modules() if isinstance(m, torch.nn.Linear))
    assert flops_per_token(cfg, 64) == 6 * linear + 12 * 3 * 64 * 64
    assert plan(cfg, 4, 64, device="t4").fits is True
    assert plan(cfg, 4, 64, memory_gib=0.001).fits is False


def test_model_plan_command(tmp_path):
    r = CliRunner().invoke(app, ["model", "plan", "-C", str(tmp_path), "--json", "--device", "h100",
                                 "--precision", "bf16", "--set", "model.n_layers=12", "--set", "model.d_model=768",
                                 "--set", "model.n_heads=12", "--set", "model.n_kv_heads=12",
                                 "--set", "tokenizer.vocab_size=50304", "--set", "model.max_seq_len=1024",
                                 "--set", "train.seq_len=1024", "--batch", "16"])
    assert r.exit_code == 0, r.output
    p = json.loads(r.stdout)
    assert 120e6 < p["params"] < 130e6 and p["fits"] is True  # a GPT-2-small-sized model
    r = CliRunner().invoke(app, ["model", "plan", "-C", str(tmp_path)])
    assert r.exit_code == 0 and "parameters" in r.stdout and "activations" in r.stdout
    r = CliRunner().invoke(app, ["model", "plan", "-C", str(tmp_path), "--device", "h1000"])
    assert r.exit_code != 0


def test_model_plan_resolves_auto_precision_for_the_planned_device(tmp_path):
    # the default spec trains in auto: bf16 on a GPU with bf16 tensor cores, fp32 on a T4 (emulated bf16)
    def weights_copies(*args: str) -> int:
        r = CliRunner().invoke(app, ["model", "plan", "-C", str(tmp_path), "--json", *args])
        assert r.exit_code == 0, r.output
        return json.loads(r.stdout)["weight_copies_bytes"]

    assert weights_copies("--device", "h100") == weights_copies("--precision", "bf16") > 0
    assert weights_copies("--device", "t4") == weights_copies("--precision", "fp32")
