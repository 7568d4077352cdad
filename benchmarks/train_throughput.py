"""Training throughput: lmwright's model and optimizer against `transformers`' LlamaForCausalLM + AdamW.

Same model size and maths (4 layers, width 256, 8 heads, 4 kv heads, vocab 4096, context 256, batch 16,
fp32 by default), same random batches; each side runs forward, loss, backward, clipping and a fused AdamW step
(lmwright's optimizer as its trainer builds it; transformers' Trainer's default), eager and under
`torch.compile`. Prints tokens/s for each and the ratios. Target on a 2-core CPU: lmwright eager >= 1.1 x
transformers eager.

    pip install -e ".[bench]"          # from the repository root (transformers)
    python benchmarks/train_throughput.py [--steps 5] [--rounds 3] [--no-compile] [--precision bf16] [--json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from lmwright.model.config import ModelConfig
from lmwright.model.llama import LlamaLM
from lmwright.spec import TrainSpec
from lmwright.train.optim import make_optimizer
from lmwright.train.step import autocast

SHAPE = dict(vocab_size=4096, n_layers=4, d_model=256, n_heads=8, n_kv_heads=4, ffn_dim=704, max_seq_len=256)
BATCH, SEQ, TARGET = 16, 256, 1.1


def hf_model(c: dict = SHAPE) -> torch.nn.Module:
    cfg = LlamaConfig(vocab_size=c["vocab_size"], hidden_size=c["d_model"], intermediate_size=c["ffn_dim"],
                      num_hidden_layers=c["n_layers"], num_attention_heads=c["n_heads"],
                      num_key_value_heads=c["n_kv_heads"], max_position_embeddings=c["max_seq_len"],
                      tie_word_embeddings=True, attn_implementation="sdpa")
    torch.manual_seed(0)
    return LlamaForCausalLM(cfg).train()


def trainer(side: str, compiled: bool, precision: str, device: torch.device = torch.device("cpu"),
            shape: dict = SHAPE, batch: int = BATCH, seq: int = SEQ):
    """A function running `n` training steps of one side and returning its tokens/s (benchmarks/gpu.py runs it
    on a GPU with a larger shape)."""
    if side == "lmwright":
        model = LlamaLM(ModelConfig(**shape))
        model.init_weights(0)
        model.to(device).train()
        # lmwright's AdamW as the trainer builds it (the default recipe uses Muon; this compares like with like)
        opt = make_optimizer(model, TrainSpec(optimizer="adamw", lr=1e-3))
        if compiled:
            model.fused_loss = False  # as the trainer does under compile: inductor fuses the plain loss itself
        fwd = torch.compile(model) if compiled else model

        def loss_of(b):  # the training path: with targets the model returns the loss
            return fwd(b[:, :-1], b[:, 1:])
    else:
        model = hf_model(shape).to(device)
        decay = [p for p in model.parameters() if p.dim() >= 2]
        rest = [p for p in model.parameters() if p.dim() < 2]
        # fused, as transformers' Trainer builds AdamW by default (optim "adamw_torch_fused" from torch 2.8)
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                                lr=1e-3, betas=(0.9, 0.95), fused=True)
        fwd = torch.compile(model) if compiled else model

        def loss_of(b):  # transformers' own loss path (labels shifted inside the model)
            return fwd(input_ids=b[:, :-1], labels=b[:, :-1]).loss
    g = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, shape["vocab_size"], (batch, seq + 1), generator=g).to(device) for _ in range(4)]

    def run(n: int) -> float:
        sync(device)
        t0 = time.perf_counter()
        for i in range(n):
            with autocast(device, precision):
                loss = loss_of(batches[i % len(batches)])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
        sync(device)  # a GPU runs the steps asynchronously: time them to completion
        return n * batch * seq / (time.perf_counter() - t0)

    return run


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=5, help="steps per measurement")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved measurements per side; the best counts")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    modes = [False] if a.no_compile else [False, True]
    res: dict = {"machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
                 "shape": SHAPE, "batch": BATCH, "seq": SEQ, "precision": a.precision, "rounds": a.rounds}
    for compiled in modes:
        mode = "compiled" if compiled else "eager"
        runs = {side: trainer(side, compiled, a.precision) for side in ("transformers", "lmwright")}
        for run in runs.values():
            run(a.warmup)  # compile and warm the allocator
        best = {side: 0.0 for side in runs}
        for _ in range(a.rounds):  # interleaved, best of rounds: a noisy shared machine slows either side
            for side, run in runs.items():
                best[side] = max(best[side], run(a.steps))
        for side in runs:
            res[f"{side}_{mode}"] = round(best[side])
            if not a.json:
                print(f"{side + '_' + mode:<24} {res[side + '_' + mode]:>8,} tokens/s", flush=True)
    res["ratio_eager"] = round(res["lmwright_eager"] / res["transformers_eager"], 3)
    if not a.no_compile:
        res["ratio_compiled"] = round(res["lmwright_compiled"] / res["transformers_compiled"], 3)
        res["ratio_lmwright_compiled_vs_transformers_eager"] = round(
            res["lmwright_compiled"] / res["transformers_eager"], 3)
    res["target_eager"], res["meets_target"] = TARGET, res["ratio_eager"] >= TARGET
    if a.json:
        print(json.dumps(res, indent=2))
    else:
        print(f"lmwright / transformers, eager: {res['ratio_eager']:.2f}x (target >= {TARGET}x)")
        if "ratio_compiled" in res:
            print(f"lmwright / transformers, compiled: {res['ratio_compiled']:.2f}x")


if __name__ == "__main__":
    main()
