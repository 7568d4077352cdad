"""The training step pretraining and fine-tuning share (`train/step.py`): where a loop runs and in what precision,
one optimizer step over micro-batches, early stopping, and the settings fine-tuning hands its loop."""

from __future__ import annotations

import pytest
import torch

from lmwright.errors import LmwrightError
from lmwright.finetune.recipes import train_spec
from lmwright.spec import EarlyStoppingSpec, FinetuneSpec, TrainSpec, load_spec
from lmwright.train.distributed import Dist
from lmwright.train.optim import Optimizers
from lmwright.train.step import (
    autocast,
    make_scaler,
    new_best,
    optimizer_step,
    pick_device,
    record_evaluation,
    resolve_precision,
    should_stop,
)

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_both_loops_run_on_cuda_when_there_is_one_and_honour_the_device_setting(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device(TrainSpec().device) == CUDA
    assert pick_device(FinetuneSpec().device, "finetune.device") == CUDA
    assert pick_device(TrainSpec(device="cpu", precision="fp16").device) == CPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device(FinetuneSpec().device, "finetune.device") == CPU
    with pytest.raises(LmwrightError, match="finetune.device is cuda but torch sees no CUDA GPU"):
        pick_device(FinetuneSpec(device="cuda").device, "finetune.device")
    with pytest.raises(LmwrightError, match="train.device is cuda"):
        pick_device(TrainSpec(device="cuda").device)


def test_a_loop_computes_in_its_precision():
    a = torch.ones(4, 4)
    for precision, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        with autocast(CPU, precision):
            assert (a @ a).dtype == dtype, precision


def test_auto_precision_is_bf16_only_where_bf16_matmuls_are_fast(monkeypatch):
    assert TrainSpec().precision == FinetuneSpec().precision == "auto"
    for name in ("fp32", "bf16", "fp16"):  # a named precision is kept, wherever the loop runs
        assert resolve_precision(name, CPU) == resolve_precision(name, CUDA) == name
    for cpu_bf16 in (True, False):  # AVX512-BF16 or AMX: bf16; without them bf16 is emulated, ~10x slower
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=cpu_bf16: v)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
        assert resolve_precision("auto", CPU) == ("bf16" if cpu_bf16 else "fp32")
    assert resolve_precision("auto", torch.device("mps")) == "fp32"
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))  # an H100
    assert resolve_precision("auto", CUDA) == "bf16"
    # a T4 (7.5) only emulates bf16 (torch.cuda.is_bf16_supported() says True there): fp32, not fp16's scaler
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    assert resolve_precision("auto", CUDA) == "fp32"


def test_fine_tuning_hands_its_loop_its_own_settings_over_trains(monkeypatch):
    spec = load_spec(None, ["finetune.precision=bf16", "finetune.device=cpu", "finetune.grad_accum=2",
                            "train.beta2=0.99", "finetune.sft.lr=0.001"])
    tr = train_spec(spec, spec.finetune.sft)
    assert (tr.optimizer, tr.schedule, tr.min_lr_ratio) == ("adamw", "cosine", 0.1)  # as hard-coded before
    assert (tr.max_steps, tr.lr, tr.grad_accum, tr.precision, tr.warmup_steps, tr.weight_decay) == (
        100, 1e-3, 2, "bf16", 10, 0.0)
    assert tr.beta2 == 0.99  # the optimizer's finer settings are train's
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device(tr.device, "finetune.device") == CPU
    tr = train_spec(load_spec(None, ["finetune.precision=bf16"]), spec.finetune.classify)
    assert pick_device(tr.device, "finetune.device") == CUDA and tr.precision == "bf16" and tr.lr == 2e-3


def test_micro_batches_step_like_the_whole_batch():
    torch.manual_seed(0)
    x, y = torch.randn(8, 5), torch.randn(8, 1)

    def run(accum: int) -> tuple[torch.Tensor, float]:
        torch.manual_seed(1)
        model = torch.nn.Linear(5, 1)
        opt = Optimizers(torch.optim.SGD(model.parameters(), lr=0.1))
        tr = TrainSpec(batch_size=8, grad_accum=accum, grad_clip=0.5)
        losses = optimizer_step(model, model, opt, make_scaler(CPU, "fp32"), Dist(), tr, CPU, 8,
                                lambda rows: torch.nn.functional.mse_loss(model(x[rows]), y[rows]))
        assert len(losses) == accum and all(p.grad is None for p in model.parameters())  # gradients zeroed
        return model.weight.detach().clone(), float(sum(losses))

    (w1, l1), (w4, l4) = run(1), run(4)
    assert torch.allclose(w1, w4, atol=1e-6) and l1 == pytest.approx(l4, rel=1e-6)


def test_early_stopping_counts_evaluations_without_an_improvement_of_min_delta():
    es = EarlyStoppingSpec(enabled=True, patience=2, min_delta=0.1)
    best, improved = record_evaluation(new_best(), 3.0, 10, es)
    assert improved and best == {"loss": 3.0, "step": 10, "bad_evals": 0}
    best, improved = record_evaluation(best, 2.95, 20, es)  # better, but by less than min_delta
    assert not improved and best == {"loss": 3.0, "step": 10, "bad_evals": 1} and not should_stop(best, es)
    best, _ = record_evaluation(best, 3.5, 30, es)
    assert should_stop(best, es) and best["step"] == 10
    assert not should_stop(best, None) and not should_stop(best, EarlyStoppingSpec(enabled=False, patience=1))
    best, improved = record_evaluation(best, 2.5, 40, es)
    assert improved and best == {"loss": 2.5, "step": 40, "bad_evals": 0}
