"""Train/val/test split by a stable hash of the document id.

A document's split depends only on its id and the salt, never on the rest of the corpus, so it never changes
split when the corpus grows — val and test stay clean of documents trained on before.
"""

from __future__ import annotations

import hashlib

SPLITS = ("train", "val", "test")


def assign_split(doc_id: str, val: float, test: float, salt: str) -> str:
    h = hashlib.sha256(f"{salt}\x00{doc_id}".encode()).digest()
    u = int.from_bytes(h[:8], "big") / 2**64
    if u < test:
        return "test"
    if u < test + val:
        return "val"
    return "train"
