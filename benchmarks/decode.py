"""Decode speed, side by side in one run: `transformers`' `generate` (plain, with prompt lookup, and with a
draft model: assisted generation), llama.cpp on lmwright's GGUF export (when `llama_cpp` imports), and lmwright's
engine (compiled decode step) plain, with prompt lookup and with a draft model; then 1 and 16 concurrent streams
through `lmwright serve`.

Models: the default project's model when `--project DIR` names a directory where `lmwright run` finished (a
draft model for it is trained in a copy of the project with a smaller `model` section: `--draft-steps`), and a
5M-parameter Llama with random weights (6 layers, width 256, vocabulary 4,096, context 512; no draft model).
Prompts: a mixed set, code-like, prose and chat-shaped. Greedy, batch 1, a fixed number of new tokens per prompt
(end-of-sequence ignored); tokens per second over the whole set, best of `--rounds` interleaved rounds, each way
warmed up on one prompt (untimed) before it is timed, since the way before it leaves its threads and caches. Every
speculative run's tokens are checked against plain `generate`'s. Acceptance rate = guesses kept / guesses made;
tokens per check = tokens made / passes of the model that checked guesses.

    pip install -e ".[bench-llamacpp]"  # .[bench] and llama-cpp-python, which compiles llama.cpp (~10 minutes)
    lmwright run                 # in an empty directory: the default project (about 9 minutes)
    python benchmarks/decode.py --project DIR [--tokens 96] [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

TARGET_SINGLE, TARGET_CONCURRENT = 4.0, 6.0
PROMPTS = {  # mixed: code-like, prose, chat-shaped
    "code": "def load(path):\n    with open(path) as f:\n        return json.load(f)\n\n\ndef dump(obj, path):\n",
    "prose": "The json module provides an API similar to the pickle module for converting Python objects",
    "chat": "<|user|>\nWhat does the csv module do?<|end|>\n<|assistant|>\n",
}


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


def train_draft(project: Path, root: Path, steps: int) -> Path:
    """A draft model for the project's model: the project copied, its model section made small (1 layer, width
    96), pretrained on the same tokens with the same tokenizer (the data and tokenizer stages are cached)."""
    copy = root / "draft-project"
    shutil.copytree(project, copy, ignore=shutil.ignore_patterns("*.gguf", "exports"))
    sets = ["model.n_layers=1", "model.d_model=96", "model.n_heads=2", "model.n_kv_heads=1", "model.ffn_dim=256",
            f"train.max_steps={steps}", "train.eval_every=100000", "project.name=draft"]
    subprocess.run([sys.executable, "-m", "lmwright", "run", "--until", "save", "--quiet",
                    *[a for s in sets for a in ("--set", s)]], cwd=copy, check=True)
    return copy / "lmwright-out" / "model"


def _onnxruntime() -> bool:
    try:
        from lmwright.model.onnx_step import require_onnxruntime

        require_onnxruntime()
        return True
    except Exception as exc:  # noqa: BLE001 - the rows are skipped, with why
        print(f"onnxruntime rows skipped: {exc}", file=sys.stderr)
        return False


def _llama_cpp(model_dir: Path, root: Path):
    try:
        import llama_cpp
    except ImportError:
        return None, "llama.cpp skipped: llama_cpp does not import (pip install -e \".[bench-llamacpp]\": it compiles llama.cpp)"
    from lmwright.export import export

    path = export(model_dir, "gguf", root / f"gguf-{model_dir.parent.name}")["path"]
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=0, n_threads=torch.get_num_threads(), verbose=False)
    return llm, None


def bench_single(model_dir: Path, tokens: int, rounds: int, root: Path, draft_dir: Path | None) -> dict:
    """Every way of decoding the prompt set once per round, interleaved (the machine is shared); the best round
    of each."""
    from transformers import AutoModelForCausalLM

    import lmwright
    from lmwright.model.engine import Engine, SamplingParams
    from lmwright.model.speculate import DraftModel, PromptLookup

    ours, tok = lmwright.load_model(model_dir), lmwright.load_tokenizer(model_dir)
    hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    prompts = {k: tok.encode(v).ids for k, v in PROMPTS.items()}
    n = min(tokens, ours.cfg.max_seq_len - max(len(p) for p in prompts.values()) - 1)
    pad = tok.token_to_id("<|pad|>")
    hf_kw = {"max_new_tokens": n, "min_new_tokens": n, "do_sample": False, "pad_token_id": pad}
    engines = {"lmwright": Engine(ours, tok, max_batch=16, compile=True)}
    compile_s = engines["lmwright"].warm_up()
    engines["lmwright + prompt lookup"] = Engine(ours, tok, max_batch=16, compile=True, drafter=PromptLookup(4, max_running=16))
    engines["lmwright + prompt lookup"].warm_up()
    if _onnxruntime():  # serve.backend onnxruntime: the decode step exported to onnxruntime
        engines["lmwright onnxruntime"] = Engine(ours, tok, max_batch=16, backend="onnxruntime")
        engines["lmwright onnxruntime"].warm_up()
        engines["lmwright onnxruntime + lookup"] = Engine(ours, tok, max_batch=16, compile=True, backend="onnxruntime",
                                                          drafter=PromptLookup(4, max_running=16))
        engines["lmwright onnxruntime + lookup"].warm_up()
    ways: dict = {"generate": lambda p: hf.generate(torch.tensor([p]), **hf_kw)[0, len(p):].tolist(),
                  "generate + prompt lookup": lambda p: hf.generate(torch.tensor([p]), prompt_lookup_num_tokens=4,
                                                                    **hf_kw)[0, len(p):].tolist()}
    if draft_dir is not None:
        hf_draft = AutoModelForCausalLM.from_pretrained(draft_dir, dtype=torch.float32).eval()
        ways["generate + draft model"] = lambda p: hf.generate(torch.tensor([p]), assistant_model=hf_draft,
                                                               **hf_kw)[0, len(p):].tolist()
        draft = Engine(lmwright.load_model(draft_dir), lmwright.load_tokenizer(draft_dir), max_batch=16)
        engines["lmwright + draft model"] = Engine(ours, tok, max_batch=16, compile=True,
                                                   drafter=DraftModel(draft, 4, max_running=16))
        engines["lmwright + draft model"].warm_up()
    llm, skipped = _llama_cpp(model_dir, root)
    if llm is not None:
        def cpp(p):
            llm.reset()
            out = []
            for t in llm.generate(p, temp=0.0, reset=True):
                out.append(t)
                if len(out) == n:
                    return out
            return out
        ways["llama.cpp"] = cpp
    params = SamplingParams(max_tokens=n, temperature=0, ignore_eos=True)
    for name, eng in engines.items():
        ways[name] = lambda p, eng=eng: eng.generate([p], params)[0].output_ids
    best = dict.fromkeys(ways, 0.0)
    outputs: dict = {}
    for _ in range(rounds):
        for name, fn in ways.items():
            with torch.no_grad():
                # each way warms up on one prompt first: the way before it left its own weights in the caches
                # and its threads asleep or spinning (untimed: what is compared is each way's steady decoding)
                fn(next(iter(prompts.values())))
                t = time.perf_counter()
                outs = {k: fn(p) for k, p in prompts.items()}
            best[name] = max(best[name], n * len(prompts) / (time.perf_counter() - t))
            outputs[name] = outs
    base, cpp_s = best["generate"], best.get("llama.cpp")
    ref = outputs["generate"]
    rows = {name: {"tok_s": round(v, 1), "vs_generate": round(v / base, 2),
                   **({"vs_llama_cpp": round(v / cpp_s, 2)} if cpp_s else {}),
                   # the tokens a way made equal plain generate's, prompt by prompt (llama.cpp: its own kernels)
                   "same_tokens": {k: outputs[name][k] == ref[k] for k in prompts}} for name, v in best.items()}
    for name, eng in engines.items():
        if eng.drafter is not None:
            rows[name].update(eng.spec_stats.to_dict())
    return {"params": ours.n_params(), "new_tokens_per_prompt": n, "compile_s": round(compile_s, 1),
            "target_vs_generate": TARGET_SINGLE, "ways": rows, **({"skipped": skipped} if skipped else {}),
            # one row's weight matmuls through PyTorch (F.linear, nothing else): this carries PyTorch's own
            # per-call overhead, so it is a reference point, not the machine's floor (llama.cpp goes under it)
            "linears_ms_per_step": round(linears_ms(ours, 1), 3)}


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


def bench_server(model_dir: Path, tokens: int, rounds: int, root: Path, backend: str = "torch") -> dict:
    """The clients run in a process of their own, as they would in use: parsing a thousand SSE events a second
    in the server's process would take the interpreter lock from the server."""
    import multiprocessing

    from lmwright.core.workspace import Workspace
    from lmwright.ops.deploy import build_app

    ws = Workspace.open(root, [f"serve.max_tokens={tokens}", "serve.rate_limit_per_minute=0", f"serve.backend={backend}"])
    with live_server(build_app(ws, str(model_dir))) as url, \
            multiprocessing.get_context("spawn").Pool(1) as pool:
        one = sixteen = 0.0
        for _ in range(rounds):  # interleaved, best of each: the machine is shared
            one = max(one, pool.apply(_client, (url, 1, tokens)))
            sixteen = max(sixteen, pool.apply(_client, (url, 16, tokens)))
    return {"backend": backend, "one_stream_tok_s": round(one, 1), "sixteen_streams_tok_s": round(sixteen, 1),
            "ratio": round(sixteen / one, 2), "target": TARGET_CONCURRENT}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--project", type=Path, help="a directory where `lmwright run` finished (the default project)")
    ap.add_argument("--tokens", type=int, default=96)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--draft-steps", type=int, default=300, help="pretraining steps of the project's draft model")
    ap.add_argument("--no-server", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="lmwright-decode-"))
    result: dict = {"machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"}
    if args.project is not None:
        model_dir = args.project / "lmwright-out" / "model"
        if not (model_dir / "config.json").exists():
            sys.exit(f"{model_dir} has no model: run `lmwright run` in {args.project} first")
        draft = train_draft(args.project, root, args.draft_steps) if args.draft_steps else None
        result["default project"] = bench_single(model_dir, args.tokens, args.rounds, root, draft)
    else:
        result["default project"] = "skipped: give --project DIR (a directory where `lmwright run` finished)"
    random_dir = make_model(root)
    result["5M random"] = bench_single(random_dir, args.tokens, args.rounds, root, None)
    if not args.no_server:
        result["server"] = bench_server(random_dir, args.tokens, args.rounds, root)
        if _onnxruntime():
            result["server onnxruntime"] = bench_server(random_dir, args.tokens, args.rounds, root, "onnxruntime")
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for k, v in result.items():
        if isinstance(v, dict) and "ways" in v:
            print(f"== {k}: {v['params']:,} parameters, {v['new_tokens_per_prompt']} new tokens x {len(PROMPTS)} "
                  f"prompts; {v.get('skipped', '')}")
            for name, r in v["ways"].items():
                extra = (f"  acceptance {r['acceptance_rate']}, {r['tokens_per_step']} tokens/check"
                         if "acceptance_rate" in r else "")
                cpp = f"  {r['vs_llama_cpp']:5.2f}x llama.cpp" if "vs_llama_cpp" in r else ""
                print(f"  {name:<30} {r['tok_s']:8.1f} tok/s  {r['vs_generate']:5.2f}x generate{cpp}  "
                      f"same tokens: {sum(r['same_tokens'].values())}/{len(PROMPTS)}{extra}")
        else:
            print(f"{k:<14} {v}")


if __name__ == "__main__":
    main()
