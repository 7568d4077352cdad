"""k-fold cross-validation: `lmwright cv`.

For small datasets one validation split is a noisy judge. Cross-validation pools the train and validation
documents (never the test split), deals them into k folds (stratified by label or source, so every fold holds
each class in proportion), and trains the spec k times, each time holding one fold out and scoring it. The mean
and spread of the held-out bits-per-byte say how well the configuration does and how sure that figure is;
`lmwright cv --set train.lr=...` compares configurations the same way.

Each fold is its own training run with checkpoints in the work directory, so a killed `lmwright cv` resumes
at the fold (and the step) it reached.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from lmwright.core.progress import Reporter
from lmwright.data.document import read_docs
from lmwright.data.split import split_path
from lmwright.evaluate.stats import kfold_assign
from lmwright.spec import Spec, apply_override


def fold_spec(spec: Spec) -> Spec:
    raw = spec.model_dump(mode="json")
    for o in spec.cv.trial_overrides:
        apply_override(raw, o)
    return Spec.model_validate(raw)


def fold_labels(spec: Spec, docs: list[dict]) -> tuple[list[str] | None, str]:
    """What the folds are stratified by, and its name ("none" when there is nothing to stratify by)."""
    from lmwright.evaluate.suite import doc_labels

    if spec.cv.stratify_by == "label":
        labels = doc_labels(docs, spec.data.pydocs_sources())
        if any(v is not None for v in labels):
            return [v or "(none)" for v in labels], "label"
    if spec.cv.stratify_by == "source":
        return [d["source_name"] for d in docs], "source"
    return None, "none"


def cross_validate(spec: Spec, split_dir: Path, tokenizer, work: Path, reporter: Reporter,
                   init: Path | None = None) -> dict:
    """Each fold trained (from `init`, the resolved `train.init_from`, when given) and scored on its held-out
    documents; folds already finished in `work` are read back."""
    from lmwright.evaluate.lm import doc_scores, metrics_from_scores
    from lmwright.tokenizer import write_shards
    from lmwright.train.loop import pretrain

    docs = read_docs(split_path(split_dir, "train", ".parquet")) + read_docs(split_path(split_dir, "val", ".parquet"))
    k = spec.cv.folds
    if len(docs) < 2 * k:
        from lmwright.errors import LmwrightError

        raise LmwrightError(f"cv.folds = {k} needs at least {2 * k} train + val documents; there are {len(docs)}")
    labels, by = fold_labels(spec, docs)
    folds = kfold_assign([d["id"] for d in docs], k, spec.project.seed, labels)
    fs = fold_spec(spec)
    rows = []
    for f in range(k):
        fdir = work / f"fold{f}"
        done = fdir / "result.json"
        if done.exists():  # resumed: this fold finished before the kill
            rows.append(json.loads(done.read_text()))
            continue
        fdir.mkdir(parents=True, exist_ok=True)
        held = [d["text"] for d, g in zip(docs, folds, strict=True) if g == f]
        train = [d["text"] for d, g in zip(docs, folds, strict=True) if g != f]
        write_shards(tokenizer, {"train": train, "val": held}, fdir)
        reporter.log(f"  cv: fold {f + 1}/{k}: {len(train):,} documents to train, {len(held):,} held out")
        result = pretrain(fs, fdir, tokenizer, fdir / "work", reporter, init=init)
        m = metrics_from_scores(doc_scores(result.model, tokenizer, held, fs.train.seq_len))
        row = {"fold": f, "train_docs": len(train), "heldout_docs": len(held), "steps": result.steps,
               "bits_per_byte": m["bits_per_byte"], "loss": m["loss"]}
        if labels is not None:
            row["heldout_labels"] = dict(sorted(
                {lab: int(sum(1 for x, g in zip(labels, folds, strict=True) if g == f and x == lab))
                 for lab in set(labels)}.items()))
        done.write_text(json.dumps(row))
        rows.append(row)
    bpb = np.array([r["bits_per_byte"] for r in rows])
    return {"k": k, "stratify_by": by, "overrides": spec.cv.trial_overrides, "folds": rows,
            "mean_bits_per_byte": float(bpb.mean()), "sd_bits_per_byte": float(bpb.std(ddof=1)),
            "sem_bits_per_byte": float(bpb.std(ddof=1) / math.sqrt(k))}


def cross_validate_project(ws, split_dir: Path, split_digest: str, tokenizer_dir: Path, tokenizer_digest: str,
                           reporter: Reporter) -> dict:
    """`lmwright cv` on a project: folds resume from a work directory named by what the result depends on (the
    spec's model, training and cv settings, the split, the tokenizer and any init model); the results go to
    `lmwright-out/cv/` (the report card shows them) and the run is audited."""
    import hashlib

    from lmwright.core.models import init_model
    from lmwright.core.store import Store
    from lmwright.tokenizer import load_tokenizer

    init = init_model(ws)
    key = json.dumps([ws.spec.slice("project.seed", "model", "train", "cv"), split_digest, tokenizer_digest,
                      init[2] if init else None], sort_keys=True)
    work = ws.work_dir / f"cv-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    res = cross_validate(ws.spec, split_dir, load_tokenizer(tokenizer_dir), work, reporter,
                         init[0] if init else None)
    target = ws.out_dir / "cv"
    target.mkdir(parents=True, exist_ok=True)
    (target / "results.json").write_text(json.dumps(res, indent=2))
    Store(ws.store_url).audit("cv", k=res["k"], mean_bits_per_byte=res["mean_bits_per_byte"])
    return {**res, "path": str(target / "results.json")}
