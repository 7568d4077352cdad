"""Documents carry labels and record fields (meta) from every source through collect, clean, dedup and split:
stratified and time splits read them, bad values are quarantined, old files still read, and the dataset card
says what the labels are and who made them."""

from __future__ import annotations

import json
import random
import sqlite3

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

import lmwright
from lmwright.data.document import SCHEMA, BadField, carried_fields, read_docs, write_docs
from lmwright.data.sources.pydocs import collect_pydocs
from lmwright.data.sources.sql import collect_sql
from lmwright.data.split import SPLITS
from lmwright.errors import LmwrightError
from lmwright.spec import PydocsSource, SqlSource
from tests.conftest import make_project, quiet

VOCAB = [f"{a}{b}" for a in ("ka", "lo", "mi", "ne", "su", "tar", "vel", "zo", "pri", "gum")
         for b in ("ba", "de", "ri", "on", "um", "ex", "ly", "ta")]


def _text(rng: random.Random) -> str:
    return "The " + " ".join(rng.choice(VOCAB) for _ in range(30)) + "."


def _labelled_corpus(root) -> dict[str, int]:
    """A JSONL file with a label and a date per record (some without a label, two with bad values), a CSV and a
    Parquet file with labels; returns the documents per class expected to survive collection."""
    rng = random.Random(4)
    sizes = {"bug": 23, "feature": 11, "question": 5}
    rows = [{"text": _text(rng), "label": c} for c, n in sizes.items() for _ in range(n)]
    rows += [{"text": _text(rng)} for _ in range(6)]  # no label: the class "(missing)"
    rng.shuffle(rows)
    for i, r in enumerate(rows):
        r["date"] = f"{2023 + i % 3}-0{1 + i % 9}-15"
    rows.append({"text": _text(rng), "label": ["bug", "feature"], "date": "2024-01-01"})  # not a scalar
    rows.append({"text": _text(rng), "label": "bug", "date": {"y": 2024}})  # a meta value that is not a date
    (root / "corpus").mkdir()
    (root / "corpus" / "issues.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "corpus" / "more.csv").write_text("text,label,date\n" + "".join(
        f"{_text(rng)},bug,2022-05-0{i + 1}\n" for i in range(3)))
    pq.write_table(pa.table({"text": [_text(rng) for _ in range(4)], "label": [7, 7, None, 7],
                             "date": pa.array([None] * 4, pa.date32())}), root / "corpus" / "t.parquet")
    return {**sizes, "bug": sizes["bug"] + 3, "7": 3, "(missing)": 6 + 1}


def _spec(split: dict) -> dict:
    return {"project": {"name": "labelled"},
            "data": {"sources": [{"kind": "files", "name": "issues", "paths": ["corpus/*"], "profile": "minimal",
                                  "label_fields": ["label"], "meta_fields": ["date"]}],
                     "dedup": {"near": {"enabled": False}}, "executor": {"workers": 1}},
            "split": split}


def test_labels_and_dates_from_a_files_source_reach_stratified_and_time_splits(tmp_path):
    expected = _labelled_corpus(tmp_path)
    root = make_project(tmp_path, _spec({"method": "stratified", "stratify_by": "label", "val": 0.2, "test": 0.2}))
    out = lmwright.run(root, until="card", reporter=quiet())
    col = out["collect"]
    quarantined = {q["locator"]: q for q in map(json.loads, (col.path / "quarantine.jsonl").read_text().splitlines())}
    assert {k: q["reason"] for k, q in quarantined.items()} == {"corpus/issues.jsonl:46": "bad_label_field",
                                                                 "corpus/issues.jsonl:47": "bad_meta_field"}
    assert "field 'label' is a list" in quarantined["corpus/issues.jsonl:46"]["detail"]
    s = col.summary
    assert s["read"] == s["kept"] + s["quarantined"] == 45 + 2 + 3 + 4
    docs = {d["locator"]: d for d in read_docs(col.path / "docs.parquet")}
    assert json.loads(docs["corpus/more.csv:2"]["labels"]) == {"label": "bug"}
    assert json.loads(docs["corpus/more.csv:2"]["meta"]) == {"date": "2022-05-01"}
    assert json.loads(docs["corpus/t.parquet:row1"]["labels"]) == {"label": 7}  # numbers stay numbers
    assert docs["corpus/t.parquet:row3"]["labels"] == "{}" and docs["corpus/t.parquet:row1"]["meta"] == "{}"

    # every stage keeps the columns: the split files still carry each document's labels and meta
    sp = out["split"]
    by_class: dict[str, dict[str, int]] = {}
    for name in SPLITS:
        for d in read_docs(sp.path / f"{name}.parquet"):
            assert d["labels"] == docs[d["locator"]]["labels"] and d["meta"] == docs[d["locator"]]["meta"]
            c = str(json.loads(d["labels"]).get("label", "(missing)"))
            by_class.setdefault(c, dict.fromkeys(SPLITS, 0))[name] += 1
    assert {c: sum(v.values()) for c, v in by_class.items()} == expected
    for c, got in by_class.items():  # each class's share in each split within one document of its target
        n = sum(got.values())
        assert all(abs(got[k] - share * n) <= 1 for k, share in (("train", 0.6), ("val", 0.2), ("test", 0.2))), c
    assert sp.summary["strata"] == {c: by_class[c] for c in sorted(by_class)}

    card = (out["card"].path / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["annotations_creators"] == ["found"] and "text-classification" in meta["task_categories"]
    assert "Splits are stratified by `label` (salt `lmwright`): within each of its 5 classes" in card
    assert "| bug | 16 | 5 | 5 |" in card and "Leak check: 0 validation/test documents removed (`split_leak`)" in card
    assert ("| label | 45 | 86.5 % | bug (26), feature (11), question (5), 7 (3) | copied from the records' field "
            "`label` (source issues) |") in card
    assert "Documents also carry these record fields (`meta`): date (48 documents)." in card
    assert f"| split | {sp.summary['read']} | {sp.summary['kept']} | 0 | 0 |" in card
    assert out["card"].summary["labels"] == {"label": 45}

    # a time split by the records' own date: the collected documents are reused, undated ones quarantined
    cfg = {"method": "time", "time_field": "date", "train_before": "2024-01-01", "val_before": "2025-01-01",
           "leak_check": False}
    out = lmwright.run(make_project(tmp_path, _spec(cfg)), until="card", reporter=quiet())
    assert out["collect"].status == out["dedup"].status == "cached"
    sp = out["split"].summary
    assert sp["quarantined"] == 4 and sp["read"] == sp["kept"] + sp["quarantined"]
    for name in SPLITS:
        years = {json.loads(d["meta"])["date"][:4] for d in read_docs(out["split"].path / f"{name}.parquet")}
        assert years == {"train": {"2022", "2023"}, "val": {"2024"}, "test": {"2025"}}[name]
    q = pq.read_table(out["split"].path / "quarantined.parquet").to_pylist()
    assert {r["locator"] for r in q} == {f"corpus/t.parquet:row{i}" for i in range(1, 5)}
    assert {r["reason"] for r in q} == {"missing_date"}
    card = (out["card"].path / "README.md").read_text()
    assert "Splits are cut by the date in `date`: train before 2024-01-01, validation from 2024-01-01 until " \
           "2025-01-01, test from 2025-01-01 on" in card and "4 documents without a readable date" in card
    assert "Leak check off" in card


def test_a_label_or_date_no_document_has_names_the_ones_they_do():
    from lmwright.data.split import assign_splits
    from lmwright.spec import SplitSpec

    docs = [{"id": str(i), "locator": f"x:{i}", "text": "t", "labels": json.dumps({"chapter": "a"}),
             "meta": json.dumps({"published": "2024-02-02"})} for i in range(3)]
    with pytest.raises(LmwrightError, match=r"no document has a 'label' label.*carry the labels: chapter \(3 documents\)"):
        assign_splits(docs, SplitSpec(method="stratified"))
    with pytest.raises(LmwrightError, match=r"readable date in 'date'.*meta fields: published \(3 documents\).*meta_fields"):
        assign_splits(docs, SplitSpec(method="time", time_field="date", train_before="2024-01-01",
                                      val_before="2025-01-01"))
    assert assign_splits(docs, SplitSpec(method="time", time_field="published", train_before="2024-01-01",
                                         val_before="2025-01-01"))[0] == ["val"] * 3


def test_files_written_before_labels_still_read_and_write(tmp_path):
    old = pa.schema([f for f in SCHEMA if f.name not in ("labels", "meta")])
    row = {"id": "1", "text": "t", "source": "a.md", "source_name": "files", "locator": "a.md", "license": "MIT",
           "collected_at": "2024-01-01T00:00:00+00:00"}
    pq.write_table(pa.Table.from_pylist([row], schema=old), tmp_path / "old.parquet")
    docs = read_docs(tmp_path / "old.parquet")
    assert docs == [{**row, "labels": "{}", "meta": "{}"}]
    write_docs(tmp_path / "new.parquet", [row])  # a row without the columns (built by hand) carries none
    assert read_docs(tmp_path / "new.parquet") == docs
    # an extra column of the schema's replaces it (an accepted annotation task's labels), never duplicates it
    write_docs(tmp_path / "labelled.parquet", docs, {"labels": ['{"topic": "x"}']})
    table = pq.read_table(tmp_path / "labelled.parquet")
    assert table.column_names == SCHEMA.names and table.column("labels").to_pylist() == ['{"topic": "x"}']
    write_docs(tmp_path / "removed.parquet", docs, {"reason": ["r"]})
    assert read_docs(tmp_path / "removed.parquet")[0]["reason"] == "r"


def test_pydocs_documents_carry_their_chapter():
    docs = list(collect_pydocs(PydocsSource(modules=["json"], topics=True)))
    labels = {d.locator: json.loads(d.labels) for d in docs}
    assert labels["json.dumps"] == {"chapter": "internet data handling"}
    assert {lab["chapter"] for loc, lab in labels.items() if loc.startswith("topics.")} == {"language reference"}
    assert all(d.meta == "{}" for d in docs)


def test_sql_source_copies_label_and_meta_columns(tmp_path):
    db = tmp_path / "t.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (id INTEGER, body TEXT, topic, stars, created TEXT)")
        conn.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?)", [
            (1, "one", "billing", 4, "2024-03-01"), (2, "two", None, 2.5, None), (3, "three", b"\x00", 1, "x")])
    src = SqlSource(url=f"sqlite:///{db}", query="SELECT * FROM t ORDER BY id", text_column="body",
                    label_columns=["topic", "stars"], meta_columns=["created"])
    recs = list(collect_sql(src))
    assert json.loads(recs[0].labels) == {"topic": "billing", "stars": 4}
    assert json.loads(recs[0].meta) == {"created": "2024-03-01"}
    assert json.loads(recs[1].labels) == {"stars": 2.5} and recs[1].meta == "{}"  # NULL: not carried
    assert recs[2].reason == "bad_label_field" and "field 'topic' is a bytes" in recs[2].detail
    with pytest.raises(LmwrightError, match="no column 'stage'.*label_columns"):
        list(collect_sql(src.model_copy(update={"label_columns": ["stage"]})))


def test_carried_fields_values():
    import datetime as dt
    from decimal import Decimal

    labels, meta = carried_fields({"a": "x", "b": True, "c": float("nan"), "d": Decimal("3"), "e": "",
                                   "when": dt.datetime(2024, 5, 1, 12, tzinfo=dt.timezone.utc)},
                                  ["a", "b", "c", "d", "e", "absent"], ["when"])
    assert json.loads(labels) == {"a": "x", "b": True, "d": 3}
    assert json.loads(meta) == {"when": "2024-05-01T12:00:00+00:00"}
    with pytest.raises(BadField, match="field 'when' is a date "):
        carried_fields({"when": dt.date(2024, 1, 1)}, ["when"], [])  # a date is meta, not a label
    with pytest.raises(BadField) as err:
        carried_fields({"tags": ["a"]}, [], ["tags"])
    assert err.value.reason == "bad_meta_field"


def test_card_says_who_made_the_labels_and_what_the_leak_check_removed():
    from collections import Counter

    from lmwright.data.card import carried_stats, render_card
    from lmwright.spec import Spec

    docs = [{"source_name": "pydocs", "labels": d.labels, "meta": d.meta}
            for d in collect_pydocs(PydocsSource(modules=["json"], topics=False))]
    n = len(docs)
    acc = {"read": n, "kept": n, "removed": {}, "quarantined": 0}
    stages = {"collect": {**acc, "by_source": {"pydocs": n}}, "clean": {**acc, "pii": {}}, "dedup": acc,
              "split": {**acc, "kept": n - 1, "removed": {"split_leak": 1}, "method": "hash",
                        "splits": {"train": n - 3, "val": 1, "test": 1},
                        "leak_check": {"enabled": True, "threshold": 0.5, "pairs": 2, "removed": 1}}}
    spec = Spec.model_validate({"project": {"name": "p"}})
    card = render_card(spec, stages, Counter({"PSF-2.0": n}), Counter({"en": n}), [100] * n, carried_stats(docs))
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["annotations_creators"] == ["machine-generated"]
    assert f"| chapter | {n} | 100.0 % | internet data handling ({n}) | derived by code: the library chapter" in card
    assert "Splits are assigned by a hash of the document id" in card and "| split | split_leak | 1 |" in card
    assert "Leak check: 1 validation/test documents removed (`split_leak`)" in card
    plain = render_card(spec, stages, Counter({"PSF-2.0": n}), Counter({"en": n}), [100] * n,
                        carried_stats([{**d, "labels": "{}"} for d in docs]))
    assert yaml.safe_load(plain.split("---")[1])["annotations_creators"] == ["no-annotation"]
    assert "Documents carry no labels" in plain and "text-classification" not in plain
