"""Uncertainty and breakdowns: bootstrap confidence intervals, slices, and k-fold assignment.

The bootstrap resamples the unit a metric is made of (documents for bits-per-byte, examples for BLEU or
accuracy) with replacement and recomputes the metric; the interval is the percentile range of those values.
Slices group the same units by source, label or length bucket and compute every metric per group.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence

import numpy as np


def bootstrap_ci(metric: Callable[[np.ndarray], float], n: int, resamples: int = 1000, confidence: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile interval of `metric(indices)` over `resamples` resamples of n units."""
    if n == 0 or resamples == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    values = np.array([metric(rng.integers(0, n, n)) for _ in range(resamples)], dtype=float)
    alpha = (1 - confidence) / 2
    lo, hi = np.nanquantile(values, [alpha, 1 - alpha])
    return float(lo), float(hi)


def paired_difference(metric: Callable[[np.ndarray], float], n: int, resamples: int, confidence: float,
                      seed: int) -> dict:
    """`metric(indices)` is one side minus the other on those units: its value on all of them, and the percentile
    interval over resamples that draw the same units for both sides."""
    return {"difference": float(metric(np.arange(n))),
            "ci": list(bootstrap_ci(metric, n, resamples, confidence, seed))}


def bits_per_byte(nats: np.ndarray, nbytes: np.ndarray, idx: np.ndarray | slice = slice(None)) -> float:
    """Bits per byte of the units `idx`, from each unit's summed negative log-likelihood (nats) and its bytes."""
    return float(nats[idx].sum() / (math.log(2) * max(nbytes[idx].sum(), 1)))


def length_bucket(nbytes: int, edges: Sequence[int]) -> str:
    """'<256 B', '256-1023 B', ..., '>=4096 B' for edges [256, 1024, 4096]."""
    lo = 0
    for e in edges:
        if nbytes < e:
            return f"<{e} B" if lo == 0 else f"{lo}-{e - 1} B"
        lo = e
    return f">={lo} B"


def bucket_order(edges: Sequence[int]) -> list[str]:
    return [length_bucket(e - 1, edges) for e in edges] + [length_bucket(edges[-1], edges)] if edges else ["all"]


def groups(keys: Sequence[str]) -> dict[str, np.ndarray]:
    """Indices of each distinct key, keys in first-seen order."""
    out: dict[str, list[int]] = defaultdict(list)
    for i, k in enumerate(keys):
        out[k].append(i)
    return {k: np.asarray(v) for k, v in out.items()}


def kfold_assign(ids: Sequence[str], k: int, seed: int = 0, labels: Sequence[str] | None = None) -> np.ndarray:
    """A fold in [0, k) for each item. With labels, stratified: each label's items are shuffled and dealt round
    robin, so every fold holds each label in proportion (within one item); the deal continues across labels so
    fold sizes differ by at most one."""
    if k < 2:
        raise ValueError("k-fold needs k >= 2")
    n = len(ids)
    rng = np.random.default_rng(seed)
    folds = np.empty(n, dtype=int)
    strata = groups(labels) if labels is not None else {"": np.arange(n)}
    offset = 0
    for key in sorted(strata):
        idx = strata[key][rng.permutation(len(strata[key]))]
        folds[idx] = (offset + np.arange(len(idx))) % k
        offset += len(idx)
    return folds
