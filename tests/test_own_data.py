"""Bring your own data: `lmwright init DIR --data ...` then `lmwright run`, end to end, on each kind of corpus a user
brings (Markdown with code, JSONL with a text field and a label, CSV, a SQLite table). The fine-tunings the data
has rows for run, the others are skipped with their reason, and the report card is written.

The corpora are real text that installed packages ship: the Markdown READMEs of installed distributions (their
long descriptions, prose with code blocks) and the standard library's docstrings, labelled by library chapter
(JSONL, SQLite) or by the kind of object they document (CSV). The spec `init` writes is run as written, except
for the model and step sizes, which are cut to the tiny ones of the other tests' project."""

from __future__ import annotations

import csv
import importlib
import inspect
import json
import sqlite3
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from lmwright.cli import app
from lmwright.data.sources.pydocs import chapter
from lmwright.errors import LmwrightError
from lmwright.finetune.fit import fits
from lmwright.finetune.pydocs_tasks import summary
from lmwright.spec import Spec

# the tiny project's sizes (tests/conftest.py TINY): a whole run in seconds
TINY = ["tokenizer.vocab_size=400", "model.n_layers=2", "model.d_model=32", "model.n_heads=4", "model.n_kv_heads=2",
        "model.max_seq_len=64", "train.max_steps=16", "train.batch_size=4", "train.seq_len=32", "train.lr=0.01",
        "train.warmup_steps=2", "train.eval_every=8", "train.eval_batches=2", "train.checkpoint_every=8",
        "train.threads=1", "eval.max_new_tokens=8", "eval.bootstrap=50", "eval.continuation.docs=8",
        "eval.continuation.prompt_tokens=8", "eval.continuation.new_tokens=4", "risk.canaries.repeats=[1,8]",
        "risk.canaries.candidates=50", "risk.verbatim.docs=8", "risk.verbatim.prompt_tokens=8",
        "risk.verbatim.new_tokens=4", "risk.samples=4", "risk.injection.attempts=8", "risk.toxicity.prompts=4",
        "risk.robustness.examples=8", "risk.bias.classifier_texts=4", "finetune.steps=6", "finetune.batch_size=4",
        "finetune.seq_len=48", "finetune.eval_every=3", "finetune.checkpoint_every=3", "finetune.lora.r=2",
        "finetune.classify.min_examples=3"]
# the risk suite's slower checks: the suite is tested on its own (tests/test_risk*.py); here they cost CI time
FEWER_CHECKS = ["risk.bias.enabled=false", "risk.injection.enabled=false", "risk.toxicity.enabled=false",
                "risk.robustness.enabled=false", "risk.facts.enabled=false", "eval.continuation.docs=0"]
MODULES = ["json", "textwrap", "string", "functools", "csv", "base64", "shlex", "difflib", "socket", "threading",
           "collections", "re", "os", "asyncio", "email.message", "http.client", "queue", "struct", "zipfile"]


def cli(*args: str):
    return CliRunner().invoke(app, list(args))


def docstrings() -> list[dict]:
    """Public docstrings of some standard-library modules: text, chapter, and the kind of object documented."""
    rows, seen = [], set()
    for m in MODULES:
        mod = importlib.import_module(m)
        for name, obj in sorted(vars(mod).items()):
            doc = inspect.getdoc(obj)
            if name.startswith("_") or not doc or len(doc) < 120 or doc in seen:
                continue
            seen.add(doc)
            kind = "class" if inspect.isclass(obj) else "function" if callable(obj) else "other"
            rows.append({"id": f"{m}.{name}", "text": doc, "chapter": chapter(f"{m}.{name}"), "kind": kind})
    return rows


def readmes(n: int = 40) -> list[tuple[str, str]]:
    """(name, text) of installed distributions' Markdown long descriptions, which mix prose and code blocks."""
    out = {}
    for dist in metadata.distributions():
        meta = dist.metadata
        body = meta.get_payload() or meta.get("Description") or ""
        if "markdown" in (meta.get("Description-Content-Type") or "") and len(body) > 1500 and "```" in body:
            out[meta["Name"].lower()] = body[:8000]
    if len(out) < 10:  # the test extra installs dozens (constraints.txt); an environment of one's own may not
        pytest.skip(f"only {len(out)} installed distributions have a Markdown README with code blocks")
    return sorted(out.items())[:n]


def init_and_run(tmp_path: Path, monkeypatch, *data: str) -> tuple[dict, dict, Path]:
    """`lmwright init proj --data ...` in tmp_path, then `lmwright run` (tiny sizes): (spec written, outcomes, dir)."""
    monkeypatch.chdir(tmp_path)
    args = [a for d in data for a in ("--data", d)]
    r = cli("init", "proj", *args)
    assert r.exit_code == 0, (r.output, r.exception)
    spec = yaml.safe_load((tmp_path / "proj" / "lmwright.yaml").read_text())
    sets = TINY + FEWER_CHECKS
    r = cli("run", "-C", "proj", *[x for s in sets for x in ("--set", s)], "--json")
    assert r.exit_code == 0, (r.output, r.exception)
    outcomes = json.loads(r.stdout[r.stdout.index("{"):])
    assert all(o["status"] == "done" for o in outcomes.values()), {k: o["status"] for k, o in outcomes.items()}
    assert (tmp_path / "proj" / "lmwright-out" / "report.html").stat().st_size > 0
    return spec, outcomes, tmp_path / "proj"


def ran(outcomes: dict, kind: str) -> bool:
    return not outcomes[kind].get("skipped")


@pytest.mark.slow
def test_markdown_with_code(tmp_path, monkeypatch):
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in readmes():
        (docs / f"{name}.md").write_text(text, encoding="utf-8")
    spec, outcomes, proj = init_and_run(tmp_path, monkeypatch, "docs/*.md")
    src = spec["data"]["sources"][0]
    assert src["kind"] == "files" and src["paths"] == ["../docs/*.md"] and src["profile"] == "documentation"
    clean = outcomes["clean"]
    assert clean["kept"] >= 0.8 * clean["read"], clean  # the prose profile removed most of such a corpus
    # no instructions and no labels: both fine-tunings are off in the spec, each with what it would need
    assert spec["finetune"]["sft"]["enabled"] is False and spec["finetune"]["classify"]["enabled"] is False
    text = (proj / "lmwright.yaml").read_text()
    assert "sft: skipped: no rows; it needs instruction rows" in text and "classify: skipped: no labels" in text
    assert not ran(outcomes, "sft") and not ran(outcomes, "classify") and ran(outcomes, "pretrain")
    assert spec["eval"]["prompts"] and "The json module" not in spec["eval"]["prompts"]
    # the report card and the outcome say why each did not run, and what it would need
    assert "instruction rows" in outcomes["sft"]["reason"] and "label_fields" in outcomes["classify"]["reason"]
    report = (proj / "lmwright-out" / "report.md").read_text()
    assert "Not run: sft: off, and no rows; it needs instruction rows" in report, report[-2000:]
    # asked for by name, a recipe without rows is refused with the reason, not reported as done
    r = cli("finetune", "classify", "-C", str(proj), *[x for s in TINY for x in ("--set", s)])
    assert isinstance(r.exception, LmwrightError) and "not run: no labels" in str(r.exception), r.output
    # turned back on by hand, a recipe without rows is said to be skipped before any work, not failed after it
    r = cli("run", "-C", str(proj), *[x for s in [*TINY, "finetune.sft.enabled=true"] for x in ("--set", s)])
    assert r.exit_code == 0, r.output
    assert r.output.index("finetune sft: skipped: no rows") < r.output.index("collect"), r.output


@pytest.mark.slow
def test_jsonl_with_a_text_field_and_a_label(tmp_path, monkeypatch):
    with open(tmp_path / "notes.jsonl", "w", encoding="utf-8") as f:
        for row in docstrings():
            f.write(json.dumps({"id": row["id"], "body": row["text"], "topic": row["chapter"],
                                "written": "2024-05-01"}) + "\n")
    with open(tmp_path / "questions.jsonl", "w", encoding="utf-8") as f:  # instruction rows: the assistant's data
        for row in docstrings():
            if answer := summary(row["text"]):
                f.write(json.dumps({"instruction": f"What does `{row['id']}` do?", "output": answer}) + "\n")
    spec, outcomes, _ = init_and_run(tmp_path, monkeypatch, "notes.jsonl", "questions.jsonl")
    assert len(spec["data"]["sources"]) == 1, "instruction rows are not documents to pretrain on"
    src = spec["data"]["sources"][0]
    assert src["text_field"] == "body" and src["label_fields"][0] == "topic", src
    assert spec["finetune"]["classify"]["label"] == "topic"
    assert spec["finetune"]["sft"] == {"enabled": True, "data": "../questions.jsonl"}
    assert ran(outcomes, "classify") and outcomes["classify"]["data"]["labels"] >= 2
    assert ran(outcomes, "sft") and outcomes["sft"]["data"]["source"].endswith("questions.jsonl")


@pytest.mark.slow
def test_csv_with_a_text_column_and_a_label(tmp_path, monkeypatch):
    with open(tmp_path / "docs.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "kind", "text"])
        for row in docstrings():
            if row["kind"] != "other":
                w.writerow([row["id"], row["kind"], row["text"]])
    spec, outcomes, _ = init_and_run(tmp_path, monkeypatch, "docs.csv")
    src = spec["data"]["sources"][0]
    assert src["text_field"] == "text" and src["label_fields"][0] == "kind", src
    assert ran(outcomes, "classify") and outcomes["classify"]["data"]["labels"] == 2


@pytest.mark.slow
def test_a_sqlite_table(tmp_path, monkeypatch):
    db = sqlite3.connect(tmp_path / "app.db")
    db.execute("CREATE TABLE posts (id INTEGER PRIMARY KEY, body TEXT NOT NULL, section TEXT)")
    db.executemany("INSERT INTO posts (body, section) VALUES (?, ?)",
                   [(r["text"], r["chapter"]) for r in docstrings()])
    db.commit()
    db.close()
    spec, outcomes, _ = init_and_run(tmp_path, monkeypatch, "sqlite:///app.db")
    src = spec["data"]["sources"][0]
    assert src["kind"] == "sql" and "FROM posts" in src["query"] and src["label_columns"][0] == "section", src
    assert src["profile"] == "technical", "docstrings are not web prose: prose keeps few of them"
    assert outcomes["clean"]["kept"] >= 0.8 * outcomes["clean"]["read"], outcomes["clean"]
    assert ran(outcomes, "classify") and not ran(outcomes, "sft")
    assert "it needs instruction rows" in outcomes["sft"]["reason"]


def test_fits_follow_the_data_before_any_work():
    """Which recipes run is decided from the spec alone: pydocs gives all three their rows; a corpus of one's own
    gives the classifier its labels only when a source carries them; a data file always counts."""
    default = fits(Spec())
    assert default["sft"].runs and default["classify"].runs and not default["preference"].runs
    own = {"sources": [{"kind": "files", "paths": ["a/*.md"]}]}
    f = fits(Spec.model_validate({"data": own}))
    assert not f["sft"].runs and "instruction rows" in f["sft"].rows
    assert not f["classify"].runs and "label_fields" in f["classify"].rows
    labelled = {"sources": [{"kind": "files", "paths": ["a.jsonl"], "label_fields": ["topic", "lang"]}]}
    f = fits(Spec.model_validate({"data": labelled, "finetune": {"sft": {"data": "sft.jsonl"}}}))
    assert f["sft"].runs and f["classify"].runs and "'topic'" in f["classify"].rows
    f = fits(Spec.model_validate({"data": labelled, "finetune": {"classify": {"label": "mood"}}}))
    assert not f["classify"].runs and "'mood'" in f["classify"].rows


def test_a_missing_finetune_file_stops_the_run_before_any_work(tiny_copy):
    r = cli("run", "-C", str(tiny_copy), "--set", "finetune.sft.data=nowhere.jsonl")
    assert isinstance(r.exception, LmwrightError) and "finetune.sft.data: nowhere.jsonl is not a file" in str(
        r.exception), r.output
    assert "collect" not in r.output
