"""`sniff`: the sources `lmwright init --data` writes for each kind of data a user brings, and its errors."""

from __future__ import annotations

import gzip
import importlib.util
import json
import sqlite3

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lmwright.data.sniff import DOC_PROFILE, code_chars, sniff
from lmwright.data.sources import iter_source
from lmwright.data.sources.files import SUFFIXES
from lmwright.errors import LmwrightError
from lmwright.spec.data import BUILTIN_PROFILES, DataSpec

PROSE = ("The river ran past the old mill, and the children of the village would sit on its bank in the "
         "evenings to watch the water carry leaves towards the sea. ")
MD = """# Using the client {i}

The client talks to the server over one connection and keeps it open between requests.

```python
client = Client("https://example.org")
print(client.get("/items/{i}"))
```

Each call returns a dictionary; errors raise `ClientError` with the status code.
"""
RST = """Configuration {i}
===============

Settings are read from a file. For example::

    [server]
    port = 80{i}

.. note::

    The port must be free.
"""
FRENCH = ("Le comité s'est réuni à la mairie pour étudier le budget de l'année prochaine. Les élus ont "
          "décidé d'élargir les horaires de la bibliothèque et de rénover le théâtre, déjà très fréquenté.")
TOPICS = ["sport", "politics", "science"]


def _spec(sources: list[dict]) -> DataSpec:
    """The sources validated as the spec's data section (with a documentation profile until lmwright has one)."""
    extra = {} if "documentation" in BUILTIN_PROFILES else {"documentation": {}}
    return DataSpec(sources=sources, profiles=extra)


def _collect(spec: DataSpec, root) -> list:
    return [d for s in spec.sources for d in iter_source(s, root)]


def test_markdown_with_code_is_documentation_and_collects(tmp_path):
    docs = tmp_path / "docs" / "guide"
    docs.mkdir(parents=True)
    for i in range(6):
        (docs / f"page{i}.md").write_text(MD.format(i=i))
    (tmp_path / "docs" / "story.md").write_text(PROSE * 5)
    out = sniff(["docs/**/*.md"], tmp_path)
    (src,), (rep,) = out.sources, out.reports
    assert src == {"kind": "files", "name": "docs", "paths": ["docs/**/*.md"], "license": "unknown",
                   "profile": DOC_PROFILE}
    assert rep.formats == [".md"] and rep.files == rep.docs == 7 and not rep.estimated
    assert rep.text_bytes == sum(f.stat().st_size for f in tmp_path.rglob("*.md"))
    assert rep.code_docs == round(6 / 7, 3) and 0.1 < rep.code_chars < 0.5 and "code blocks" in rep.profile_reason
    assert len(out.samples) == 7 and len(sniff(["docs/**/*.md"], tmp_path, sample=3).samples) == 3
    spec = _spec(out.sources)
    assert len(_collect(spec, tmp_path)) == 7


STORY = ("The river ran past the old mill, and the children of the village sat on its bank in the evenings. "
         "They watched the water carry leaves towards the sea, and they wondered where each one would land. "
         "In spring the miller opened the sluice, and the wheel turned again after the long winter. "
         "Their grandmother told them that the mill was older than the church on the hill. "
         "Nobody in the village could remember a year when the river had run dry. "
         "On market days the carts came down the lane with apples, cheese and bolts of wool. "
         "The baker's daughter counted the carts from her window and wrote the number in a book.")


def test_prose_and_short_records_get_their_profiles(tmp_path):
    for i in range(4):
        (tmp_path / f"s{i}.txt").write_text(f"Chapter {i}.\n\n{STORY}\n")
    (tmp_path / "short.jsonl").write_text("".join(json.dumps({"doc": f"Return the item {i} of the list."}) + "\n"
                                                  for i in range(10)))
    (tmp_path / "old").mkdir()
    for i in range(2):
        (tmp_path / "old" / f"{i}.txt").write_bytes(FRENCH.encode("cp1252"))
    out = sniff(["*.txt", "short.jsonl", "old/*.txt"], tmp_path)
    assert out.sources[2]["encoding"] == "cp1252" and "théâtre, déjà" in out.reports[2].texts[0]
    assert [r.profile for r in out.reports] == ["prose", "technical", "technical"]
    assert "prose would keep only 0%" in out.reports[1].profile_reason and "median 7 words" in \
        out.reports[1].profile_reason
    assert [s["name"] for s in out.sources] == ["docs", "short", "old"]


def test_restructuredtext_literal_blocks_count_as_code(tmp_path):
    assert code_chars(RST.format(i=1)) == len("    [server]\n    port = 801\n")  # the note is prose
    assert code_chars(">>> 1 + 1\n2\n\nText after.") == len(">>> 1 + 1\n2\n")
    assert code_chars("- item\n\n    continued item text\n") == 0
    for i in range(3):
        (tmp_path / f"c{i}.rst").write_text(RST.format(i=i))
    if ".rst" not in SUFFIXES:  # the files source does not read it yet: sniff says so
        with pytest.raises(LmwrightError, match=r"types lmwright does not read \(\.rst \(3\)\).*\.md"):
            sniff(["*.rst"], tmp_path)
        return
    (rep,) = sniff(["*.rst"], tmp_path).reports
    assert rep.formats == [".rst"] and rep.code_docs == 1.0 and rep.profile == DOC_PROFILE


def test_jsonl_text_label_and_date_fields(tmp_path):
    rows = [{"id": i, "title": f"Title {i}", "body": PROSE + f"Story {i}.", "topic": TOPICS[i % 3],
             "date": f"2024-01-{i + 1:02d}", "score": i / 7} for i in range(12)]
    (tmp_path / "data.jsonl.gz").write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    out = sniff(["data.jsonl.gz"], tmp_path)
    (src,), (rep,) = out.sources, out.reports
    assert src["name"] == "data" and src["text_field"] == "body" and src["label_fields"] == ["topic"]
    assert src["meta_fields"] == ["date"] and rep.formats == [".jsonl.gz"] and rep.docs == rep.records == 12
    assert "'body': the longest string field" in rep.text_reason and "title" in rep.text_reason
    assert rep.text_bytes == sum(len(r["body"].encode()) for r in rows)
    docs = _collect(_spec(out.sources), tmp_path)
    assert len(docs) == 12 and json.loads(docs[0].labels) == {"topic": "sport"}
    assert json.loads(docs[0].meta) == {"date": "2024-01-01"}


def test_a_field_named_text_wins_over_a_longer_one(tmp_path):
    rows = [{"text": PROSE, "html": f"<p>{PROSE}</p>", "label": i % 2} for i in range(6)]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (rep,) = sniff(["a.jsonl"], tmp_path).reports
    assert rep.text_field == "text" and "named like text" in rep.text_reason and rep.label_fields == ["label"]


def test_csv_and_parquet_in_one_glob_become_two_sources(tmp_path):
    d = tmp_path / "corpus"
    d.mkdir()
    lines = ["review_id,stars,review"] + [f'{i},{i % 2 + 4},"{PROSE}Visit {i}, again."' for i in range(10)]
    (d / "reviews.csv").write_text("\n".join(lines) + "\n")
    pq.write_table(pa.table({"content": [PROSE * 2] * 8, "lang": ["en", "fr"] * 4, "n": list(range(8))}),
                   d / "t.parquet")
    (d / "logo.png").write_bytes(b"\x89PNG\r\n")
    out = sniff(["corpus/*"], tmp_path)
    by_kind = {r.formats[0]: (s, r) for s, r in zip(out.sources, out.reports, strict=True)}
    csv_src, csv_rep = by_kind[".csv"]
    assert csv_src["name"] == "corpus_csv" and csv_src["paths"] == ["corpus/*.csv"]
    assert csv_src["text_field"] == "review" and csv_src["label_fields"] == ["stars"]
    assert "logo.png" not in str(out.sources) and ".png (1)" in csv_rep.notes[0]
    pq_src, pq_rep = by_kind[".parquet"]
    assert pq_src["paths"] == ["corpus/*.parquet"] and pq_src["text_field"] == "content"
    assert pq_src["label_fields"] == ["lang"] and pq_rep.docs == 8
    docs = _collect(_spec(out.sources), tmp_path)
    assert len(docs) == 18 and json.loads(docs[0].labels) in ({"stars": "4"}, {"lang": "en"})


def test_sqlite_table_with_a_primary_key(tmp_path):
    with sqlite3.connect(tmp_path / "notes.db") as conn:
        conn.execute("CREATE TABLE users (user_id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("CREATE TABLE notes (note_id INTEGER PRIMARY KEY, body TEXT, kind TEXT, created TEXT)")
        conn.executemany("INSERT INTO notes VALUES (?, ?, ?, ?)",
                         [(i, PROSE + str(i), ["todo", "idea"][i % 2], f"2023-05-{i + 1:02d}") for i in range(8)])
        conn.executemany("INSERT INTO users VALUES (?, ?)", [(1, "ann"), (2, "bob")])
    out = sniff(["sqlite:///notes.db"], tmp_path)
    (src,), (rep,) = out.sources, out.reports
    assert rep.table == "notes" and rep.id_column == "note_id" and rep.text_field == "body"
    assert src["query"] == "SELECT note_id, body, kind, created FROM notes"
    assert src["url"] == f"sqlite:///{(tmp_path / 'notes.db').resolve()}" and src["name"] == "notes"
    assert src["label_columns"] == ["kind"] and src["meta_columns"] == ["created"] and rep.docs == 8
    docs = _collect(_spec(out.sources), tmp_path)
    assert len(docs) == 8 and json.loads(docs[1].labels) == {"kind": "idea"}
    # a table by name, one without a primary key (SQLite's rowid), and tables without text
    with sqlite3.connect(tmp_path / "notes.db") as conn:
        conn.execute("CREATE TABLE loose (t TEXT)")
        conn.executemany("INSERT INTO loose VALUES (?)", [(PROSE,), ("Another line of text here.",)])
    (src,) = sniff([f"sqlite:///{tmp_path / 'notes.db'}#loose"], tmp_path).sources
    assert src["query"] == "SELECT rowid, t FROM loose" and src["id_column"] == "rowid"
    assert len(_collect(_spec([src]), tmp_path)) == 2
    assert sniff(["sqlite:///notes.db?table=users"], tmp_path).reports[0].text_field == "name"
    with sqlite3.connect(tmp_path / "nums.db") as conn:
        conn.execute("CREATE TABLE n (i INTEGER PRIMARY KEY, x REAL)")
        conn.execute("INSERT INTO n VALUES (1, 2.5)")
    with pytest.raises(LmwrightError, match="no table in .* has a text column"):
        sniff(["sqlite:///nums.db"], tmp_path)


def test_crawl_seeds_and_unique_names(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.md").write_text(MD.format(i=1))
    (tmp_path / "a" / "y.txt").write_text(PROSE * 3)
    out = sniff(["a/*.md", "a/*.txt", "https://docs.example.org/guide/", "https://docs.example.org/api/"], tmp_path)
    assert [s["name"] for s in out.sources] == ["a", "a-txt", "docs_example_org"]
    assert out.sources[2] == {"kind": "crawl", "name": "docs_example_org", "license": "unknown", "profile": "prose",
                              "seeds": ["https://docs.example.org/guide/", "https://docs.example.org/api/"]}
    _spec(out.sources)
    with pytest.raises(LmwrightError, match="not an http"):
        sniff(["http:/oops"], tmp_path)


def test_errors_name_the_argument_and_what_exists(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.rst.txt").write_text("x")
    with pytest.raises(LmwrightError, match=r"'doc/\*\*/\*\.md' matches no file under .*did you mean docs"):
        sniff(["doc/**/*.md"], tmp_path)
    with pytest.raises(LmwrightError, match=r"docs holds \.txt \(1\); nothing there matches"):
        sniff(["docs/*.md"], tmp_path)
    with pytest.raises(LmwrightError, match="is a directory"):
        sniff(["docs"], tmp_path)
    (tmp_path / "x.docx").write_bytes(b"PK")
    with pytest.raises(LmwrightError, match=r"\.docx \(1\).*reads .*\.jsonl"):
        sniff(["x.docx"], tmp_path)
    (tmp_path / "bad.jsonl.gz").write_bytes(b"not gzip at all")
    with pytest.raises(LmwrightError, match="cannot read bad.jsonl.gz"):
        sniff(["bad.jsonl.gz"], tmp_path)
    (tmp_path / "n.jsonl").write_text('{"a": 1, "b": [2]}\n{"a": 3, "b": [4]}\n')
    with pytest.raises(LmwrightError, match="no string field in the 2 records read"):
        sniff(["n.jsonl"], tmp_path)
    with pytest.raises(LmwrightError, match="no database file missing.db"):
        sniff(["sqlite:///missing.db"], tmp_path)
    assert not (tmp_path / "missing.db").exists()
    (tmp_path / "junk.db").write_bytes(b"not a database file, only text" * 100)
    with pytest.raises(LmwrightError, match="cannot read sqlite:///junk.db: .*not a database"):
        sniff(["sqlite:///junk.db"], tmp_path)
    with pytest.raises(LmwrightError, match=r"cannot read postgresql\+psycopg://u:\*\*\*@127.0.0.1:1/db"):
        sniff(["postgresql+psycopg://u:secret@127.0.0.1:1/db"], tmp_path)
    if importlib.util.find_spec("pymysql") is None:
        with pytest.raises(LmwrightError, match="driver is not installed"):
            sniff(["mysql+pymysql://u@127.0.0.1:1/db"], tmp_path)


def test_a_csv_row_longer_than_its_header_and_a_huge_cell_are_read(tmp_path):
    big = "word " * 40_000  # 200,000 characters: over the csv module's default cell limit
    (tmp_path / "t.csv").write_text(f"text,label\n\"{big}\",a\nshort text here,b,extra\n" + "more text,a\n" * 6)
    out = sniff(["t.csv"], tmp_path)
    assert out.sources[0]["text_field"] == "text"


def test_lmwrights_own_directories_are_not_data(tmp_path):
    for d in ("docs", ".lmwright/artifacts", "lmwright-out"):
        (tmp_path / d).mkdir(parents=True)
        (tmp_path / d / "a.md").write_text("Some text of a document here. " * 20)
    out = sniff(["**/*.md"], tmp_path)
    assert out.reports[0].files == 1
