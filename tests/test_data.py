"""Data stages: sources, cleaning, dedup and split — and that every record is accounted for."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

import lmwright
from lmwright.data.document import doc_id
from lmwright.data.sources.pydocs import collect_pydocs
from lmwright.data.split import assign_split
from lmwright.errors import LmwrightError
from lmwright.spec import PydocsSource
from tests.conftest import make_project, quiet


def test_pydocs_documents_have_stable_ids_and_provenance():
    docs = list(collect_pydocs(PydocsSource(modules=["json"], topics=False)))
    by_source = {d.source: d for d in docs}
    assert {"json", "json.dumps", "json.decoder.JSONDecoder.decode"} <= set(by_source)
    d = by_source["json.dumps"]
    assert d.id == doc_id("pydocs", "json.dumps") and d.license == "PSF-2.0" and d.collected_at.endswith("+00:00")
    assert "JSON" in d.text
    again = {x.source: x.id for x in collect_pydocs(PydocsSource(modules=["json"], topics=False))}
    assert again == {x.source: x.id for x in docs}


def test_pydocs_does_not_depend_on_hooks_the_process_installed(monkeypatch):
    def hook(*args):  # what CLI frameworks do to sys.excepthook
        return None

    monkeypatch.setattr("sys.excepthook", hook)
    docs = {d.source for d in collect_pydocs(PydocsSource(modules=["sys"], topics=False))}
    assert "sys.excepthook" in docs and "sys.displayhook" in docs


def test_pydocs_topics_are_included():
    docs = list(collect_pydocs(PydocsSource(modules=["json"], topics=True)))
    assert any(d.source.startswith("topics.") for d in docs)


def test_split_is_stable_and_follows_ratios():
    ids = [doc_id("s", str(i)) for i in range(20000)]
    first = {i: assign_split(i, 0.1, 0.2, "salt") for i in ids[:10000]}
    assert all(assign_split(i, 0.1, 0.2, "salt") == s for i, s in first.items())  # growing corpus: same split
    counts = {s: list(first.values()).count(s) for s in ("train", "val", "test")}
    assert abs(counts["val"] / 10000 - 0.1) < 0.015 and abs(counts["test"] / 10000 - 0.2) < 0.015
    assert sum(assign_split(i, 0.1, 0.2, "other") != first[i] for i in ids[:1000]) > 100  # salt redraws


def test_files_source_reads_txt_md_jsonl_and_quarantines_bad_lines(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("A text file about parsing configuration files in a friendly way.\n")
    (corpus / "b.md").write_bytes(b"# Notes\n\nA broken byte \xff in the middle." + b" More plain words." * 10)
    (corpus / "c.jsonl").write_text(
        '{"body": "The first record has enough words to pass every filter we have."}\n'
        "not json at all\n"
        '{"other": 1}\n'
        '{"body": "tiny"}\n'
    )
    spec = {"data": {"sources": [{"kind": "files", "name": "mine", "paths": ["corpus/*"], "text_field": "body",
                                  "license": "CC0-1.0", "profile": "minimal"}]}}
    root = make_project(tmp_path, spec)
    out = lmwright.run(root, until="clean", reporter=quiet())
    col = out["collect"].summary
    assert col["read"] == 6 and col["kept"] == 4 and col["quarantined"] == 2
    q = (out["collect"].path / "quarantine.jsonl").read_text()
    assert "corpus/c.jsonl:2" in q and "invalid_json" in q and "corpus/c.jsonl:3" in q and "missing_text_field" in q
    docs = pq.read_table(out["collect"].path / "docs.parquet").to_pylist()
    assert {d["license"] for d in docs} == {"CC0-1.0"}
    md = next(d["text"] for d in docs if d["locator"] == "corpus/b.md")  # not UTF-8: decoded, not a crash
    assert md.startswith("# Notes\n\nA broken byte ") and "More plain words." in md
    cl = out["clean"].summary
    assert cl["read"] == 4 and cl["kept"] + sum(cl["removed"].values()) == 4 and cl["removed"]["basic.too_short"] == 1
    removed = pq.read_table(out["clean"].path / "removed.parquet").to_pylist()
    assert [(r["reason"], r["text"]) for r in removed] == [("basic.too_short", "tiny")]


def test_files_source_with_no_match_says_how_to_fix(tmp_path):
    root = make_project(tmp_path, {"data": {"sources": [{"kind": "files", "paths": ["nothing/*.txt"]}]}})
    with pytest.raises(LmwrightError, match=r"\[.nothing/\*\.txt.\] matched no file .*reads \.csv, .*\.txt, each optionally compressed"):
        lmwright.run(root, until="collect", reporter=quiet())


def test_every_record_accounted_for(tiny_run):
    _, out = tiny_run
    for name in ("collect", "clean", "dedup", "split"):
        s = out[name].summary
        assert s["read"] == s["kept"] + sum(s["removed"].values()) + s["quarantined"], name
    assert out["clean"].summary["read"] == out["collect"].summary["kept"]
    assert out["dedup"].summary["read"] == out["clean"].summary["kept"]
    assert sum(out["split"].summary["splits"].values()) == out["dedup"].summary["kept"]
    dup = pq.read_table(out["dedup"].path / "removed.parquet").to_pylist()
    assert all(r["reason"] in ("exact_duplicate", "near_duplicate") and r["duplicate_of"] for r in dup)
