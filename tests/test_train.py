"""Training pieces: schedule, batches, evaluation windows and checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lmwright.data.batches import random_batch, windows
from lmwright.model.config import ModelConfig
from lmwright.model.fused_ce import lm_loss
from lmwright.model.llama import LlamaLM
from lmwright.spec import TrainSpec
from lmwright.train.checkpoint import checkpoints, load_latest, save_checkpoint
from lmwright.train.loop import overfitting
from lmwright.train.optim import Muon, fast_bf16, lr_at, make_optimizer


def test_warmup_then_cosine_to_floor():
    tr = TrainSpec(max_steps=100, warmup_steps=10, lr=1.0, min_lr_ratio=0.1, schedule="cosine")
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
    decay, no_decay = make_optimizer(model, TrainSpec(optimizer="adamw")).param_groups
    assert all(p.dim() == 2 for p in decay["params"]) and all(p.dim() == 1 for p in no_decay["params"])
    assert no_decay["weight_decay"] == 0 and decay["weight_decay"] == TrainSpec().weight_decay
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))  # tied counted once


def test_damaged_checkpoint_falls_back_to_the_previous(tmp_path):
    cfg = ModelConfig(vocab_size=40, n_layers=1, d_model=16, n_heads=2, n_kv_heads=1, ffn_dim=32)
    model = LlamaLM(cfg)
    opt = make_optimizer(model, TrainSpec())
    model(torch.randint(0, 40, (2, 8)), torch.randint(0, 40, (2, 8))).backward()
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


@pytest.mark.parametrize("schedule", ["cosine", "linear", "constant", "wsd"])
def test_each_schedule_warms_up_then_ends_at_its_floor(schedule):
    tr = TrainSpec(max_steps=100, warmup_steps=10, lr=1.0, min_lr_ratio=0.1, schedule=schedule, decay_frac=0.2)
    lrs = [lr_at(s, tr) for s in range(101)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b - 1e-12 for a, b in zip(lrs[10:], lrs[11:], strict=False))  # never rises after warmup
    assert lrs[100] == pytest.approx(1.0 if schedule == "constant" else 0.1)
    if schedule == "wsd":
        assert lrs[79] == pytest.approx(1.0) and lrs[90] == pytest.approx(0.55)
    if schedule == "linear":
        assert lrs[55] == pytest.approx(0.55)


@pytest.mark.parametrize("name", ["adamw", "adam", "sgd", "adagrad", "adadelta", "rmsprop", "muon"])
def test_each_optimizer_learns_and_decays_matrices_only(name):
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=40, n_layers=1, d_model=32, n_heads=2, n_kv_heads=1, ffn_dim=64, max_seq_len=16)
    model = LlamaLM(cfg)
    model.init_weights(0)
    lr = {"sgd": 0.3, "adadelta": 1.0, "adagrad": 0.05}.get(name, 0.01)
    tr = TrainSpec(optimizer=name, lr=lr, momentum=0.9, nesterov=name == "sgd")
    opt = make_optimizer(model, tr)
    decays = [g["weight_decay"] for g in opt.param_groups]
    assert decays == ([tr.weight_decay] * (name == "muon") + [tr.weight_decay, 0.0])
    x = torch.randint(0, 40, (8, 16))
    losses = []
    for _ in range(30):
        loss = model(x[:, :-1], x[:, 1:])
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], (name, losses[0], losses[-1])


@pytest.mark.parametrize("init", ["gpt2", "normal", "xavier", "kaiming"])
def test_init_strategies_have_their_spread_and_a_seed_reproduces_them(init):
    cfg = ModelConfig(vocab_size=512, n_layers=4, d_model=256, n_heads=4, n_kv_heads=2, ffn_dim=512, init=init)
    model = LlamaLM(cfg)
    model.init_weights(7)
    q = model.model.layers[0].self_attn.q_proj.weight
    down = model.model.layers[0].mlp.down_proj.weight
    expected_q = {"gpt2": 0.02, "normal": 0.02, "xavier": (2 / 512) ** 0.5, "kaiming": 1 / 16}[init]
    expected_down = {"gpt2": 0.02 / 8 ** 0.5, "normal": 0.02, "xavier": (2 / (512 + 256)) ** 0.5,
                     "kaiming": 1 / 512 ** 0.5}[init]
    assert q.std().item() == pytest.approx(expected_q, rel=0.03)
    assert down.std().item() == pytest.approx(expected_down, rel=0.03)
    assert torch.equal(model.model.norm.weight, torch.ones(256))
    again = LlamaLM(cfg)
    again.init_weights(7)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True))


def test_zero_init_output_starts_each_block_as_identity():
    cfg = ModelConfig(vocab_size=64, n_layers=2, d_model=32, n_heads=2, n_kv_heads=1, ffn_dim=64, zero_init_output=True)
    model = LlamaLM(cfg)
    model.init_weights(0)
    for block in model.model.layers:
        assert not block.self_attn.o_proj.weight.any() and not block.mlp.down_proj.weight.any()
    x = torch.randn(1, 5, 32)
    cos, sin = model.rope_cos[:5], model.rope_sin[:5]
    assert torch.equal(model.model.layers[0](x, cos, sin), x)


def test_overfitting_warning_needs_val_up_and_train_down():
    hist = {"loss": [5.0] * 10 + [4.0] * 10, "val_loss": [4.5, 4.7]}
    assert "overfitting" in overfitting(hist, 10)
    assert overfitting({**hist, "val_loss": [4.7, 4.5]}, 10) is None
    assert overfitting({**hist, "loss": [4.0] * 10 + [5.0] * 10}, 10) is None


def test_label_smoothing_changes_the_loss():
    logits, y = torch.randn(2, 5, 11), torch.randint(0, 11, (2, 5))
    assert lm_loss(logits, y).item() == pytest.approx(
        torch.nn.functional.cross_entropy(logits.reshape(-1, 11), y.reshape(-1)).item())
    assert lm_loss(logits, y, 0.1).item() != pytest.approx(lm_loss(logits, y).item())


def test_muon_takes_hidden_matrices_and_adamw_the_rest():
    cfg = ModelConfig(vocab_size=40, n_layers=2, d_model=32, n_heads=2, n_kv_heads=1, ffn_dim=64, max_seq_len=16,
                      tie_embeddings=False)
    model = LlamaLM(cfg)
    opt = make_optimizer(model, TrainSpec(optimizer="muon", muon_lr=0.02, lr=0.003))
    muon, adamw = opt.optimizers
    assert isinstance(muon, torch.optim.Muon) and isinstance(adamw, torch.optim.AdamW)  # lmwright.Muon subclasses it
    names = {id(p): n for n, p in model.named_parameters()}
    in_muon = {names[id(p)] for g in muon.param_groups for p in g["params"]}
    assert in_muon == {n for n, p in model.named_parameters() if p.dim() == 2 and n.startswith("model.layers")}
    assert {g["peak_lr"] for g in muon.param_groups} == {0.02} and {g["peak_lr"] for g in adamw.param_groups} == {0.003}
    opt.set_lr(0.5)
    assert [g["lr"] for g in opt.param_groups] == [0.01, 0.0015, 0.0015]


def test_a_muon_checkpoint_restores_both_optimizers(tmp_path):
    cfg = ModelConfig(vocab_size=40, n_layers=1, d_model=16, n_heads=2, n_kv_heads=1, ffn_dim=32, max_seq_len=16)
    model = LlamaLM(cfg)
    model.init_weights(0)
    tr = TrainSpec(optimizer="muon")
    opt = make_optimizer(model, tr)
    x = torch.randint(0, 40, (2, 9))
    model(x[:, :-1], x[:, 1:]).backward()
    opt.step()
    save_checkpoint(tmp_path, 1, model, opt, {"history": {}, "elapsed": 0.0})
    fresh = LlamaLM(cfg)
    fresh_opt = make_optimizer(fresh, tr)
    load_latest(tmp_path, fresh, fresh_opt)
    for a, b in zip(opt.optimizers, fresh_opt.optimizers, strict=True):
        sa, sb = a.state_dict()["state"], b.state_dict()["state"]
        assert sa.keys() == sb.keys() and sa
        assert all(torch.equal(sa[i][k], sb[i][k]) for i in sa for k in sa[i] if isinstance(sa[i][k], torch.Tensor))


class Fp32Muon(Muon):
    """The iteration in fp32, whatever this CPU's bf16 units (`fast_bf16`): the path of CPUs without them."""

    @staticmethod
    def ns_dtype(device):
        return torch.float32


def _muon_pair(ours_cls, steps: int = 3, **kw):
    """torch's Muon and `ours_cls` stepped on the same gradients over matrices of three shapes, several of one
    shape (ours orthogonalises those together); returns (torch's params, ours, the start, both optimizers)."""
    g = torch.Generator().manual_seed(0)
    shapes = [(24, 40), (24, 40), (40, 24), (24, 40), (16, 16), (40, 24)]
    ps = [torch.nn.Parameter(torch.randn(s, generator=g)) for s in shapes]
    qs = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    ref, ours = torch.optim.Muon(ps, lr=0.02, **kw), ours_cls(qs, lr=0.02, **kw)
    start = [p.detach().clone() for p in ps]
    for _ in range(steps):
        for p, q in zip(ps, qs, strict=True):
            p.grad = torch.randn(p.shape, generator=g)
            q.grad = p.grad.clone()
        ref.step()
        ours.step()
    return ps, qs, start, ref, ours


@pytest.mark.parametrize("kw", [{}, {"nesterov": False, "adjust_lr_fn": "match_rms_adamw"}])
def test_muon_matches_torch_muon(kw):
    """lmwright's Muon orthogonalises a shape's matrices together, in fp32 on a CPU without bf16 units; torch's one
    by one in bf16. Same update up to bf16 rounding; in bf16 (what it runs on CUDA and on CPUs with bf16 units)
    the same up to the batched products' rounding; the same state either way."""

    class Bf16Muon(Muon):
        @staticmethod
        def ns_dtype(device):
            return torch.bfloat16

    for cls, tol in ((Fp32Muon, 0.02), (Bf16Muon, 0.005)):
        ps, qs, start, ref, ours = _muon_pair(cls, **kw)
        for p, q, s in zip(ps, qs, start, strict=True):
            assert (p - q).norm() / (p - s).norm() < tol
        sr, so = ref.state_dict()["state"], ours.state_dict()["state"]
        assert sr.keys() == so.keys() and all(torch.equal(sr[i]["momentum_buffer"], so[i]["momentum_buffer"])
                                              for i in sr)


def test_muon_state_moves_between_torch_and_lmwright_and_skips_matrices_without_gradients():
    """A checkpoint of torch's Muon resumes in lmwright's and the other way round: after loading each other's
    state, the same gradients give the same steps. A matrix with no gradient is left alone and gets no state."""

    ps, qs, _, ref, ours = _muon_pair(Fp32Muon, steps=2)
    a, b = torch.optim.Muon(ps, lr=0.02), Muon(ps, lr=0.02)  # fresh, then each loads the other kind's state
    a.load_state_dict(ours.state_dict())
    b.load_state_dict(ref.state_dict())
    for x, y in ((a.state, ours.state), (b.state, ref.state)):
        assert all(torch.equal(x[p]["momentum_buffer"], y[q]["momentum_buffer"])
                   for p, q in zip(ps, ps if y is ref.state else qs, strict=True))
    qs[1].grad, before = None, qs[1].detach().clone()
    for q in qs[:1] + qs[2:]:
        q.grad = torch.ones_like(q)
    ours.step()
    assert torch.equal(qs[1], before)

    class Pieces(Fp32Muon):  # a group stacked two matrices at a time steps the same as stacked whole
        stack_bytes = 2 * 24 * 40 * 4

    whole, pieces = _muon_pair(Fp32Muon)[1], _muon_pair(Pieces)[1]
    assert all(torch.allclose(p, q, rtol=0, atol=1e-6) for p, q in zip(whole, pieces, strict=True))

    fresh = [torch.nn.Parameter(torch.randn(8, 8)), torch.nn.Parameter(torch.randn(8, 8))]
    fresh[0].grad = torch.randn(8, 8)
    opt = Muon(fresh, lr=0.02)
    opt.step()
    assert fresh[1] not in opt.state and "momentum_buffer" in opt.state[fresh[0]]


def test_adam_is_fused_and_a_checkpoint_of_the_unfused_kernel_resumes_fused(tmp_path):
    """Adam(W) runs torch's fused kernel; a checkpoint written before it did (groups saying `fused: None`) resumes
    on the fused kernel with the same state, where torch's own `load_state_dict` would take the old setting."""
    from lmwright.train.optim import Optimizers

    cfg = ModelConfig(vocab_size=40, n_layers=1, d_model=16, n_heads=2, n_kv_heads=1, ffn_dim=32, max_seq_len=16)
    model = LlamaLM(cfg)
    model.init_weights(0)
    for name in ("adamw", "adam", "muon"):
        assert all(g["fused"] for g in make_optimizer(model, TrainSpec(optimizer=name)).optimizers[-1].param_groups)
    old = Optimizers(torch.optim.AdamW(model.parameters(), lr=1e-3))  # the foreach default, as before
    x = torch.randint(0, 40, (2, 9))
    model(x[:, :-1], x[:, 1:]).backward()
    old.step()
    save_checkpoint(tmp_path, 1, model, old, {"history": {}, "elapsed": 0.0})
    fresh = LlamaLM(cfg)
    opt = Optimizers(torch.optim.AdamW(fresh.parameters(), lr=1e-3, fused=True))
    load_latest(tmp_path, fresh, opt)
    assert opt.param_groups[0]["fused"] is True
    sa, sb = old.optimizers[0].state_dict()["state"], opt.optimizers[0].state_dict()["state"]
    assert all(torch.equal(sa[i][k], sb[i][k]) for i in sa for k in ("exp_avg", "exp_avg_sq", "step"))
    fresh(x[:, :-1], x[:, 1:]).backward()
    model.zero_grad()
    model(x[:, :-1], x[:, 1:]).backward()
    opt.step()
    old.step()  # the same step on both kernels
    assert all(torch.allclose(p, q, atol=1e-6) for p, q in zip(model.parameters(), fresh.parameters(), strict=True))


def test_mfu_peak_is_the_datasheet_or_a_robust_measurement_and_mfu_never_exceeds_one():
    from lmwright.train.mfu import MfuMeter, Peak, datasheet_peak, find_peak

    assert datasheet_peak("NVIDIA H100 80GB HBM3", "bf16") == 989.4e12  # SXM
    assert datasheet_peak("NVIDIA H100 PCIe", "bf16") == 756.5e12
    assert datasheet_peak("NVIDIA H200 NVL", "fp16") == 835.5e12
    assert datasheet_peak("NVIDIA A100-SXM4-80GB", "fp32") == 19.5e12
    assert datasheet_peak("NVIDIA A10G", "bf16") is None and datasheet_peak("Tesla T4", "bf16") is None  # measured
    assert datasheet_peak("NVIDIA RTX A1000", "bf16") is None  # not an A100
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("high")  # fp32 matmuls may run on TF32 tensor cores: that peak
        assert datasheet_peak("NVIDIA A100-SXM4-80GB", "fp32") == 156e12
    finally:
        torch.set_float32_matmul_precision(before)
    cpu = torch.device("cpu")
    measured = find_peak(cpu, "fp32")
    assert measured.source.startswith("measured: best of 20") and measured.flops > 1e9
    assert find_peak(cpu, "fp32", peak_tflops=2.0) == Peak(2e12, "train.peak_tflops")

    warnings: list[str] = []
    meter = MfuMeter(Peak(1e9, "datasheet"), flops_per_token=1e6, world=2, device=cpu, precision="fp32",
                     warn=warnings.append)
    assert meter(1000) == 0.5 and not warnings  # 1e9 FLOP/s over two processes: half of each one's peak
    assert meter(8000) == 1.0 and len(warnings) == 1 and meter.peak.flops == 4e9  # a wrong peak is raised
    assert meter(4000) == 0.5
    low = MfuMeter(Peak(1.0, "measured: taken during a hiccup"), 1.0, 1, cpu, "fp32", warnings.append)
    assert 0 < low(1e6) <= 1 and low.peak.source.endswith("re-measured")  # a measured peak is measured again


def test_the_pipeline_reports_mfu_with_its_peak(tiny_run):
    root, out = tiny_run
    pt = out["pretrain"].summary
    assert 0 < pt["mfu"] <= 1 and pt["peak_tflops"] > 0 and pt["peak_source"].startswith("measured")
    assert pt["peak_source"] in (root / "lmwright-out" / "report.md").read_text()


def test_muon_iterates_in_bf16_only_where_bf16_matmuls_are_fast_and_the_run_allows_it():
    # CUDA (as torch's Muon), or a CPU with AVX512-BF16 / AMX unless the run is fp32; elsewhere bf16 is emulated
    # and an order of magnitude slower
    w = [torch.nn.Parameter(torch.randn(4, 4))]
    auto, fp32, bf16 = (Muon(w, lr=0.02, low_precision=low) for low in (None, False, True))
    assert auto.ns_dtype(torch.device("cuda")) == fp32.ns_dtype(torch.device("cuda")) == torch.bfloat16
    assert auto.ns_dtype(torch.device("mps")) == torch.float32
    cpu_bf16 = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert fast_bf16(torch.device("cpu")) == cpu_bf16
    assert auto.ns_dtype(torch.device("cpu")) == (torch.bfloat16 if cpu_bf16 else torch.float32)
    assert fp32.ns_dtype(torch.device("cpu")) == torch.float32
    assert bf16.ns_dtype(torch.device("cpu")) == torch.bfloat16  # a bf16 run, as resolved for every process
    for precision, low in (("fp32", False), ("bf16", True), ("auto", None)):  # what make_optimizer hands Muon
        model = torch.nn.Sequential(torch.nn.Linear(4, 4))
        opt = make_optimizer(model, TrainSpec(optimizer="muon", precision=precision))
        assert next(o for o in opt if isinstance(o, Muon)).low_precision is low
