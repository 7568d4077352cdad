"""Deduplication: exact on normalised text, then near duplicates (MinHash and LSH).

Two documents are duplicates when their texts are equal after case-folding and collapsing whitespace. Of each
group, the document with the smallest id is kept — a choice that does not depend on collection order, so adding
sources never changes which copy survives. `near_dedup` removes near duplicates
(MinHash and LSH, `minhash.py`) in the same spirit: of each cluster the smallest id is kept.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable

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


def near_dedup(docs: list[dict], near, on_lsh: Callable[[], None] = lambda: None) \
        -> tuple[list[dict], list[tuple[dict, str, str, str]], list[dict]]:
    """MinHash/LSH near-duplicate removal (`near` is the spec's `data.dedup.near`): of each cluster the first
    document is kept. Returns (kept, removed as (doc, reason, duplicate_of, similarity), clusters for the record)."""
    from lmwright.data.minhash import near_duplicate_clusters, signatures

    sigs = signatures([d["text"] for d in docs], near.shingle_size, near.num_perm, near.seed)
    on_lsh()
    clusters = near_duplicate_clusters([d["id"] for d in docs], sigs, near.bands, near.threshold)
    drop, removed, clusters_out = set(), [], []
    for cluster in clusters:
        keeper = docs[cluster[0][0]]
        clusters_out.append({"kept": {"id": keeper["id"], "locator": keeper["locator"]},
                             "removed": [{"id": docs[i]["id"], "locator": docs[i]["locator"],
                                          "similarity": round(sim, 3)} for i, sim in cluster[1:]]})
        for i, sim in cluster[1:]:
            drop.add(i)
            removed.append((docs[i], "near_duplicate", keeper["id"], f"{sim:.3f}"))
    return [d for i, d in enumerate(docs) if i not in drop], removed, clusters_out
