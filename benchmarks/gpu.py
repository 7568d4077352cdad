"""GPU figures: pretraining throughput and MFU of a ~124M-parameter Llama in bf16 with `torch.compile`, and the
engine's decode speed, each beside its peer, in one run.

1. Pretraining through lmwright's own loop (`train/loop.py` `pretrain`), bf16 autocast, compiled: with the
   default recipe (Muon for the hidden matrices, AdamW for the rest, WSD schedule) and with AdamW alone. The
   shape is GPT-2 small's: 12 layers, width 768, 12 heads, SwiGLU width 2048, vocabulary 50,304 (tied), context
   1024: 124M parameters. Tokens/s is the median over the
   steps after the warm-up ones, timed at each step's end (the loop syncs on its loss every step); MFU is model
   FLOPs over the GPU's datasheet dense bf16 peak (`train/mfu.py`). Model FLOPs (`model/plan.py`) are PaLM's
   count: 6 per matmul weight per token plus 12 x layers x width x context for attention, not halved for the
   causal mask (halved, this shape's figure would read about 7 % lower). Target: >= 40 %.
2. The same shape and batch trained by lmwright's model and `transformers`' LlamaForCausalLM, both with AdamW,
   bf16 and compiled (benchmarks/train_throughput.py's trainer): tokens/s, MFU and the ratio.
3. Decode on the GPU with the model from 1, in bf16: lmwright's engine (eager and compiled) against `generate`
   on the same weights (saved and loaded as a Hugging Face directory), one stream and 16 at once, greedy.

The tokens are uniform random ids (a step's work does not depend on their values); nothing is downloaded.

    pip install -e ".[bench]"          # from the repository root, on a machine with a CUDA GPU
    python benchmarks/gpu.py [--steps 60] [--batch 32] [--json OUT.json]
    python benchmarks/gpu.py --smoke   # the same code paths on the CPU with a tiny shape, in seconds
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))  # the peer's trainer, shared with train_throughput.py
from train_throughput import sync, trainer  # noqa: E402

GPT2_SMALL = dict(vocab_size=50304, n_layers=12, d_model=768, n_heads=12, n_kv_heads=12, ffn_dim=2048,
                  max_seq_len=1024)
TINY = dict(vocab_size=512, n_layers=2, d_model=64, n_heads=4, n_kv_heads=2, ffn_dim=192, max_seq_len=128)
TARGET_MFU = 0.40


def word_tokenizer(vocab: int):
    """A tokenizer of exactly `vocab` ids (`t0`, `t1`, ...): the loop reads its size and bytes per token."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({f"t{i}": i for i in range(vocab)}, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return tok


def pretrain_part(shape: dict, batch: int, steps: int, device: torch.device, root: Path,
                  optimizer: str | None = None) -> dict:
    """lmwright's pretraining loop on random tokens; per-step times from its `on_step` callback. `optimizer`:
    None for the default recipe's."""
    from lmwright.core.progress import Reporter
    from lmwright.model.plan import flops_per_token
    from lmwright.spec.load import load_spec
    from lmwright.train.loop import pretrain

    seq = shape["max_seq_len"]
    shards = root / "shards"
    shards.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", batch * seq * 64), ("val", seq * 64)):
        np.save(shards / f"{split}.npy", rng.integers(0, shape["vocab_size"], n, dtype=np.int64).astype(np.uint16))
    sets = [f"model.{k}={v}" for k, v in shape.items() if k != "vocab_size"]
    sets += [f"tokenizer.vocab_size={shape['vocab_size']}", f"train.batch_size={batch}", f"train.seq_len={seq}",
             f"train.max_steps={steps}", f"train.eval_every={steps}", "train.eval_batches=2",
             f"train.checkpoint_every={steps + 1}", "train.precision=bf16", "train.compile=true",
             f"train.device={device.type}", f"train.warmup_steps={min(30, steps // 3)}"]
    sets += [f"train.optimizer={optimizer}"] if optimizer else []
    spec = load_spec(None, sets)
    stamps: list[float] = []

    def on_step(step: int, model) -> None:  # after each optimizer step; the loop syncs on the loss right after
        stamps.append(time.perf_counter())

    t0 = time.perf_counter()
    with Reporter(quiet=True) as rep:
        res = pretrain(spec, shards, word_tokenizer(shape["vocab_size"]), root / "work", rep, on_step=on_step)
    wall = time.perf_counter() - t0
    step_s = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    warm = min(10, len(step_s) // 2)  # compile and allocator warm-up
    median = statistics.median(step_s[warm:])
    tok_s = batch * seq / median
    fpt = flops_per_token(res.model.cfg, seq)
    return {"params": res.model.n_params(), "optimizer": spec.train.optimizer, "batch": batch, "seq_len": seq,
            "steps": steps, "timed_steps": len(step_s) - warm, "step_ms_median": round(1000 * median, 2),
            "step_ms_min": round(1000 * min(step_s[warm:]), 2), "tokens_per_s": round(tok_s),
            "flops_per_token": fpt, "peak_tflops": round(res.peak_flops / 1e12, 1), "peak_source": res.peak_source,
            "mfu": round(fpt * tok_s / res.peak_flops, 4), "loop_mfu_whole_run": round(res.mfu, 4),
            "wall_s": round(wall, 1), "final_loss": round(res.history["loss"][-1], 4),
            "val_loss": round(res.history["val_loss"][-1], 4) if res.history["val_loss"] else None,
            "_model": res.model}


def peer_part(shape: dict, batch: int, device: torch.device, steps: int, rounds: int) -> dict:
    """lmwright against transformers, AdamW, bf16, compiled, same shape and batch (train_throughput.trainer)."""
    from lmwright.model.config import ModelConfig
    from lmwright.model.plan import flops_per_token
    from lmwright.train.mfu import find_peak

    seq = shape["max_seq_len"]
    runs = {side: trainer(side, True, "bf16", device, shape, batch, seq) for side in ("transformers", "lmwright")}
    t0 = time.perf_counter()
    for run in runs.values():
        run(3)  # compile and warm the allocator
    compile_s = time.perf_counter() - t0
    best = dict.fromkeys(runs, 0.0)
    for _ in range(rounds):  # interleaved, best of rounds
        for side, run in runs.items():
            best[side] = max(best[side], run(steps))
    peak = find_peak(device, "bf16")
    fpt = flops_per_token(ModelConfig(**shape), seq)
    return {"optimizer": "adamw", "batch": batch, "seq_len": seq, "compile_and_warmup_s": round(compile_s, 1),
            **{f"{side}_tokens_per_s": round(v) for side, v in best.items()},
            **{f"{side}_mfu": round(fpt * v / peak.flops, 4) for side, v in best.items()},
            "ratio": round(best["lmwright"] / best["transformers"], 3), "peak_source": peak.source}


def decode_part(model, device: torch.device, root: Path, new_tokens: int, rounds: int) -> dict:
    """The engine (eager, compiled) against `generate` on the same bf16 weights; one stream, then 16."""
    from transformers import AutoModelForCausalLM

    from lmwright.model.engine import Engine, SamplingParams
    from lmwright.model.hf import save_hf

    vocab, seq = model.cfg.vocab_size, model.cfg.max_seq_len
    tok = word_tokenizer(vocab)
    out = root / "hf"
    save_hf(model, root, out, {"bos": 0, "eos": 1, "pad": 2})
    hf = AutoModelForCausalLM.from_pretrained(out, dtype=torch.bfloat16).to(device).eval()
    ours = model.to(device, torch.bfloat16).eval()
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(3, vocab, (32,), generator=g).tolist() for _ in range(16)]
    n = min(new_tokens, seq - 33)
    params = SamplingParams(max_tokens=n, temperature=0, ignore_eos=True)
    hf_kw = {"max_new_tokens": n, "min_new_tokens": n, "do_sample": False, "pad_token_id": 2}
    engines = {"engine eager": Engine(ours, tok, max_batch=16, eos_ids=set()),
               "engine compiled": Engine(ours, tok, max_batch=16, eos_ids=set(), compile=True)}
    t0 = time.perf_counter()
    engines["engine compiled"].warm_up()
    compile_s = time.perf_counter() - t0
    ways = {"generate": lambda ps: hf.generate(torch.tensor(ps, device=device), **hf_kw)[:, 32:].tolist()}
    for name, eng in engines.items():
        ways[name] = lambda ps, eng=eng: [r.output_ids for r in eng.generate(ps, params)]

    @torch.no_grad()
    def timed(fn, ps: list[list[int]]) -> tuple[float, list[list[int]]]:
        """Tokens/s of one call and its outputs, after an untimed call (the way before left its own state)."""
        fn(ps)
        sync(device)
        t = time.perf_counter()
        out = fn(ps)
        sync(device)
        return n * len(ps) / (time.perf_counter() - t), out

    rows: dict = {}
    outputs: dict = {}
    for streams in (1, 16):
        best = dict.fromkeys(ways, 0.0)
        for _ in range(rounds):
            for name, fn in ways.items():
                tok_s, outputs[name] = timed(fn, prompts[:streams])
                best[name] = max(best[name], tok_s)
        ref = outputs["generate"]
        rows[f"{streams}_streams"] = {
            name: {"tok_s": round(v, 1), "vs_generate": round(v / best["generate"], 2),
                   # bf16 on both sides, different kernels: tokens agree until a near-tie flips
                   "same_first_tokens": min(next((i for i, (a, b) in enumerate(zip(o, r, strict=True)) if a != b), len(r))
                                            for o, r in zip(outputs[name], ref, strict=True))}
            for name, v in best.items()}
    # sampled at temperature 0.8, each request with its own seed (its generator on the GPU): no generate row to
    # match, so only the speed
    sampled = SamplingParams(max_tokens=n, temperature=0.8, seed=7, ignore_eos=True)
    for streams in (1, 16):
        tok_s, outs = timed(lambda ps: [r.output_ids for r in engines["engine compiled"].generate(ps, sampled)],
                            prompts[:streams])
        rows[f"{streams}_streams"]["engine compiled, sampled"] = {"tok_s": round(tok_s, 1),
                                                                  "tokens": sum(map(len, outs))}
    return {"dtype": "bf16", "prompt_tokens": 32, "new_tokens": n, "engine_compile_s": round(compile_s, 1), **rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=60, help="pretraining steps (the first 10 are not timed)")
    ap.add_argument("--batch", type=int, default=32, help="sequences per step (of 1024 tokens)")
    ap.add_argument("--peer-steps", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--parts", default="pretrain,pretrain-adamw,decode,peer", help="which parts, in this order")
    ap.add_argument("--budget-s", type=float, default=1e9, help="start no part after this many seconds")
    ap.add_argument("--smoke", action="store_true", help="tiny shape on the CPU: checks the code paths only")
    ap.add_argument("--json", type=Path, help="also write the results here")
    a = ap.parse_args()
    if a.smoke:
        shape, device, a.steps, a.batch, a.peer_steps, a.rounds, a.new_tokens = TINY, torch.device("cpu"), 12, 4, 2, 1, 16
    else:
        if not torch.cuda.is_available():
            sys.exit("no CUDA GPU: this benchmark's figures are GPU figures (--smoke runs its code on the CPU)")
        shape, device = GPT2_SMALL, torch.device("cuda")
    t_start = time.perf_counter()
    res: dict = {"machine": f"{platform.machine()}, "
                 f"{torch.cuda.get_device_name() if device.type == 'cuda' else 'CPU'}, torch {torch.__version__}",
                 "shape": shape}
    model = None

    def emit() -> None:
        if a.json:
            a.json.write_text(json.dumps(res, indent=2))

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for part in a.parts.split(","):
            if time.perf_counter() - t_start > a.budget_s:
                res[part] = {"skipped": f"past --budget-s {a.budget_s}"}
                continue
            print(f"--- {part} ({time.perf_counter() - t_start:.0f} s in)", flush=True)
            try:
                if part.startswith("pretrain"):  # pretrain: the default recipe; pretrain-adamw: AdamW
                    optimizer = part.partition("-")[2] or None
                    out = pretrain_part(shape, a.batch, a.steps, device, root / part, optimizer)
                    trained = out.pop("_model")
                    model = trained if model is None else model  # decode runs on the first part's model
                elif part == "decode":
                    if model is None:  # decode alone: an untrained model of the same shape
                        from lmwright.model.config import ModelConfig
                        from lmwright.model.llama import LlamaLM

                        model = LlamaLM(ModelConfig(**shape))
                        model.init_weights(0)
                    out = decode_part(model, device, root, a.new_tokens, a.rounds)
                elif part == "peer":
                    out = peer_part(shape, a.batch, device, a.peer_steps, a.rounds)
                else:
                    raise ValueError(f"unknown part {part!r}")
            except Exception:  # noqa: BLE001 - the other parts still run; the traceback is the figure's absence
                traceback.print_exc()
                out = {"failed": traceback.format_exc(limit=3)[-800:]}
            res[part] = out
            print(json.dumps(out, indent=1), flush=True)
            emit()
            if device.type == "cuda":
                torch.cuda.empty_cache()
    res["seconds"] = round(time.perf_counter() - t_start, 1)
    emit()
    for key in ("pretrain", "pretrain-adamw"):
        p = res.get(key, {})
        if "mfu" in p:
            print(f"pretrain ({p['optimizer']}, bf16, compiled): {p['tokens_per_s']:,} tok/s, MFU {100 * p['mfu']:.1f}% "
                  f"of {p['peak_tflops']} TFLOP/s (target >= {100 * TARGET_MFU:.0f}%)")
    q = res.get("peer", {})
    if "ratio" in q:
        print(f"adamw, compiled: lmwright {q['lmwright_tokens_per_s']:,} vs transformers "
              f"{q['transformers_tokens_per_s']:,} tok/s: {q['ratio']}x")
    d = res.get("decode", {})
    for key in ("1_streams", "16_streams"):
        if key in d:
            print(f"decode {key.replace('_', ' ')}: " + ", ".join(
                f"{k} {v['tok_s']:,.0f} tok/s" + (f" ({v['vs_generate']}x)" if "vs_generate" in v else "")
                for k, v in d[key].items()))


if __name__ == "__main__":
    main()
