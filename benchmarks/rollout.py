"""Rollout under load: 64 concurrent clients against `lmwright serve` while the champion is promoted and rolled back.

A small project is run twice (two versions of its model; the second gets the champion alias by a forced promote
mid-test, then `lmwright rollback` returns it). Every client sends completions in a loop the whole time. Reports,
per phase (before, after the promote, after the rollback): requests, requests per second, p50 and p99 latency,
statuses (5xx and dropped requests must be zero), which version answered, and how long after each alias move the
server was routing every new request to the new version ("follow" time: the move is seen within `deploy.refresh_s`,
then the version is loaded and started before the swap, while traffic stays on the old one).

    pip install -e ".[bench]"          # from the repository root (httpx)
    python benchmarks/rollout.py [--clients 64] [--seconds 6] [--compile] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import yaml

import lmwright
from lmwright.core.progress import Reporter
from lmwright.core.workspace import Workspace
from lmwright.ops import registry as ops
from lmwright.ops.deploy import build_app
from lmwright.serve.api import serve_in_thread

SPEC = {  # a small project of a few stdlib modules: two versions of its model in a minute
    "project": {"name": "tiny", "seed": 7},
    "requirements": {"acceptance": ["test.bits_per_byte <= 8.0"]},
    "data": {"sources": [{"kind": "pydocs", "modules": ["json", "textwrap", "string", "functools", "csv", "base64",
                                                        "shlex", "difflib"], "topics": False}]},
    "split": {"val": 0.15, "test": 0.15},
    "tokenizer": {"vocab_size": 400},
    "model": {"n_layers": 2, "d_model": 64, "n_heads": 4, "n_kv_heads": 2, "max_seq_len": 128},
    "train": {"max_steps": 40, "batch_size": 4, "seq_len": 64, "lr": 0.01, "warmup_steps": 2, "eval_every": 20,
              "eval_batches": 2, "checkpoint_every": 20},
    "eval": {"max_new_tokens": 8, "bootstrap": 100, "continuation": {"docs": 8, "prompt_tokens": 8, "new_tokens": 4}},
    "risk": {"canaries": {"repeats": [1, 8], "candidates": 50}, "samples": 2,
             "verbatim": {"docs": 8, "prompt_tokens": 8, "new_tokens": 4}},
    "finetune": {"sft": {"enabled": False}, "classify": {"enabled": False}},
}
moves_at: list = []  # (what, when) of each alias move


def project(root: Path, compile_: bool) -> Workspace:
    spec = {**SPEC, "serve": {"compile": compile_, "rate_limit_per_minute": 0, "max_tokens": 32}}
    (root / "lmwright.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    quiet = Reporter(quiet=True)
    lmwright.run(root, reporter=quiet)  # version 1: the champion
    lmwright.run(root, ["train.max_steps=12"], until="test", reporter=quiet)  # version 2
    return Workspace.open(root)


async def client(http, url: str, i: int, stop: asyncio.Event, out: list) -> None:
    while not stop.is_set():
        sent = time.monotonic()
        try:
            r = await http.post(f"{url}/v1/completions", json={"model": "tiny", "prompt": f"The json module {i}",
                                                               "max_tokens": 16, "temperature": 0})
            out.append((sent, time.monotonic(), r.status_code, r.headers.get("x-lmwright-model-version")))
        except Exception as exc:  # noqa: BLE001 - a dropped request: counted
            out.append((sent, time.monotonic(), type(exc).__name__, None))


async def drive(url: str, clients: int, seconds: float, moves: list) -> list:
    import httpx

    out: list = []
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        tasks = [asyncio.create_task(client(http, url, i, stop, out)) for i in range(clients)]
        for label, act in moves:
            await asyncio.sleep(seconds)
            await asyncio.to_thread(act)
            moves_at.append((label, time.monotonic()))
        await asyncio.sleep(seconds)
        stop.set()
        await asyncio.gather(*tasks)
    return out


def phase(rows: list, t0: float, t1: float) -> dict:
    mine = [r for r in rows if t0 <= r[0] < t1]
    lat = np.array([b - a for a, b, s, _ in mine if s == 200]) if mine else np.array([0.0])
    return {"requests": len(mine), "req_per_s": round(len(mine) / max(t1 - t0, 1e-9), 1),
            "p50_ms": round(1000 * float(np.percentile(lat, 50)), 1),
            "p99_ms": round(1000 * float(np.percentile(lat, 99)), 1),
            "statuses": dict(Counter(str(s) for _, _, s, _ in mine)),
            "versions": dict(Counter(v for *_, v in mine))}


def follow_time(rows: list, at: float, until: float, new: str) -> float:
    """Seconds after a move until every request sent from then on (to the next move) was answered by `new`."""
    stale = [r[0] for r in rows if at <= r[0] < until and r[3] != new]
    return round(max(stale) - at, 2) if stale else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=6.0, help="length of each phase")
    ap.add_argument("--compile", action="store_true", help="serve with compiled decode steps (serve.compile)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        ws = project(Path(tmp), a.compile)
        moves = [("promote tiny@2", lambda: ops.promote(ws, "tiny@2", "champion", force=True, reason="benchmark")),
                 ("rollback", lambda: ops.rollback(ws, "tiny", reason="benchmark"))]
        app = build_app(ws)
        with serve_in_thread(app) as url:
            t_start = time.monotonic()
            rows = asyncio.run(drive(url, a.clients, a.seconds, moves))
            t_end = time.monotonic()
            deadline = time.monotonic() + 15
            while app.state.server.replaced and time.monotonic() < deadline:
                time.sleep(0.1)
            leftover = len(app.state.server.replaced)
    (promote_at, rollback_at) = (t for _, t in moves_at)
    res = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "clients": a.clients, "compile": a.compile,
        "phases": {"before (tiny@1)": phase(rows, t_start, promote_at),
                   "after promote (tiny@2)": phase(rows, promote_at, rollback_at),
                   "after rollback (tiny@1)": phase(rows, rollback_at, t_end)},
        "follow_s": {"promote": follow_time(rows, promote_at, rollback_at, "tiny@2"),
                     "rollback": follow_time(rows, rollback_at, t_end, "tiny@1")},
        "errors": sum(1 for r in rows if r[2] != 200), "requests": len(rows),
        "replaced_versions_left_open": leftover,
    }
    if a.json:
        print(json.dumps(res, indent=2))
        return
    print(f"rollout under {a.clients} clients ({res['machine']}, compile={a.compile})")
    print(f"{'phase':<26}{'requests':>9}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}  statuses / versions")
    for name, p in res["phases"].items():
        print(f"{name:<26}{p['requests']:>9}{p['req_per_s']:>8}{p['p50_ms']:>8}{p['p99_ms']:>8}  {p['statuses']} "
              f"{p['versions']}")
    print(f"every new request on the new version: {res['follow_s']['promote']} s after the promote, "
          f"{res['follow_s']['rollback']} s after the rollback")
    print(f"errors (non-200 or dropped): {res['errors']} of {res['requests']}; replaced versions still open: "
          f"{leftover}")


if __name__ == "__main__":
    main()
