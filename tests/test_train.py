"""Training pieces: schedule, batches, evaluation windows and checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lmwright.model.config import ModelConfig
from lmwright.model.llama import LlamaLM
from lmwright.spec import TrainSpec
from lmwright.train.checkpoint import checkpoints, load_latest, save_checkpoint
from lmwright.train.data import random_batch, windows
from lmwright.train.optim import lr_at, make_optimizer


def test_warmup_then_cosine_to_floor():
    tr = TrainSpec(max_steps=100, warmup_steps=10, lr=1.0, min_lr_ratio=0.1)
    assert lr_at(0, tr) == pytest.approx(0.1) and lr_at(9, tr) == pytest.approx(1.0)
    assert lr_at(10, tr) == pytest.approx(1.0) and lr_at(55, tr) == pytest.approx(0.55)
    assert lr_at(100, tr) == pytest.approx(0.1)
    assert all(lr_at(s, tr) >= lr_at(s + 1, tr) for s in range(10, 100))


def test_batches_depend_only_on_seed_and_step():
    tokens = np.arange(1000, dtype=np.uint16)
    x1, y1 = random_batch(tokens, 4, 16, seed=1, step=5)
    x2, _ = random_batch(tokens, 4, 16, seed=1, step=5)
    assert torch.equal(x1, x2) and torch.equal(y1[:, :-1], x1[:, 1:])
    assert not torch.equal(x1, random_batch(tokens, 4, 16, seed=1, step=6)[0])


def test_windows_score_every_token_once():
    tokens = np.arange(103, dtype=np.uint16)
    targets = torch.cat([y.flatten() for _, y in windows(tokens, seq_len=10, batch=3)])
    assert targets.tolist() == list(range(1, 103))


def test_weight_decay_on_matrices_only():
    model = LlamaLM(ModelConfig(vocab_size=40, n_layers=1, d_model=16, n_heads=2, n_kv_heads=1, ffn_dim=32))
    decay, no_decay = make_optimizer(model, TrainSpec()).param_groups
    assert all(p.dim() == 2 for p in decay["params"]) and all(p.dim() == 1 for p in no_decay["params"])
    assert no_decay["weight_decay"] == 0 and decay["weight_decay"] == TrainSpec().weight_decay
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))  # tied counted once


def test_damaged_checkpoint_falls_back_to_the_previous(tmp_path):
    cfg = ModelConfig(vocab_size=40, n_layers=1, d_model=16, n_heads=2, n_kv_heads=1, ffn_dim=32)
    model = LlamaLM(cfg)
    opt = make_optimizer(model, TrainSpec())
    model(torch.randint(0, 40, (2, 8)), torch.randint(0, 40, (2, 8)))[1].backward()
    opt.step()
    save_checkpoint(tmp_path, 1, model, opt, {"history": {}, "elapsed": 1.0})
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    save_checkpoint(tmp_path, 2, model, opt, {"history": {}, "elapsed": 2.0})
    (checkpoints(tmp_path)[-1] / "model.safetensors").write_bytes(b"torn")
    fresh = LlamaLM(cfg)
    with pytest.warns(UserWarning, match="unreadable"):
        state = load_latest(tmp_path, fresh, make_optimizer(fresh, TrainSpec()))
    assert state["step"] == 1
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in saved.items())
    for step in (3, 4, 5):
        save_checkpoint(tmp_path, step, model, opt, {"history": {}, "elapsed": 0.0})
    assert [p.name for p in checkpoints(tmp_path)] == ["step-000004", "step-000005"]  # the newest two kept
