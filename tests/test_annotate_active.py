"""Active learning and model-assisted labelling (annotate/active.py): the uncertainty formulas on hand-worked rows,
the quick model, the queue's order and its random fallback, suggestions in the shape items carry, and the
fine-tuned classifier's suggestions matching the classifier itself."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lmwright.annotate.active import (
    ClassifierModel,
    QuickModel,
    from_classifier,
    next_batch,
    rank,
    suggest,
    uncertainty,
)
from lmwright.annotate.tasks import AnnotationError, Task, check_value

ROWS = np.array([
    [1.0, 0.0, 0.0],     # certain
    [1 / 3, 1 / 3, 1 / 3],  # as unsure as three classes get
    [0.6, 0.3, 0.1],
    [0.5, 0.5, 0.0],
    [0.4, 0.3, 0.3],
])


def test_uncertainty_formulas_on_hand_worked_rows():
    lc = uncertainty(ROWS, "least_confidence")  # 1 - p(1)
    assert lc == pytest.approx([0.0, 2 / 3, 0.4, 0.5, 0.6])
    margin = uncertainty(ROWS, "margin")  # 1 - (p(1) - p(2))
    assert margin == pytest.approx([0.0, 1.0, 0.7, 1.0, 0.9])
    ent = uncertainty(ROWS, "entropy")  # -sum p ln p, with 0 ln 0 = 0
    assert ent == pytest.approx([0.0, math.log(3), -(0.6 * math.log(0.6) + 0.3 * math.log(0.3) + 0.1 * math.log(0.1)),
                                 math.log(2), -(0.4 * math.log(0.4) + 2 * 0.3 * math.log(0.3))])
    # where it is obvious every method agrees: uniform first, certain last
    for method in ("least_confidence", "margin", "entropy"):
        assert list(rank(ROWS[:3], method)) == [1, 2, 0]
    # and where it is not, they differ: a tie between two classes is the most uncertain only by margin
    assert uncertainty(ROWS[[3, 4]], "margin")[0] > uncertainty(ROWS[[3, 4]], "margin")[1]
    assert uncertainty(ROWS[[3, 4]], "least_confidence")[0] < uncertainty(ROWS[[3, 4]], "least_confidence")[1]
    # ties keep their input order
    assert list(rank(np.array([[0.5, 0.5], [0.9, 0.1], [0.5, 0.5]]), "margin")) == [0, 2, 1]


def test_multilabel_uncertainty_averages_each_labels_yes_no_uncertainty():
    p = np.array([[0.5, 1.0], [0.9, 0.0]])
    assert uncertainty(p, "least_confidence", multilabel=True) == pytest.approx([0.25, 0.05])
    assert uncertainty(p, "margin", multilabel=True) == pytest.approx([0.5, 0.1])
    assert uncertainty(p, "entropy", multilabel=True)[0] == pytest.approx(math.log(2) / 2)
    with pytest.raises(AnnotationError, match="not one of"):
        uncertainty(p, "variance")
    assert uncertainty(np.zeros((0, 3)), "entropy").shape == (0,)


CATS = ["the cat purrs on the sofa", "a kitten chases the cat toy", "cats sleep all day and purr",
        "my cat meows for food", "the cat climbs the curtain"]
NETS = ["open a socket and connect to the server", "the server listens on a tcp port",
        "send bytes over the socket connection", "a client connects to the http server",
        "close the connection to the server"]
MATHS = ["return the square root of x", "compute the sum of the numbers", "the cosine of x in radians",
         "round x to the nearest integer", "the logarithm of x to the given base"]
TEXTS = CATS + NETS + MATHS
LABELS = ["cats"] * 5 + ["net"] * 5 + ["math"] * 5


@pytest.mark.parametrize("kind", QuickModel.KINDS)
def test_quick_model_learns_a_tiny_set_deterministically(kind):
    new = ["the cat purrs", "connect the socket to the server", "the square root of a number"]
    m = QuickModel(kind=kind).fit(TEXTS, LABELS)
    probs, classes = m.predict_proba(new)
    assert classes == ["cats", "math", "net"] and probs.shape == (3, 3)
    assert probs.sum(1) == pytest.approx(np.ones(3))
    assert [classes[i] for i in probs.argmax(1)] == ["cats", "net", "math"]
    again, _ = QuickModel(kind=kind).fit(TEXTS, LABELS).predict_proba(new)
    assert np.array_equal(probs, again)
    with pytest.raises(AnnotationError, match="two classes"):
        QuickModel(kind=kind).fit(CATS, ["cats"] * 5)
    with pytest.raises(AnnotationError, match="fit it"):
        QuickModel(kind=kind).predict_proba(new)


def test_quick_model_multilabel_is_one_vs_rest():
    labels = [["cats"]] * 5 + [["net"]] * 5 + [["math"]] * 4 + [["math", "net"]]
    m = QuickModel(multilabel=True).fit(TEXTS, labels)
    probs, classes = m.predict_proba(["the kitten purrs", "the server socket"])
    assert classes == ["cats", "math", "net"] and probs.shape == (2, 3)
    assert probs[0, 0] > 0.5 and probs[1, 2] > 0.5 and probs[0, 2] < 0.5
    task = Task("topics", "multilabel", labels=("cats", "net", "math"))
    for s in suggest(["the kitten purrs"], m, task):
        assert check_value(task, s["value"]) and "cats" in s["value"]["labels"]
        assert 0.5 <= s["score"] <= 1
    with pytest.raises(AnnotationError, match="others lack"):
        QuickModel(multilabel=True).fit(CATS, [["cats"]] * 5)


def test_next_batch_falls_back_to_random_order_with_a_reason():
    pool = [f"item {i} about something" for i in range(30)]
    few = next_batch(pool, TEXTS[:3], LABELS[:3], k=5, method="entropy", seed=1)
    assert few.method == "random" and few.scores is None and "3 labelled" in few.reason
    assert len(few.order) == 5 and len(set(few.order)) == 5
    assert few.order == next_batch(pool, TEXTS[:3], LABELS[:3], k=5, seed=1).order  # seeded
    one_class = next_batch(pool, CATS * 3, ["cats"] * 15, k=4, method="margin")
    assert one_class.method == "random" and "two classes" in one_class.reason
    asked = next_batch(pool, TEXTS, LABELS, k=None, method="random")
    assert sorted(asked.order) == list(range(30)) and "asked" in asked.reason
    with pytest.raises(AnnotationError, match="not one of"):
        next_batch(pool, TEXTS, LABELS, method="most_fun")


def test_next_batch_orders_the_pool_by_uncertainty():
    pool = ["the cat purrs on the sofa again", "the cosine of the socket server", "the square root of x"]
    b = next_batch(pool, TEXTS, LABELS, k=2, method="least_confidence")
    assert b.method == "least_confidence" and len(b.order) == 2 and "15 labels" in b.reason
    assert b.scores == sorted(b.scores, reverse=True)
    m = QuickModel().fit(TEXTS, LABELS)
    u = uncertainty(m.predict_proba(pool)[0], "least_confidence")
    assert b.order == list(np.argsort(-u, kind="stable")[:2])


def test_suggestions_have_the_shape_items_carry_and_pass_the_task_check():
    task = Task("topic", "classification", labels=("cats", "net", "math"))
    m = QuickModel().fit(TEXTS, LABELS)
    out = suggest(["a cat on the sofa", "the server socket"], m, task)
    assert [s["value"] for s in out] == [{"label": "cats"}, {"label": "net"}]
    for s in out:
        assert set(s) == {"value", "score", "model", "probs"} and s["model"] == "quick-tfidf-nb"
        assert check_value(task, s["value"]) == s["value"]
        assert s["score"] == max(s["probs"].values()) and sum(s["probs"].values()) == pytest.approx(1)
    # a model knowing more classes than the task: the others are left out and the rest renormalised
    narrow = Task("topic", "classification", labels=("cats", "net"))
    s = suggest(["the server socket"], m, narrow)[0]
    assert set(s["probs"]) == {"cats", "net"} and sum(s["probs"].values()) == pytest.approx(1)
    with pytest.raises(AnnotationError, match="none of the task's labels"):
        suggest(["x"], m, Task("t", "classification", labels=("red", "blue")))
    with pytest.raises(AnnotationError, match="not spans"):
        suggest(["x"], m, Task("t", "spans", labels=("PER",)))

    def fixed(texts):  # a bare predict_proba callable, as the CLI may hand over
        return np.tile([0.2, 0.8], (len(texts), 1)), ["net", "cats"]

    got = from_classifier(["anything"], fixed, task, name="stub")
    assert got == [{"value": {"label": "cats"}, "score": 0.8, "model": "stub", "probs": {"net": 0.2, "cats": 0.8}}]


def test_the_fine_tuned_classifier_suggests_what_it_predicts(tmp_path):
    torch = pytest.importorskip("torch")
    from lmwright.finetune.objectives import Classifier
    from lmwright.model.config import ModelConfig
    from lmwright.model.hf import save_hf
    from lmwright.model.llama import LlamaLM
    from lmwright.tokenizer import BOS, PAD, save_tokenizer, special_ids, train_tokenizer

    tok = train_tokenizer(TEXTS * 4, 300, 1)
    save_tokenizer(tok, tmp_path / "tok")
    torch.manual_seed(0)
    lm = LlamaLM(ModelConfig(vocab_size=tok.get_vocab_size(), n_layers=1, d_model=16, n_heads=2, n_kv_heads=1,
                             ffn_dim=32, max_seq_len=64))
    save_hf(lm, tmp_path / "tok", tmp_path / "base", special_ids(tok))
    pad = tok.token_to_id(PAD)
    clf = Classifier(lm, ["cats", "math", "net"], pad).eval()
    torch.nn.init.normal_(clf.score.weight, std=1.0)  # so the classes differ clearly
    clf.save_hf(tmp_path / "base", tmp_path / "classifier")

    texts = ["the cat purrs", "connect the socket to the server now", "x"]
    model = ClassifierModel(tmp_path / "classifier", seq_len=64)
    probs, classes = model.predict_proba(texts)
    assert classes == ["cats", "math", "net"]
    for text, row in zip(texts, probs, strict=True):  # one text at a time through the classifier itself
        ids = torch.tensor([[tok.token_to_id(BOS), *tok.encode(text, add_special_tokens=False).ids]])
        with torch.no_grad():
            want = torch.softmax(clf(ids), -1)[0].numpy()
        assert row == pytest.approx(want, abs=1e-5)
    task = Task("topic", "classification", labels=("cats", "math", "net"))
    out = from_classifier(texts, tmp_path / "classifier", task)
    assert [s["value"]["label"] for s in out] == [classes[i] for i in probs.argmax(1)]
    assert all(check_value(task, s["value"]) for s in out) and out[0]["model"] == "classifier:classifier"
    with pytest.raises(AnnotationError, match="not a classifier"):
        ClassifierModel(tmp_path / "base")
    with pytest.raises(AnnotationError, match="not a saved classifier"):
        ClassifierModel(tmp_path / "tok")
