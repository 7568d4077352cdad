"""Model-assisted labelling for a task in the store: a model's suggestion (label and score) on every open item, and
the queue ordered by its uncertainty (annotate/active.py). The model is the quick one, refitted on the task's final
and gold labels so far, or the project's fine-tuned classifier (`lmwright annotate suggest --model NAME@ALIAS`).

The web tool refreshes a task whose `order` is an uncertainty measure each time `REFIT_EVERY` more labels have
settled, so the queue follows what annotators have taught the quick model."""

from __future__ import annotations

import threading

import numpy as np

from lmwright.annotate import active
from lmwright.annotate import project as ap
from lmwright.annotate import review as ar
from lmwright.annotate.tasks import AnnotationError
from lmwright.core.store import Store

REFIT_EVERY = 10  # settled labels between two refits in the web tool
_refits: dict[tuple[str, str], int] = {}  # (store url, task) -> labels at the last refit, in this process
_lock = threading.Lock()


def _labelled(recs: list[dict], multilabel: bool) -> tuple[list[str], list]:
    """The final labels the quick model learns from: not the gold ones, so a spot check's suggestion is the model's
    guess like any other item's, not its answer."""
    texts, labels = [], []
    for r in recs:
        if r["final"] and r["gold"] is None:
            v = r["final"]["value"]
            texts.append(r["data"]["text"])
            labels.append(v["labels"] if multilabel else v["label"])
    return texts, labels


def refresh(store: Store, name: str, classifier: active.Predictor | None = None, seed: int = 0) -> dict:
    """Store suggestions and priorities on the task's open items; returns what was done, and why not when too few
    labels are in for the quick model (the queue then keeps its order)."""
    task, cfg = ap.task(store, name), ap.config(store, name)
    if task.kind not in ("classification", "multilabel"):
        raise AnnotationError(f"task '{name}': suggestions are for classification and multilabel tasks, not "
                              f"{task.kind}")
    multi = task.kind == "multilabel"
    recs = ar.records(store, name)
    texts, labels = _labelled(recs, multi)
    open_ = [r for r in recs if not r["final"] or r["gold"] is not None]  # gold items look like open ones
    if not open_:
        return {"suggested": 0, "labelled": len(labels), "headline": "no open items to suggest for"}
    pool = [r["data"]["text"] for r in open_]
    if classifier is None:
        why = active.too_few(labels, multi)
        if why:
            return {"suggested": 0, "labelled": len(labels), "headline": f"no suggestions yet: {why}"}
        classifier = active.QuickModel(multilabel=multi, seed=seed).fit(texts, labels)
    preds = active.suggest(pool, classifier, task)
    method = cfg.get("order") if cfg.get("order") in active.METHODS else "margin"  # the best on the benchmark
    probs = np.array([[p["probs"].get(c, 0.0) for c in task.labels] for p in preds])
    u = active.uncertainty(probs, method, multi)
    ar.set_predictions(store, name, {r["key"]: ([p], float(s)) for r, p, s in zip(open_, preds, u, strict=True)})
    with _lock:
        _refits[(str(store.engine.url), name)] = len(labels)
    return {"suggested": len(preds), "labelled": len(labels), "model": preds[0]["model"], "order": method,
            "mean_score": round(float(np.mean([p["score"] for p in preds])), 4),
            "headline": f"{len(preds)} open items suggested by {preds[0]['model']} (fitted on {len(labels)} labels), "
                        f"queue ordered by {method} (mean confidence "
                        f"{np.mean([p['score'] for p in preds]):.2f})"}


def maybe_refresh(store: Store, name: str) -> dict | None:
    """In the web tool: refit and reorder when the task asks for suggestions or an uncertainty order and
    `REFIT_EVERY` more labels have settled since the last refit in this process; else nothing (None)."""
    cfg = ap.config(store, name)
    task = ap.task(store, name)
    if task.kind not in ("classification", "multilabel") or not (
            cfg.get("suggest", True) or cfg.get("order") in active.METHODS):
        return None
    n = ar.progress(store, name, review=False)["final"]  # in SQL: this runs on every request for an item
    key = (str(store.engine.url), name)
    with _lock:
        last = _refits.get(key)
        if last is not None and n - last < REFIT_EVERY:
            return None
        _refits[key] = n  # claimed: another request does not refit the same labels meanwhile
    return refresh(store, name)
