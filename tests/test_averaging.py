"""Weight averaging during training (`train/averaging.py`, `train.average`, `finetune.average`): the running
averages against a hand computation, the averaged result against the mean of the saved states, resuming a killed
run to the same average, and the spec's errors."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from lmwright.errors import LmwrightError, SpecError
from lmwright.spec import TrainSpec, load_spec
from lmwright.spec.train import AverageSpec
from lmwright.train.averaging import Averager, make_averager, start_step
from tests.conftest import quiet


def _averager(kind: str, steps: int = 10, **kw) -> tuple[Averager, torch.nn.Linear]:
    net = torch.nn.Linear(2, 1, bias=False)
    return Averager(AverageSpec(kind=kind, **kw), TrainSpec(max_steps=steps), net), net


def _feed(avg: Averager, net: torch.nn.Linear, values: list[float]) -> list[int]:
    """Set the weight to each value in turn as steps 1, 2, ...; returns the steps sampled."""
    sampled = []
    for step, v in enumerate(values, 1):
        with torch.no_grad():
            net.weight.fill_(v)
        if avg.update(step):
            sampled.append(step)
    return sampled


def test_ema_is_the_bias_corrected_exponential_average():
    d, w = 0.9, [3.0, -1.0, 4.0, 1.5, 9.0]
    avg, net = _averager("ema", steps=5, start=0.0, ema_decay=d)
    assert _feed(avg, net, w) == [1, 2, 3, 4, 5]
    n = len(w)  # by hand: sample k of n weighs (1 - d) d^(n - k), normalised by 1 - d^n
    expected = sum((1 - d) * d ** (n - k) * x for k, x in enumerate(w, 1)) / (1 - d ** n)
    with avg.applied() as swapped:
        assert swapped and net.weight[0, 0].item() == pytest.approx(expected, rel=1e-6)
    assert net.weight[0, 0].item() == 9.0  # the trained weights are back after the block
    ema = 0.0  # the same as the textbook recursion from zero, divided by its bias
    for x in w:
        ema = d * ema + (1 - d) * x
    assert expected == pytest.approx(ema / (1 - d ** n))


def test_tail_is_the_mean_of_the_sampled_steps_counted_back_from_the_last():
    avg, net = _averager("tail", steps=10, start=0.3, every=2)
    w = [float(i * i) for i in range(1, 11)]
    assert _feed(avg, net, w) == [4, 6, 8, 10]  # after step 3, every second step ending at the last
    avg.copy_to_model()
    assert net.weight[0, 0].item() == pytest.approx(sum(w[s - 1] for s in (4, 6, 8, 10)) / 4)


def test_the_default_start_is_where_the_wsd_decay_begins():
    assert start_step(AverageSpec(kind="tail"), TrainSpec(max_steps=700)) == 490  # decay_frac 0.3
    assert start_step(AverageSpec(kind="tail"), TrainSpec(max_steps=700, schedule="cosine")) == 350
    assert start_step(AverageSpec(kind="ema", start=0.9), TrainSpec(max_steps=700)) == 630
    none, net = _averager("none")
    assert _feed(none, net, [1.0] * 10) == [] and none.state() == (None, None)


def test_spec_shorthand_fine_tuning_override_and_errors():
    from lmwright.finetune.recipes import train_spec

    spec = load_spec(None, ["train.average=tail", "finetune.average.kind=ema"])
    assert spec.train.average.kind == "tail" and spec.train.average.start is None
    assert train_spec(spec, spec.finetune.classify).average.kind == "ema"  # finetune's own, over train's
    for bad, says in (("train.average.kind=swa", "'none', 'ema' or 'tail'"),
                      ("train.average.start=1", "train.average.start = 1"),
                      ("finetune.average.ema_decay=1.5", "finetune.average.ema_decay"),
                      ("train.average.every=0", "train.average.every")):
        with pytest.raises(SpecError) as e:
            load_spec(None, [bad])
        assert says in str(e.value), bad
    with pytest.raises(SpecError, match="average.kind tail is not supported with distributed: fsdp"):
        load_spec(None, ["train.average.kind=tail", "train.nproc=2", "train.distributed=fsdp"])
    with pytest.raises(LmwrightError, match="train.average.kind ema is not supported with train.distributed: fsdp"):
        make_averager(AverageSpec(kind="ema"), TrainSpec(), torch.nn.Linear(1, 1), sharded=True)


def _pretrain(tiny_run, work, overrides, **kw):
    from lmwright.tokenizer import load_tokenizer
    from lmwright.train.loop import pretrain

    root, outs = tiny_run
    spec = load_spec(root / "lmwright.yaml", overrides)
    return pretrain(spec, outs["tokenize"].path, load_tokenizer(outs["tokenizer"].path), work, quiet(), **kw)


def test_tail_average_is_the_mean_of_the_saved_states(tiny_run, tmp_path):
    base = ["train.max_steps=10", "train.checkpoint_every=1", "train.eval_every=5"]
    plain = _pretrain(tiny_run, tmp_path / "plain", base)  # keeps the checkpoints of steps 8 and 9
    tail = _pretrain(tiny_run, tmp_path / "tail", [*base, "train.average.kind=tail", "train.average.start=0.8"])
    step9 = load_file(str(tmp_path / "plain" / "step-000009" / "model.safetensors"))
    final, averaged = plain.model.weights(), tail.model.weights()
    for k in final:  # averaging never changes the trajectory: the mean of steps 9 and 10
        assert torch.allclose(averaged[k], (step9[k] + final[k]) / 2, atol=1e-6), k
    assert tail.history["val_bpb_raw"][-1] == pytest.approx(plain.history["val_bpb"][-1], abs=1e-9)
    assert tail.history["val_bpb"][-1] != tail.history["val_bpb_raw"][-1]  # the figure is the average's


def test_a_killed_run_resumes_to_the_same_average(tiny_run, tmp_path):
    over = ["train.average.kind=ema", "train.average.start=0.2", "train.average.ema_decay=0.8"]  # sampled from step 5
    whole = _pretrain(tiny_run, tmp_path / "whole", over)

    def kill(step, *_):
        if step == 16:  # after the checkpoint of step 8, before that of step 16
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _pretrain(tiny_run, tmp_path / "killed", over, on_validation=kill)
    assert (tmp_path / "killed" / "step-000008" / "average.safetensors").exists()
    resumed = _pretrain(tiny_run, tmp_path / "killed", over)
    assert resumed.resumed_from == 8
    a, b = whole.model.weights(), resumed.model.weights()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.history["val_bpb"] == whole.history["val_bpb"]


def test_fine_tuning_keeps_the_average(tmp_path):
    from lmwright.finetune.loop import train
    from lmwright.model.config import ModelConfig
    from lmwright.model.llama import LlamaLM

    tokens = torch.randint(0, 50, (16, 9), generator=torch.Generator().manual_seed(0))

    def run(work, kind):
        torch.manual_seed(0)
        model = LlamaLM(ModelConfig(vocab_size=50, n_layers=1, d_model=16, n_heads=2, n_kv_heads=1, max_seq_len=16))
        model.init_weights(0)
        tr = TrainSpec(max_steps=4, batch_size=4, seq_len=8, optimizer="adamw", lr=0.01, warmup_steps=0,
                       eval_every=2, checkpoint_every=1, device="cpu", average={"kind": kind, "start": 0.5})

        def loss_fn(net, idx):
            x = tokens[torch.as_tensor(idx)]
            return torch.nn.functional.cross_entropy(net(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten())

        train(model, tr, len(tokens), loss_fn, lambda: {"loss": 0.0}, work, quiet(), 0, "ft")
        return model.weights()

    plain, tail = run(tmp_path / "plain", "none"), run(tmp_path / "tail", "tail")
    step3 = load_file(str(tmp_path / "plain" / "step-000003" / "model.safetensors"))
    assert all(torch.allclose(tail[k], (step3[k] + plain[k]) / 2, atol=1e-6) for k in plain)  # steps 3 and 4
