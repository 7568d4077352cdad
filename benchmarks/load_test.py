"""Load test: 64 concurrent clients against `lmwright serve`, a mix of valid and malformed requests.

Every client sends `--requests` requests in turn; about a third are malformed (bad JSON, wrong types, unknown
model, bad role, out-of-range values, an oversized body, a missing prompt) and must get their 4xx; the rest
are completions and chat completions, half of them streamed. Reports status counts (5xx must be zero), the
p50 and p99 latency of valid requests, and requests per second. The model is the 5M-parameter Llama of
`decode.py`, served with the default settings (compiled decode step, 16 slots).

    pip install -e ".[bench]"          # from the repository root (httpx)
    python benchmarks/load_test.py [--clients 64] [--requests 8] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from decode import live_server, make_model

GOOD = [
    ("/v1/completions", {"prompt": "The json module", "max_tokens": 16, "temperature": 0.8}),
    ("/v1/completions", {"prompt": "Return a new list", "max_tokens": 16, "temperature": 0, "stream": True}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "What does csv do?"}], "max_tokens": 16}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 16, "stream": True,
                              "top_p": 0.9, "seed": 3}),
]
BAD = [
    ("/v1/completions", b"{not json", 400),
    ("/v1/completions", {"prompt": "x", "max_tokens": "many"}, 400),
    ("/v1/completions", {"prompt": "x", "model": "gpt-9"}, 404),
    ("/v1/chat/completions", {"messages": [{"role": "robot", "content": "x"}]}, 400),
    ("/v1/completions", {"prompt": "x", "temperature": 9}, 400),
    ("/v1/completions", {"prompt": "x" * 100_000}, 413),
    ("/v1/completions", {"max_tokens": 4}, 400),
    ("/v1/chat/completions", {"messages": []}, 400),
]


async def one(client, url: str, rng: random.Random, results: list) -> None:
    if rng.random() < 0.35:
        path, body, expect = rng.choice(BAD)
        kw = {"content": body, "headers": {"content-type": "application/json"}} if isinstance(body, bytes) \
            else {"json": body}
        t = time.perf_counter()
        r = await client.post(url + path, **kw)
        await r.aread()
        results.append(("bad", r.status_code, time.perf_counter() - t, r.status_code == expect))
        return
    path, body = rng.choice(GOOD)
    t = time.perf_counter()
    if body.get("stream"):
        async with client.stream("POST", url + path, json=body) as r:
            async for _ in r.aiter_lines():
                pass
    else:
        r = await client.post(url + path, json=body)
    results.append(("good", r.status_code, time.perf_counter() - t, r.status_code == 200))


async def run(url: str, clients: int, requests: int) -> tuple[list, float]:
    import httpx

    results: list = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:
        async def worker(i: int) -> None:
            rng = random.Random(i)
            for _ in range(requests):
                await one(client, url, rng, results)

        t = time.perf_counter()
        await asyncio.gather(*[worker(i) for i in range(clients)])
        return results, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--requests", type=int, default=8)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    from lmwright.core.workspace import Workspace
    from lmwright.ops.deploy import build_app

    root = Path(tempfile.mkdtemp(prefix="lmwright-load-"))
    model_dir = make_model(root)
    ws = Workspace.open(root, ["serve.rate_limit_per_minute=0", "serve.max_queue=1024"])
    with live_server(build_app(ws, str(model_dir))) as url:
        results, seconds = asyncio.run(run(url, args.clients, args.requests))
    statuses = Counter(r[1] for r in results)
    good = [r[2] for r in results if r[0] == "good" and r[1] == 200]
    result = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "clients": args.clients, "requests": len(results), "seconds": round(seconds, 1),
        "requests_per_s": round(len(results) / seconds, 1),
        "status_counts": dict(sorted(statuses.items())),
        "server_errors_5xx": sum(v for k, v in statuses.items() if k >= 500),
        "malformed_rejected_as_expected": sum(r[3] for r in results if r[0] == "bad"),
        "malformed": sum(r[0] == "bad" for r in results),
        "valid_ok": len(good), "valid": sum(r[0] == "good" for r in results),
        "p50_latency_s": round(float(np.percentile(good, 50)), 3) if good else None,
        "p99_latency_s": round(float(np.percentile(good, 99)), 3) if good else None,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for k, v in result.items():
        print(f"{k:<32} {v}")


if __name__ == "__main__":
    main()
