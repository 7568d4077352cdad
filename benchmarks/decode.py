"""Decode speed: lmwright's engine against `transformers`' `generate` on the same weights, and 16 concurrent
streams through `lmwright serve` against one.

lmwright's engine runs with its compiled decode step (`serve.compile`, the default), warmed up first.
The model is a 5M-parameter Llama (6 layers, width 256, 4 heads, 2 kv heads, SwiGLU 704, vocabulary 4,096,
context 512) with random weights, saved as a Hugging Face directory that both sides load. Greedy decoding,
batch 1, the same prompt, a fixed number of new tokens (end-of-sequence ignored); best of `--rounds` rounds.
Then the same model behind `lmwright serve` (a live uvicorn server on loopback): one streaming client, then 16
at once, each asking for the same number of tokens; aggregate tokens per second of each, best of `--rounds`.

    python benchmarks/decode.py [--tokens 128] [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import platform
import tempfile
import threading
import time
from pathlib import Path

import torch

TARGET_SINGLE, TARGET_CONCURRENT = 4.0, 6.0


def make_model(root: Path) -> Path:
    from lmwright.model.config import ModelConfig
    from lmwright.model.hf import save_hf
    from lmwright.model.llama import LlamaLM
    from lmwright.tokenizer import save_tokenizer, special_ids, train_tokenizer

    texts = [(m.__doc__ or "") for m in (json, argparse, asyncio, threading, contextlib, platform)]
    tok = train_tokenizer(texts * 20, 4096, 1)
    tok_dir = root / "tok"
    tok_dir.mkdir()
    save_tokenizer(tok, tok_dir, model_max_length=512)
    cfg = ModelConfig(vocab_size=tok.get_vocab_size(), n_layers=6, d_model=256, n_heads=4, n_kv_heads=2, ffn_dim=704,
                      max_seq_len=512)
    model = LlamaLM(cfg)
    model.init_weights(0)
    out = root / "model"
    save_hf(model, tok_dir, out, special_ids(tok))
    return out


def bench_single(model_dir: Path, tokens: int, rounds: int) -> dict:
    from transformers import AutoModelForCausalLM

    import lmwright
    from lmwright.model.engine import Engine, SamplingParams

    ours, tok = lmwright.load_model(model_dir), lmwright.load_tokenizer(model_dir)
    hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    prompt = tok.encode("The json module provides").ids
    engine = Engine(ours, tok, max_batch=16, compile=True)
    compile_s = engine.warm_up()
    best_hf = best_ours = 0.0
    same = None
    for _ in range(rounds):  # interleaved, best of: the machine is shared
        t = time.perf_counter()
        with torch.no_grad():
            out = hf.generate(torch.tensor([prompt]), max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False,
                              pad_token_id=tok.token_to_id("<|pad|>"))
        best_hf = max(best_hf, tokens / (time.perf_counter() - t))
        t = time.perf_counter()
        (req,) = engine.generate([prompt], SamplingParams(max_tokens=tokens, temperature=0, ignore_eos=True))
        best_ours = max(best_ours, tokens / (time.perf_counter() - t))
        same = out[0, len(prompt):].tolist() == req.output_ids
    floor_ms = {n: linears_ms(ours, n) for n in (1, 16)}
    return {"params": ours.n_params(), "transformers_tok_s": round(best_hf, 1), "lmwright_tok_s": round(best_ours, 1),
            "ratio": round(best_ours / best_hf, 2), "target": TARGET_SINGLE, "same_tokens": same,
            "compile_s": round(compile_s, 1),
            # what no fp32 engine can go under on this machine: the weight matmuls alone, one row per token
            "linears_ms_per_step": {f"rows_{n}": round(v, 3) for n, v in floor_ms.items()},
            "ceiling_ratio_vs_transformers": round((1000 / best_hf) / floor_ms[1], 2),
            "ceiling_16_rows_vs_1": round(16 * floor_ms[1] / floor_ms[16], 2)}


def linears_ms(model: torch.nn.Module, rows: int, reps: int = 200) -> float:
    """Milliseconds for one `F.linear` through every weight matrix of the model (the lm head included) with
    `rows` rows: the arithmetic of one decode step with nothing else; best of five timings."""
    weights = [m.weight.detach() for m in model.modules() if isinstance(m, torch.nn.Linear)]
    xs = {w.shape[1]: torch.randn(rows, w.shape[1]) for w in weights}
    best = float("inf")
    with torch.no_grad():
        for _ in range(5):
            t = time.perf_counter()
            for _ in range(reps):
                for w in weights:
                    torch.nn.functional.linear(xs[w.shape[1]], w)
            best = min(best, (time.perf_counter() - t) / reps * 1000)
    return best


async def _stream(client, url: str, tokens: int) -> int:
    """One streamed completion; the tokens it generated, from the usage chunk (a chunk can carry several
    tokens when the client falls behind)."""
    body = {"prompt": "The json module provides", "max_tokens": tokens, "temperature": 0.8, "stream": True,
            "stream_options": {"include_usage": True}}
    n = 0
    async with client.stream("POST", f"{url}/v1/completions", json=body, timeout=600) as r:
        async for line in r.aiter_lines():
            if line.startswith("data: {") and '"usage"' in line:
                n = json.loads(line[6:]).get("usage", {}).get("completion_tokens", n)
    return n


def live_server(app):
    from lmwright.serve.api import serve_in_thread

    return serve_in_thread(app)


def _client(url: str, n: int, tokens: int) -> float:
    """n concurrent streams (after one short warm-up request); their aggregate tokens per second."""
    import httpx

    async def run() -> float:
        async with httpx.AsyncClient() as client:
            await _stream(client, url, 8)
            t = time.perf_counter()
            counts = await asyncio.gather(*[_stream(client, url, tokens) for _ in range(n)])
            return sum(counts) / (time.perf_counter() - t)

    return asyncio.run(run())


def bench_server(model_dir: Path, tokens: int, rounds: int, root: Path) -> dict:
    """The clients run in a process of their own, as they would in use: parsing a thousand SSE events a second
    in the server's process would take the interpreter lock from the server."""
    import multiprocessing

    from lmwright.core.workspace import Workspace
    from lmwright.ops.deploy import build_app

    ws = Workspace.open(root, [f"serve.max_tokens={tokens}", "serve.rate_limit_per_minute=0"])
    with live_server(build_app(ws, str(model_dir))) as url, \
            multiprocessing.get_context("spawn").Pool(1) as pool:
        one = sixteen = 0.0
        for _ in range(rounds):  # interleaved, best of each: the machine is shared
            one = max(one, pool.apply(_client, (url, 1, tokens)))
            sixteen = max(sixteen, pool.apply(_client, (url, 16, tokens)))
    return {"one_stream_tok_s": round(one, 1), "sixteen_streams_tok_s": round(sixteen, 1),
            "ratio": round(sixteen / one, 2), "target": TARGET_CONCURRENT}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="lmwright-decode-"))
    model_dir = make_model(root)
    result = {"machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
              "single_stream": bench_single(model_dir, args.tokens, args.rounds),
              "server": bench_server(model_dir, args.tokens, args.rounds, root)}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for k, v in result.items():
        print(f"{k:<14} {v}")


if __name__ == "__main__":
    main()
