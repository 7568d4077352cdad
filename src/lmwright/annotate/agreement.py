"""Agreement between annotators: Cohen's kappa (two annotators), Fleiss' kappa (any number, generalised to items
with unequal numbers of answers), Krippendorff's alpha (nominal, ordinal, interval, ratio; missing answers
allowed), and `report`, which measures one task's answers with all of them, per pair of annotators and per
annotator, against gold items where there are some. `disagreements` lists the items the review queue shows.

Written by hand in numpy: the reference implementations (statsmodels' `fleiss_kappa`, the `krippendorff`
package) are test dependencies only; the tests check these functions against them and against scikit-learn's
`cohen_kappa_score` to floating-point precision.

Conventions:
- A missing answer is None or NaN; a pair or a rating with one is left out.
- Undefined is None, never NaN. Kappa and alpha measure agreement beyond chance; when chance agreement is already
  perfect (every answer is the same category, so there is no disagreement to avoid) or no item has two answers to
  compare, they are undefined and these functions return None; `report` says why under "notes". The reference
  packages give NaN there (scikit-learn, statsmodels) or raise (krippendorff, on a single value).
- Categories are any hashable value (a label, a tuple of labels, a tuple of spans) for nominal measures, and real
  numbers for ordinal, interval and ratio alpha.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations
from numbers import Real
from typing import Any

import numpy as np

from lmwright.annotate.tasks import AnnotationError, Task, category

LEVELS = ("nominal", "ordinal", "interval", "ratio")
_EPS = 1e-12  # chance agreement within this of 1 is 1: kappa is undefined, not a huge number

UNDEFINED = "every answer compared is the same category: chance agreement is already perfect, so it is undefined"
NO_OVERLAP = "no item has answers from two annotators: there is nothing to compare"


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, (float, np.floating)) and bool(np.isnan(v)))


def _mean(xs: Sequence[float | None]) -> float | None:
    xs = [x for x in xs if x is not None]
    return float(np.mean(xs)) if xs else None


def _index(values: Sequence) -> dict:
    """Category -> column, in first-seen order."""
    return {c: i for i, c in enumerate(dict.fromkeys(values))}


def cohen_kappa(a: Sequence, b: Sequence) -> float | None:
    """Cohen's kappa of two annotators' categories on the same items (position i is item i in both).

    Items where either answer is missing are left out. None when no item is left or chance agreement is 1
    (both gave one and the same category throughout)."""
    if len(a) != len(b):
        raise AnnotationError(f"cohen_kappa: the two annotators' answers differ in length ({len(a)} and {len(b)}); "
                              "give one answer (or None) per item for each")
    pairs = [(x, y) for x, y in zip(a, b, strict=True) if not _missing(x) and not _missing(y)]
    if not pairs:
        return None
    idx = _index([x for p in pairs for x in p])
    table = np.zeros((len(idx), len(idx)))
    np.add.at(table, ([idx[x] for x, _ in pairs], [idx[y] for _, y in pairs]), 1)
    n = len(pairs)
    p_o = np.trace(table) / n
    p_e = float(table.sum(1) @ table.sum(0)) / n ** 2
    return None if 1 - p_e < _EPS else float((p_o - p_e) / (1 - p_e))


def category_counts(ratings: Sequence[Sequence]) -> tuple[np.ndarray, list]:
    """The items x categories table of counts (what statsmodels' `aggregate_raters` makes) from one row per item
    holding the categories its annotators gave, in any order and of any length; missing answers are skipped.
    Returns the table and the categories of its columns, in first-seen order."""
    rows = [[v for v in row if not _missing(v)] for row in ratings]
    idx = _index([v for row in rows for v in row])
    counts = np.zeros((len(rows), len(idx)))
    for i, row in enumerate(rows):
        for v in row:
            counts[i, idx[v]] += 1
    return counts, list(idx)


def fleiss_kappa_counts(counts: np.ndarray | Sequence[Sequence[float]]) -> float | None:
    """Fleiss' kappa from an items x categories table of counts.

    Fleiss (1971) assumes every item has the same number n of answers. Items here may have different numbers:
    items with fewer than 2 are left out; each item's agreement P_i is the share of its ordered answer pairs that
    agree, n_ij (n_ij - 1) summed over categories j, over n_i (n_i - 1); observed agreement is the mean of P_i over
    items; category j's share p_j is the mean over those items of n_ij / n_i; chance agreement is the sum of p_j
    squared. With the same n on every item this is exactly Fleiss' kappa. None when no item has
    two answers or chance agreement is 1."""
    c = np.asarray(counts, dtype=float)
    if c.ndim != 2 or (c < 0).any():
        raise AnnotationError("fleiss_kappa: counts are a table of items x categories of non-negative counts "
                              f"(got shape {c.shape})")
    m = c.sum(1)
    c, m = c[m >= 2], m[m >= 2]
    if not len(c):
        return None
    p_o = float(((c * (c - 1)).sum(1) / (m * (m - 1))).mean())
    p_e = float(((c / m[:, None]).mean(0) ** 2).sum())
    return None if 1 - p_e < _EPS else float((p_o - p_e) / (1 - p_e))


def fleiss_kappa(ratings: Sequence[Sequence]) -> float | None:
    """Fleiss' kappa from one row per item holding the categories its annotators gave (any hashable; missing
    answers None or NaN; rows may differ in length: see `fleiss_kappa_counts` for what that does)."""
    return fleiss_kappa_counts(category_counts(ratings)[0])


def _delta(level: str, values: np.ndarray, n_c: np.ndarray) -> np.ndarray:
    """The squared distance between each two values (sorted, for the ordered levels) at a measurement level."""
    if level == "nominal":
        return 1.0 - np.eye(len(n_c))
    v = values[:, None], values[None, :]
    if level == "interval":
        return (v[0] - v[1]) ** 2
    if level == "ratio":
        s = v[0] + v[1]
        return np.divide(v[0] - v[1], s, out=np.zeros((len(values), len(values))), where=s != 0) ** 2
    # ordinal: how many pairable values lie from one value to the other, half of each end counted
    cum = np.cumsum(n_c)
    i, j = np.meshgrid(np.arange(len(n_c)), np.arange(len(n_c)), indexing="ij")
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    return (cum[hi] - cum[lo] + n_c[lo] - (n_c[i] + n_c[j]) / 2) ** 2


def _alpha_units(units: Sequence[Sequence], level: str) -> float | None:
    """Krippendorff's alpha from one list of (present) values per item; items with one value are left out."""
    if level not in LEVELS:
        raise AnnotationError(f"krippendorff_alpha: level '{level}' is not one of {', '.join(LEVELS)}")
    units = [u for u in units if len(u) >= 2]
    if not units:
        return None
    flat = [v for u in units for v in u]
    if level == "nominal":
        idx = _index(flat)
        values = np.zeros(len(idx))
    else:
        bad = [v for v in flat if not isinstance(v, Real)]
        if bad:
            raise AnnotationError(f"krippendorff_alpha: {level} alpha needs numbers (got {bad[0]!r}); "
                                  "use level='nominal' for categories")
        values = np.unique(np.asarray(flat, dtype=float))
        idx = {v: i for i, v in enumerate(values.tolist())}
    if len(idx) < 2:
        return None
    counts = np.zeros((len(units), len(idx)))
    for u, row in enumerate(units):
        for v in row:
            counts[u, idx[v if level == "nominal" else float(v)]] += 1
    # the coincidence matrix: each item's ordered pairs of values, weighted 1 / (m_u - 1)
    weighted = counts / (counts.sum(1) - 1)[:, None]
    o = weighted.T @ counts - np.diag(weighted.sum(0))
    n_c = o.sum(1)
    delta = _delta(level, values, n_c)
    d_o = float((o * delta).sum())
    d_e = float((np.outer(n_c, n_c) * delta).sum()) / (n_c.sum() - 1)
    return None if d_e <= 0 else float(1.0 - d_o / d_e)


def krippendorff_alpha(data: Sequence[Sequence] | np.ndarray, level: str = "nominal") -> float | None:
    """Krippendorff's alpha of `data`, annotators x items (row r, column i: annotator r's answer on item i; None
    or NaN where they gave none), at `level`: nominal (any hashable categories), ordinal, interval or ratio
    (numbers). Items with fewer than two answers are left out. None when no item has two answers or all the
    pairable answers are one value."""
    rows = [list(r) for r in data]
    if not rows:
        return None
    if len({len(r) for r in rows}) > 1:
        raise AnnotationError("krippendorff_alpha: every annotator's row needs one entry per item "
                              f"(got rows of lengths {sorted({len(r) for r in rows})}); use None where none")
    units = [[r[i] for r in rows if not _missing(r[i])] for i in range(len(rows[0]))]
    return _alpha_units(units, level)


def _agreement(units: Sequence[Sequence]) -> float | None:
    """Observed agreement: the mean over items (with two answers or more) of the share of answer pairs that agree."""
    shares = []
    for u in units:
        pairs = list(combinations(u, 2))
        if pairs:
            shares.append(sum(x == y for x, y in pairs) / len(pairs))
    return _mean(shares)


def _span_f1(pairs: Sequence[tuple[tuple, tuple]]) -> float | None:
    """F1 of exact (start, end, label) matches, pooled over pairs of span sets: 2 matched / spans marked. None when
    no span was marked at all (nothing to match)."""
    matched = sum(len(set(x) & set(y)) for x, y in pairs)
    marked = sum(len(x) + len(y) for x, y in pairs)
    return 2 * matched / marked if marked else None


def _categories(task: Task, answers: Mapping[str, Mapping[str, dict | None]]) -> dict[str, dict[str, Any]]:
    """item key -> annotator -> category; None answers are no answer."""
    out: dict[str, dict[str, Any]] = {}
    for key, per in answers.items():
        cats = {}
        for who, value in per.items():
            if value is not None:
                cats[who] = _category(task, value, f"item '{key}', annotator '{who}'")
        if cats:
            out[key] = cats
    return out


def _category(task: Task, value: Any, where: str) -> Any:
    try:
        return category(task, value)
    except (KeyError, TypeError, AttributeError) as e:
        raise AnnotationError(f"{where}: {value!r} is not a {task.kind} answer of task '{task.name}' "
                              f"({type(e).__name__}: {e})") from None


def disagreements(task: Task, answers: Mapping[str, Mapping[str, dict | None]]) -> list[str]:
    """The items (keys, in the order given) with two answers or more whose categories are not all the same: the
    ones for review. Written texts count as the same when equal after whitespace is collapsed."""
    return [k for k, per in _categories(task, answers).items()
            if len(per) >= 2 and len(set(per.values())) > 1]


def _why(value: float | None, units: Sequence[Sequence]) -> str | None:
    if value is not None:
        return None
    return NO_OVERLAP if not any(len(u) >= 2 for u in units) else UNDEFINED


def report(task: Task, answers: Mapping[str, Mapping[str, dict | None]],
           gold: Mapping[str, dict | None] | None = None) -> dict:
    """Agreement on one task. `answers` is item key -> annotator -> answer value (as `tasks.check_value` returns
    it; None is no answer), `gold` item key -> the known answer. Answers are compared as `tasks.category`.

    Returns plain JSON-ready data:
    - "items": items with an answer; "overlap_items": those with two answers or more (all agreement is measured on
      them); "annotators": the names; "answers": how many.
    - "agreement": observed agreement, the mean over overlap items of the share of answer pairs that are equal
      (for text tasks: exact match after whitespace is collapsed).
    - "kappa": Fleiss' kappa over all annotators (see `fleiss_kappa_counts` for unequal answer counts);
      "alpha": Krippendorff's alpha, {"nominal": ...} and, for rating tasks, "interval" and "ordinal" too.
    - "pairs": for each two annotators with shared items, {"annotators": [a, b], "n": shared items, "agreement",
      "kappa": Cohen's kappa on the shared items}.
    - "per_annotator": name -> {"items": answered, "mean_kappa": the mean of their pairs' defined Cohen's kappas,
      "gold": {"n": gold items answered, "accuracy": the share whose category equals the gold's}}; "gold": the same
      over everyone's answers.
    - multilabel: agreement on the exact label set is harsh (one label of five apart is full disagreement), so
      "labels" also gives, per label, Fleiss' kappa and nominal alpha of "has the label or not", and their macro
      mean over the labels where they are defined ("macro"); each pair gets "label_kappa", the macro mean of its
      per-label binary Cohen's kappas.
    - spans: the category is the whole set of spans; "span_f1" (overall and per pair) is F1 of exact
      (start, end, label) matches between each two annotators' spans, pooled over the shared items (micro).
    - text: agreement statistics on free text are not meaningful: "kappa" and "alpha" are None (see notes) and
      "agreement" is the exact-match rate.
    Any None statistic is undefined (no overlap, or a single category throughout); "notes" says why for the
    top-level ones."""
    cats = _categories(task, answers)
    names = sorted({who for per in cats.values() for who in per})
    overlap = {k: per for k, per in cats.items() if len(per) >= 2}
    units = [list(per.values()) for per in overlap.values()]
    notes: dict[str, str] = {}
    out: dict[str, Any] = {"task": task.name, "kind": task.kind, "items": len(cats), "overlap_items": len(overlap),
                           "annotators": names, "answers": sum(len(per) for per in cats.values()),
                           "agreement": _agreement(units)}
    if out["agreement"] is None:
        notes["agreement"] = NO_OVERLAP
    text = task.kind == "text"
    if text:
        out["kappa"], out["alpha"] = None, None
        notes["kappa"] = notes["alpha"] = ("free-text answers: chance-corrected agreement is not meaningful; "
                                           "'agreement' is the exact-match rate (whitespace collapsed)")
    else:
        out["kappa"] = fleiss_kappa(units)
        levels = ("nominal", "interval", "ordinal") if task.kind == "rating" else ("nominal",)
        out["alpha"] = {lv: _alpha_units(units, lv) for lv in levels}
        for name, value in [("kappa", out["kappa"])] + [(f"alpha.{lv}", a) for lv, a in out["alpha"].items()]:
            if (why := _why(value, units)) is not None:
                notes[name] = why
    if task.kind == "multilabel":
        out["labels"] = _label_report(task, units)
    if task.kind == "spans":
        out["span_f1"] = _span_f1([p for u in units for p in combinations(u, 2)])
        if out["span_f1"] is None:
            notes["span_f1"] = NO_OVERLAP if not units else "no annotator marked a span on a shared item"
    out["pairs"] = _pairs(task, names, overlap)
    out["per_annotator"], out["gold"] = _per_annotator(task, names, cats, out["pairs"], gold or {})
    out["notes"] = notes
    return out


def _has(label: str, units: Sequence[Sequence]) -> list[list[bool]]:
    return [[label in c for c in u] for u in units]


def _label_report(task: Task, units: Sequence[Sequence]) -> dict:
    """Per label, agreement on 'has the label or not'; labels no one (or everyone, always) gave are undefined."""
    per = {lab: {"kappa": fleiss_kappa(_has(lab, units)), "alpha": _alpha_units(_has(lab, units), "nominal")}
           for lab in task.labels}
    return {"per_label": per, "macro": {"kappa": _mean([p["kappa"] for p in per.values()]),
                                        "alpha": _mean([p["alpha"] for p in per.values()])}}


def _pairs(task: Task, names: Sequence[str], overlap: Mapping[str, Mapping[str, Any]]) -> list[dict]:
    out = []
    for a, b in combinations(names, 2):
        shared = [per for per in overlap.values() if a in per and b in per]
        if not shared:
            continue
        xs, ys = [per[a] for per in shared], [per[b] for per in shared]
        pair: dict[str, Any] = {"annotators": [a, b], "n": len(shared),
                                "agreement": sum(x == y for x, y in zip(xs, ys, strict=True)) / len(shared),
                                "kappa": None if task.kind == "text" else cohen_kappa(xs, ys)}
        if task.kind == "multilabel":
            pair["label_kappa"] = _mean([cohen_kappa([lab in x for x in xs], [lab in y for y in ys])
                                         for lab in task.labels])
        if task.kind == "spans":
            pair["span_f1"] = _span_f1(list(zip(xs, ys, strict=True)))
        out.append(pair)
    return out


def _per_annotator(task: Task, names: Sequence[str], cats: Mapping[str, Mapping[str, Any]], pairs: list[dict],
                   gold: Mapping[str, dict | None]) -> tuple[dict, dict]:
    gold_cats = {k: _category(task, v, f"gold of item '{k}'") for k, v in gold.items() if v is not None}
    per: dict[str, dict] = {}
    right_all = n_all = 0
    for who in names:
        kappas = [p["kappa"] for p in pairs if who in p["annotators"]]
        checked = [cats[k][who] == g for k, g in gold_cats.items() if who in cats.get(k, {})]
        right_all, n_all = right_all + sum(checked), n_all + len(checked)
        per[who] = {"items": sum(who in c for c in cats.values()), "mean_kappa": _mean(kappas),
                    "gold": {"n": len(checked), "accuracy": sum(checked) / len(checked) if checked else None}}
    return per, {"n": n_all, "accuracy": right_all / n_all if n_all else None}
