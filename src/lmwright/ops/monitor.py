"""`lmwright monitor`: what the served versions did over a window, and whether what they are asked has drifted
away from what they were trained on.

Per model version, from the request log and the feedback table (what the server's Prometheus metrics count too,
kept per request so any window can be asked for afterwards):
- performance: requests, error rate (5xx; 4xx counted apart as the clients' errors), latency and time to first
  token at p50/p95/p99, requests and tokens per second, safety-flag rates, feedback rate and mean rating;
- a time series of the same per `monitor.bucket`, for plots;
- drift: the most recent prompts in the window (`monitor.drift.max_requests`) against a sample of the version's own
  training data, the reference (`reference`), with the tests of `ops/drift.py`: per feature (prompt bytes,
  unknown-byte rate, perplexity under the version, language) and on the text (a domain classifier on the word
  sketches). The server keeps these features for every request whether or not it keeps the text (privacy: with
  `serve.log_prompts: false` no prompt text is stored, and drift still works).

The report is one dict (the shape the dashboard, the HTML report and `--json` share); `ops/alerts.py` evaluates
the spec's alert rules on it.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

from lmwright.core import registry
from lmwright.core.schema import Model, RequestLog
from lmwright.core.store import Store
from lmwright.core.workspace import Workspace
from lmwright.ops import drift as tests
from lmwright.ops.registry import _inputs, _run, _stage_run

NUMERIC = ("prompt_bytes", "unknown_rate", "nats_per_byte")  # report names; the request log's keys below
_KEY = {"prompt_bytes": "bytes", "unknown_rate": "unknown_rate", "nats_per_byte": "nats_per_byte"}
REFERENCE_VERSION = 2  # bump when the reference's features are computed differently (invalidates the cache)
_LOADED: dict[Path, tuple[int, dict]] = {}  # cached references read in this process, with the file's mtime


def _q(values: list[float], q: float) -> float | None:
    return float(np.quantile(values, q)) if values else None


def _flagged(r: RequestLog, kind: str) -> bool:
    return any(k.endswith(kind) and v for k, v in (r.flags or {}).items())


# -- performance -------------------------------------------------------------------------------------------------

def performance(rows: list[RequestLog], feedback: list, seconds: float) -> dict[str, Any]:
    """The performance figures of one version's request-log rows over `seconds`; `feedback` its feedback rows.
    The feedback rate is the share of these requests with any feedback (several rows for one answer count once);
    the mean rating averages what was sent (1 to 5 stars, or -1/1 thumbs: a server should use one scale)."""
    n = len(rows)
    ids = {r.request_id for r in rows}
    feedback = [f for f in feedback if f.request_id in ids]
    ok = [r for r in rows if r.status == 200]
    e2e = [r.e2e_s for r in ok if r.e2e_s is not None]
    ttft = [r.ttft_s for r in ok if r.ttft_s is not None]
    errors = sum(r.status >= 500 for r in rows)
    ratings = [f.rating for f in feedback if f.rating is not None]
    return {
        "requests": n, "errors": errors, "error_rate": errors / n if n else None,
        "client_errors": sum(400 <= r.status < 500 for r in rows),
        **{f"latency_p{int(q * 100)}_s": _q(e2e, q) for q in (0.5, 0.95, 0.99)},
        **{f"ttft_p{int(q * 100)}_s": _q(ttft, q) for q in (0.5, 0.95, 0.99)},
        "requests_per_s": n / seconds if seconds else None,
        "tokens_per_s": sum(r.completion_tokens for r in rows) / seconds if seconds else None,
        "safety": {"pii_rate": sum(_flagged(r, "_pii") for r in rows) / n if n else None,
                   "blocklist_rate": sum(_flagged(r, "_blocklist") for r in rows) / n if n else None},
        "feedback": {"rows": len(feedback), "rate": len({f.request_id for f in feedback}) / n if n else None,
                     "mean_rating": float(np.mean(ratings)) if ratings else None,
                     "corrections": sum(bool(f.correction) for f in feedback)},
    }


# -- the reference: the version's own training data ---------------------------------------------------------------

def _upstream(store: Store, run_id: int, name: str, depth: int = 4) -> str | None:
    """The digest of the nearest input called `name` up a run's lineage (a base model's split is its evaluate
    stage's input, a fine-tuned one's its own)."""
    frontier = [run_id]
    for _ in range(depth):
        nxt = []
        for rid in frontier:
            inputs = _inputs(store, rid)
            if name in inputs:
                return inputs[name]
            for stage, digest in inputs.items():
                run = _stage_run(store, stage, digest)
                if run is not None:
                    nxt.append(run.id)
        frontier = nxt
    return None


def _opening(text: str, limit: int = 600) -> str:
    """A document's first paragraph, at most `limit` bytes: a base model's reference "prompt"."""
    para = next((p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()), "")
    return para.encode("utf-8")[:limit].decode("utf-8", "ignore")


def training_rows(ws: Workspace, m: Model) -> tuple[str, list, bool]:
    """(what they are, the rows a version was trained on, whether it is a chat model): a chat model's
    conversations (lists of messages) from its fine-tuning file, or made from its training split as the sft stage
    makes them; a base model's texts, the first paragraphs of its training split's documents."""
    from lmwright.core.artifacts import ArtifactStore
    from lmwright.data.document import read_docs
    from lmwright.data.split import split_path
    from lmwright.finetune import formats

    store = Store(ws.store_url)
    run = _run(store, m.run_id)
    chat = run.stage in ("sft", "preference")
    rows_file = (run.params or {}).get("finetune.sft", {}).get("data") if chat else None
    if rows_file:  # a spec's data paths are relative to the project directory
        rows_file = str(ws.root / rows_file)
    if rows_file and (Path(rows_file).parent / "all.jsonl").is_file():  # a retraining's: every row it knows,
        rows_file = str(Path(rows_file).parent / "all.jsonl")  # not just the sample it replayed (ops/lifecycle.py)
    if rows_file and Path(rows_file).is_file():
        return f"the conversations it was fine-tuned on ({Path(rows_file).name})", \
            formats.load(Path(rows_file), "sft").rows, True
    split = _upstream(store, m.run_id, "split")
    if split is None:
        raise LookupError(f"{m.name}@{m.version}: no training split in its lineage to take a reference from")
    docs = read_docs(split_path(ArtifactStore(ws.artifacts_dir).open(split), "train", ".parquet"))
    if chat:
        from lmwright.finetune import pydocs_tasks

        return ("the instructions it was fine-tuned on (made from its training split)",
                [formats.sft_messages(x)[1] for x in pydocs_tasks.instructions(docs)], True)
    return "first paragraphs of its training split's documents", [_opening(d["text"]) for d in docs], False


def last_user_turn(messages: list[dict]) -> str:
    return next((t["content"] for t in reversed(messages) if t["role"] == "user"), "")


def reference_texts(ws: Workspace, m: Model, n: int, seed: int) -> tuple[str, list[str], bool]:
    """(what the reference is, up to `n` of its texts, whether the version is a chat model): the user turns a chat
    model was fine-tuned on, or a base model's training paragraphs; a seeded sample."""
    kind, rows, chat = training_rows(ws, m)
    texts = [t for t in (last_user_turn(r) for r in rows) if t.strip()] if chat else [t for t in rows if t.strip()]
    random.Random(seed).shuffle(texts)
    return kind, texts[:n], chat


def reference(ws: Workspace, m: Model) -> dict[str, Any]:
    """The reference features of a version (cached per version under .lmwright/monitor/): the same features the
    server keeps per request, computed the same way, the perplexity with the version itself."""
    cfg = ws.spec.monitor.drift
    cache = ws.internal / "monitor" / f"reference-{m.digest[:16]}-{cfg.reference_rows}.json"
    if cache.is_file():
        stamp = cache.stat().st_mtime_ns
        held = _LOADED.get(cache)
        if held is not None and held[0] == stamp:  # every report asks, each round of the server's loop: parse once
            return held[1]
        try:
            ref = json.loads(cache.read_text())
        except ValueError:
            ref = {}
        if ref.get("format") == REFERENCE_VERSION:
            _LOADED[cache] = (stamp, ref)
            return ref
    from lmwright.chat_template import encode_prompt
    from lmwright.core.models import resolve_model
    from lmwright.data.features import prompt_features
    from lmwright.model.engine import Engine, SamplingParams
    from lmwright.model.hf import load_hf
    from lmwright.tokenizer import load_tokenizer

    kind, texts, chat = reference_texts(ws, m, cfg.reference_rows, ws.spec.project.seed)
    path, _, _ = resolve_model(ws, f"{m.name}@{m.version}")
    tok = load_tokenizer(path)
    engine = Engine(load_hf(path), tok, max_batch=16, score_prompts=True)
    budget = engine.max_len - 1
    ids = [(encode_prompt(tok, [{"role": "user", "content": t}]) if chat else tok.encode(t).ids)[:budget]
           for t in texts]
    reqs = engine.generate(ids, SamplingParams(max_tokens=1, temperature=0))
    key = ws.sketch_key()
    feats = [prompt_features(t, tok, key=key) for t in texts]
    for f, r in zip(feats, reqs, strict=True):
        nats = engine.score_prompt(r)
        f["nats_per_byte"] = nats / f["bytes"] if nats is not None and f["bytes"] else None
    ref = {"format": REFERENCE_VERSION, "model": f"{m.name}@{m.version}", "kind": kind, **_columns(feats)}
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(ref))
    os.replace(tmp, cache)  # whole or absent: a reader never sees half a file
    return ref


def baseline(ws: Workspace, m: Model) -> dict[str, Any]:
    """`monitor.drift.reference: first`: the version's own first `reference_rows` production prompts (their kept
    features), as Evidently users often take a reference window of production data."""
    rows = Store(ws.store_url).first_requests(m.name, m.version, ws.spec.monitor.drift.reference_rows)
    feats = [r.features for r in rows]
    return {"kind": f"its first {len(feats)} production prompts", "ids": {r.id for r in rows}, **_columns(feats)}


def _columns(feats: list[dict]) -> dict[str, Any]:
    """A reference's rows as the drift tests read them: a column per feature, and the sketches."""
    return {"rows": len(feats),
            "features": {k: [f.get(k) for f in feats] for k in ("bytes", "unknown_rate", "nats_per_byte", "language")},
            "sketches": [f["sketch"] for f in feats if f.get("sketch") is not None]}


# -- drift ---------------------------------------------------------------------------------------------------------

def _values(xs: list) -> list:
    return [x for x in xs if x is not None]


def drift(ws: Workspace, m: Model, rows: list[RequestLog], seed: int = 0) -> dict[str, Any]:
    """The drift tests of one version: its most recent prompts (with features) against its reference."""
    try:
        return _drift(ws, m, rows, seed)
    except Exception as exc:  # noqa: BLE001 - a failing test is reported for its version; the report goes on
        return {"status": "error", "why": f"{type(exc).__name__}: {exc}", "requests": len(rows), "features": [],
                "text": None, "detected": False}


def _drift(ws: Workspace, m: Model, rows: list[RequestLog], seed: int) -> dict[str, Any]:
    cfg = ws.spec.monitor.drift
    ref = baseline(ws, m) if cfg.reference == "first" else None
    taken = ref["ids"] if ref else set()
    cur = [r.features for r in rows if r.features and r.id not in taken][-cfg.max_requests:]
    out: dict[str, Any] = {"status": "insufficient", "requests": len(cur), "min_requests": cfg.min_requests,
                           "drift_share": cfg.drift_share, "features": [], "share_drifted": None, "text": None,
                           "detected": False}
    if ref is not None and ref["rows"] < cfg.reference_rows:
        return {**out, "why": f"the baseline (its first {cfg.reference_rows} prompts) has {ref['rows']} so far"}
    if len(cur) < cfg.min_requests:
        return out
    try:
        ref = ref or reference(ws, m)
    except Exception as exc:  # noqa: BLE001 - one version's reference (e.g. deleted weights) must not stop the rest
        return {**out, "status": "no reference", "why": f"{type(exc).__name__}: {exc}"}
    out["reference"] = {"kind": ref["kind"], "rows": ref["rows"]}
    for name in NUMERIC:
        a, b = _values(ref["features"][_KEY[name]]), _values([f.get(_KEY[name]) for f in cur])
        if len(a) >= 2 and len(b) >= 2:
            out["features"].append({"feature": name, **tests.numeric_test(np.array(a, float), np.array(b, float))})
    a, b = _values(ref["features"]["language"]), _values([f.get("language") for f in cur])
    if a and b:
        out["features"].append({"feature": "language", **tests.categorical_test(a, b)})
    sketches = [f["sketch"] for f in cur if f.get("sketch") is not None]
    if cfg.text and len(sketches) >= cfg.min_requests:
        from lmwright.data.sketch import sketch_matrix

        out["text"] = tests.domain_classifier(sketch_matrix(ref["sketches"]), sketch_matrix(sketches), seed)
    out.update(tests.dataset_drift(out["features"], out["text"], cfg.drift_share))
    out["status"] = "drift" if out["detected"] else "ok"
    return out


# -- the report ----------------------------------------------------------------------------------------------------

def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat(timespec="seconds")


MAX_BUCKETS = 96  # a long window gets wider buckets, not more of them


def _series(ws: Workspace, m: Model | None, rows: list[RequestLog], since: datetime, until: datetime,
            bucket: float, with_drift: bool) -> list[dict[str, Any]]:
    span = (until - since).total_seconds()
    bucket = max(bucket, span / MAX_BUCKETS)
    n = max(1, math.ceil(span / bucket))
    parts: list[list[RequestLog]] = [[] for _ in range(n)]
    for r in rows:  # one pass
        parts[min(n - 1, int((registry.as_utc(r.at) - since).total_seconds() // bucket))].append(r)
    out = []
    for i, part in enumerate(parts):
        start = since + timedelta(seconds=i * bucket)
        width = min(bucket, (until - start).total_seconds())
        ok = [r for r in part if r.status == 200]
        row = {"start": _iso(start), "requests": len(part), "errors": sum(r.status >= 500 for r in part),
               "latency_p95_s": _q([r.e2e_s for r in ok if r.e2e_s is not None], 0.95),
               "ttft_p95_s": _q([r.ttft_s for r in ok if r.ttft_s is not None], 0.95),
               "tokens_per_s": sum(r.completion_tokens for r in part) / width if width > 0 else None,
               "drift_score": None}
        if with_drift and m is not None and sum(bool(r.features) for r in part) >= ws.spec.monitor.drift.min_requests:
            text = drift(ws, m, part).get("text")
            row["drift_score"] = text["auc"] if text else None
        out.append(row)
    return out


def report(ws: Workspace, window: float | None = None, until: datetime | None = None,
           with_series: bool = True, series_drift: bool = False) -> dict[str, Any]:
    """The monitoring report over the `window` seconds up to `until` (default: `monitor.window`, now); the series
    with the text test per bucket only with `series_drift` (the HTML report's plot: a test per bucket)."""
    store = Store(ws.store_url)
    window = ws.spec.monitor.window if window is None else window
    if not window > 0:
        raise ValueError(f"the window must be above 0 seconds (got {window})")
    until = registry.as_utc(until) or datetime.now(timezone.utc)
    since = until - timedelta(seconds=window)
    rows = store.requests_between(since, until)
    by_version: dict[tuple[str, int | None], list[RequestLog]] = {}
    for r in rows:
        by_version.setdefault((r.model, r.model_version), []).append(r)
    feedback: dict[tuple[str, int | None], list] = {}
    for f, r in store.feedback_between(since, until):
        if r is not None:
            feedback.setdefault((r.model, r.model_version), []).append(f)
    alias_map: dict[tuple[str, int], list[str]] = {}
    for a in registry.aliases(store):
        alias_map.setdefault((a.name, a.version), []).append(a.alias)
    versions = []
    for (name, version), part in sorted(by_version.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0)):
        m = registry.version(store, f"{name}@{version}") if version is not None else None
        entry = {"model": name, "version": version, "label": f"{name}@{version}" if version else name,
                 "aliases": sorted(alias_map.get((name, version), [])),
                 "performance": performance(part, feedback.get((name, version), []), window)}
        if with_series:
            entry["series"] = _series(ws, m, part, since, until, ws.spec.monitor.bucket, series_drift)
        entry["drift"] = drift(ws, m, part) if m is not None else {
            "status": "no reference", "why": "not a registered version", "detected": False}
        versions.append(entry)
    return {"generated_at": _iso(datetime.now(timezone.utc)), "window_s": window, "since": _iso(since),
            "until": _iso(until), "bucket_s": max(ws.spec.monitor.bucket, window / MAX_BUCKETS), "versions": versions,
            "alerts": [alert_dict(a) for a in store.alerts() if a.state in ("pending", "firing")
                       or (a.resolved_at and registry.as_utc(a.resolved_at) >= since)]}


def alert_dict(a) -> dict[str, Any]:
    at = registry.as_utc
    return {"id": a.id, "rule": a.rule, "model": a.model, "version": a.version, "state": a.state,
            "metric": a.metric, "value": a.value, "threshold": a.threshold, "severity": a.detail.get("severity"),
            "summary": a.detail.get("summary"),
            **{k: (_iso(at(getattr(a, k))) if getattr(a, k) else None)
               for k in ("started_at", "fired_at", "resolved_at")}}
