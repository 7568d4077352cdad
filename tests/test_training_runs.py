"""Whole pretrain runs on the tiny project: accumulation equivalence and early stopping."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

import lmwright
from lmwright.core.workspace import Workspace
from lmwright.train.step import resolve_precision
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
    from lmwright.model.fused_ce import lm_loss
    from lmwright.model.llama import LlamaLM

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


@pytest.mark.parametrize("precision", ["bf16", "fp16", "auto"])
def test_mixed_precision_trains_close_to_fp32_with_fp32_masters(tiny_copy, precision):
    base = lmwright.run(tiny_copy, until="pretrain", reporter=quiet())["pretrain"]
    mixed = lmwright.run(tiny_copy, [f"train.precision={precision}"], until="pretrain", reporter=quiet())["pretrain"]
    if precision == "auto":  # recorded as what it became on this machine; the rest of the test is bf16's
        precision = resolve_precision("auto", torch.device("cpu"))
        if precision == "fp32":
            pytest.skip("this CPU has no bf16 units: auto trains in fp32, the base run")
    assert mixed.summary["precision"] == precision
    assert abs(mixed.summary["val_loss"] - base.summary["val_loss"]) < 0.05
    weights = _weights(mixed)
    assert all(v.dtype == torch.float32 for v in weights.values())  # master weights stay fp32
    assert any(not torch.equal(weights[k], _weights(base)[k]) for k in weights)  # it did compute in low precision


def test_fp16_checkpoint_holds_the_gradient_scaler(tiny_run, tmp_path):
    from lmwright.spec import load_spec
    from lmwright.tokenizer import load_tokenizer
    from lmwright.train.checkpoint import read_latest
    from lmwright.train.loop import pretrain

    root, outs = tiny_run
    spec = load_spec(root / "lmwright.yaml", ["train.precision=fp16", "train.max_steps=20", "train.checkpoint_every=5"])
    pretrain(spec, outs["tokenize"].path, load_tokenizer(outs["tokenizer"].path), tmp_path, quiet())
    state = read_latest(tmp_path).meta
    assert state["step"] == 15 and state["scaler"]["scale"] > 0  # the last checkpoint before the end


def test_activation_checkpointing_gives_the_same_weights(tiny_copy):
    plain = _weights(lmwright.run(tiny_copy, until="pretrain", reporter=quiet())["pretrain"])
    ckpt = _weights(lmwright.run(tiny_copy, ["train.activation_checkpointing=true"], until="pretrain",
                                 reporter=quiet())["pretrain"])
    assert all(torch.allclose(plain[k], ckpt[k], atol=1e-5) for k in plain)


def test_pretrain_series_go_to_the_store_tensorboard_and_mlflow(tiny_copy):
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from lmwright.core.store import Store

    out = lmwright.run(tiny_copy, ["train.log_to=[tensorboard, mlflow]"], until="pretrain", reporter=quiet())
    store = Store(Workspace.open(tiny_copy).store_url)
    run = store.last_run("pretrain")
    assert run.output_digest == out["pretrain"].digest
    losses = store.metrics(run.id, "train/loss")
    assert [m.step for m in losses] == list(range(1, 25))
    assert len(store.metrics(run.id, "val/bpb")) == 3
    events = EventAccumulator(str(next((tiny_copy / ".lmwright" / "tensorboard").iterdir()))).Reload()
    assert len(events.Scalars("train/loss")) == 24
    assert [round(e.value, 5) for e in events.Scalars("train/loss")] == [round(m.value, 5) for m in losses]
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{(tiny_copy / '.lmwright' / 'mlflow.db').resolve()}")
    client = mlflow.MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    assert len(runs) == 1
    assert runs[0].data.metrics["val_bits_per_byte"] == pytest.approx(out["pretrain"].summary["val_bpb"])
    assert len(client.get_metric_history(runs[0].info.run_id, "train_loss")) == 24


@pytest.mark.slow
def test_compiled_training_matches_eager(tiny_copy):
    eager = lmwright.run(tiny_copy, until="pretrain", reporter=quiet())["pretrain"]
    compiled = lmwright.run(tiny_copy, ["train.compile=true"], until="pretrain", reporter=quiet())["pretrain"]
    assert abs(compiled.summary["final_loss"] - eager.summary["final_loss"]) < 1e-3
