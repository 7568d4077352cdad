"""Drift statistics (lmwright.ops.drift) and the request-text sketch (lmwright.data.sketch)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2, chisquare, ks_2samp, wasserstein_distance

from lmwright.data.sketch import N_FEATURES, sketch, sketch_matrix
from lmwright.ops import drift

# --- PSI ---------------------------------------------------------------------------------------------------


def test_psi_hand_worked():
    # bins=2: the one inner edge is the reference median 2.5, bins (-inf, 2.5] and (2.5, inf).
    # reference [1, 2, 3, 4] -> shares [0.5, 0.5]; current [1, 1, 1, 4] -> [0.75, 0.25]
    # PSI = (0.75 - 0.5) ln(0.75/0.5) + (0.25 - 0.5) ln(0.25/0.5) = 0.25 ln 1.5 + 0.25 ln 2 = 0.25 ln 3 = 0.27465
    assert drift.psi([1, 2, 3, 4], [1, 1, 1, 4], bins=2) == pytest.approx(0.25 * math.log(3))


def test_psi_empty_bin_is_floored_not_infinite():
    # current all in the low bin: shares [1, 0] -> [1, 1e-4] after the floor
    # PSI = (1 - 0.5) ln(1/0.5) + (1e-4 - 0.5) ln(1e-4/0.5) = 0.34657 + 4.25775 = 4.60432
    expected = 0.5 * math.log(2) + (1e-4 - 0.5) * math.log(1e-4 / 0.5)
    assert drift.psi([1, 2, 3, 4], [1, 1, 2, 2], bins=2) == pytest.approx(expected)


def test_psi_same_sample_is_zero_and_shift_is_large():
    x = np.random.default_rng(0).normal(size=500)
    assert drift.psi(x, x) == pytest.approx(0.0)
    assert drift.psi(x, x + 1.0) > 0.25  # the usual "significant shift" line


def test_psi_categorical_hand_worked():
    # shares: reference a 0.5, b 0.5; current a 0.25, b 0.75
    # PSI = (0.25 - 0.5) ln(0.5) + (0.75 - 0.5) ln(1.5) = 0.25 ln 3
    assert drift.psi_categorical(["a", "b"], ["a", "b", "b", "b"]) == pytest.approx(0.25 * math.log(3))


def test_psi_few_distinct_values_compares_value_by_value():
    # a constant reference: quantile bins would put every current value in one bin; by value, 6 is new
    # PSI = (0 - 1) ln(1e-4 / 1) + (1 - 1e-4) ln(1 / 1e-4) = 2 (1 - 5e-5) ln 1e4, about 18.42
    assert drift.psi([5.0] * 10, [6.0] * 10) == pytest.approx((1 - 1e-4) * 2 * math.log(1e4))


# --- numbers -----------------------------------------------------------------------------------------------


def test_numeric_test_matches_scipy():
    rng = np.random.default_rng(1)
    ref, cur = rng.normal(0, 1, 200), rng.normal(0.3, 1.2, 150)
    out = drift.numeric_test(ref, cur)
    ks = ks_2samp(ref, cur)
    assert out["method"] == "ks" and out["threshold"] == 0.05
    assert out["statistic"] == pytest.approx(ks.statistic) and out["p_value"] == pytest.approx(ks.pvalue)
    assert out["wasserstein"] == pytest.approx(wasserstein_distance(ref, cur) / np.std(ref))
    assert out["drifted"] == (ks.pvalue < 0.05)


def test_numeric_test_hand_worked():
    ref, cur = [0, 1, 2, 3, 4], [1.5, 2.5, 3.5, 4.5, 5.5]  # no ties: scipy's exact KS p-value applies
    out = drift.numeric_test(ref, cur)
    # KS: at x = 1 the reference ECDF is 2/5 and the current's 0; at 2, 3, 4 it is 3/5 vs 1/5, 4/5 vs 2/5,
    # 1 vs 3/5; never more apart -> D = 0.4
    assert out["statistic"] == pytest.approx(0.4)
    # Wasserstein: every value moves by 1.5; the reference std is sqrt(2) -> 1.5/sqrt(2)
    assert out["wasserstein"] == pytest.approx(1.5 / math.sqrt(2))
    assert out["edges"][0] == 0 and out["edges"][-1] == 5.5 and len(out["edges"]) == 11
    assert len(out["reference_share"]) == len(out["current_share"]) == 10
    assert sum(out["reference_share"]) == pytest.approx(1) and sum(out["current_share"]) == pytest.approx(1)


def test_numeric_method_switches_above_1000_reference_values():
    rng = np.random.default_rng(2)
    cur = rng.normal(size=300)
    small, large = drift.numeric_test(rng.normal(size=1000), cur), drift.numeric_test(rng.normal(size=1001), cur)
    assert small["method"] == "ks" and small["p_value"] is not None
    assert large["method"] == "wasserstein" and large["p_value"] is None and large["threshold"] == 0.1
    assert large["statistic"] == large["wasserstein"] == large["score"]


def test_numeric_same_is_not_drifted_and_shift_is():
    rng = np.random.default_rng(3)
    ref = rng.normal(0, 1, 300)
    assert not drift.numeric_test(ref, rng.normal(0, 1, 300))["drifted"]
    assert drift.numeric_test(ref, rng.normal(1, 1, 300))["drifted"]
    big = rng.normal(0, 1, 3000)
    assert not drift.numeric_test(big, rng.normal(0, 1, 3000))["drifted"]
    assert drift.numeric_test(big, rng.normal(1, 1, 3000))["drifted"]


def test_numeric_degenerate_input():
    same = drift.numeric_test([3.0] * 20, [3.0] * 20)
    assert same["wasserstein"] == 0 and not same["drifted"]
    moved = drift.numeric_test([3.0] * 1500, [4.0] * 20)  # std 0: floored at 0.001, finite and drifted
    assert math.isfinite(moved["wasserstein"]) and moved["wasserstein"] == pytest.approx(1000)
    assert moved["drifted"]
    with pytest.raises(ValueError, match="at least 2"):
        drift.numeric_test([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="current"):
        drift.numeric_test([1.0, 2.0], [float("nan"), 3.0])  # NaN is dropped, leaving one value


# --- categories --------------------------------------------------------------------------------------------


def test_categorical_chisquare_hand_worked():
    # reference shares a 0.5, b 0.5; current 30 a, 10 b -> expected 20, 20
    # chi2 = (30-20)^2/20 + (10-20)^2/20 = 10 with 1 degree of freedom
    out = drift.categorical_test(["a"] * 50 + ["b"] * 50, ["a"] * 30 + ["b"] * 10)
    assert out["method"] == "chisquare" and out["statistic"] == pytest.approx(10.0)
    assert out["p_value"] == pytest.approx(chi2.sf(10.0, 1)) and out["drifted"]
    assert out["categories"] == ["a", "b"] and out["current_share"] == [0.75, 0.25]


def test_categorical_matches_scipy_and_new_category_is_finite():
    rng = np.random.default_rng(4)
    ref, cur = rng.choice(list("abcd"), 400, p=[0.4, 0.3, 0.2, 0.1]), rng.choice(list("abcd"), 200)
    out = drift.categorical_test(ref.tolist(), cur.tolist())
    rs, cs = np.array(out["reference_share"]), np.array(out["current_share"])
    counts = cs * 200
    assert out["p_value"] == pytest.approx(chisquare(counts, rs * 200).pvalue)
    assert out["jensen_shannon"] == pytest.approx(jensenshannon(rs, cs, base=2))
    new = drift.categorical_test(["a", "b"] * 20, ["a", "b", "z"] * 10)
    assert math.isfinite(new["statistic"]) and new["drifted"] and new["categories"] == ["a", "b", "z"]


def test_categorical_jensen_shannon_hand_worked_and_switch():
    # P = [0.5, 0.5], Q = [1, 0], M = [0.75, 0.25]; KL(P||M) = 0.5 log2(2/3) + 0.5 log2(2) = 0.20752,
    # KL(Q||M) = log2(4/3) = 0.41504; JS divergence = mean = 0.31128; distance = sqrt = 0.55793
    out = drift.categorical_test(["a", "b"] * 501, ["a"] * 10)
    expected = math.sqrt((0.5 * math.log2(2 / 3) + 0.5 + math.log2(4 / 3)) / 2)
    assert out["method"] == "jensenshannon" and out["p_value"] is None
    assert out["statistic"] == pytest.approx(expected) and out["drifted"]
    assert drift.categorical_test(["a", "b"] * 500, ["a"] * 10)["method"] == "chisquare"


def test_categorical_same_is_not_drifted():
    rng = np.random.default_rng(5)
    p = [0.5, 0.3, 0.2]
    for n in (300, 3000):
        out = drift.categorical_test(rng.choice(list("xyz"), n, p=p).tolist(), rng.choice(list("xyz"), n, p=p).tolist())
        assert not out["drifted"], out
    one = drift.categorical_test(["x"] * 5, ["x"] * 5)
    assert one["p_value"] == 1.0 and one["jensen_shannon"] == 0 and not one["drifted"]
    assert drift.categorical_test([None, "x", "x", float("nan")], ["x", "x"])["n_reference"] == 2


def test_results_are_json():
    rng = np.random.default_rng(10)
    json.dumps(drift.numeric_test(rng.normal(size=50), rng.normal(size=50)))
    out = drift.categorical_test(np.array([1, 2, 1, 2]), np.array([1, 1, 1, 3]))
    assert json.loads(json.dumps(out))["categories"] == [1, 2, 3]


# --- text: the domain classifier ---------------------------------------------------------------------------


def _sentences(rng: np.random.Generator, vocab: list[str], n: int) -> list[str]:
    return [" ".join(rng.choice(vocab, size=int(rng.integers(6, 14)))) for _ in range(n)]


VOCAB_A = [f"alpha{i}" for i in range(150)]
VOCAB_B = [f"beta{i}" for i in range(150)]


def _matrix(texts: list[str]):
    return sketch_matrix([sketch(t) for t in texts])


def test_domain_classifier_same_vocabulary_is_not_drifted():
    rng = np.random.default_rng(6)
    ref, cur = _matrix(_sentences(rng, VOCAB_A, 300)), _matrix(_sentences(rng, VOCAB_A, 300))
    out = drift.domain_classifier(ref, cur, seed=0)
    assert abs(out["auc"] - 0.5) < 0.1 and not out["drifted"]
    assert out["threshold_kind"] == "random_p95" and 0.5 < out["threshold"] < 0.6
    assert out == drift.domain_classifier(ref, cur, seed=0)  # deterministic for a seed


def test_domain_classifier_other_vocabulary_is_drifted():
    rng = np.random.default_rng(7)
    ref, cur = _matrix(_sentences(rng, VOCAB_A, 300)), _matrix(_sentences(rng, VOCAB_B, 300))
    out = drift.domain_classifier(ref, cur, seed=0)
    assert out["auc"] > 0.9 and out["drifted"] and out["top_terms"] is None


def test_domain_classifier_large_reference_fixed_threshold_and_balance():
    rng = np.random.default_rng(8)
    ref, cur = _matrix(_sentences(rng, VOCAB_A, 1200)), _matrix(_sentences(rng, VOCAB_A[:75] + VOCAB_B[:75], 100))
    out = drift.domain_classifier(ref, cur, seed=1)
    assert out["threshold_kind"] == "fixed" and out["threshold"] == 0.55 and out["drifted"]
    assert out["reference_rows"] == 1200 and out["reference_used"] == 300 and out["current_used"] == 100
    with pytest.raises(ValueError, match="at least 2 rows"):
        drift.domain_classifier(ref, cur[:1])


def test_random_auc_percentile_matches_the_normal_approximation():
    # the AUC of random scores is Mann-Whitney U / (n1 n0): mean 0.5, variance (n1 + n0 + 1) / (12 n1 n0)
    y = np.r_[np.zeros(150), np.ones(150)]
    p95 = drift.random_auc_percentile(y, np.random.default_rng(9))
    assert p95 == pytest.approx(0.5 + 1.645 * math.sqrt(301 / (12 * 150 * 150)), abs=0.01)


# --- the data set ------------------------------------------------------------------------------------------


def test_dataset_drift_share_and_text():
    f = [{"drifted": True}, {"drifted": False}, {"drifted": False}]
    assert not drift.dataset_drift(f, None)["detected"]
    assert drift.dataset_drift(f[:2], None) == {"share_drifted": 0.5, "drift_share": 0.5, "detected": True,
                                                "n_drifted": 1, "n_features": 2, "text_drifted": None}
    assert drift.dataset_drift(f, {"drifted": True})["detected"]
    assert not drift.dataset_drift([], {"drifted": False})["detected"]


# --- the sketch --------------------------------------------------------------------------------------------


def test_sketch_round_trips_and_keeps_no_strings():
    text = "The cat sat on the mat"
    sk = sketch(text)
    # 6 words + 5 bigrams ("the cat", "cat sat", "sat on", "on the", "the mat"); "the" counts twice
    assert sum(c for _, c in sk) == 11
    assert all(type(b) is int and type(c) is int for b, c in sk) and "cat" not in repr(sk)
    assert [b for b, _ in sk] == sorted({b for b, _ in sk})
    m = sketch_matrix([sk, sketch("")])
    assert m.shape == (2, N_FEATURES) and m.dtype == np.float64
    assert m[0].sum() == 11 and m[1].nnz == 0
    assert [[int(b), int(c)] for b, c in zip(m[0].indices, m[0].data, strict=True)] == sk
    assert sketch("THE CAT sat, on the mat!") == sk  # case and punctuation do not matter
    with pytest.raises(ValueError, match="outside"):
        sketch_matrix([[[N_FEATURES, 1]]])


def test_the_domain_classifier_is_not_fooled_by_repeated_prompts():
    """A popular prompt sent many times must not read as drift: each distinct text counts once per side, else the
    classifier would recognise the repeats across its two halves (same-source text scored an AUC of 0.96)."""
    from lmwright.data.sketch import sketch, sketch_matrix
    from lmwright.ops.drift import domain_classifier

    rng = np.random.default_rng(3)
    words = [f"w{i}" for i in range(300)]

    def text() -> str:
        return " ".join(rng.choice(words, 8))

    ref = sketch_matrix([sketch(text()) for _ in range(600)])
    cur = sketch_matrix([sketch(t) for t in [text() for _ in range(60)] * 5])  # 60 prompts, each sent 5 times
    r = domain_classifier(ref, cur, seed=0)
    assert r["current_rows"] == 300 and r["current_distinct"] == 60
    assert not r["drifted"] and r["auc"] < 0.65
