"""Exact deduplication on normalised text.

Two documents are duplicates when their texts are equal after case-folding and collapsing whitespace. Of each
group, the document with the smallest id is kept — a choice that does not depend on collection order, so adding
sources never changes which copy survives. Near-duplicate detection (MinHash) comes with the data layer.
"""

from __future__ import annotations

import hashlib
import re

_WS = re.compile(r"\s+")


def dedup_key(text: str) -> str:
    return hashlib.sha256(_WS.sub(" ", text.casefold()).strip().encode()).hexdigest()


def exact_dedup(docs: list[dict]) -> tuple[list[dict], list[tuple[dict, str]]]:
    """Returns (kept in input order, [(removed doc, id of the kept copy)])."""
    keys = [dedup_key(d["text"]) for d in docs]
    keeper: dict[str, dict] = {}
    for d, k in zip(docs, keys, strict=True):
        if k not in keeper or d["id"] < keeper[k]["id"]:
            keeper[k] = d
    kept, removed = [], []
    for d, k in zip(docs, keys, strict=True):
        if keeper[k] is d:
            kept.append(d)
        else:
            removed.append((d, keeper[k]["id"]))
    return kept, removed
