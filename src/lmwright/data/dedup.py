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
    keeper: dict[str, dict] = {}
    for d in docs:
        k = dedup_key(d["text"])
        if k not in keeper or d["id"] < keeper[k]["id"]:
            keeper[k] = d
    kept_ids = {d["id"] for d in keeper.values()}
    kept = [d for d in docs if d["id"] in kept_ids]
    removed = [(d, keeper[dedup_key(d["text"])]["id"]) for d in docs if d["id"] not in kept_ids]
    return kept, removed
