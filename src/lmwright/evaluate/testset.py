"""Test-set discipline: the test split is read only inside `final_test()`, and every read is recorded.

Every reader of a split (the training loop, early stopping, tuning, cross-validation, `lmwright evaluate`)
opens it through `split_path`, which refuses the test split unless the caller is the final evaluation: the
`test` stage of the pipeline or `lmwright test MODEL`. That makes "tuning never reads the test split" a property
of the code, not a convention. Each final evaluation is recorded in the metadata store by the model's digest;
evaluating the same model on the test split again works but warns, because choosing between models by their
test scores turns the test split into a second validation split.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from lmwright.errors import LmwrightError

_FINAL = ContextVar("lmwright_final_test", default=False)


class SplitGuardError(LmwrightError):
    pass


@contextmanager
def final_test() -> Iterator[None]:
    """The one context in which the test split may be read."""
    token = _FINAL.set(True)
    try:
        yield
    finally:
        _FINAL.reset(token)


def split_path(directory: Path, split: str, suffix: str) -> Path:
    """`directory/{split}{suffix}`, refusing the test split outside `final_test()`."""
    if split == "test" and not _FINAL.get():
        raise SplitGuardError(
            "the test split is read only by the final evaluation (`lmwright test`, or the test stage of "
            "`lmwright run`); tuning, early stopping and `lmwright evaluate` use the validation split. "
            "Use --split val, or `lmwright test MODEL` for the final figure.")
    return Path(directory) / f"{split}{suffix}"


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
                        spec.data.pydocs_sources(), on_batch=lambda n: task.advance(n))
    store = Store(ws.store_url)
    warning = repeat_warning(store.test_evaluations(model_digest), model_name)
    store.record_test(model_digest, model_name, split_digest, via, flatten(res))
    store.audit("test", model=model_name, model_digest=model_digest, via=via, repeated=warning is not None)
    return res, warning
