"""Annotation formats: Label Studio JSON import and export (round trip, every malformed case with its message, the
labeling config), CSV/JSONL/Parquet rows of items, exports of final labels to the fine-tuning formats and Parquet,
and human PII spans as an evaluation set for the PII detector."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from lmwright.annotate.formats import item_key, read_rows, to_finetune, write_jsonl, write_parquet
from lmwright.annotate.labelstudio import labelstudio_config, read_labelstudio, write_labelstudio
from lmwright.annotate.pii_eval import detector_kind, evaluate_pii, wilson
from lmwright.annotate.tasks import AnnotationError, Task
from lmwright.finetune import formats as ft

CLS = Task("topic", "classification", labels=("a", "b"))
ML = Task("tags", "multilabel", labels=("x", "y", "z"))
SP = Task("pii", "spans", labels=("EMAIL", "PHONE", "IP", "PERSON"))
PREF = Task("pref", "preference")
TXT = Task("write", "text")
RAT = Task("stars", "rating", low=0, high=4)  # Label Studio's stars start at 1: 0..4 is 1..5 stars


def choices(*c, name="label"):
    return {"from_name": name, "to_name": "text", "type": "choices", "value": {"choices": list(c)}}


def ann(result, who=1, **kw):
    return {"id": 1, "completed_by": who, "result": result, "created_at": "2024-05-01T10:00:00Z", **kw}


def dump(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj) if not isinstance(obj, str) else obj)
    return path


def roundtrip(tmp_path, task, tasks):
    first = read_labelstudio(dump(tmp_path / "in.json", tasks), task)
    write_labelstudio(first, task, tmp_path / "out.json")
    again = read_labelstudio(tmp_path / "out.json", task)
    assert again == first
    return first


# --- Label Studio import and round trip ----------------------------------------------------------------------------

def test_labelstudio_classification_imports_annotators_predictions_and_counts(tmp_path):
    tasks = [
        {"id": 7, "data": {"text": "first"},
         "annotations": [ann([choices("a")], who=3, lead_time=2.5),
                         ann([choices("b")], who={"id": 4, "email": "bo@example.org"}, ground_truth=True),
                         ann([], who=5, was_cancelled=True),
                         ann([{"from_name": "note", "to_name": "text", "type": "textarea",
                               "value": {"text": ["hm"]}}], who=6)],
         "predictions": [{"model_version": "clf-v2", "score": 0.75, "result": [choices("a")]}]},
        {"id": 8, "data": {"text": "second", "lang": "en"}, "annotations": []},
    ]
    recs = roundtrip(tmp_path, CLS, tasks)
    r = recs[0]
    assert r["key"] == "7" and r["source"] == "labelstudio:in.json#7" and r["gold"] == {"label": "b"}
    assert [(a["annotator"], a["value"]) for a in r["annotations"]] == [
        ("labelstudio:3", {"label": "a"}), ("bo@example.org", {"label": "b"})]
    assert r["annotations"][0]["created_at"] == "2024-05-01T10:00:00Z"
    assert r["predictions"] == [{"value": {"label": "a"}, "score": 0.75, "model": "clf-v2"}]
    assert recs[1]["data"] == {"text": "second", "lang": "en"} and recs[1]["annotations"] == []
    assert recs.counts == {"tasks": 2, "annotations": 2, "predictions": 1, "cancelled": 1, "empty": 1,
                           "ignored_results": 1}
    out = json.loads((tmp_path / "out.json").read_text())
    assert out[0]["annotations"][0]["completed_by"] == 3  # a Label Studio user id goes back as the id
    assert out[0]["annotations"][1]["completed_by"] == {"email": "bo@example.org"}
    assert out[0]["predictions"][0] == {"model_version": "clf-v2", "result": [
        {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["a"]}}], "score": 0.75}


def test_labelstudio_round_trips_every_kind(tmp_path):
    text = "Mail ann@example.org or 😀 call +44 20 7946 0958."
    s, e = text.index("+44"), text.index("0958") + 4
    cases = [
        (ML, [{"id": 1, "data": {"text": "t"}, "annotations": [ann([choices("z", "x")]), ann([], who=2)]}]),
        (SP, [{"id": 1, "data": {"text": text}, "annotations": [ann([
            {"from_name": "label", "to_name": "text", "type": "labels",
             "value": {"start": 5, "end": 20, "text": "ann@example.org", "labels": ["EMAIL"]}},
            {"from_name": "label", "to_name": "text", "type": "labels",
             "value": {"start": s, "end": e, "text": text[s:e], "labels": ["PHONE"]}}]), ann([], who=2)]}]),
        (PREF, [{"id": 1, "data": {"prompt": "p", "answer1": "one", "answer2": "two"}, "annotations": [
            ann([{"from_name": "label", "to_name": "answer1,answer2", "type": "pairwise",
                  "value": {"selected": "right"}}]),
            ann([{"from_name": "label_tie", "to_name": "prompt", "type": "choices", "value": {"choices": ["tie"]}}],
                who=2)]}]),
        (TXT, [{"id": 1, "data": {"prompt": "Say hi"}, "annotations": [
            ann([{"from_name": "label", "to_name": "text", "type": "textarea",
                  "value": {"text": ["Hi", "there"]}}])]}]),
        (RAT, [{"id": 1, "data": {"text": "t"}, "annotations": [
            ann([{"from_name": "label", "to_name": "text", "type": "rating", "value": {"rating": 1}}]),
            ann([{"from_name": "label", "to_name": "text", "type": "rating", "value": {"rating": 5}}], who=2)]}]),
    ]
    got = {task.kind: [a["value"] for a in roundtrip(tmp_path, task, tasks)[0]["annotations"]]
           for task, tasks in cases}
    assert got == {
        "multilabel": [{"labels": ["x", "z"]}, {"labels": []}],
        "spans": [{"spans": [{"start": 5, "end": 20, "label": "EMAIL"}, {"start": s, "end": e, "label": "PHONE"}]},
                  {"spans": []}],
        "preference": [{"choice": "b"}, {"choice": "tie"}],
        "text": [{"text": "Hi\nthere"}],
        "rating": [{"rating": 0}, {"rating": 4}]}


def test_lmwright_records_round_trip_through_labelstudio_with_what_it_has_no_place_for(tmp_path):
    recs = [{"key": "doc-1", "data": {"text": "hello"}, "source": "split:train", "gold": {"label": "a"},
             "predictions": [{"value": {"label": "b"}, "score": None, "model": "m"}],
             "annotations": [{"annotator": "alice", "value": {"label": "a"}, "created_at": "2024-01-02T03:04:05+00:00",
                              "comment": "easy", "guideline_version": 2},
                             {"annotator": "labelstudio:9", "value": {"label": "b"}, "created_at": None,
                              "comment": None, "guideline_version": None}],
             "final": {"value": {"label": "a"}, "by": "rev", "at": "2024-01-03T00:00:00+00:00", "how": "adjudicated",
                       "guideline_version": 2}}]
    task = Task("topic", "classification", labels=("a", "b"), extra={"text_field": "body", "from_name": "topic"})
    assert write_labelstudio(recs, task, tmp_path / "ls.json") == 1
    raw = json.loads((tmp_path / "ls.json").read_text())
    assert raw[0]["data"] == {"body": "hello"} and raw[0]["annotations"][0]["result"][0]["from_name"] == "topic"
    assert raw[0]["annotations"][0]["ground_truth"] is True
    assert read_labelstudio(tmp_path / "ls.json", task) == recs


def test_utf16_offsets_from_old_labelstudio_are_converted(tmp_path):
    text = "😀😀 write to ann@example.org"
    start16 = 4 + len(" write to ")  # each emoji is two UTF-16 units
    tasks = [{"id": 1, "data": {"text": text}, "annotations": [ann([
        {"from_name": "label", "to_name": "text", "type": "labels",
         "value": {"start": start16, "end": start16 + 15, "text": "ann@example.org", "labels": ["EMAIL"]}}])]}]
    recs = read_labelstudio(dump(tmp_path / "t.json", tasks), SP)
    span = recs[0]["annotations"][0]["value"]["spans"][0]
    assert text[span["start"]:span["end"]] == "ann@example.org"


# --- Label Studio errors ---------------------------------------------------------------------------------------------

def _five_tasks(bad_annotation):
    tasks = [{"id": 10 + i, "data": {"text": f"t{i}"}, "annotations": [ann([choices("a")])]} for i in range(5)]
    tasks[3] = {"id": 17, "data": {"text": "t3"}, "annotations": [bad_annotation]}
    return tasks


@pytest.mark.parametrize("bad, message", [
    (ann([{"from_name": "note", "to_name": "text", "type": "textarea", "value": {"text": ["x"]}}, choices("foo")]),
     "tasks.json: task 3 (id 17): annotations[0].result[1].value.choices: 'foo' is not in the label set (a, b)"),
    (ann([choices("a", "b")]),
     "tasks.json: task 3 (id 17): annotations[0].result[0].value.choices: a classification answer is one choice"),
    (ann([choices("a"), choices("b", name="other")]),
     "tasks.json: task 3 (id 17): annotations[0]: choices results from several controls (label, other)"),
    (ann([{"from_name": "label", "to_name": "text", "type": "choices", "value": "a"}]),
     "tasks.json: task 3 (id 17): annotations[0].result[0].value: an object (got str)"),
    (ann({"choices": ["a"]}), "tasks.json: task 3 (id 17): annotations[0].result: a list of result items (got dict)"),
    (ann([choices("a")], who=None), "tasks.json: task 3 (id 17): annotations[0].completed_by: a user id"),
    ("oops", "tasks.json: task 3 (id 17): annotations[0]: an annotation is an object with 'result' (got str)"),
])
def test_malformed_labelstudio_names_file_task_and_field(tmp_path, bad, message):
    with pytest.raises(AnnotationError) as exc:
        read_labelstudio(dump(tmp_path / "tasks.json", _five_tasks(bad)), CLS)
    assert str(exc.value).startswith(f"{tmp_path}/{message}"), str(exc.value)


def test_labelstudio_file_level_errors(tmp_path):
    def err(obj, task=CLS) -> str:
        with pytest.raises(AnnotationError) as exc:
            read_labelstudio(dump(tmp_path / "f.json", obj), task)
        return str(exc.value).replace(f"{tmp_path}/", "")

    assert err('[\n  {"id": 1,\n   "data": {"text": "x"}\n  ,]') .startswith(
        "f.json: line 4, column 4: not valid JSON (Expecting property name enclosed in double quotes)")
    assert err({"tasks": []}) == "f.json: a Label Studio export is a JSON list of tasks (got dict)"
    assert err([{"id": 1, "data": {"txt": "x"}}]).startswith(
        "f.json: task 0 (id 1): data: field 'text' is missing or empty")
    assert err([{"data": {"text": "x"}}, 5]) == "f.json: task 1: a task is an object with 'data' (got int)"
    assert err([{"id": 1, "data": {"text": "x"}}, {"id": 1, "data": {"text": "y"}}]).startswith(
        "f.json: task 1 (id 1): item key '1' repeats task 0")
    spans = [{"id": 2, "data": {"text": "mail ann@x.org"}, "annotations": [ann([
        {"from_name": "label", "to_name": "text", "type": "labels",
         "value": {"start": 0, "end": 4, "text": "ann@", "labels": ["EMAIL"]}}])]}]
    assert "annotations[0].result[0].value: the text at 0..4 is 'mail', not the span's text 'ann@'" in err(spans, SP)
    spans[0]["annotations"][0]["result"][0]["value"].update(start=5, end=99, text=None)
    assert "result[0].value: start and end are offsets with 0 <= start < end <= 14 (got 5..99)" in err(spans, SP)
    pair = [{"id": 3, "data": {"prompt": "p", "a": "x", "b": "y"}, "annotations": [ann([
        {"from_name": "pw", "to_name": "a,b", "type": "pairwise", "value": {"selected": "middle"}}])]}]
    assert "annotations[0].result[0].value.selected: 'left' (a) or 'right' (b)" in err(pair, PREF)
    rating = [{"id": 4, "data": {"text": "t"}, "annotations": [ann([
        {"from_name": "r", "to_name": "text", "type": "rating", "value": {"rating": 6}}])]}]
    assert "value.rating: a whole number of stars from 1 to 5 (the scale 0..4; got 6)" in err(rating, RAT)
    missing = tmp_path / "nope.json"
    with pytest.raises(AnnotationError, match="nope.json: cannot read this Label Studio file"):
        read_labelstudio(missing, CLS)


def test_labelstudio_config_sets_up_each_kind_and_escapes_labels():
    odd = Task("odd", "classification", labels=('a & b', '<c>', 'say "hi"'))
    root = ET.fromstring(labelstudio_config(odd))
    assert [c.get("value") for c in root.iter("Choice")] == ['a & b', '<c>', 'say "hi"']
    assert root.find("Choices").get("toName") == "text" and root.find("Text").get("value") == "$text"
    assert ET.fromstring(labelstudio_config(ML)).find("Choices").get("choice") == "multiple"
    assert [x.get("value") for x in ET.fromstring(labelstudio_config(SP)).iter("Label")] == list(SP.labels)
    pref = ET.fromstring(labelstudio_config(PREF))
    assert pref.find("Pairwise").get("toName") == "answer1,answer2"
    assert [t.get("name") for t in pref.iter("Text")] == ["prompt", "answer1", "answer2"]
    assert pref.find("Choices").get("name") == "label_tie"
    txt = ET.fromstring(labelstudio_config(TXT, [{"data": {"prompt": "Say hi"}}]))
    assert txt.find("Text").get("value") == "$prompt" and txt.find("TextArea").get("toName") == "text"
    assert ET.fromstring(labelstudio_config(RAT)).find("Rating").get("maxRating") == "5"


# --- CSV and JSONL rows --------------------------------------------------------------------------------------------

def test_csv_rows_become_items_with_gold_or_annotations(tmp_path):
    path = tmp_path / "items.csv"
    path.write_text('id,text,label\n1,"a, quoted text",a\n2,second, b \n3,third,\n2,second, b \n')
    gold = read_rows(path, CLS, label_field="label", id_field="id", as_="gold")
    assert [(r["key"], r["data"]["text"], r["gold"]) for r in gold] == [
        ("1", "a, quoted text", {"label": "a"}), ("2", "second", {"label": "b"}), ("3", "third", None)]
    assert gold[0]["source"] == "file:items.csv:2" and gold.counts == {"rows": 4, "duplicates": 1, "unlabelled": 1}
    anns = read_rows(path, CLS, label_field="label", id_field="id", at="2024-01-01T00:00:00+00:00")
    assert anns[0]["annotations"] == [{"annotator": "file:items.csv", "value": {"label": "a"},
                                       "created_at": "2024-01-01T00:00:00+00:00", "comment": None,
                                       "guideline_version": None}]
    plain = read_rows(path, CLS)  # no id column: keyed by a hash of the text, the same in any file
    assert plain[0]["key"] == item_key({"text": "a, quoted text"}) and plain[0]["annotations"] == []


def test_jsonl_rows_for_each_kind(tmp_path):
    def rows(task, recs, **kw):
        path = tmp_path / f"{task.name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in recs))
        return read_rows(path, task, label_field="y", as_="gold", **kw)

    assert rows(ML, [{"text": "t", "y": "z|x"}, {"text": "u", "y": []}])[0]["gold"] == {"labels": ["x", "z"]}
    spans = rows(SP, [{"text": "call 555", "y": '[{"start": 5, "end": 8, "label": "PHONE"}]'}])
    assert spans[0]["gold"] == {"spans": [{"start": 5, "end": 8, "label": "PHONE"}]}
    assert rows(PREF, [{"prompt": "p", "a": "x", "b": "y", "y": "Tie"}])[0]["data"] == {"prompt": "p", "a": "x",
                                                                                         "b": "y"}
    assert rows(TXT, [{"prompt": "Say hi", "y": "Hi"}])[0]["data"] == {"prompt": "Say hi"}
    rated = rows(Task("r", "rating"), [{"prompt": "q", "response": "r", "y": "4"}, {"review": "ok", "y": 2}],
                 text_field="review")
    assert [r["gold"] for r in rated] == [{"rating": 4}, {"rating": 2}] and rated[1]["data"] == {"text": "ok"}


def test_bad_rows_name_file_line_and_column(tmp_path):
    def err(name, text, task=CLS, **kw) -> str:
        (tmp_path / name).write_text(text)
        with pytest.raises(AnnotationError) as exc:
            read_rows(tmp_path / name, task, **kw)
        return str(exc.value).replace(f"{tmp_path}/", "")

    assert err("a.csv", "text,label\nok,a\nfine,zzz\n", label_field="label") == (
        "a.csv:3: column 'label': field 'label': 'zzz' is not in the label set (a, b)")
    assert err("b.csv", "text,label\nok,a\n,b\n", label_field="label") == (
        "b.csv:3: column 'text' is empty; a classification item needs the column(s) 'text'")
    assert err("c.jsonl", '{"text": "ok"}\n{"text": \n', label_field="label").startswith(
        "c.jsonl:2: not valid JSON")
    assert err("d.jsonl", '{"body": 5}\n', text_field="body") == (
        "d.jsonl:1: column 'body' is a int; a classification item needs the column(s) 'body'")
    assert err("e.csv", "id,text\n1,x\n,y\n", id_field="id").startswith("e.csv:3: column 'id' is missing or empty")
    assert err("f.csv", "id,text,label\n1,x,a\n1,x,b\n", label_field="label", id_field="id") == (
        "f.csv:3: key '1' repeats line 2 with another label; give each item one row (or distinct ids)")
    assert err("g.csv", "text,y\nt,4.5\n", task=Task("r", "rating"), label_field="y").startswith(
        "g.csv:2: column 'y': field 'rating': '4.5' is not a whole number from 1 to 5")
    assert err("h.csv", "text,y\nt,[oops\n", task=ML, label_field="y").startswith("h.csv:2: column 'y': not valid JSON")
    assert err("i.txt", "x") .endswith("unsupported annotation items file type '.txt'; use .jsonl, .csv or .parquet "
                                       "(each may be compressed: .gz, .bz2, .xz, .zst)")
    with pytest.raises(AnnotationError, match="needs the label column"):
        read_rows(tmp_path / "a.csv", CLS, as_="gold")


# --- exports of final labels ----------------------------------------------------------------------------------------

def final(value, by="rev"):
    return {"value": value, "by": by, "at": "2024-02-01T00:00:00+00:00", "how": "agreed", "guideline_version": 3}


def rec(key, data, value=None, n_ann=2):
    return {"key": key, "data": data, "source": "split:train", "gold": None, "predictions": [],
            "annotations": [{"annotator": f"u{i}", "value": value, "created_at": None, "comment": None,
                             "guideline_version": 3} for i in range(n_ann if value else 0)],
            "final": final(value) if value else None}


def test_finetune_exports_are_read_by_finetune_formats(tmp_path):
    cls = to_finetune([rec("1", {"text": "x"}, {"label": "a"}), rec("2", {"text": "y"})], CLS, with_key=True)
    assert list(cls) == [{"text": "x", "label": "a", "key": "1"}] and cls.counts["no_final"] == 1
    write_jsonl(cls, tmp_path / "cls.jsonl")
    assert ft.load(tmp_path / "cls.jsonl", "classify").rows == [{"text": "x", "label": "a"}]

    pref = to_finetune([rec("1", {"prompt": "p", "a": "A", "b": "B"}, {"choice": "b"}),
                        rec("2", {"prompt": "p", "a": "A", "b": "B"}, {"choice": "tie"}),
                        rec("3", {"prompt": "p", "a": "S", "b": "S"}, {"choice": "a"})], PREF)
    assert list(pref) == [{"prompt": "p", "chosen": "B", "rejected": "A"}]
    assert pref.counts == {"records": 3, "exported": 1, "no_final": 0, "ties": 1, "same_answers": 1}
    write_jsonl(pref, tmp_path / "pref.jsonl")
    assert ft.load(tmp_path / "pref.jsonl", "preference").read == 1

    sft = to_finetune([rec("1", {"prompt": "Say hi"}, {"text": "Hi!"}),
                       rec("2", {"text": "teh cat"}, {"text": "the cat"})],
                      Task("fix", "text", extra={"instruction": "Fix the spelling."}))
    assert sft[1]["messages"][0]["content"] == "Fix the spelling.\n\nteh cat"
    write_jsonl(sft, tmp_path / "sft.jsonl")
    assert ft.load(tmp_path / "sft.jsonl", "sft").formats == {"openai": 2}

    assert list(to_finetune([rec("1", {"prompt": "q", "response": "r"}, {"rating": 4})], Task("r", "rating"))) == [
        {"text": "q\n\nr", "label": "4", "rating": 4}]
    assert list(to_finetune([rec("1", {"text": "t"}, {"labels": ["y"]})], ML)) == [{"text": "t", "labels": ["y"]}]
    span = {"spans": [{"start": 0, "end": 1, "label": "IP"}]}
    assert list(to_finetune([rec("1", {"text": "t"}, span)], SP)) == [{"text": "t", **span}]
    with pytest.raises(AnnotationError, match="item '1': final: field 'label': 'c' is not in the label set"):
        to_finetune([rec("1", {"text": "x"}, {"label": "c"})], CLS)


def test_parquet_export_reads_back_one_row_per_final_item(tmp_path):
    recs = [rec("1", {"text": "x"}, {"label": "a"}), rec("2", {"text": "y"}),
            rec("3", {"text": "z"}, {"label": "b"}, 1)]
    assert write_parquet(recs, CLS, tmp_path / "out" / "labels.parquet") == {"written": 2, "no_final": 1}
    rows = pq.read_table(tmp_path / "out" / "labels.parquet").to_pylist()
    assert [r["key"] for r in rows] == ["1", "3"]
    answers = json.loads(rows[0].pop("answers"))  # the work behind the label: every answer
    assert [(a["annotator"], a["value"]) for a in answers] == [("u0", {"label": "a"}), ("u1", {"label": "a"})]
    assert rows[0] == {"key": "1", "task": "topic", "kind": "classification", "text": "x", "data": '{"text": "x"}',
                       "value": '{"label": "a"}', "by": "rev", "at": "2024-02-01T00:00:00+00:00", "how": "agreed",
                       "guideline_version": 3, "n_annotations": 2, "annotators": ["u0", "u1"], "source": "split:train"}
    assert write_parquet([], CLS, tmp_path / "empty.parquet") == {"written": 0, "no_final": 0}
    assert pq.read_table(tmp_path / "empty.parquet").num_rows == 0


# --- PII evaluation set ----------------------------------------------------------------------------------------------

def pii_item(key, text, *spans):
    marks = [{"start": text.index(s), "end": text.index(s) + len(s), "label": label} for label, s in spans]
    return rec(key, {"text": text}, {"spans": marks})


PII_SET = [
    pii_item("1", "Mail jane.doe@example.org or call +44 20 7946 0958 today.",
             ("EMAIL", "jane.doe@example.org"), ("PHONE", "+44 20 7946 0958")),
    # the annotator took the full stop into the e-mail: no exact match, an overlapping one
    pii_item("2", "Our server at 8.8.8.8 refused the connection from bob@mail.example.com.",
             ("IP", "8.8.8.8"), ("EMAIL", "bob@mail.example.com.")),
    pii_item("3", "Reach Jane Roe on (202) 555-0143, thanks.", ("PERSON", "Jane Roe"), ("PHONE", "(202) 555-0143")),
    pii_item("4", "Version 1.2.3.4 of the tool ships today; no personal data here."),
    pii_item("5", "Write to support@example.com for help."),  # a role address: the annotators left it
    pii_item("6", "Internal host 10.0.0.5 is down.", ("IP", "10.0.0.5")),  # private: the detector skips it
    rec("7", {"text": "not reviewed yet: a@b.org"}),
]


def test_pii_detector_scored_against_human_spans():
    got = evaluate_pii(PII_SET, SP)
    assert (got["items"], got["no_final"], got["kinds"]) == (6, 1, ["email", "ip", "phone"])
    assert (got["human_spans"], got["detected_spans"], got["unmapped"]) == (6, 6, {"PERSON": 1})
    ex, ov = got["exact"], got["overlap"]
    assert (ex["tp"], ex["fp"], ex["fn"]) == (4, 2, 2) and ex["precision"] == ex["recall"] == pytest.approx(4 / 6)
    assert (ov["tp"], ov["precision"], ov["recall"], ov["f1"]) == (5, 5 / 6, 5 / 6, pytest.approx(5 / 6))
    per = got["per_kind"]
    assert per["email"]["exact"]["precision"] == pytest.approx(1 / 3) and per["email"]["overlap"]["recall"] == 1.0
    assert per["phone"]["exact"]["f1"] == 1.0 and per["ip"]["exact"]["recall"] == 0.5
    assert {(m["key"], m["text"]) for m in got["misses"]} == {("2", "bob@mail.example.com."), ("6", "10.0.0.5")}
    assert {(m["key"], m["text"]) for m in got["false_alarms"]} == {("2", "bob@mail.example.com"),
                                                                    ("5", "support@example.com")}
    lo, hi = ex["precision_ci"]
    assert lo < 4 / 6 < hi
    assert evaluate_pii(PII_SET, SP, ip_scope="all")["per_kind"]["ip"]["exact"]["recall"] == 1.0


def test_pii_matching_rules_with_a_given_detector():
    item = pii_item("1", "aaaa bbbb cccc dddd", ("EMAIL", "aaaa"), ("EMAIL", "bbbb"), ("Phone Number", "dddd"))
    # one detected span across two human spans matches one of them; a secret is a kind nobody labelled
    got = evaluate_pii([item], detect=lambda text: [(0, 9, "email"), {"start": 15, "end": 19, "type": "phone"},
                                                    (10, 14, "secret")])
    assert got["kinds"] == ["email", "phone"] and got["other_kinds"] == {"secret": 1}
    assert (got["exact"]["tp"], got["overlap"]["tp"], got["overlap"]["fp"]) == (1, 2, 0)
    assert got["per_kind"]["email"]["overlap"] == {**got["per_kind"]["email"]["overlap"], "tp": 1, "fn": 1}
    assert detector_kind("E-Mail") == "email" and detector_kind("person") is None
    assert detector_kind("HANDLE", {"HANDLE": "email"}) == "email"
    assert wilson(0, 0) is None and wilson(10, 10)[1] == 1.0
    empty = evaluate_pii([rec("1", {"text": "x"}, {"spans": []})])
    assert empty["exact"]["precision"] is None and empty["kinds"] == []
    with pytest.raises(AnnotationError, match="item '1': final: a span answer"):
        evaluate_pii([rec("1", {"text": "x"}, {"label": "a"})])
