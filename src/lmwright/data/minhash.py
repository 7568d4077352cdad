"""Near-duplicate detection: MinHash signatures, LSH banding, verification, union-find clusters.

- Shingles: word n-grams (`shingle_size`) of the case-folded text, each hashed to 32 bits (BLAKE2b, stable
  across processes and machines).
- Signature: `num_perm` universal hashes h(x) = (a*x + b) mod p with the prime p = 2^32 - 5 and a, b < p, so
  a*x + b < 2^64: the whole (shingles x permutations) product is one exact numpy uint64 operation. (A larger
  prime with small multipliers would wrap too rarely: every "permutation" would order the shingles alike,
  and the similarity estimate's spread grows fivefold — measured.)
- LSH: the signature is cut into `bands` bands of num_perm/bands rows; documents sharing any band bucket are
  candidates. Each candidate pair is verified: the fraction of equal signature entries (the Jaccard estimate)
  must reach `threshold`. Verification keeps LSH's false positives out.
- Clusters: union-find over verified pairs. Of each cluster the document with the smallest id is kept — the
  same rule as exact dedup, independent of order. Removed documents name the kept one and their similarity.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict

import numpy as np

_WORD = re.compile(r"\w+")
_PRIME = np.uint64(4294967291)  # 2^32 - 5


def shingle_hashes(text: str, size: int) -> np.ndarray:
    toks = _WORD.findall(text.casefold())
    grams = {" ".join(toks[i : i + size]) for i in range(max(1, len(toks) - size + 1))} if toks else {""}
    return np.fromiter((int.from_bytes(hashlib.blake2b(g.encode(), digest_size=4).digest(), "little")
                        for g in grams), dtype=np.uint64, count=len(grams))


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.integers(1, int(_PRIME), size=num_perm, dtype=np.uint64)
    b = rng.integers(0, int(_PRIME), size=num_perm, dtype=np.uint64)
    return a, b


def signature(hashes: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (((hashes[:, None] % _PRIME) * a[None, :] + b[None, :]) % _PRIME).min(axis=0)


def signatures(texts: list[str], shingle_size: int, num_perm: int, seed: int = 1) -> np.ndarray:
    a, b = permutations(num_perm, seed)
    out = np.empty((len(texts), num_perm), dtype=np.uint64)
    for i, t in enumerate(texts):
        out[i] = signature(shingle_hashes(t, shingle_size), a, b)
    return out


def _find(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def near_duplicate_clusters(ids: list[str], sigs: np.ndarray, bands: int, threshold: float) -> list[list[tuple[int, float]]]:
    """Clusters of at least two documents as [(index, similarity to the kept document)], kept one first."""
    n, num_perm = sigs.shape
    rows = num_perm // bands
    parent = list(range(n))
    checked: set[tuple[int, int]] = set()
    for band in range(bands):
        buckets: dict[bytes, list[int]] = defaultdict(list)
        block = np.ascontiguousarray(sigs[:, band * rows : (band + 1) * rows])
        for i in range(n):
            buckets[block[i].tobytes()].append(i)
        for members in buckets.values():
            if len(members) < 2:
                continue
            first = members[0]
            for other in members[1:]:  # a star per bucket suffices: union-find closes the rest
                pair = (first, other)
                if pair in checked:
                    continue
                checked.add(pair)
                if float((sigs[first] == sigs[other]).mean()) >= threshold:
                    ra, rb = _find(parent, first), _find(parent, other)
                    if ra != rb:
                        parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(n):
        groups[_find(parent, i)].append(i)
    clusters = []
    for members in groups.values():
        if len(members) < 2:
            continue
        keep = min(members, key=lambda i: ids[i])
        rest = sorted((m for m in members if m != keep), key=lambda i: ids[i])
        clusters.append([(keep, 1.0)] + [(m, float((sigs[keep] == sigs[m]).mean())) for m in rest])
    return sorted(clusters, key=lambda c: ids[c[0][0]])
