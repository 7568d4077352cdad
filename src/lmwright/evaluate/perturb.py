"""Robustness: how much a model's own metric drops when its evaluation inputs carry noise a user would type.

Three perturbations, each applied to a share `rate` of the positions it can touch (at least one), with a generator
seeded by (seed, perturbation, example), so the same input always gets the same noise:

- `typos`: in words of three or more letters, two neighbouring letters swapped or one letter dropped;
- `case`: words (two or more letters) upper-cased, lower-cased or capitalised, always changing the word;
- `whitespace`: single spaces between words replaced by two or three spaces, a tab or a newline (the words stay).

The metric is the model's own: ROUGE-L of the assistant's answers against the references, the classifier's
macro-F1, the base model's bits per byte on validation documents. The drop is clean minus perturbed for a metric
where higher is better, perturbed minus clean for bits per byte: positive means worse. Each drop has a paired
bootstrap interval (the same resampled examples scored clean and perturbed); `robustness_drop` is the largest drop
over the perturbations, its interval that of the maximum over the same resamples.

Limits: the noise is synthetic and uniform (no keyboard-neighbour typos, no OCR or speech errors); the base model's
bits per byte also rise because noisy text is less predictable in itself, so its drop is an upper bound on
fragility; with few examples (the default 32) the intervals are wide.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np

from lmwright.evaluate.stats import bootstrap_ci

PERTURBATIONS = ("typos", "case", "whitespace")
_TYPO_WORD = re.compile(r"[A-Za-z]{3,}")
_CASE_WORD = re.compile(r"[A-Za-z]{2,}")
_GAP = re.compile(r"(?<=\S) (?=\S)")


def _pick(rng: np.random.Generator, n: int, rate: float) -> list[int]:
    """Positions to change, in decreasing order (so edits do not shift those still to come)."""
    if n == 0:
        return []
    k = min(n, max(1, round(rate * n)))
    return sorted(rng.choice(n, size=k, replace=False).tolist(), reverse=True)


def _typo(word: str, rng: np.random.Generator) -> str:
    i = int(rng.integers(0, len(word) - 1))
    if rng.random() < 0.5 and word[i] != word[i + 1]:
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]  # swap two neighbours
    j = int(rng.integers(0, len(word)))
    return word[:j] + word[j + 1:]  # drop one letter


def _recase(word: str, rng: np.random.Generator) -> str:
    options = [w for w in (word.upper(), word.lower(), word.capitalize()) if w != word]
    return options[int(rng.integers(0, len(options)))]


def perturb(text: str, kind: str, rate: float, seed: int, index: int) -> str:
    """`text` with the perturbation `kind` (one of PERTURBATIONS) at a share `rate` of its positions."""
    rng = np.random.default_rng([seed, PERTURBATIONS.index(kind), index])

    def edit(piece: str) -> str:
        if kind == "whitespace":
            return ("  ", "   ", "\t", "\n")[int(rng.integers(0, 4))]
        return _typo(piece, rng) if kind == "typos" else _recase(piece, rng)

    pattern = {"typos": _TYPO_WORD, "case": _CASE_WORD, "whitespace": _GAP}[kind]
    spans = [m.span() for m in pattern.finditer(text)]
    for i in _pick(rng, len(spans), rate):
        a, b = spans[i]
        text = text[:a] + edit(text[a:b]) + text[b:]
    return text


def paired_drops(metric: Callable[[str, np.ndarray], float], n: int, kinds: Sequence[str], higher_is_better: bool,
                 resamples: int, confidence: float, seed: int) -> dict:
    """The drop of `metric(variant, example indices)` from "clean" to each perturbation, with paired bootstrap
    intervals; `drop` the largest of them."""
    sign = 1.0 if higher_is_better else -1.0
    every = np.arange(n)

    def drop(kind: str, idx: np.ndarray) -> float:
        return sign * (metric("clean", idx) - metric(kind, idx))

    out = {"clean": metric("clean", every), "perturbed": {k: metric(k, every) for k in kinds},
           "drop_by": {k: drop(k, every) for k in kinds}, "n": n}
    out["drop"] = max(out["drop_by"].values())
    out["ci"] = {"drop_by": {k: list(bootstrap_ci(lambda i, k=k: drop(k, i), n, resamples, confidence, seed))
                             for k in kinds},
                 "drop": list(bootstrap_ci(lambda i: max(drop(k, i) for k in kinds), n, resamples, confidence, seed))}
    return out
