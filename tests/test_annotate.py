"""Annotation in the store (annotate/project.py): the queue with overlap and gold spot checks, answers and their
conflicts, review and adjudication, undo, and what an annotator sees of a reviewer's corrections."""

from __future__ import annotations

import pytest

from lmwright.annotate import project as ap
from lmwright.annotate import review as ar
from lmwright.annotate.tasks import AnnotationError, ConflictError
from lmwright.core.store import Store

LABELS = ["json", "text", "other"]


@pytest.fixture
def store(tmp_path):
    st = Store(f"sqlite:///{tmp_path / 'a.db'}")
    ap.sync_task(st, "chap", "classification", {"labels": LABELS, "overlap": 2, "gold_every": 3}, "# Guide\nv1")
    ap.add_items(st, "chap", [{"key": f"k{i}", "data": {"text": f"text {i}"}, "source": "test"} for i in range(4)]
                 + [{"key": "g0", "data": {"text": "gold text"}, "source": "test", "gold": {"label": "json"}}])
    return st


def _answer(st, who, label, **kw):
    it = ap.next_item(st, "chap", who)
    return it, ap.submit(st, "chap", it["id"], who, {"label": label}, revision=it["answer_revision"], **kw)


def test_overlap_gold_and_agreement_settle_items(store):
    seen = []
    for _ in range(3):
        it, res = _answer(store, "ann", "json", guideline_version=1)
        seen.append(it["key"])
    assert seen == ["k0", "k1", "g0"]  # every third item is a gold spot check; gold is not marked as such
    assert res == {"item": res["item"], "annotator": "ann", "value": {"label": "json"}, "revision": 1,
                   "status": "settled"} and "source" not in it
    it, res = _answer(store, "bob", "json")
    final = {r["key"]: r["final"] for r in ar.records(store, "chap")}
    assert it["key"] == "k0" and res["status"] == "settled" and final["k0"]["how"] == "agreed"
    assert final["k0"]["by"] == "ann+bob" and final["k0"]["guideline_version"] == 1
    it, res = _answer(store, "bob", "text")
    assert it["key"] == "k1" and res["status"] == "review"
    queue = ar.review_queue(store, "chap")
    assert [q["key"] for q in queue] == ["k1"] and {a["annotator"] for a in queue[0]["answers"]} == {"ann", "bob"}
    # a third annotator gets neither k0 (settled) nor k1 (two answers already): k2
    assert ap.next_item(store, "chap", "cyd")["key"] == "k2"
    acc = ar.gold_accuracy(store, "chap")
    assert acc["ann"][0]["correct"] == 1 and acc["ann"][0]["n"] == 1


def test_stale_edit_and_double_adjudication_are_conflicts_and_lose_nothing(store):
    it, first = _answer(store, "ann", "json")
    with pytest.raises(ConflictError, match="reload"):  # an edit made from the copy before the first answer
        ap.submit(store, "chap", it["id"], "ann", {"label": "text"}, revision=0)
    assert ap.item(store, "chap", it["id"], "ann")["answer"] == {"label": "json"}
    ap.submit(store, "chap", it["id"], "ann", {"label": "text"}, revision=1)  # the right revision: an edit
    ap.submit(store, "chap", it["id"], "bob", {"label": "json"}, revision=0)
    q = ar.review_queue(store, "chap")[0]
    ar.adjudicate(store, "chap", q["id"], "rev1", {"label": "json"}, q["revision"], note="json module")
    with pytest.raises(ConflictError, match="rev1 decided it"):
        ar.adjudicate(store, "chap", q["id"], "rev2", {"label": "text"}, q["revision"])
    rec = next(r for r in ar.records(store, "chap") if r["key"] == q["key"])
    assert rec["final"]["by"] == "rev1" and rec["final"]["how"] == "adjudicated"
    assert len(rec["annotations"]) == 2
    hist = ar.history(store, "chap", "ann")
    assert hist[0]["corrected"] is True and hist[0]["final"]["value"] == {"label": "json"}
    assert store.audit_log()[-1].action == "annotation_review"
    with pytest.raises(ConflictError, match="decided by rev1"):
        ap.undo(store, "chap", "ann")


def test_leases_hand_out_an_items_last_place_once_and_a_late_answer_reopens_it(store):
    ap.sync_task(store, "chap", "classification", {"labels": LABELS, "overlap": 1}, None)
    a = ap.next_item(store, "chap", "ann")
    b = ap.next_item(store, "chap", "bob")
    assert a["id"] != b["id"]  # ann holds k0's one place: bob gets the next item
    assert ap.submit(store, "chap", a["id"], "ann", {"label": "json"}, revision=0)["status"] == "settled"
    late = ap.submit(store, "chap", a["id"], "bob", {"label": "text"}, revision=0)  # e.g. after the lease ran out
    assert late["status"] == "conflict" and [q["key"] for q in ar.review_queue(store, "chap")] == [a["key"]]
    ap.submit(store, "chap", a["id"], "bob", None, revision=1)  # bob takes it back as a skip: settled again
    assert next(r for r in ar.records(store, "chap") if r["key"] == a["key"])["final"]["by"] == "ann"


def test_undo_reopens_only_what_the_undone_answer_settled_and_gold_answers_stay(store):
    ap.sync_task(store, "chap", "classification", {"labels": LABELS, "overlap": 1, "gold_every": 2}, None)
    it, _ = _answer(store, "ann", "json")
    ap.comment(store, "chap", it["id"], "mal", "is this right?")  # another key's comment on a settled item
    assert ap.undo(store, "chap", "mal") is None  # a comment is not an answer to take back: nothing to undo
    assert next(r for r in ar.records(store, "chap") if r["key"] == it["key"])["final"]["by"] == "ann"
    ap.comment(store, "chap", it["id"], "ann", "json, surely")
    back = ap.undo(store, "chap", "ann")  # ann's answer goes back; her comment on the item stays
    assert back["key"] == it["key"] and back["answer"] is None and back["comment"] == "json, surely"
    ap.submit(store, "chap", it["id"], "ann", {"label": "json"}, revision=back["answer_revision"])
    g, _ = _answer(store, "ann", "text")  # the second item is the gold check, answered wrongly
    assert g["key"] == "g0" and all(h["final"] is None for h in ar.history(store, "chap", "ann") if h["key"] == "g0")
    with pytest.raises(ConflictError, match="spot check"):
        ap.undo(store, "chap", "ann")
    with pytest.raises(ConflictError, match="spot check"):
        ap.submit(store, "chap", g["id"], "ann", {"label": "json"}, revision=1)
    assert ar.gold_accuracy(store, "chap")["ann"][0]["accuracy"] == 0.0


def test_bad_answers_and_skips_and_undo(store):
    it = ap.next_item(store, "chap", "ann")
    with pytest.raises(AnnotationError, match="'label': 'xml' is not in the label set"):
        ap.submit(store, "chap", it["id"], "ann", {"label": "xml"})
    ap.submit(store, "chap", it["id"], "ann", None)  # a skip
    assert ap.next_item(store, "chap", "ann")["key"] == "k1"
    back = ap.undo(store, "chap", "ann")
    assert back["key"] == "k0" and back["answer"] is None and back["answer_revision"] == 0
    assert ap.undo(store, "chap", "ann") is None
    with pytest.raises(AnnotationError, match="no annotation task 'nope'"):
        ap.next_item(store, "nope", "ann")
    with pytest.raises(AnnotationError, match="field 'text' is missing"):
        ap.add_items(store, "chap", [{"key": "x", "data": {"body": "no text"}, "source": "t"}])
    with pytest.raises(AnnotationError, match="already in task 'chap' with other data"):
        ap.add_items(store, "chap", [{"key": "k0", "data": {"text": "another text"}, "source": "other.csv"}])
    with pytest.raises(AnnotationError, match="lone surrogate"):
        ap.add_items(store, "chap", [{"key": "s", "data": {"text": "bad \ud800"}, "source": "t"}])
    with pytest.raises(AnnotationError, match="guideline_version"):
        ap.submit(store, "chap", it["id"], "ann", {"label": "json"}, guideline_version=99)


def test_guidelines_are_versioned_and_labels_in_use_stay(store):
    assert ap.guideline(store, "chap") == (1, "# Guide\nv1")
    assert ap.sync_task(store, "chap", "classification", {"labels": LABELS}, "# Guide\nv1")["guideline_version"] == 1
    assert ap.sync_task(store, "chap", "classification", {"labels": LABELS}, "# Guide\nv2")["guideline_version"] == 2
    _answer(store, "ann", "other")
    with pytest.raises(AnnotationError, match=r"labels \['other'\] are in stored answers"):
        ap.sync_task(store, "chap", "classification", {"labels": ["json", "text"]}, None)
    with pytest.raises(AnnotationError, match="kind cannot become"):
        ap.sync_task(store, "chap", "rating", {}, None)


def test_suggestions_and_the_uncertainty_order_follow_the_labels(tmp_path):
    from lmwright.annotate import assist

    st = Store(f"sqlite:///{tmp_path / 's.db'}")
    ap.sync_task(st, "t", "classification", {"labels": ["json", "text"], "overlap": 1, "order": "least_confidence"},
                 None)
    words = {"json": "json encode decode dumps loads object", "text": "wrap fill indent dedent paragraph width"}
    gold = [{"key": f"g{i}", "data": {"text": f"{words[lab]} {i}"}, "source": "t",
             "annotations": [{"annotator": "seed", "value": {"label": lab}}]}  # each settles: overlap 1
            for i, lab in enumerate(["json", "text"] * 6)]
    pool = [{"key": "sure", "data": {"text": "json dumps loads object"}, "source": "t"},
            {"key": "unsure", "data": {"text": "json wrap object paragraph"}, "source": "t"}]
    ap.add_items(st, "t", gold + pool)
    res = assist.refresh(st, "t")
    assert res["suggested"] == 2 and res["order"] == "least_confidence", res
    assert ap.next_item(st, "t", "ann")["key"] == "unsure"  # the least confident first
    sure = next(r for r in ar.records(st, "t") if r["key"] == "sure")
    assert sure["predictions"][0]["value"] == {"label": "json"} and sure["predictions"][0]["score"] > 0.5
    assert assist.maybe_refresh(st, "t") is None  # no new labels since
    st2 = Store(f"sqlite:///{tmp_path / 's2.db'}")
    ap.sync_task(st2, "t", "classification", {"labels": ["json", "text"]}, None)
    ap.add_items(st2, "t", pool)
    assert "no suggestions yet: 0 labelled" in assist.refresh(st2, "t")["headline"]


def test_a_takedown_removes_the_items_that_are_its_documents(store):
    it, _ = _answer(store, "ann", "json")
    assert ar.forget_items(store, [it["key"], "not-an-item"]) == 1
    assert it["key"] not in {r["key"] for r in ar.records(store, "chap")}
