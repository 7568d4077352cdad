"""Train/val/test split by a stable hash of the document id, and the guard that keeps the test split unread.

A document's split depends only on its id and the salt, never on the rest of the corpus, so it never changes
split when the corpus grows — val and test stay clean of documents trained on before.

Every reader of a split (the training loop, early stopping, tuning, cross-validation, `lmwright evaluate`)
opens it through `split_path`, which refuses the test split unless the caller is the final evaluation (inside
`final_test()`: the `test` stage of the pipeline or `lmwright test MODEL`, see evaluate/testset.py). That makes
"tuning never reads the test split" a property of the code, not a convention.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from lmwright.errors import LmwrightError

SPLITS = ("train", "val", "test")


def assign_split(doc_id: str, val: float, test: float, salt: str) -> str:
    h = hashlib.sha256(f"{salt}\x00{doc_id}".encode()).digest()
    u = int.from_bytes(h[:8], "big") / 2**64
    if u < test:
        return "test"
    if u < test + val:
        return "val"
    return "train"


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
