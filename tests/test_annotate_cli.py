"""`lmwright annotate` from the command line on a user's own files: items and gold labels from JSONL, answers from a
Label Studio export (malformed ones named by file, task and field), agreement, the exports, the labeling config, and
human-labelled PII spans scoring the PII detector in the data report."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from lmwright.annotate import labelstudio
from lmwright.annotate.tasks import Task
from lmwright.cli import app as cli
from lmwright.errors import LmwrightError

TEXTS = [("The json module encodes objects.", "json"), ("textwrap wraps paragraphs.", "text"),
         ("csv reads rows.", "json"), ("difflib compares sequences.", "text"), ("base64 encodes bytes.", "json"),
         ("string has templates.", "text")]
PII = [("Mail ada@example.org or call +44 20 7946 0958.", [(5, 20, "EMAIL"), (29, 45, "PHONE")]),
       ("Nothing personal here.", []),
       ("Write to bob@example.com today.", [(9, 24, "EMAIL")])]


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "p"
    (root / "corpus").mkdir(parents=True)
    (root / "corpus" / "notes.jsonl").write_text("".join(json.dumps({"text": t * 20}) + "\n" for t, _ in TEXTS))
    (root / "items.jsonl").write_text("".join(json.dumps({"id": f"i{i}", "text": t, "topic": lab}) + "\n"
                                              for i, (t, lab) in enumerate(TEXTS)))
    (root / "pii.jsonl").write_text("".join(json.dumps({"id": f"p{i}", "text": t}) + "\n"
                                            for i, (t, _) in enumerate(PII)))
    spec = {"project": {"name": "own"},
            "data": {"sources": [{"kind": "files", "name": "notes", "paths": ["corpus/*.jsonl"], "profile": "minimal"}]},
            "annotate": {"tasks": [
                {"name": "topic", "kind": "classification", "labels": ["json", "text"], "overlap": 2,
                 "items": {"from": "file", "path": "items.jsonl", "id_field": "id"}},
                {"name": "pii", "kind": "spans", "labels": ["EMAIL", "PHONE", "PERSON"], "overlap": 1,
                 "items": {"from": "file", "path": "pii.jsonl", "id_field": "id"}}]}}
    (root / "lmwright.yaml").write_text(yaml.safe_dump(spec))
    r = invoke("annotate", "sync", "-C", str(root))
    assert r.exit_code == 0 and "topic: 6 items added" in r.output and "pii: 3 items added" in r.output, r.output
    return root


def _labelstudio(root, answers: dict[str, list[str]]) -> str:
    """A Label Studio export of the topic items with each annotator's labels (written by our exporter, then read back
    by the importer: the round trip is exact)."""
    task = Task("topic", "classification", ("json", "text"))
    recs = [{"key": f"i{i}", "data": {"text": t}, "source": "ls", "gold": None, "predictions": [], "final": None,
             "annotations": [{"annotator": who, "value": {"label": labs[i]}, "created_at": "2026-12-01T10:00:00+00:00",
                              "comment": None, "guideline_version": None} for who, labs in answers.items()]}
            for i, (t, _) in enumerate(TEXTS)]
    path = root / "ls.json"
    labelstudio.write_labelstudio(recs, task, path)
    assert [r["annotations"] for r in labelstudio.read_labelstudio(path, task)] == [r["annotations"] for r in recs]
    return str(path)


def test_answers_from_label_studio_agreement_and_exports(project, tmp_path):
    truth = [lab for _, lab in TEXTS]
    other = truth[:5] + ["json"]  # disagrees on the last item
    r = invoke("annotate", "import", "topic", _labelstudio(project, {"ann": truth, "bob": other}), "-C", str(project))
    assert r.exit_code == 0 and "12 answers added" in r.output, r.output
    r = invoke("annotate", "agreement", "topic", "-C", str(project), "--json")
    rep = json.loads(r.stdout)
    from sklearn.metrics import cohen_kappa_score

    assert rep["pairs"][0]["kappa"] == pytest.approx(cohen_kappa_score(truth, other))
    r = invoke("annotate", "status", "-C", str(project), "--json")
    st = json.loads(r.stdout)["topic"]
    assert st["final"] == 5 and st["to_review"] == 1  # five agreed, one disagreement waits for a reviewer
    out = tmp_path / "ft.jsonl"
    assert invoke("annotate", "export", "topic", str(out), "--format", "finetune", "-C", str(project)).exit_code == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(r["label"] for r in rows) == sorted(truth[:5])
    assert invoke("annotate", "export", "topic", str(tmp_path / "a.parquet"), "--format", "parquet",
                  "-C", str(project)).exit_code == 0
    table = pq.read_table(tmp_path / "a.parquet").to_pylist()  # the final labels, each with the answers behind it
    assert len(table) == 5 and [a["annotator"] for a in json.loads(table[0]["answers"])] == ["ann", "bob"]
    assert invoke("annotate", "export", "topic", str(tmp_path / "back.json"), "-C", str(project)).exit_code == 0
    back = json.loads((tmp_path / "back.json").read_text())
    assert len(back) == 6 and {a["result"][0]["from_name"] for t in back for a in t["annotations"]} == {"label"}
    r = invoke("annotate", "config", "topic", "-C", str(project))
    assert "<Choices" in r.stdout and 'value="json"' in r.stdout


def test_bad_label_studio_files_and_labels_are_named_and_store_nothing(project):
    bad = project / "bad.json"
    bad.write_text(json.dumps([{"id": 5, "data": {"text": "x"}, "annotations": [
        {"completed_by": 1, "result": [{"from_name": "label", "to_name": "text", "type": "choices",
                                        "value": {"choices": ["astrology"]}}]}]}]))
    r = invoke("annotate", "import", "topic", str(bad), "-C", str(project))
    assert isinstance(r.exception, LmwrightError) and "bad.json: task 0 (id 5)" in str(r.exception) and "'astrology' is not in the label set" \
        in str(r.exception), r.output
    bad.write_text('[{"id": 1, "data": {"text": "x"}')  # cut short
    r = invoke("annotate", "import", "topic", str(bad), "-C", str(project))
    assert isinstance(r.exception, LmwrightError) and "bad.json" in str(r.exception) and "line 1" in str(r.exception)
    r = invoke("annotate", "status", "topic", "-C", str(project), "--json")
    assert json.loads(r.stdout)["topic"]["answers"] == 0
    r = invoke("annotate", "agreement", "nope", "-C", str(project))
    assert isinstance(r.exception, LmwrightError) and "no annotation task 'nope'" in str(r.exception)


def test_human_pii_spans_score_the_detector_in_the_data_report(project):
    task = Task("pii", "spans", ("EMAIL", "PHONE", "PERSON"))
    recs = [{"key": f"p{i}", "data": {"text": t}, "source": "ls", "gold": None, "predictions": [], "final": None,
             "annotations": [{"annotator": "ann", "created_at": "2026-12-01T10:00:00+00:00", "comment": None,
                              "guideline_version": None,
                              "value": {"spans": [{"start": s, "end": e, "label": lab} for s, e, lab in spans]}}]}
            for i, (t, spans) in enumerate(PII)]
    for t, spans in PII:
        assert all(t[s:e] for s, e, _ in spans)
    path = project / "pii_ls.json"
    labelstudio.write_labelstudio(recs, task, path)
    assert invoke("annotate", "import", "pii", str(path), "-C", str(project)).exit_code == 0
    # one annotator per item (overlap 1): each imported answer settles its item; the detector is scored on them
    r = invoke("annotate", "pii", "pii", "-C", str(project), "--json")
    ev = json.loads(r.stdout)
    assert ev["human_spans"] == 3 and ev["exact"]["recall"] == 1.0 and ev["exact"]["precision"] == 1.0, ev
    r = invoke("data", "inspect", "-C", str(project), "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["pii_detector"]["pii"]["exact"]["tp"] == 3


def test_the_tool_alone_serves_its_tasks_without_a_model(project):
    import re
    import subprocess
    import sys

    import httpx

    proc = subprocess.Popen([sys.executable, "-m", "lmwright", "annotate", "serve", "-C", str(project), "--port", "0"],
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        url = re.search(r"(http://\S+)/annotate", line).group(1)
        assert "tasks: topic, pii" in line
        tasks = httpx.get(f"{url}/v1/annotate/tasks", timeout=30).json()
        assert [t["name"] for t in tasks["data"]] == ["topic", "pii"] and tasks["annotator"] == "local"
        assert "lmwright annotate" in httpx.get(f"{url}/annotate", timeout=30).text
    finally:
        proc.terminate()
        proc.wait(timeout=30)
