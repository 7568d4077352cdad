"""The final evaluation: the one reader of the test split (through `final_test()`, the guard in data/split.py),
recorded in the metadata store by the model's digest. Evaluating the same model on the test split again works but
warns, because choosing between models by their test scores turns the test split into a second validation split.
"""

from __future__ import annotations

from pathlib import Path

from lmwright.data.split import final_test, split_path


def repeat_warning(previous: list, model_name: str) -> str | None:
    """The warning for a model already evaluated on the test split, or None the first time."""
    if not previous:
        return None
    first = previous[0]
    return (f"warning: model {model_name} ({first.model_digest[:12]}) was already evaluated on the test split "
            f"{len(previous)} time(s), first at {first.at:%Y-%m-%d %H:%M} UTC via {first.via}. A repeated test "
            "evaluation is recorded, but choosing between models by test scores makes the test split a second "
            "validation split: compare on validation, and test once.")


def final_evaluation(ws, model_dir: Path, model_digest: str, model_name: str, split_dir: Path, split_digest: str,
                     via: str, reporter) -> tuple[dict, str | None]:
    """Score a saved model on the test split once and record it; returns (results, repeat warning or None).
    The pipeline's test stage and `lmwright test MODEL` both come here."""
    from lmwright.core.store import Store
    from lmwright.data.document import read_docs
    from lmwright.evaluate.suite import evaluate_docs, flatten
    from lmwright.model.hf import load_hf
    from lmwright.tokenizer import load_tokenizer

    spec = ws.spec
    with final_test():
        docs = read_docs(split_path(split_dir, "test", ".parquet"))
    model, tok = load_hf(model_dir), load_tokenizer(model_dir)
    task = reporter.task("test", total=None, info=f"{len(docs):,} documents")
    res = evaluate_docs(model, tok, docs, spec.train.seq_len, spec.eval, spec.project.seed,
                        spec.data.pydocs_sources(), on_batch=lambda n: task.advance(n), per_document=True)
    per_doc = res.pop("per_document")
    store = Store(ws.store_url)
    warning = repeat_warning(store.test_evaluations(model_digest), model_name)
    store.record_test(model_digest, model_name, split_digest, via, flatten(res), per_doc)
    store.audit("test", model=model_name, model_digest=model_digest, via=via, repeated=warning is not None)
    return res, warning
