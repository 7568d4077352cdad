"""Evaluation metrics against reference implementations (scikit-learn, sacrebleu, rouge-score) and hand-worked
values; bootstrap intervals; k-fold assignment; per-document scores against the split-level scorer."""

from __future__ import annotations

import numpy as np
import pytest
import sacrebleu
from sklearn import metrics as skm
from sklearn.model_selection import StratifiedKFold  # noqa: F401  (the reference for the stratification property)

from lmwright.evaluate.classify import classification_metrics, roc_auc
from lmwright.evaluate.generation import (
    bleu,
    chrf,
    corpus_scorer,
    exact_match,
    generation_metrics,
    normalise_answer,
    rouge,
)
from lmwright.evaluate.stats import bootstrap_ci, bucket_order, kfold_assign, length_bucket


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_classification_metrics_equal_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    k, n = 4, 200
    y = rng.integers(0, k, n)
    pred = np.where(rng.random(n) < 0.6, y, rng.integers(0, k, n))
    pred[pred == 3] = 2  # class 3 is never predicted: its precision is 0 (zero_division=0)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    m = classification_metrics(y, pred, ["a", "b", "c", "d"], proba)
    labels = list(range(k))
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    for avg in ("macro", "micro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(y, pred, labels=labels, average=avg, zero_division=0)
        if avg != "weighted":
            assert m[f"precision_{avg}"] == pytest.approx(p)
            assert m[f"recall_{avg}"] == pytest.approx(r)
        assert m[f"f1_{avg}"] == pytest.approx(f)
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba, multi_class="ovr", average="macro"))
    assert m["confusion"] == skm.confusion_matrix(y, pred, labels=labels).tolist()
    p, r, f, s = skm.precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    for i, lab in enumerate("abcd"):
        assert m["per_class"][lab] == pytest.approx({"precision": p[i], "recall": r[i], "f1": f[i], "support": s[i]})


def test_binary_roc_auc_with_ties_equals_scikit_learn():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    score = np.round(rng.random(300) + 0.3 * y, 1)  # rounded: many ties
    assert roc_auc(y, score) == pytest.approx(skm.roc_auc_score(y, score))
    proba = np.stack([1 - score / 2, score / 2], 1)
    assert roc_auc(y, proba) == pytest.approx(skm.roc_auc_score(y, score))
    assert np.isnan(roc_auc(np.zeros(5, int), np.arange(5.0)))  # one class only: undefined, not a crash


HYP = ["the cat sat on the mat"]
REF = ["the cat sat on a mat"]


def test_bleu_and_chrf_are_sacrebleu_and_match_hand_worked_values():
    # n-gram precisions 5/6, 3/5, 2/4, 1/3 and no brevity penalty: BLEU = (5/6 * 3/5 * 1/2 * 1/3) ** (1/4)
    assert bleu(HYP, REF) == pytest.approx(100 * (5 / 6 * 3 / 5 * 1 / 2 * 1 / 3) ** 0.25, abs=0.01)
    preds = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
    refs = ["The dog bit the man.", "It was not unexpected.", "The man bit him first."]
    assert bleu(preds, refs) == pytest.approx(sacrebleu.corpus_bleu(preds, [refs]).score)
    assert chrf(preds, refs) == pytest.approx(sacrebleu.corpus_chrf(preds, [refs]).score)
    assert bleu(refs, refs) == pytest.approx(100.0)
    assert chrf(refs, refs) == pytest.approx(100.0)


def test_a_resample_scored_from_summed_counts_is_sacrebleu_on_those_examples():
    # the bootstrap's BLEU and chrF: each resample (with repeats, as the bootstrap draws) scored from the examples'
    # n-gram counts must equal sacrebleu run on that resample's text
    preds = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him.", "", "a b c d e"]
    refs = ["The dog bit the man.", "It was not unexpected.", "The man bit him first.", "nothing", "a b c d f"]
    rng = np.random.default_rng(0)
    for name, score in (("bleu", bleu), ("chrf", chrf)):
        by_counts = corpus_scorer(name, preds, refs)
        assert by_counts(np.arange(len(preds))) == pytest.approx(score(preds, refs))
        for _ in range(20):
            idx = rng.integers(0, len(preds), len(preds))
            assert by_counts(idx) == pytest.approx(score([preds[i] for i in idx], [refs[i] for i in idx]))


def test_rouge_and_exact_match_match_hand_worked_values():
    r = rouge(HYP, REF)
    assert r["rouge1"][0] == pytest.approx(5 / 6)  # the, cat, sat, on, mat
    assert r["rouge2"][0] == pytest.approx(3 / 5)  # the cat, cat sat, sat on
    assert r["rougeL"][0] == pytest.approx(5 / 6)  # LCS: the cat sat on mat
    assert normalise_answer("The  json.dumps() function!") == "jsondumps function"
    assert exact_match(["An answer.", "no"], ["answer", "yes"]).tolist() == [1.0, 0.0]
    assert exact_match(HYP, REF).tolist() == [1.0]  # SQuAD normalisation drops the articles
    g = generation_metrics(["the cat sat", REF[0]], REF + REF)
    assert g["exact_match"] == 0.5 and g["n"] == 2
    assert g["rouge_l"] == pytest.approx((2 * 1 * 0.5 / 1.5 + 1) / 2)  # P 3/3, R 3/6; then a perfect one


def test_bootstrap_interval_covers_the_mean_and_narrows_with_more_data():
    rng = np.random.default_rng(0)
    small, large = rng.normal(1, 1, 50), rng.normal(1, 1, 2000)
    lo_s, hi_s = bootstrap_ci(lambda i: small[i].mean(), len(small), 500)
    lo_l, hi_l = bootstrap_ci(lambda i: large[i].mean(), len(large), 500)
    assert lo_s < small.mean() < hi_s and lo_l < large.mean() < hi_l
    assert hi_l - lo_l < (hi_s - lo_s) / 3  # ~ 1/sqrt(n)
    se = large.std() / np.sqrt(len(large))
    assert (hi_l - lo_l) == pytest.approx(2 * 1.96 * se, rel=0.2)


def test_stratified_folds_hold_each_label_in_proportion():
    rng = np.random.default_rng(1)
    labels = list(rng.choice(["a", "b", "c"], size=103, p=[0.6, 0.3, 0.1]))
    folds = kfold_assign([str(i) for i in range(103)], 5, seed=0, labels=labels)
    sizes = np.bincount(folds, minlength=5)
    assert sizes.max() - sizes.min() <= 1 and sizes.sum() == 103
    for lab in "abc":
        per_fold = np.bincount(folds[np.array(labels) == lab], minlength=5)
        assert per_fold.max() - per_fold.min() <= 1, lab  # in proportion, within one document
    assert (kfold_assign([str(i) for i in range(103)], 5, seed=0, labels=labels) == folds).all()  # seeded
    with pytest.raises(ValueError):
        kfold_assign(["a", "b"], 1)


def test_length_buckets_name_their_ranges():
    edges = [256, 1024]
    assert [length_bucket(n, edges) for n in (0, 255, 256, 1023, 1024, 10**6)] == \
        ["<256 B", "<256 B", "256-1023 B", "256-1023 B", ">=1024 B", ">=1024 B"]
    assert bucket_order(edges) == ["<256 B", "256-1023 B", ">=1024 B"]
    from lmwright.evaluate.suite import _ordered

    grouped = {b: [] for b in (">=1024 B", "256-1023 B", "<256 B")}  # as strings they sort wrongly
    assert [k for k, _ in _ordered(grouped, "length", edges)] == bucket_order(edges)


def test_per_document_scores_sum_to_the_split_figures(tiny_run):
    """The slices and intervals are built on per-document sums; together they must equal the split's metrics."""
    from lmwright.data.document import read_texts
    from lmwright.evaluate.lm import doc_scores, lm_metrics, metrics_from_scores, token_bytes
    from lmwright.tokenizer import load_tokenizer
    from lmwright.train.checkpoint import load_weights

    _, outcomes = tiny_run
    model = load_weights(outcomes["pretrain"].path)
    tok = load_tokenizer(outcomes["tokenizer"].path)
    texts = read_texts(outcomes["split"].path / "val.parquet")
    shard = np.load(outcomes["tokenize"].path / "val.npy")
    whole = lm_metrics(model, shard, 32, token_bytes(tok))
    scores = doc_scores(model, tok, texts, 32)
    mine = metrics_from_scores(scores)
    assert mine["tokens"] == whole["tokens"] and mine["bytes"] == whole["bytes"]
    assert mine["bits_per_byte"] == pytest.approx(whole["bits_per_byte"], rel=1e-6)
    assert mine["loss"] == pytest.approx(whole["loss"], rel=1e-6)
    assert (scores["bytes"] == [len(t.encode()) for t in texts]).all()
