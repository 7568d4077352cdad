"""Evaluating a model of the user's choosing outside the pipeline (`lmwright evaluate MODEL`): on a project split
(val or train; the test split has its own guarded path, `testset.py`) or on an external file as an eval set.
The results are written as JSON under `lmwright-out/eval/`."""

from __future__ import annotations

import json
from pathlib import Path

from lmwright.data.document import read_docs
from lmwright.data.split import split_path
from lmwright.evaluate.suite import evaluate_docs, evaluate_set
from lmwright.spec import EvalSet, Spec


def evaluate_split(spec: Spec, model, tok, split_dir: Path, split: str) -> dict:
    """Figures on the project's `split` documents (refuses test: see data/split.py)."""
    docs = read_docs(split_path(split_dir, split, ".parquet"))
    return evaluate_docs(model, tok, docs, spec.train.seq_len, spec.eval, spec.project.seed,
                         spec.data.pydocs_sources())


def evaluate_file(spec: Spec, root: Path, model, tok, es: EvalSet, target: Path) -> dict:
    """Figures on an external .jsonl/.csv/.parquet file read as the eval set `es` (plots go to `target`)."""
    target.mkdir(parents=True, exist_ok=True)
    return evaluate_set(model, tok, es, root, spec.train.seq_len, spec.eval, spec.project.seed, target)


def write_results(target: Path, stem: str, res: dict) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    path = target / f"{stem}.json"
    path.write_text(json.dumps(res, indent=2, default=float))
    return path
