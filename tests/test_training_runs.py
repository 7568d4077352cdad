"""Whole pretrain runs on the tiny project: accumulation equivalence and early stopping."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

import lmwright
from tests.conftest import quiet


def _weights(outcome):
    return load_file(str(outcome.path / "model.safetensors"))


def test_k_micro_batches_equal_one_big_batch(tiny_copy):
    base = ["train.max_steps=6", "train.batch_size=8"]
    one = lmwright.run(tiny_copy, [*base, "train.grad_accum=1"], until="pretrain", reporter=quiet())["pretrain"]
    four = lmwright.run(tiny_copy, [*base, "train.grad_accum=4"], until="pretrain", reporter=quiet())["pretrain"]
    a, b = _weights(one), _weights(four)
    # Adam's first steps move every weight by about lr (0.01) whatever the gradient's size, so float
    # reassociation in tiny gradients shows up at ~1e-5; the gradients themselves agree to 1e-7 (test below)
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 3e-5


def test_accumulated_gradients_equal_the_big_batch_gradient():
    from lmwright.model.config import ModelConfig
    from lmwright.model.llama import LlamaLM
    from lmwright.train.loop import lm_loss

    model = LlamaLM(ModelConfig(vocab_size=50, n_layers=2, d_model=32, n_heads=4, n_kv_heads=2, ffn_dim=64))
    model.init_weights(0)
    x = torch.randint(0, 50, (8, 17))
    lm_loss(model(x[:, :-1]), x[:, 1:]).backward()
    big = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    for i in range(0, 8, 2):
        (lm_loss(model(x[i : i + 2, :-1]), x[i : i + 2, 1:]) / 4).backward()
    for n, p in model.named_parameters():
        assert torch.allclose(p.grad, big[n], atol=1e-7, rtol=1e-5), n


def test_early_stopping_keeps_the_best_weights(tiny_copy):
    import json

    import numpy as np

    from lmwright.core.workspace import Workspace
    from lmwright.evaluate.lm import token_bytes
    from lmwright.tokenizer import load_tokenizer
    from lmwright.train.checkpoint import load_weights
    from lmwright.train.loop import validate

    # min_delta larger than any improvement: the first evaluation is the best, the run stops `patience` later
    over = ["train.max_steps=40", "train.eval_every=4", "train.checkpoint_every=4", "train.early_stopping.enabled=true",
            "train.early_stopping.patience=2", "train.early_stopping.min_delta=100"]
    outs = lmwright.run(tiny_copy, over, until="pretrain", reporter=quiet())
    out = outs["pretrain"]
    assert out.summary["steps"] == 12 and out.summary["best_step"] == 4
    history = json.loads((out.path / "history.json").read_text())
    assert history["val_step"] == [4, 8, 12]
    spec = Workspace.open(tiny_copy, over).spec
    val = np.load(outs["tokenize"].path / "val.npy", mmap_mode="r")
    nbytes = token_bytes(load_tokenizer(outs["tokenizer"].path))
    loss, _ = validate(load_weights(out.path), val, spec.train, spec.project.seed, nbytes)
    assert loss == pytest.approx(history["val_loss"][0], abs=1e-6)  # the result is step 4's weights
    assert loss != pytest.approx(history["val_loss"][-1], abs=1e-6)


def test_bad_accumulation_is_a_spec_error(tiny_copy):
    from lmwright.errors import SpecError

    with pytest.raises(SpecError, match="divisible by grad_accum"):
        lmwright.run(tiny_copy, ["train.batch_size=6", "train.grad_accum=4"], reporter=quiet())
