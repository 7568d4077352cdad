"""Agreement measures: parity with scikit-learn, statsmodels and the krippendorff package on random data and on
published examples, missing data, the undefined cases (None, never NaN), and `report` on small realistic tasks."""

from __future__ import annotations

import json
import math
import warnings

import krippendorff
import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import aggregate_raters
from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss

from lmwright.annotate.agreement import (
    LEVELS,
    NO_OVERLAP,
    UNDEFINED,
    category_counts,
    cohen_kappa,
    disagreements,
    fleiss_kappa,
    fleiss_kappa_counts,
    krippendorff_alpha,
    report,
)
from lmwright.annotate.tasks import AnnotationError, Task

SEEDS = range(6)


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


# --- Cohen's kappa --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
def test_cohen_matches_sklearn_on_random_data(seed):
    rng = np.random.default_rng(seed)
    k, n = int(rng.integers(2, 6)), int(rng.integers(10, 200))
    a = rng.integers(0, k, n)
    b = np.where(rng.random(n) < rng.random(), a, rng.integers(0, k, n))  # some agreement beyond chance
    labels = np.array(["neg", "pos", "neu", "spam", "other"])
    assert cohen_kappa(list(labels[a]), list(labels[b])) == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)


def test_cohen_hand_worked():
    # 10 items: agree on 7 (4 yes, 3 no); rater A says yes 6 times, B 5 times
    a = ["y"] * 4 + ["n"] * 3 + ["y", "y", "n"]
    b = ["y"] * 4 + ["n"] * 3 + ["n", "n", "y"]
    p_o, p_e = 0.7, 0.6 * 0.5 + 0.4 * 0.5
    assert cohen_kappa(a, b) == pytest.approx((p_o - p_e) / (1 - p_e))
    assert cohen_kappa(a, a) == 1.0
    assert cohen_kappa(["a", "a"], ["b", "b"]) == pytest.approx(_quiet(cohen_kappa_score, ["a", "a"], ["b", "b"]))


def test_cohen_missing_pairs_are_left_out_and_any_hashable_category_works():
    a = [("x",), ("x", "y"), None, (), ("y",), float("nan")]
    b = [("x",), ("x",), ("y",), (), ("y",), ("x",)]
    keep = [0, 1, 3, 4]
    ref = cohen_kappa_score([str(a[i]) for i in keep], [str(b[i]) for i in keep])
    assert cohen_kappa(a, b) == pytest.approx(ref)


def test_cohen_undefined_cases_are_none():
    assert math.isnan(_quiet(cohen_kappa_score, ["a", "a"], ["a", "a"]))  # the reference gives NaN
    assert cohen_kappa(["a", "a", "a"], ["a", "a", "a"]) is None  # one category: chance agreement is 1
    assert cohen_kappa([], []) is None
    assert cohen_kappa([None, "a"], ["b", None]) is None  # no item both answered
    with pytest.raises(AnnotationError, match="differ in length"):
        cohen_kappa(["a"], ["a", "b"])


# --- Fleiss' kappa --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
def test_fleiss_matches_statsmodels_on_random_data(seed):
    rng = np.random.default_rng(seed)
    items, raters, k = int(rng.integers(5, 80)), int(rng.integers(2, 8)), int(rng.integers(2, 6))
    truth = rng.integers(0, k, items)[:, None]
    data = np.where(rng.random((items, raters)) < 0.5, truth, rng.integers(0, k, (items, raters)))
    table, _ = aggregate_raters(data)
    ref = sm_fleiss(table)
    assert fleiss_kappa(data.tolist()) == pytest.approx(ref, abs=1e-12)
    assert fleiss_kappa_counts(table) == pytest.approx(ref, abs=1e-12)
    counts, cats = category_counts(data.tolist())
    assert counts.shape == (items, len(cats)) and (counts.sum(1) == raters).all()


def test_fleiss_published_example():
    # Fleiss' kappa's standard worked example: 10 items, 14 raters, 5 categories, kappa 0.210
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
             [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    assert fleiss_kappa_counts(table) == pytest.approx(sm_fleiss(np.array(table)), abs=1e-12)
    assert round(fleiss_kappa_counts(table), 3) == 0.210


def test_fleiss_unequal_answer_counts_hand_worked():
    # P_i: 1, 0, 1 -> observed 2/3; shares per item: a (1, 1/2, 0), b (0, 1/2, 1) -> p = 1/2, 1/2 -> chance 1/2
    rows = [["a", "a"], ["a", "b"], ["b", "b", "b"]]
    assert fleiss_kappa(rows) == pytest.approx((2 / 3 - 1 / 2) / (1 - 1 / 2))
    # an item with one answer has no pair: it changes nothing; missing answers are skipped
    assert fleiss_kappa(rows + [["a"], [None, "b"]]) == pytest.approx(fleiss_kappa(rows))
    assert fleiss_kappa([["a", None, "a"], ["a", "b", float("nan")], ["b", "b", "b"]]) == pytest.approx(1 / 3)


def test_fleiss_undefined_and_bad_input():
    assert math.isnan(_quiet(sm_fleiss, np.array([[3, 0], [3, 0]])))  # the reference gives NaN
    assert fleiss_kappa([["a", "a", "a"], ["a", "a"]]) is None
    assert fleiss_kappa([["a"], ["b"], []]) is None
    assert fleiss_kappa([]) is None
    with pytest.raises(AnnotationError, match="non-negative"):
        fleiss_kappa_counts([[1, -1]])


# --- Krippendorff's alpha -------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("level", LEVELS)
def test_alpha_matches_krippendorff_with_missing_data(seed, level):
    rng = np.random.default_rng(seed)
    raters, items = int(rng.integers(2, 7)), int(rng.integers(5, 60))
    truth = rng.integers(1, 6, items)
    data = np.where(rng.random((raters, items)) < 0.6, truth, rng.integers(1, 6, (raters, items))).astype(float)
    data[rng.random(data.shape) < rng.uniform(0, 0.4)] = np.nan
    ref = krippendorff.alpha(reliability_data=data, level_of_measurement=level)
    assert krippendorff_alpha(data, level) == pytest.approx(ref, abs=1e-12)


def test_alpha_on_real_valued_interval_data():
    rng = np.random.default_rng(42)
    data = rng.normal(size=(3, 40)) + rng.normal(size=40)
    data[0, :5] = np.nan
    ref = krippendorff.alpha(reliability_data=data, level_of_measurement="interval")
    assert krippendorff_alpha(data, "interval") == pytest.approx(ref, abs=1e-12)


def test_alpha_published_example():
    # Krippendorff's worked example: 4 coders, 12 units, values 1-5 with gaps
    data = [[1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
            [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
            [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
            [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None]]
    published = {"nominal": 0.743, "ordinal": 0.815, "interval": 0.849, "ratio": 0.797}
    arr = np.array(data, dtype=float)  # None -> nan
    for level, value in published.items():
        got = krippendorff_alpha(data, level)
        assert round(got, 3) == value
        assert got == pytest.approx(krippendorff.alpha(reliability_data=arr, level_of_measurement=level), abs=1e-12)


def test_alpha_nominal_takes_any_hashable_category():
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 3, (3, 30)).astype(float)
    codes[rng.random(codes.shape) < 0.2] = np.nan
    names = {0.0: ("a",), 1.0: ("a", "b"), 2.0: ()}  # multilabel categories are tuples
    data = [[None if np.isnan(v) else names[v] for v in row] for row in codes]
    ref = krippendorff.alpha(reliability_data=codes, level_of_measurement="nominal")
    assert krippendorff_alpha(data, "nominal") == pytest.approx(ref, abs=1e-12)


def test_alpha_undefined_and_bad_input():
    with pytest.raises(ValueError):  # the reference raises on a single value
        krippendorff.alpha(reliability_data=[[1, 1], [1, 1]], level_of_measurement="nominal")
    assert krippendorff_alpha([[1, 1], [1, 1]]) is None
    assert krippendorff_alpha([[1, None, 2], [None, 1, None]]) is None  # no item has two answers
    assert krippendorff_alpha([[1, 2, 1], [1, None, None]], "interval") is None  # the one pairable value is 1
    assert krippendorff_alpha([]) is None
    with pytest.raises(AnnotationError, match="not one of"):
        krippendorff_alpha([[1, 2]], "cardinal")
    with pytest.raises(AnnotationError, match="needs numbers"):
        krippendorff_alpha([["a", "b"], ["a", "a"]], "interval")
    with pytest.raises(AnnotationError, match="one entry per item"):
        krippendorff_alpha([[1, 2], [1]])


# --- report and disagreements ---------------------------------------------------------------------------------

SENTIMENT = Task("sentiment", "classification", labels=("pos", "neg", "neu"))


def _cls(**who):
    return {name: {"label": label} for name, label in who.items()}


ANSWERS = {
    "i1": _cls(ann="pos", bob="pos", cy="pos"),
    "i2": _cls(ann="neg", bob="neg", cy="pos"),
    "i3": _cls(ann="neu", bob="neu"),
    "i4": _cls(ann="pos", cy="neg"),
    "i5": _cls(bob="neg", cy="neg"),
    "i6": _cls(ann="pos"),
    "i7": {"ann": None},  # assigned, not answered
}
GOLD = {"i1": {"label": "pos"}, "i2": {"label": "neg"}, "i5": {"label": "neg"}, "i6": {"label": "neg"}, "i9": None}


def test_report_classification_with_three_annotators_and_gold():
    r = report(SENTIMENT, ANSWERS, GOLD)
    assert (r["items"], r["overlap_items"], r["answers"], r["annotators"]) == (6, 5, 13, ["ann", "bob", "cy"])
    assert r["agreement"] == pytest.approx((1 + 1 / 3 + 1 + 0 + 1) / 5)
    # by hand: observed 2/3; shares pos 11/30, neg 13/30, neu 6/30 -> chance 326/900
    assert r["kappa"] == pytest.approx((2 / 3 - 326 / 900) / (1 - 326 / 900))
    matrix = [[ANSWERS[k][w]["label"] if w in ANSWERS[k] else None for k in ("i1", "i2", "i3", "i4", "i5")]
              for w in ("ann", "bob", "cy")]
    codes = np.array([[{"pos": 0, "neg": 1, "neu": 2}.get(v, np.nan) for v in row] for row in matrix])
    ref = krippendorff.alpha(reliability_data=codes, level_of_measurement="nominal")
    assert r["alpha"] == {"nominal": pytest.approx(ref)}
    pairs = {tuple(p["annotators"]): p for p in r["pairs"]}
    assert pairs["ann", "bob"] == {"annotators": ["ann", "bob"], "n": 3, "agreement": 1.0, "kappa": 1.0}
    assert pairs["ann", "cy"]["n"] == 3 and pairs["ann", "cy"]["agreement"] == pytest.approx(1 / 3)
    assert pairs["ann", "cy"]["kappa"] == pytest.approx(cohen_kappa_score(["pos", "neg", "pos"], ["pos", "pos", "neg"]))
    assert pairs["bob", "cy"]["kappa"] == pytest.approx(cohen_kappa_score(["pos", "neg", "neg"], ["pos", "pos", "neg"]))
    ann = r["per_annotator"]["ann"]
    assert ann["items"] == 5 and ann["mean_kappa"] == pytest.approx((1.0 + pairs["ann", "cy"]["kappa"]) / 2)
    assert ann["gold"] == {"n": 3, "accuracy": pytest.approx(2 / 3)}  # i6 is wrong
    assert r["per_annotator"]["bob"]["gold"] == {"n": 3, "accuracy": 1.0}
    assert r["per_annotator"]["cy"]["gold"] == {"n": 3, "accuracy": pytest.approx(2 / 3)}
    assert r["gold"] == {"n": 9, "accuracy": pytest.approx(7 / 9)}
    assert r["notes"] == {}
    json.dumps(r, allow_nan=False)  # plain data, no NaN
    assert disagreements(SENTIMENT, ANSWERS) == ["i2", "i4"]


def test_report_without_gold_or_overlap_or_variety_says_why():
    r = report(SENTIMENT, {"i1": _cls(ann="pos"), "i2": _cls(bob="neg")})
    assert r["overlap_items"] == 0 and r["pairs"] == [] and r["kappa"] is None and r["agreement"] is None
    assert r["notes"]["kappa"] == NO_OVERLAP and r["notes"]["alpha.nominal"] == NO_OVERLAP
    assert r["per_annotator"]["ann"] == {"items": 1, "mean_kappa": None, "gold": {"n": 0, "accuracy": None}}
    same = report(SENTIMENT, {"i1": _cls(ann="pos", bob="pos"), "i2": _cls(ann="pos", bob="pos")})
    assert same["agreement"] == 1.0 and same["kappa"] is None and same["notes"]["kappa"] == UNDEFINED
    assert same["pairs"][0]["kappa"] is None
    json.dumps(same, allow_nan=False)
    empty = report(SENTIMENT, {})
    assert empty["items"] == 0 and empty["annotators"] == [] and empty["gold"] == {"n": 0, "accuracy": None}
    with pytest.raises(AnnotationError, match="item 'i1', annotator 'ann'"):
        report(SENTIMENT, {"i1": {"ann": {"choice": "a"}}})


def test_report_multilabel_gives_per_label_binary_agreement():
    task = Task("topics", "multilabel", labels=("sport", "politics", "tech", "health"))
    sets = {"i1": (["sport"], ["sport"], ["sport", "politics"]),
            "i2": (["politics", "tech"], ["politics"], ["politics", "tech"]),
            "i3": ([], [], ["tech"]),
            "i4": (["tech"], ["tech"], ["tech"]),
            "i5": (["sport", "tech"], ["sport", "tech"], ["sport"])}
    answers = {k: {w: {"labels": v} for w, v in zip(("ann", "bob", "cy"), vs, strict=True)} for k, vs in sets.items()}
    r = report(task, answers)
    per = r["labels"]["per_label"]
    for label in ("sport", "politics", "tech"):
        has = [[label in s for s in vs] for vs in sets.values()]
        assert per[label]["kappa"] == pytest.approx(fleiss_kappa(has))
        ref = krippendorff.alpha(reliability_data=np.array(has, dtype=float).T, level_of_measurement="nominal")
        assert per[label]["alpha"] == pytest.approx(ref)
    assert per["health"] == {"kappa": None, "alpha": None}  # no one used it: undefined, left out of the macro mean
    defined = [per[lab]["kappa"] for lab in ("sport", "politics", "tech")]
    assert r["labels"]["macro"]["kappa"] == pytest.approx(np.mean(defined))
    assert r["labels"]["macro"]["kappa"] > r["kappa"]  # near misses count for something per label
    ann_bob = next(p for p in r["pairs"] if p["annotators"] == ["ann", "bob"])
    ref = np.mean([cohen_kappa_score([lab in sets[k][0] for k in sets], [lab in sets[k][1] for k in sets])
                   for lab in ("sport", "politics", "tech")])
    assert ann_bob["label_kappa"] == pytest.approx(ref)
    json.dumps(r, allow_nan=False)


def test_report_spans_gives_exact_match_f1():
    task = Task("ner", "spans", labels=("PER", "LOC"))

    def spans(*triples):
        return {"spans": [{"start": s, "end": e, "label": lab} for s, e, lab in triples]}

    # "Alice met Bob in Paris": ann and bob share Alice, disagree on the rest; cy marks only Alice, as a LOC
    answers = {"d1": {"ann": spans((0, 5, "PER"), (10, 13, "PER")), "bob": spans((0, 5, "PER"), (17, 22, "LOC")),
                      "cy": spans((0, 5, "LOC"))},
               "d2": {"ann": spans(), "bob": spans()}}  # both mark nothing: agree, and add nothing to F1
    r = report(task, answers)
    pairs = {tuple(p["annotators"]): p for p in r["pairs"]}
    assert pairs["ann", "bob"]["span_f1"] == pytest.approx(2 * 1 / 4)
    assert pairs["ann", "bob"]["agreement"] == 0.5 and pairs["ann", "cy"]["span_f1"] == 0.0
    assert r["span_f1"] == pytest.approx(2 * 1 / (4 + 3 + 3))
    assert disagreements(task, answers) == ["d1"]
    none = report(task, {"d2": {"ann": spans(), "bob": spans()}})
    assert none["span_f1"] is None and "no annotator marked a span" in none["notes"]["span_f1"]


def test_report_text_gives_exact_match_only():
    task = Task("rewrite", "text")
    answers = {"t1": {"ann": {"text": "Hello  world"}, "bob": {"text": "Hello world\n"}},
               "t2": {"ann": {"text": "Yes."}, "bob": {"text": "No."}, "cy": {"text": "Yes."}}}
    r = report(task, answers, gold={"t1": {"text": "Hello world"}})
    assert r["kappa"] is None and r["alpha"] is None and "not meaningful" in r["notes"]["kappa"]
    assert r["agreement"] == pytest.approx((1 + 1 / 3) / 2)
    assert all(p["kappa"] is None for p in r["pairs"])
    assert r["per_annotator"]["bob"]["gold"] == {"n": 1, "accuracy": 1.0}
    assert disagreements(task, answers) == ["t2"]


def test_report_rating_adds_interval_and_ordinal_alpha():
    task = Task("helpfulness", "rating", low=1, high=5)
    rng = np.random.default_rng(7)
    truth = rng.integers(1, 6, 20)
    grid = np.clip(truth + rng.integers(-1, 2, (3, 20)), 1, 5).astype(float)
    grid[0, :4] = np.nan
    answers = {f"r{i}": {w: {"rating": int(grid[j, i])} for j, w in enumerate(("ann", "bob", "cy"))
                         if not np.isnan(grid[j, i])} for i in range(20)}
    r = report(task, answers)
    for level in ("nominal", "interval", "ordinal"):
        ref = krippendorff.alpha(reliability_data=grid, level_of_measurement=level)
        assert r["alpha"][level] == pytest.approx(ref)
    assert r["alpha"]["interval"] > r["alpha"]["nominal"]  # off-by-one ratings are near misses, not misses


def test_report_preference():
    task = Task("pairs", "preference")
    answers = {"p1": {"ann": {"choice": "a"}, "bob": {"choice": "a"}},
               "p2": {"ann": {"choice": "b"}, "bob": {"choice": "tie"}},
               "p3": {"ann": {"choice": "b"}, "bob": {"choice": "b"}}}
    r = report(task, answers)
    assert r["pairs"][0]["kappa"] == pytest.approx(cohen_kappa_score(["a", "b", "b"], ["a", "tie", "b"]))
    assert disagreements(task, answers) == ["p2"]
