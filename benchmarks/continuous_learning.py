"""Continuous learning end to end on the default project (issue 17): serve the champion, send it in-distribution
prompts and then prompts from a shifted source, watch the drift alert, send corrections, retrain, and promote the
challenger through the gate while clients keep sending requests.

1. The default project (the stdlib docs) is built, or reused with --dir; `lmwright serve`'s app serves its champion
   assistant on loopback (eager decode, no rate limit, prompts kept so corrections can become training pairs).
2. In-distribution traffic: the questions the assistant was fine-tuned on ("What does `json.dumps` do?", "Which
   module provides `dumps`?"), each sent once: about held-out stdlib objects (the validation split), then training
   questions outside the drift reference's sample. Shifted traffic: the same questions about another
   corpus the project builds with its own pydocs collector, third-party packages installed with lmwright
   (SQLAlchemy, Rich, Typer, Pydantic): the same template, other names, other words.
   The alert rules are evaluated every --check-every requests (`ops/watch.check`, what the server's loop runs).
3. Repeated runs: the drift tests on --repeats random in-distribution windows (the false-alarm rate), and on
   --repeats random orders of the shifted stream after an in-distribution window (requests until drift).
4. Corrections (the docstring's summary line) for a share of the shifted prompts go through POST /v1/feedback.
5. `lmwright retrain` (ops/lifecycle.retrain) runs while clients keep sending; the challenger is judged on shifted
   questions never sent (paired bootstrap interval of bits per byte of the right answers), on held-out stdlib
   questions and on the frozen test split (the gate); the server follows the champion alias to it. Every request
   during the switch is counted: dropped or failed ones must be zero.

    pip install -e ".[bench]"          # from the repository root (httpx)
    python benchmarks/continuous_learning.py [--dir DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import torch

import lmwright
from lmwright.cli.common import run_stages
from lmwright.core import registry
from lmwright.core.artifacts import ArtifactStore
from lmwright.core.models import resolve_model
from lmwright.core.progress import Reporter
from lmwright.core.store import Store
from lmwright.core.workspace import Workspace
from lmwright.data.document import read_docs
from lmwright.data.sources.pydocs import collect_pydocs
from lmwright.data.split import split_path
from lmwright.finetune import pydocs_tasks
from lmwright.ops import lifecycle
from lmwright.ops.deploy import build_app
from lmwright.ops.monitor import drift, last_user_turn, reference_texts, training_rows
from lmwright.ops.registry import paired_bpb
from lmwright.ops.watch import check
from lmwright.serve.api import serve_in_thread
from lmwright.spec import GateSpec, PydocsSource

SHIFTED_MODULES = ["sqlalchemy", "rich", "typer", "pydantic"]
SERVE = ["serve.compile=false", "serve.rate_limit_per_minute=0", "serve.log_prompts=true", "monitor.interval=0"]


def questions(docs: list[dict]) -> list[dict]:
    """(question, right answer) rows as the sft stage makes them: "What does `X` do?", "Which module provides
    `Y`?" (the mix the assistant was fine-tuned on, so in-distribution traffic is that mix)."""
    return pydocs_tasks.instructions(docs)


def stdlib_held_out(ws: Workspace) -> list[dict]:
    store = Store(ws.store_url)
    split = next(r for r in reversed(store.runs(limit=200)) if r.stage == "split" and r.status == "done")
    d = ArtifactStore(ws.artifacts_dir).open(split.output_digest)
    return questions(read_docs(split_path(d, "val", ".parquet")))  # the test split is the final evaluation's


def shifted() -> list[dict]:
    src = PydocsSource(kind="pydocs", name="third-party", modules=SHIFTED_MODULES, topics=False, license="various")
    docs = [{"locator": d.locator, "text": d.text} for d in collect_pydocs(src)]
    return questions(docs)


class Load:
    """Clients sending chat completions; every outcome counted."""

    def __init__(self, url: str, model: str):
        self.c = httpx.Client(base_url=url, timeout=120)
        self.model = model
        self.statuses: Counter = Counter()
        self.versions: Counter = Counter()

    def ask(self, q: str, max_tokens: int = 24) -> dict | None:
        try:
            r = self.c.post("/v1/chat/completions", json={"model": self.model, "max_tokens": max_tokens,
                                                          "messages": [{"role": "user", "content": q}]})
        except httpx.HTTPError as exc:
            self.statuses[f"dropped: {type(exc).__name__}"] += 1
            return None
        self.statuses[r.status_code] += 1
        self.versions[r.headers.get("x-lmwright-model-version", "?")] += 1
        return r.json() if r.status_code == 200 else None


def send(load: Load, rows: list[dict], ws: Workspace, every: int, workers: int, phase: str, log: list) -> list:
    """Send `rows`, `workers` at a time, evaluating the alert rules every `every` requests; returns the answers."""
    answers: list = []
    for start in range(0, len(rows), every):
        chunk = rows[start:start + every]
        with ThreadPoolExecutor(workers) as pool:
            answers += list(pool.map(lambda q: load.ask(q["instruction"]), chunk))
        for m in check(ws):
            log.append({"phase": phase, "after": start + len(chunk), **m})
    return answers


def repeated(ws: Workspace, model, rows_in: list, rows_shift: list, repeats: int, window: int, step: int) -> dict:
    """The drift tests on random windows: in-distribution only (false alarms), and an in-distribution window
    followed by the shifted stream in a random order (requests until drift)."""
    alarms, until = 0, []
    for r in range(repeats):
        rng = random.Random(r)
        base = rng.sample(rows_in, window)
        alarms += drift(ws, model, base, seed=r)["detected"]
        stream = rng.sample(rows_shift, len(rows_shift))
        k = next((k for k in range(step, len(stream) + 1, step)
                  if drift(ws, model, (base + stream[:k])[-window:], seed=r)["detected"]), None)
        until.append(k)
    found = [k for k in until if k is not None]
    return {"repeats": repeats, "window": window, "false_alarms": alarms, "false_alarm_rate": alarms / repeats,
            "detected": len(found), "requests_until_drift": {"median": float(np.median(found)) if found else None,
                                                              "max": max(found) if found else None,
                                                              "all": until}}


def answer_bpb(ws: Workspace, a_dir: Path, b_dir: Path, rows: list[dict]) -> dict:
    """Bits per byte of the right answers: `a` minus `b`, with a paired bootstrap interval."""
    convos = [[{"role": "user", "content": q["instruction"]}, {"role": "assistant", "content": q["output"]}]
              for q in rows]
    p = paired_bpb(lifecycle.answer_nats(a_dir, convos), lifecycle.answer_nats(b_dir, convos),
                   GateSpec(resamples=1000, confidence=0.95), 0)
    return {"rows": len(rows), "challenger_bpb": p["challenger_bpb"], "champion_bpb": p["champion_bpb"],
            "difference": p["difference"], "ci95": p["ci"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", type=Path, help="a built default project to reuse (default: build one)")
    ap.add_argument("--in-dist", type=int, default=800, help="in-distribution requests")
    ap.add_argument("--shifted", type=int, default=300, help="shifted requests")
    ap.add_argument("--check-every", type=int, default=20)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--feedback", type=float, default=0.7, help="share of shifted prompts that get a correction")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    t0 = time.time()
    root = args.dir or Path(tempfile.mkdtemp(prefix="lmwright-cl-"))
    if not any(m.name == "stdlib-docs-assistant" for m in Store(Workspace.open(root).store_url).models()):
        print(f"building the default project in {root} ...", flush=True)
        lmwright.run(root, reporter=Reporter(quiet=True))
    ws = Workspace.open(root, SERVE)
    store = Store(ws.store_url)
    name = "stdlib-docs-assistant"
    champion = registry.version(store, f"{name}@champion")
    rng = random.Random(0)
    held = stdlib_held_out(ws)
    third = shifted()
    rng.shuffle(held)
    rng.shuffle(third)
    eval_shift, sent_shift = third[:150], third[150:150 + args.shifted]
    # in-distribution traffic: each prompt once (repeats are real traffic, but here they would only test the
    # dedupe), from the held-out questions and then the training questions the reference did not sample
    reference = set(reference_texts(ws, champion, ws.spec.monitor.drift.reference_rows, ws.spec.project.seed)[1])
    unseen = [{"instruction": last_user_turn(r), "output": r[-1]["content"]} for r in training_rows(ws, champion)[1]]
    unseen = [q for q in unseen if q["instruction"] not in reference]
    rng.shuffle(unseen)
    eval_in, sent_in = held[:100], (held[100:] + unseen)[:args.in_dist]
    print(f"{len(held)} held-out stdlib questions, {len(third)} third-party ones", flush=True)
    log: list = []
    switch: dict = {}
    with serve_in_thread(build_app(ws)) as url:
        load = Load(url, name)
        send(load, sent_in, ws, args.check_every, args.workers, "in-distribution", log)
        answers = send(load, sent_shift, ws, args.check_every, args.workers, "shifted", log)
        sent_fb = 0
        for q, a in zip(sent_shift, answers, strict=True):
            if a is not None and rng.random() < args.feedback:
                load.c.post("/v1/feedback", json={"id": a["id"], "rating": 1, "correction": q["output"]})
                sent_fb += 1
        rows = [r for r in store.requests(limit=10 ** 6) if r.model == name and r.features]
        rows.reverse()
        rows_in, rows_shift = rows[:len(sent_in)], rows[len(sent_in):len(sent_in) + len(sent_shift)]
        rep = repeated(ws, champion, rows_in, rows_shift, args.repeats, ws.spec.monitor.drift.max_requests, 10)
        # retrain while clients keep asking; the server follows the alias move
        before = Counter(load.statuses)
        stop = threading.Event()

        def keep_asking():
            i = 0
            while not stop.is_set():
                load.ask(eval_in[i % len(eval_in)]["instruction"], max_tokens=8)
                i += 1
        clients = [threading.Thread(target=keep_asking) for _ in range(2)]
        for c in clients:
            c.start()
        t_retrain = time.time()
        trigger = next((f"drift alert {m['rule']} after {m['after']} shifted requests" for m in log
                        if m["phase"] == "shifted" and m["to"] == "firing"), "manual (no drift alert fired)")
        summary = lifecycle.retrain(ws, trigger, lambda w, until: run_stages(w, until=until))
        retrain_s = time.time() - t_retrain
        deadline = time.time() + 30
        target = summary["challenger"] if summary["promoted"] else f"{name}@{champion.version}"
        while time.time() < deadline and load.ask("What does `json.dumps` do?", 4) is not None:
            if load.versions.get(target):
                break
            time.sleep(0.5)
        time.sleep(2)
        stop.set()
        for c in clients:
            c.join()
        during = {str(k): v - before.get(k, 0) for k, v in load.statuses.items() if v - before.get(k, 0)}
        switch = {"statuses_during_retrain_and_switch": during, "versions_answering": dict(load.versions),
                  "retrain_s": round(retrain_s, 1)}
    challenger_dir = resolve_model(ws, summary["challenger"])[0]
    champion_dir = resolve_model(ws, f"{name}@{champion.version}")[0]
    figures = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "date": time.strftime("%Y-%m-%d"), "project": str(root),
        "requests": {"in_distribution": len(sent_in), "shifted": len(sent_shift), "corrections": sent_fb},
        "alerts": [m for m in log if m["to"] in ("firing", "resolved")],
        "false_alarms_in_live_run": sum(m["phase"] == "in-distribution" and m["to"] == "firing" for m in log),
        "repeated": rep,
        "retrain": {k: summary.get(k) for k in ("trigger", "champion", "challenger", "data", "new_data", "promoted",
                                                "why", "gate")},
        "shifted_eval_never_sent": answer_bpb(ws, challenger_dir, champion_dir, eval_shift),
        "in_distribution_eval": answer_bpb(ws, challenger_dir, champion_dir, eval_in),
        "switch": switch, "seconds": round(time.time() - t0),
    }
    text = json.dumps(figures, indent=2, default=str)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
