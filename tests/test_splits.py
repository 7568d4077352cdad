"""Splits: hash (unchanged), stratified (shares within one document, stable as the corpus grows), time
(boundaries, unreadable dates quarantined), the leak check across splits, and the spec's validation."""

from __future__ import annotations

import hashlib
import json
import random
from datetime import datetime, timezone
from types import SimpleNamespace

import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

import lmwright
from lmwright.data.document import doc_id
from lmwright.data.split import (
    MISSING,
    SPLITS,
    assign_split,
    assign_splits,
    cross_split_leaks,
    hash_unit,
    leak_bands,
    leaked,
    parse_time,
    stratified_splits,
    stratum_of,
)
from lmwright.errors import LmwrightError
from lmwright.spec import NearDedupSpec, SplitSpec
from tests.conftest import make_project, quiet


def _docs(n: int, **fields) -> list[dict]:
    return [{"id": doc_id("s", str(i)), "locator": f"f.jsonl:{i}", "source_name": "s", "text": f"doc {i}",
             **{k: v(i) for k, v in fields.items()}} for i in range(n)]


def test_hash_split_is_unchanged():
    ids = [doc_id("s", str(i)) for i in range(3000)]
    got = ",".join(assign_split(i, 0.1, 0.2, "salt") for i in ids)
    # the digest of the assignments the hash split made before the other methods existed: caches stay valid
    assert hashlib.sha256(got.encode()).hexdigest() == "3da0eeb8007042c0dba18bfb69da84bf8b1af9e7f5ff33f44730adbcdcd6e6ca"
    docs = _docs(500)
    names, quarantined = assign_splits(docs, SplitSpec(val=0.1, test=0.2, salt="salt"))
    assert names == [assign_split(d["id"], 0.1, 0.2, "salt") for d in docs] and quarantined == []


def test_stratified_shares_are_within_one_document_of_target():
    rng = random.Random(3)
    sizes = {"a": 1, "b": 2, "c": 7, "d": 19, "e": 101, "f": 640}
    strata = [c for c, n in sizes.items() for _ in range(n)]
    rng.shuffle(strata)
    ids = [doc_id("s", str(i)) for i in range(len(strata))]
    for val, test in ((0.05, 0.05), (0.15, 0.15), (0.1, 0.33), (0.0, 0.2)):
        names = stratified_splits(ids, strata, val, test, "lmwright")
        for c, n in sizes.items():
            got = {s: sum(1 for x, y in zip(strata, names, strict=True) if x == c and y == s) for s in SPLITS}
            target = {"train": (1 - val - test) * n, "val": val * n, "test": test * n}
            assert all(abs(got[s] - target[s]) <= 1 for s in SPLITS), (val, test, c, got, target)
    # a plain hash split of the same corpus misses the small classes' targets by more
    hashed = [assign_split(i, 0.15, 0.15, "lmwright") for i in ids]
    misses = [c for c, n in sizes.items()
              if abs(sum(1 for x, y in zip(strata, hashed, strict=True) if x == c and y == "test") - 0.15 * n) > 1]
    assert misses


def test_stratified_split_is_mostly_stable_as_the_corpus_grows():
    rng = random.Random(5)
    labels = [rng.choice("abcde") for _ in range(2200)]
    ids = [doc_id("s", str(i)) for i in range(2200)]
    before = stratified_splits(ids[:2000], labels[:2000], 0.1, 0.1, "lmwright")
    after = stratified_splits(ids, labels, 0.1, 0.1, "lmwright")
    moved = sum(a != b for a, b in zip(before, after[:2000], strict=False))
    assert moved <= 0.02 * 2000, moved  # only documents next to a cut move (measured: a handful)
    # and it departs from the pure hash split only near the cuts
    hashed = [assign_split(i, 0.1, 0.1, "lmwright") for i in ids]
    assert sum(a != b for a, b in zip(after, hashed, strict=True)) <= 0.03 * len(ids)


def test_stratified_labels_missing_stratum_labels_column_and_all_missing_error():
    docs = _docs(40, label=lambda i: "x" if i % 2 else None)
    assert {stratum_of(d, "label") for d in docs} == {"x", MISSING}
    pydoc = {"id": "1", "source_name": "pydocs", "locator": "json.dumps", "text": "t",
             "labels": '{"chapter": "internet data handling"}', "meta": '{"label": "meta"}'}
    assert stratum_of(pydoc, "chapter") == "internet data handling" and stratum_of(pydoc, "label") == "meta"
    assert stratum_of({**pydoc, "label": "column"}, "label") == "column"  # labels, then a column, then meta
    assert stratum_of({**pydoc, "labels": '{"label": "mine"}', "label": "column"}, "label") == "mine"
    assert stratum_of(pydoc, "source_name") == "pydocs"
    names, _ = assign_splits(docs, SplitSpec(method="stratified", val=0.25, test=0.25))
    for stratum in ("x", MISSING):  # the documents without a label are split in shares too
        got = [n for d, n in zip(docs, names, strict=True) if stratum_of(d, "label") == stratum]
        assert (got.count("train"), got.count("val"), got.count("test")) == (10, 5, 5)
    with pytest.raises(LmwrightError, match=r"no document has a 'topic' label .*carry the labels: none.*label_fields"):
        assign_splits(docs, SplitSpec(method="stratified", stratify_by="topic"))


def test_time_split_boundaries_and_time_formats():
    cfg = SplitSpec(method="time", train_before="2024-01-01", val_before="2024-06-01T00:00:00+02:00")
    dates = ["2023-12-31T23:59:59Z", "2024-01-01", "2024-01-01T00:00:00Z", "2024-05-31T21:59:59Z",
             "2024-05-31T22:00:00Z", "2024-06-01", "2023-06-01T12:00:00", datetime(2025, 1, 1, tzinfo=timezone.utc)]
    docs = _docs(len(dates), collected_at=lambda i: dates[i])
    names, quarantined = assign_splits(docs, cfg)
    assert names == ["train", "val", "val", "val", "test", "test", "train", "test"] and quarantined == []
    assert parse_time("2024-01-01") == datetime(2024, 1, 1, tzinfo=timezone.utc)  # naive is UTC
    # another field, and stability: a document's split depends on its own date only
    cfg2 = SplitSpec(method="time", time_field="published", train_before="2020-01-01", val_before="2021-01-01")
    docs2 = _docs(3, published=lambda i: f"20{19 + i}-07-01")
    assert assign_splits(docs2, cfg2)[0] == ["train", "val", "test"]
    assert assign_splits(docs2[1:], cfg2)[0] == ["val", "test"]


def test_unreadable_dates_are_quarantined_and_none_readable_is_an_error():
    cfg = SplitSpec(method="time", train_before="2024-01-01", val_before="2024-06-01")
    values = ["2023-05-05", "yesterday", None, "2024-13-45", "2024-02-02"]
    docs = _docs(5, collected_at=lambda i: values[i])
    names, quarantined = assign_splits(docs, cfg)
    assert names == ["train", None, None, None, "val"]
    assert [(i, r) for i, r, _ in quarantined] == [(1, "bad_date"), (2, "missing_date"), (3, "bad_date")]
    detail = quarantined[0][2]
    assert docs[1]["id"] in detail and "f.jsonl:1" in detail and "collected_at = 'yesterday'" in detail
    with pytest.raises(LmwrightError, match=r"no document has a readable date in 'collected_at' .*f\.jsonl:1"):
        assign_splits(docs[1:4], cfg)


def _words(rng: random.Random, n: int) -> str:
    vocab = [f"{a}{b}" for a in ("ka", "lo", "mi", "ne", "su", "tar", "vel", "zo") for b in ("ba", "de", "ri", "on",
                                                                                          "um", "ex", "ly")]
    return " ".join(rng.choice(vocab) for _ in range(n))


def test_leak_check_finds_a_planted_pair_and_keeps_the_earlier_copy():
    rng = random.Random(1)
    texts = [_words(rng, 80) for _ in range(30)]
    words = texts[0].split()
    texts[7] = " ".join(words[:60] + _words(rng, 20).split())  # shares ~2/3 of its shingles with doc 0
    splits = ["train"] * 10 + ["val"] * 10 + ["test"] * 10
    splits[0], splits[7] = "test", "train"
    near = NearDedupSpec()
    pairs = cross_split_leaks(texts, splits, near, 0.5)
    assert [(a, b) for a, b, _ in pairs] == [(7, 0)] and 0.5 <= pairs[0][2] < 0.8
    assert leaked(pairs) == {0: (7, pairs[0][2])}  # the test copy goes, the train copy stays
    assert cross_split_leaks(texts, splits, near, 0.9) == []
    assert cross_split_leaks(texts, ["train"] * 30, near, 0.5) == []  # within one split: dedup's business
    for t in (0.3, 0.5, 0.7, 0.9):  # the banding finds a pair at the threshold with probability >= 0.99
        b = leak_bands(near.num_perm, t)
        assert near.num_perm % b == 0 and 1 - (1 - t ** (near.num_perm // b)) ** b >= 0.99


def test_split_stage_removes_a_leak_and_accounts_for_it(tmp_path):
    rng = random.Random(2)
    val, test = 0.3, 0.3
    where = {n: assign_split(doc_id("mine", f"corpus/c.jsonl:{n}"), val, test, "lmwright") for n in range(1, 40)}
    train_line = next(n for n, s in where.items() if s == "train")
    test_line = next(n for n, s in where.items() if s == "test")
    texts = {n: "The " + _words(rng, 70) + "." for n in range(1, 25)}
    texts[test_line] = texts[train_line][:-1] + " " + _words(rng, 15) + "."
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "c.jsonl").write_text("".join(json.dumps({"text": texts[n]}) + "\n"
                                                         for n in range(1, max(texts) + 1)))
    spec = {"project": {"name": "leaky"},
            "data": {"sources": [{"kind": "files", "name": "mine", "paths": ["corpus/*.jsonl"], "profile": "minimal"}],
                     "dedup": {"near": {"enabled": False}}, "executor": {"workers": 1}},
            "split": {"val": val, "test": test}}
    out = lmwright.run(make_project(tmp_path, spec), until="split", reporter=quiet())["split"]
    s = out.summary
    assert s["read"] == s["kept"] + sum(s["removed"].values()) + s["quarantined"] == len(texts)
    assert s["removed"] == {"split_leak": 1} and s["leak_check"]["pairs"] == 1
    assert "1 leaked near-duplicates removed" in s["headline"]
    leaks = [json.loads(x) for x in (out.path / "leaks.jsonl").read_text().splitlines()]
    assert [(x["kept"]["locator"], x["kept"]["split"], x["removed"]["locator"], x["removed"]["split"])
            for x in leaks] == [(f"corpus/c.jsonl:{train_line}", "train", f"corpus/c.jsonl:{test_line}", "test")]
    removed = pq.read_table(out.path / "removed.parquet").to_pylist()
    assert [(r["locator"], r["reason"], r["split"]) for r in removed] == [(f"corpus/c.jsonl:{test_line}",
                                                                           "split_leak", "test")]
    test_docs = pq.read_table(out.path / "test.parquet").to_pylist()
    assert f"corpus/c.jsonl:{test_line}" not in {d["locator"] for d in test_docs}
    assert sum(s["splits"].values()) == s["kept"]


@pytest.mark.parametrize("fields, message", [
    ({"stratify_by": "label"}, "stratify_by applies to method: stratified only"),
    ({"method": "hash", "train_before": "2024-01-01"}, "train_before applies to method: time only"),
    ({"method": "stratified", "time_field": "published"}, "time_field applies to method: time only"),
    ({"method": "time"}, "needs split.train_before .T1. and split.val_before .T2."),
    ({"method": "time", "train_before": "2024-06-01", "val_before": "2024-06-01"}, "must be earlier than"),
    ({"method": "time", "train_before": "June", "val_before": "2024-06-01"}, "'June' is not an ISO date"),
    ({"method": "time", "train_before": "2024-01-01", "val_before": "2024-06-01", "val": 0.2},
     "split.val does not apply to method: time"),
    ({"method": "stratified", "val": 0.5, "test": 0.5}, "val \\+ test must be below 1"),
    ({"method": "random"}, "'hash', 'stratified' or 'time'"),
    ({"leak_check": False, "leak_threshold": 0.8}, "leak_threshold applies only with split.leak_check: true"),
])
def test_spec_rejects_fields_of_another_method(fields, message):
    with pytest.raises(ValidationError, match=message):
        SplitSpec(**fields)


def test_spec_defaults_and_round_trip():
    import datetime as dt

    assert SplitSpec().method == "hash" and SplitSpec().leak_check
    assert SplitSpec(method="stratified").stratify_by == "label"
    t = SplitSpec(method="time", train_before=dt.date(2024, 1, 1), val_before="2024-06-01")  # YAML reads dates
    assert (t.time_field, t.train_before) == ("collected_at", "2024-01-01")
    for s in (t, SplitSpec(method="stratified", stratify_by="source_name"), SplitSpec()):
        assert SplitSpec.model_validate(s.model_dump(mode="json")) == s  # workers get the spec as JSON


def test_hash_unit_is_the_hash_split_position():
    cfg = SimpleNamespace(method="hash", val=0.2, test=0.1, salt="x")
    for d in _docs(200):
        u = hash_unit(d["id"], "x")
        assert assign_splits([d], cfg)[0][0] == ("test" if u < 0.1 else "val" if u < 0.3 else "train")


def test_augmentation_is_seeded_off_by_default_and_keeps_labels():
    from lmwright.data.augment import Augment, augment_rows, char_noise, paraphrase, word_noise

    rows = [{"text": "The quick brown fox jumps over the lazy dog near the river bank.", "label": "animals"},
            {"prompt": "Explain the json module.", "response": "It reads and writes JSON."}]
    assert augment_rows(rows, Augment(), seed=1) == rows  # off unless asked
    aug = Augment(copies=2, char_rate=0.05, word_dropout=0.1, word_swap=0.1, paraphrase=True)
    out = augment_rows(rows, aug, seed=1)
    assert out == augment_rows(rows, aug, seed=1) and out != augment_rows(rows, aug, seed=2)
    assert out[:2] == rows and len(out) == 6 and all(r["augmented"] for r in out[2:])
    assert [r.get("label") for r in out[2:4]] == ["animals"] * 2 and out[4]["response"] == rows[1]["response"]
    assert augment_rows(rows[:1], aug, seed=1)[1:] == out[2:4]  # a row's copies do not depend on later rows
    rng = random.Random(0)
    noisy = char_noise("a" * 1000, 0.1, rng)
    assert noisy != "a" * 1000 and 900 < len(noisy) < 1100
    assert char_noise("hello", 0.0, rng) == "hello" and word_noise("one two", rng, dropout=1.0) in ("one", "two")
    assert sorted(word_noise("a b c d e f", rng, swap=1.0).split()) == list("abcdef")
    forms = {paraphrase("Explain the json module.", random.Random(k)) for k in range(30)}
    assert "Can you explain the json module?" in forms and len(forms) >= 4
    assert paraphrase("How do I read a csv file?", random.Random(1)) != "How do I read a csv file?"
    for unchanged in ("Tell me a joke.", "Summarize this: the json module reads JSON."):
        assert paraphrase(unchanged, random.Random(0)) == unchanged
