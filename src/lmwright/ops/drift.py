"""Drift tests for production-prompt monitoring: is what is served now distributed like the reference?

Pure functions over numbers, category lists and sketch matrices (`lmwright.data.sketch`); no I/O, no state.

The defaults are Evidently's published ones (docs.evidentlyai.com/reference/data-drift-algorithm and the
stattests in its `evidently/calculations/stattests/`):

- the test is chosen by the size of the *reference*: with <= 1000 values, a statistical test at a 0.95
  confidence level (drift when p < 0.05); with more, a distance with threshold 0.1 (drift when >= 0.1), since
  with many values any tiny difference becomes "significant";
- numbers: two-sample Kolmogorov-Smirnov, or else the Wasserstein distance divided by the reference's standard
  deviation (floored at 0.001, so a constant reference does not divide by zero);
- categories: chi-square of the current counts against the reference shares, or else the Jensen-Shannon
  distance with base-2 logarithms (so it lies in [0, 1]);
- text: a domain classifier (TF-IDF with sublinear tf, a linear SGD classifier with Evidently's settings, ROC
  AUC on a held-out half). With <= 1000 reference rows drift is an AUC above the 95th percentile of a random
  classifier's AUC on the same held-out labels (1000 draws); with more, an AUC above 0.55;
- the data set drifts when at least half (0.5) of the features drift.

PSI (population stability index) is reported beside each test for dashboards; it decides nothing.

Where we differ, and why: Evidently also looks at distinct values, sending a numeric column with <= 5 of them to
the categorical tests and a two-valued column to a z-test of two proportions; here the caller picks
`numeric_test` or `categorical_test` by what the feature means, and chi-square serves two values too. The domain classifier works on hashed sketches, so Evidently's English stop-word
list cannot apply and the words behind a weight cannot be named (`top_terms` is None); it also drops Evidently's
max_df=0.5, which would remove exactly the term that marks a shift when every current prompt carries it; it
balances the classes (below) and stratifies the split so both classes are in the held-out half.

Why not Evidently itself: `pip install evidently` adds some 30 packages to the base install (a web framework,
litestar, with uvloop; statsmodels; plotly; Faker; and `iterative-telemetry`, a usage-telemetry client) for
tests that are a few lines each over scipy and scikit-learn, which lmwright already depends on.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from scipy.sparse import csr_matrix

EPS = 1e-4  # floor for shares in PSI and chi-square: an empty bin or a new category stays finite
SMALL_DATA = 1000  # reference sizes up to this use the statistical tests, above it the distances
P_VALUE = 0.05  # Evidently: 0.95 confidence level
DISTANCE_THRESHOLD = 0.1  # Evidently: normalised Wasserstein and Jensen-Shannon
STD_FLOOR = 0.001  # Evidently's floor on the reference std in the normalised Wasserstein distance
BINS = 10
TEXT_AUC_THRESHOLD = 0.55  # Evidently's abs_text_content_drift default, for > SMALL_DATA reference rows
RANDOM_AUC_PERCENTILE = 95.0
RANDOM_AUC_DRAWS = 1000
TEST_SHARE = 0.5  # Evidently holds out half of the rows to score the domain classifier
MAX_RATIO = 3  # the larger class is subsampled to at most this many times the smaller
MAX_ROWS = 5000  # and each class to at most this many rows: a check stays well under seconds
DRIFT_SHARE = 0.5


def _finite(values: Iterable[float], name: str) -> np.ndarray:
    """The finite values as float64 (NaN and inf dropped, as Evidently does); at least two of them."""
    arr = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=np.float64).ravel()
    arr = arr[np.isfinite(arr)]
    if arr.size < 2:
        raise ValueError(f"{name}: a drift test needs at least 2 finite values, got {arr.size}")
    return arr


def _categories(values: Iterable[Hashable], name: str) -> list[Hashable]:
    """The values with None and NaN dropped (missing is not a category); at least two of them."""
    out = [v for v in values if v is not None and not (isinstance(v, float) and np.isnan(v))]
    if len(out) < 2:
        raise ValueError(f"{name}: a drift test needs at least 2 non-missing values, got {len(out)}")
    return out


def _psi_shares(ref: np.ndarray, cur: np.ndarray, eps: float = EPS) -> float:
    r, c = np.maximum(ref, eps), np.maximum(cur, eps)
    return float(np.sum((c - r) * np.log(c / r)))


def _shares(values: np.ndarray, inner_edges: np.ndarray) -> np.ndarray:
    """Shares of `values` in the bins (-inf, e1], (e1, e2], ..., (ek, inf): right-closed, so a pile of ties at
    the low end (zero URLs, zero code blocks) stays in its own bin rather than spilling into the next."""
    idx = np.searchsorted(inner_edges, values, side="left")
    return np.bincount(idx, minlength=inner_edges.size + 1) / values.size


def psi(reference: Sequence[float] | np.ndarray, current: Sequence[float] | np.ndarray, bins: int = BINS) -> float:
    """Population Stability Index of numbers: sum over bins of (cur - ref) * ln(cur / ref).

    Bins are the reference's quantiles (deduplicated) with the outer edges open, so every current value lands
    in a bin; shares are floored at EPS so an empty bin does not give inf. A reference with at most `bins`
    distinct values is compared value by value (as `psi_categorical`), where quantiles would merge them.
    """
    ref, cur = _finite(reference, "reference"), _finite(current, "current")
    if np.unique(ref).size <= bins:
        return psi_categorical(ref.tolist(), cur.tolist())
    inner = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    return _psi_shares(_shares(ref, inner), _shares(cur, inner))


def psi_categorical(reference: Sequence[Hashable], current: Sequence[Hashable]) -> float:
    """Population Stability Index over category shares (the union of both samples' categories)."""
    _, ref, cur = _category_counts(_categories(reference, "reference"), _categories(current, "current"))
    return _psi_shares(ref / ref.sum(), cur / cur.sum())


def _category_counts(ref: list[Hashable], cur: list[Hashable]) -> tuple[list[Hashable], np.ndarray, np.ndarray]:
    rc, cc = Counter(ref), Counter(cur)
    # a stable order (str first, then the type's name) so 1 and "1" do not swap between runs
    cats = sorted(rc.keys() | cc.keys(), key=lambda v: (str(v), type(v).__name__))
    return (cats, np.array([rc[k] for k in cats], dtype=np.float64),
            np.array([cc[k] for k in cats], dtype=np.float64))


def numeric_test(reference: Sequence[float] | np.ndarray, current: Sequence[float] | np.ndarray) -> dict[str, Any]:
    """Evidently's default drift test for a numeric feature.

    <= 1000 reference values: two-sample Kolmogorov-Smirnov, drift when p < 0.05. More: the Wasserstein distance
    over the reference's std (floored at 0.001), drift when >= 0.1. Returns kind, method ("ks"|"wasserstein"),
    statistic (KS D or the normalised distance), p_value (KS only, else None), score (the number held against
    the threshold), threshold, drifted, psi, wasserstein (normalised, always), edges (11 finite edges for a
    histogram: the reference's deciles, the outer two stretched to the min and max of both samples),
    reference_share and current_share (10 bins, right-closed like `psi`), n_reference, n_current.
    Raises ValueError with fewer than 2 finite values on either side.
    """
    from scipy.stats import ks_2samp, wasserstein_distance

    ref, cur = _finite(reference, "reference"), _finite(current, "current")
    wd = float(wasserstein_distance(ref, cur)) / max(float(np.std(ref)), STD_FLOOR)
    if ref.size <= SMALL_DATA:
        ks = ks_2samp(ref, cur)
        method, statistic, p_value = "ks", float(ks.statistic), float(ks.pvalue)
        score, threshold, drifted = p_value, P_VALUE, p_value < P_VALUE
    else:
        method, statistic, p_value = "wasserstein", wd, None
        score, threshold, drifted = wd, DISTANCE_THRESHOLD, wd >= DISTANCE_THRESHOLD
    edges = np.quantile(ref, np.linspace(0, 1, BINS + 1))
    edges[0], edges[-1] = min(ref.min(), cur.min()), max(ref.max(), cur.max())
    return {
        "kind": "numeric", "method": method, "statistic": statistic, "p_value": p_value, "score": score,
        "threshold": threshold, "drifted": bool(drifted), "psi": psi(ref, cur), "wasserstein": wd,
        "edges": [float(e) for e in edges],
        "reference_share": _shares(ref, edges[1:-1]).tolist(), "current_share": _shares(cur, edges[1:-1]).tolist(),
        "n_reference": int(ref.size), "n_current": int(cur.size),
    }


def categorical_test(reference: Sequence[Hashable], current: Sequence[Hashable]) -> dict[str, Any]:
    """Evidently's default drift test for a categorical feature.

    <= 1000 reference values: chi-square of the current counts against the reference shares scaled to the
    current count (over the union of categories; reference shares floored at EPS and renormalised, so a
    category new in current gives a huge but finite statistic), drift when p < 0.05. More: the Jensen-Shannon
    distance (base 2, in [0, 1]), drift when >= 0.1. Returns kind, method ("chisquare"|"jensenshannon"),
    statistic (chi-square or the distance), p_value (chi-square only, else None), score, threshold, drifted,
    psi, jensen_shannon (always), categories, reference_share, current_share, n_reference, n_current.
    Raises ValueError with fewer than 2 non-missing values on either side.
    """
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import chisquare

    ref_vals, cur_vals = _categories(reference, "reference"), _categories(current, "current")
    cats, ref_n, cur_n = _category_counts(ref_vals, cur_vals)
    ref_share, cur_share = ref_n / ref_n.sum(), cur_n / cur_n.sum()
    # rounding can leave sqrt of a tiny negative, i.e. NaN, for equal shares: that distance is 0
    js = float(np.nan_to_num(jensenshannon(ref_share, cur_share, base=2), nan=0.0))
    if len(ref_vals) <= SMALL_DATA:
        if len(cats) == 1:  # one category on both sides: no degrees of freedom, nothing can have moved
            statistic, p_value = 0.0, 1.0
        else:
            expected = np.maximum(ref_share, EPS)
            # scipy insists both sides have the same total, so the floored shares are renormalised
            res = chisquare(cur_n, expected / expected.sum() * cur_n.sum())
            statistic, p_value = float(res.statistic), float(res.pvalue)
        method, score, threshold, drifted = "chisquare", p_value, P_VALUE, p_value < P_VALUE
    else:
        method, statistic, p_value = "jensenshannon", js, None
        score, threshold, drifted = js, DISTANCE_THRESHOLD, js >= DISTANCE_THRESHOLD
    return {
        "kind": "categorical", "method": method, "statistic": statistic, "p_value": p_value, "score": score,
        "threshold": threshold, "drifted": bool(drifted), "psi": _psi_shares(ref_share, cur_share),
        "jensen_shannon": js, "categories": [c.item() if isinstance(c, np.generic) else c for c in cats],  # JSON
        "reference_share": ref_share.tolist(), "current_share": cur_share.tolist(),
        "n_reference": len(ref_vals), "n_current": len(cur_vals),
    }


def random_auc_percentile(y_test: np.ndarray, rng: np.random.Generator, percentile: float = RANDOM_AUC_PERCENTILE,
                          draws: int = RANDOM_AUC_DRAWS) -> float:
    """The `percentile`th percentile of the ROC AUC a classifier scoring at random reaches on these labels.

    Evidently's small-data threshold: uniform random scores, `draws` times. The AUC comes from ranks (the
    Mann-Whitney U over n1 * n0) for all draws at once instead of one roc_auc_score call per draw.
    """
    y = np.asarray(y_test).astype(bool)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        raise ValueError("the held-out labels need both classes for an AUC")
    ranks = np.argsort(np.argsort(rng.random((draws, y.size)), axis=1), axis=1) + 1  # continuous: no ties
    aucs = (ranks[:, y].sum(axis=1) - n1 * (n1 + 1) / 2) / (n1 * n0)
    return float(np.percentile(aucs, percentile))


def _subsample(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    return np.arange(n) if k >= n else np.sort(rng.choice(n, size=k, replace=False))


def _distinct_rows(m: csr_matrix) -> csr_matrix:
    m = m.copy()
    m.sum_duplicates()
    seen: dict[bytes, int] = {}
    for i in range(m.shape[0]):
        a, b = m.indptr[i], m.indptr[i + 1]
        seen.setdefault(m.indices[a:b].tobytes() + m.data[a:b].tobytes(), i)
    return m[sorted(seen.values())]


def domain_classifier(reference: csr_matrix, current: csr_matrix, seed: int = 0, *, max_ratio: int = MAX_RATIO,
                      max_rows: int = MAX_ROWS) -> dict[str, Any]:
    """Evidently's text drift test: can a classifier tell current rows (1) from reference rows (0)?

    Rows are count vectors (`lmwright.data.sketch.sketch_matrix`). The larger class is subsampled to at most
    `max_ratio` times the smaller and each to at most `max_rows`, so the classifier is not all one class and a
    check stays fast; AUC does not depend on the class ratio, so this moves the AUC's noise, not its centre.
    A stratified half (TEST_SHARE) is held out. TF-IDF (sublinear tf, l2 norm) is fitted on the training half;
    an SGD linear classifier with Evidently's settings (modified Huber loss, L1, alpha 1e-4, 50 epochs) scores
    the held-out half, ranked by its decision function (its clipped probabilities would tie at 0 and 1).

    Threshold: with <= 1000 reference rows (before subsampling, as Evidently counts), the 95th percentile of a
    random classifier's AUC on the same held-out labels (`random_auc_percentile`); with more, 0.55. Drift when
    the AUC is above it. Deterministic for a seed. Returns method, auc, threshold, threshold_kind
    ("random_p95"|"fixed"), drifted, reference_rows and current_rows (given), reference_used and current_used
    (after subsampling), test_share, top_terms (None: hashed buckets have no words).
    """
    from scipy.sparse import csr_matrix, vstack
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.feature_extraction.text import TfidfTransformer
    from sklearn.linear_model import SGDClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    ref, cur = csr_matrix(reference), csr_matrix(current)
    if ref.shape[1] != cur.shape[1]:
        raise ValueError(f"reference has {ref.shape[1]} columns, current {cur.shape[1]}: not the same sketch")
    given_ref, given_cur = ref.shape[0], cur.shape[0]
    # each distinct text once per side: a prompt sent many times (a popular question) would otherwise land in
    # both halves and the classifier would "detect" it by memory, not by a shift (an AUC near 1 on same-source text)
    ref, cur = _distinct_rows(ref), _distinct_rows(cur)
    n_ref, n_cur = ref.shape[0], cur.shape[0]
    if min(n_ref, n_cur) < 2:
        raise ValueError(f"the domain classifier needs at least 2 rows on each side, got {n_ref} reference "
                         f"and {n_cur} current")
    rng = np.random.default_rng(seed)
    k_ref = min(n_ref, max_ratio * n_cur, max_rows)
    k_cur = min(n_cur, max_ratio * n_ref, max_rows)
    x = vstack([ref[_subsample(n_ref, k_ref, rng)], cur[_subsample(n_cur, k_cur, rng)]], format="csr")
    y = np.r_[np.zeros(k_ref, dtype=np.int64), np.ones(k_cur, dtype=np.int64)]
    train, test = train_test_split(np.arange(y.size), test_size=TEST_SHARE, stratify=y, random_state=seed)

    tfidf = TfidfTransformer(sublinear_tf=True)
    x_train = tfidf.fit_transform(x[train])
    clf = SGDClassifier(loss="modified_huber", penalty="l1", alpha=1e-4, max_iter=50, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # 50 epochs is Evidently's budget; not converging is fine
        clf.fit(x_train, y[train])
    auc = float(roc_auc_score(y[test], clf.decision_function(tfidf.transform(x[test]))))

    if given_ref > SMALL_DATA:
        threshold, kind = TEXT_AUC_THRESHOLD, "fixed"
    else:
        threshold, kind = random_auc_percentile(y[test], rng), "random_p95"
    return {
        "method": "domain_classifier", "auc": auc, "threshold": threshold, "threshold_kind": kind,
        "drifted": bool(auc > threshold), "reference_rows": int(given_ref), "current_rows": int(given_cur),
        "reference_distinct": int(n_ref), "current_distinct": int(n_cur),
        "reference_used": int(k_ref), "current_used": int(k_cur), "test_share": TEST_SHARE, "top_terms": None,
    }


def dataset_drift(features: list[dict[str, Any]], text: dict[str, Any] | None = None,
                  drift_share: float = DRIFT_SHARE) -> dict[str, Any]:
    """Whether the data set as a whole drifted: the text test drifted, or at least `drift_share` of the
    feature tests did (Evidently's rule, share >= 0.5; Evidently counts a text column as one more column, here
    text drift decides alone, since the prompt text is what the model reads). Returns share_drifted, drift_share,
    detected, n_drifted, n_features, text_drifted (None without a text test). No key is named like a caller's list
    of per-feature results ("features"), so the dict can be merged into a report."""
    n = len(features)
    drifted = sum(bool(f["drifted"]) for f in features)
    share = drifted / n if n else 0.0
    text_drifted = None if text is None else bool(text["drifted"])
    return {
        "share_drifted": share, "drift_share": drift_share,
        "detected": bool(text_drifted) or (n > 0 and share >= drift_share),
        "n_drifted": drifted, "n_features": n, "text_drifted": text_drifted,
    }
