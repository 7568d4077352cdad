"""One evaluation, used by the evaluate and test stages, `lmwright evaluate` and `lmwright test`.

`evaluate_docs` scores documents (a split, or an external file of texts): language-modelling metrics with
bootstrap intervals, the continuation task's generation metrics, and both broken down by source, label and
length bucket. `evaluate_set` scores an external evaluation file of any task. `risk_checks` runs the risk
checks on a pretrained model (`risk_suite.py` has those of the fine-tuned ones). `flatten` names every figure (`val.bits_per_byte`,
`risk.verbatim_rate`, ...) for `requirements.acceptance`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from lmwright.errors import LmwrightError
from lmwright.evaluate.classify import (
    classification_metrics,
    classify_by_likelihood,
    confusion,
    scores_from_confusion,
)
from lmwright.evaluate.generation import continuation_task, exact_match, generation_metrics, rouge
from lmwright.evaluate.lm import doc_scores, metrics_from_scores
from lmwright.evaluate.stats import bootstrap_ci, bucket_order, groups, length_bucket

LM_FIGURES = ("loss", "perplexity", "bits_per_byte", "tokens", "bytes", "documents")  # a split's headline figures


def doc_labels(docs: list[dict], pydocs_sources: set[str]) -> list[str | None]:
    """A document's label: its `label` field, or for pydocs documents the library chapter."""
    from lmwright.data.sources.pydocs import chapter

    out = []
    for d in docs:
        if d.get("label") not in (None, ""):
            out.append(str(d["label"]))
        elif d.get("source_name") in pydocs_sources:
            out.append(chapter(d["locator"]))
        else:
            out.append(None)
    return out


def slice_keys(docs: list[dict], which: list[str], edges: list[int], pydocs_sources: set[str]) -> dict[str, list]:
    keys: dict[str, list] = {}
    if "source" in which:
        keys["source"] = [d.get("source_name") or "unknown" for d in docs]
    labels = doc_labels(docs, pydocs_sources)
    if "label" in which and any(v is not None for v in labels):
        keys["label"] = [v or "(none)" for v in labels]
    if "length" in which:
        keys["length"] = [length_bucket(len(d["text"].encode("utf-8")), edges) for d in docs]
    return keys


def _gen_ci(preds: list[str], refs: list[str], e, seed: int) -> dict[str, tuple[float, float]]:
    """Intervals for the generation metrics; the corpus-level ones (BLEU, chrF) from each resample's summed counts."""
    from lmwright.evaluate.generation import corpus_scorer

    n = len(preds)
    rl, em = rouge(preds, refs)["rougeL"], exact_match(preds, refs)
    out = {"rouge_l": bootstrap_ci(lambda i: rl[i].mean(), n, e.bootstrap, e.confidence, seed),
           "exact_match": bootstrap_ci(lambda i: em[i].mean(), n, e.bootstrap, e.confidence, seed)}
    for name in ("bleu", "chrf"):
        out[name] = bootstrap_ci(corpus_scorer(name, preds, refs), n, e.bootstrap, e.confidence, seed)
    return out


def evaluate_docs(model: torch.nn.Module, tok, docs: list[dict], seq_len: int, e, seed: int = 0,
                  pydocs_sources: set[str] = frozenset(), on_batch: Callable[[int], None] = lambda n: None,
                  separate: bool = False, per_document: bool = False) -> dict:
    """Every metric on a list of documents (dicts with text, and optionally source_name, locator, label).
    Split documents are scored joined, as they were trained; `separate` scores each on its own (files).
    `per_document` adds each document's [text nats, bytes], for paired comparisons between models."""
    if not docs:
        raise LmwrightError("nothing to evaluate: the split or file has no documents")
    texts = [d["text"] for d in docs]
    s = doc_scores(model, tok, texts, seq_len, on_batch=on_batch, separate=separate)
    out: dict = metrics_from_scores(s)
    out["documents"] = len(docs)
    if per_document:
        out["per_document"] = [[round(float(n), 5), int(b)] for n, b in zip(s["text_nats"], s["bytes"], strict=True)]
    ci = {k: bootstrap_ci(lambda i, k=k: metrics_from_scores(s, i)[k], len(docs), e.bootstrap, e.confidence, seed)
          for k in ("loss", "bits_per_byte")}
    ci["perplexity"] = tuple(math.exp(min(v, 50)) for v in ci["loss"])
    out["ci"] = ci
    gen = None
    c = e.continuation
    if c.docs:
        gen = continuation_task(model, tok, texts, c.prompt_tokens, c.new_tokens, c.docs)
        if gen["predictions"]:
            out["generation"] = gen["metrics"]
            out["ci"]["generation"] = _gen_ci(gen["predictions"], gen["references"], e, seed)
    out["slices"] = {}
    for kind, keys in slice_keys(docs, e.slices, e.length_buckets, pydocs_sources).items():
        rows = {}
        for key, idx in _ordered(groups(keys), kind, e.length_buckets):
            row = {"documents": len(idx), **{k: v for k, v in metrics_from_scores(s, idx).items()
                                            if k in ("loss", "perplexity", "bits_per_byte")}}
            if gen and gen["predictions"]:
                sel = [j for j, di in enumerate(gen["doc_index"]) if keys[di] == key]
                if sel:
                    g = generation_metrics([gen["predictions"][j] for j in sel], [gen["references"][j] for j in sel])
                    row.update({f"generation.{k}": v for k, v in g.items() if k != "n"}, examples=len(sel))
            rows[key] = row
        out["slices"][kind] = rows
    if gen:
        out["continuations"] = [{"prompt": p, "reference": r, "prediction": q} for p, r, q in
                                zip(gen["prompts"][:8], gen["references"][:8], gen["predictions"][:8], strict=True)]
    return out


# -- external evaluation files ------------------------------------------------------------------------------------

def read_rows(path: Path) -> list[tuple[int, dict]]:
    """(line or row number, record) from .jsonl, .csv or .parquet; a bad line names the file and line."""
    from lmwright.data.rows import read_records

    rows = []
    for n, rec, why in read_records(path, "evaluation"):
        if rec is None:
            raise LmwrightError(f"{path}, line {n}: {why}")
        rows.append((n, rec))
    return rows


def field_values(rows: list[tuple[int, dict]], path: Path, name: str) -> list[str]:
    out = []
    for n, rec in rows:
        v = rec.get(name)
        if v is None or (isinstance(v, str) and not v.strip()):
            have = ", ".join(sorted(rec)) or "none"
            raise LmwrightError(f"{path}, line {n}: field '{name}' is missing or empty (fields here: {have}); "
                                f"set the field name in the eval set (e.g. text_field / label_field)")
        out.append(str(v))
    return out


def evaluate_set(model: torch.nn.Module, tok, es, root: Path, seq_len: int, e, seed: int = 0,
                 out_dir: Path | None = None) -> dict:
    """Score one `eval.sets` entry (or an ad-hoc file from `lmwright evaluate --file`)."""
    path = (root / es.path) if not Path(es.path).is_absolute() else Path(es.path)
    rows = read_rows(path)
    if not rows:
        raise LmwrightError(f"{path}: the evaluation file has no rows")
    if es.task == "lm":
        texts = field_values(rows, path, es.text_field)
        docs = [{"text": t, "source_name": es.name, "locator": f"{path.name}:{n}",
                 "label": rec.get(es.label_field)} for t, (n, rec) in zip(texts, rows, strict=True)]
        # records of a file are independent: each scored on its own (as lm-evaluation-harness does)
        return {"task": "lm", **evaluate_docs(model, tok, docs, seq_len, e, seed, separate=True)}
    if es.task == "generate":
        from lmwright.model.generate import generate_text

        prompts, refs = field_values(rows, path, es.prompt_field), field_values(rows, path, es.reference_field)
        preds = [generate_text(model, tok, p, es.max_new_tokens) for p in prompts]
        return {"task": "generate", **generation_metrics(preds, refs), "ci": _gen_ci(preds, refs, e, seed),
                "examples": [{"prompt": p, "reference": r, "prediction": q}
                             for p, r, q in zip(prompts[:8], refs[:8], preds[:8], strict=True)]}
    texts, raw = field_values(rows, path, es.text_field), field_values(rows, path, es.label_field)
    labels = es.labels or sorted(set(raw))
    unknown = [(n, v) for (n, _), v in zip(rows, raw, strict=True) if v not in labels]
    if unknown:
        raise LmwrightError(f"{path}, line {unknown[0][0]}: label {unknown[0][1]!r} is not one of {labels}; "
                            "add it to the set's labels or fix the row")
    y = np.array([labels.index(v) for v in raw])
    pred, proba = classify_by_likelihood(model, tok, texts, labels, es.template)
    res = classification_metrics(y, pred, labels, proba)
    k = len(labels)

    def from_idx(i: np.ndarray, key: str) -> float:
        return scores_from_confusion(confusion(y[i], pred[i], k))[key]

    res["ci"] = {m: bootstrap_ci(lambda i, m=m: from_idx(i, m), len(y), e.bootstrap, e.confidence, seed)
                 for m in ("accuracy", "f1_macro")}
    lengths = [length_bucket(len(t.encode("utf-8")), e.length_buckets) for t in texts]
    res["slices"] = {"length": {b: {"examples": len(i), "accuracy": float((pred[i] == y[i]).mean())}
                                for b, i in _ordered(groups(lengths), "length", e.length_buckets)}}
    if out_dir is not None:
        from lmwright.evaluate.classify import confusion_png

        res["confusion_png"] = f"confusion_{es.name}.png"
        confusion_png(res["confusion"], labels, out_dir / res["confusion_png"], title=es.name)
    return {"task": "classify", **res}


def _ordered(grouped: dict, kind: str, edges) -> list:
    """Slices in reading order: length buckets shortest first (as strings '<256 B' would sort after '1024...'),
    the others by name."""
    if kind == "length":
        rank = {b: i for i, b in enumerate(bucket_order(edges))}
        return sorted(grouped.items(), key=lambda kv: rank.get(kv[0], len(rank)))
    return sorted(grouped.items())


# -- risk ----------------------------------------------------------------------------------------------------------

def risk_checks(model: torch.nn.Module, tok, risk, prompts: list[str], train_texts: list[str],
                val_texts: list[str], canaries: list[dict], seed: int, *, e, seq_len: int,
                facts: tuple[list[dict], str]) -> dict:
    """Every risk check on a pretrained model: memorisation (canaries, verbatim continuation), PII and blocklisted
    words in sampled continuations of `prompts`, and `risk_suite.base_checks` (bias, robustness, toxicity, false
    information)."""
    from lmwright.evaluate import risk as r
    from lmwright.evaluate.answers import text_answers
    from lmwright.evaluate.risk_suite import base_checks

    out: dict = {}
    if canaries:
        exp = [r.exposure(model, tok, c, risk.canaries.candidates, seed) for c in canaries]
        out["canaries"] = exp
        out["canary_max_exposure"] = max(x["exposure"] for x in exp)
    v = risk.verbatim
    if v.docs:
        out["verbatim"] = {"train": r.verbatim_rate(model, tok, train_texts, v.prompt_tokens, v.new_tokens, v.docs),
                           "val": r.verbatim_rate(model, tok, val_texts, v.prompt_tokens, v.new_tokens, v.docs)}
        out["verbatim_rate"] = out["verbatim"]["train"]["rate"]
        out["verbatim_rate_val"] = out["verbatim"]["val"]["rate"]
    if risk.samples and prompts:  # sampled together through the decoding engine, each with its own seed
        answers = text_answers(model, tok, [prompts[i % len(prompts)] for i in range(risk.samples)],
                               min(48, model.cfg.max_seq_len // 4), risk.sample_temperature, seed)
        texts = [a.text for a in answers if a is not None]
        if texts:
            out["safety"] = r.generation_safety(texts, confidence=e.confidence)
            out["pii_rate"], out["blocklist_rate"] = out["safety"]["pii_rate"], out["safety"]["blocklist_rate"]
            out["ci"] = {k: out["safety"]["ci"][k] for k in ("pii_rate", "blocklist_rate")}
    more = base_checks(model, tok, risk, e, val_texts, seq_len, facts, seed)
    ci = {**out.get("ci", {}), **more.pop("ci", {})}
    return {**out, **more, **({"ci": ci} if ci else {})}


# -- names for requirements -------------------------------------------------------------------------------------

def flatten(results: dict, prefix: str = "") -> dict[str, float]:
    """Every numeric figure under a dotted name (`val.bits_per_byte`, `risk.pii_rate`, ...); intervals, slices
    and per-example rows are left out."""
    out: dict[str, float] = {}
    for k, v in results.items():
        if k in ("ci", "slices", "per_class", "confusion", "continuations", "examples", "canaries", "templates"):
            continue
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, name + "."))
        elif isinstance(v, bool):
            continue
        elif isinstance(v, int | float) and not (isinstance(v, float) and math.isnan(v)):
            out[name] = float(v)
    return out


def interval(results: dict, name: str) -> tuple[float, float] | None:
    """The bootstrap interval recorded for a flattened name (`test.bits_per_byte` -> results["test"]["ci"][...])."""
    parts, node = name.split("."), results
    for i in range(len(parts)):
        ci = node.get("ci") if isinstance(node, dict) else None
        for p in parts[i:]:
            ci = ci.get(p) if isinstance(ci, dict) else None
        if isinstance(ci, list | tuple) and len(ci) == 2:
            return (float(ci[0]), float(ci[1]))
        if not isinstance(node, dict) or parts[i] not in node:
            return None
        node = node[parts[i]]
    return None


def check_requirements(criteria: list[tuple[str, str, float]], results: dict) -> list[dict]:
    """Each criterion with its value, interval and verdict (pass / fail / missing)."""
    flat = flatten(results)
    ops = {"<=": lambda a, b: a <= b, "<": lambda a, b: a < b, ">=": lambda a, b: a >= b,
           ">": lambda a, b: a > b, "==": lambda a, b: a == b}
    rows = []
    for metric, op, target in criteria:
        value = flat.get(metric)
        ci = interval(results, metric)
        if value is None:
            verdict = "missing"
        else:
            verdict = "pass" if ops[op](value, target) else "fail"
        robust = None if ci is None or value is None else all(ops[op](x, target) for x in ci)
        rows.append({"criterion": f"{metric} {op} {target:g}", "metric": metric, "value": value, "ci": ci,
                     "verdict": verdict, "whole_interval_passes": robust})
    return rows
