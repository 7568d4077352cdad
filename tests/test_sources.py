"""Every source, and the quarantine of malformed input: the run goes on and every record is accounted for."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import lmwright
from lmwright.data.sources.crawl import collect_crawl
from lmwright.data.sources.files import decode
from lmwright.data.sources.sql import collect_sql
from lmwright.errors import LmwrightError
from lmwright.spec import CrawlSource, SqlSource
from tests.conftest import make_project, quiet

FRENCH = ("Le comité s'est réuni à la mairie pour étudier le budget de l'année prochaine. Les élus ont "
          "décidé d'élargir les horaires de la bibliothèque et de rénover le théâtre, déjà très fréquenté.")
PARA = "The configparser module reads INI-style files, where each section holds keys and their values."


def _collect(root, source: dict):
    out = lmwright.run(make_project(root, {"data": {"sources": [source]}}), until="collect", reporter=quiet())
    c = out["collect"]
    docs = pq.read_table(c.path / "docs.parquet").to_pylist()
    quarantined = [json.loads(x) for x in (c.path / "quarantine.jsonl").read_text().splitlines()]
    assert c.summary["read"] == len(docs) + len(quarantined) == c.summary["kept"] + c.summary["quarantined"]
    return docs, quarantined


def test_files_html_csv_parquet_and_every_kind_of_bad_input(tmp_path):
    d = tmp_path / "corpus"
    d.mkdir()
    (d / "page.html").write_text(f"<html><body><nav>Home | About</nav><article><p>{PARA}</p><p>{PARA} Again."
                                 "</p></article><footer>Privacy policy</footer></body></html>")
    (d / "empty.html").write_text("<html><body><img src='a.png'></body></html>")
    (d / "rows.csv").write_text(f'id,body\n1,"{PARA}"\n2,\n3,"Second, with a comma."\n')
    pq.write_table(pa.table({"body": [PARA, None, "Third row text."]}), d / "t.parquet")
    (d / "zero.txt").write_bytes(b"")
    (d / "blob.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    (d / "latin1.txt").write_bytes(FRENCH.encode("cp1252"))
    (d / "big.jsonl").write_text(json.dumps({"body": "x" * (2 * 2**20)}) + "\n" + json.dumps({"body": PARA}) + "\n")
    docs, quarantined = _collect(tmp_path, {"kind": "files", "paths": ["corpus/*"], "text_field": "body",
                                            "max_record_mb": 1})
    by_loc = {x["locator"]: x for x in docs}
    reasons = {q["locator"]: q["reason"] for q in quarantined}
    assert "Home" not in by_loc["corpus/page.html"]["text"] and PARA in by_loc["corpus/page.html"]["text"]
    assert reasons == {"corpus/empty.html": "no_text", "corpus/rows.csv:3": "missing_text_field",
                       "corpus/t.parquet:row2": "missing_text_field", "corpus/zero.txt": "empty_file",
                       "corpus/blob.txt": "binary_file", "corpus/big.jsonl:1": "record_too_large"}
    assert by_loc["corpus/rows.csv:4"]["text"] == "Second, with a comma."
    assert by_loc["corpus/t.parquet:row3"]["text"] == "Third row text."
    assert by_loc["corpus/latin1.txt"]["text"] == FRENCH
    assert by_loc["corpus/big.jsonl:2"]["text"] == PARA


def test_compressed_shards_byte_order_marks_and_unsupported_files_are_all_accounted_for(tmp_path):
    """Corpora ship compressed; a BOM loses no record; a matched file of another type is quarantined, not
    skipped: read = kept + quarantined holds for every file the glob matches."""
    import bz2
    import gzip
    import lzma

    d = tmp_path / "corpus" / "shards"
    d.mkdir(parents=True)
    rows = [json.dumps({"text": f"{PARA} Record {i}."}) for i in range(3)]
    (d / "a.jsonl.gz").write_bytes(gzip.compress("\n".join(rows).encode()))
    with pa.output_stream(str(d / "b.jsonl.zst"), compression="zstd") as f:
        f.write("\n".join(rows[:2]).encode())
    (d / "c.jsonl.xz").write_bytes(lzma.compress(rows[0].encode()))
    (d / "d.txt.gz").write_bytes(gzip.compress(PARA.encode()))
    (d / "e.csv.bz2").write_bytes(bz2.compress(f'text\n"{PARA}"\n'.encode()))
    pq.write_table(pa.table({"text": [PARA]}), d / "f.parquet")
    (d / "f.parquet.gz").write_bytes(gzip.compress((d / "f.parquet").read_bytes()))
    (d / "f.parquet").unlink()
    # a byte-order mark: UTF-8 text, UTF-8 mark on Windows-1252 text, and the marks of concatenated files
    (d / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + "\n".join(rows[:2]).encode())
    (d / "bom1252.jsonl").write_bytes(b"\xef\xbb\xbf" + json.dumps({"text": "caf\u00e9 " + PARA},
                                                                   ensure_ascii=False).encode("cp1252"))
    (d / "cat.jsonl").write_bytes(b"\xef\xbb\xbf" + rows[0].encode() + b"\n\xef\xbb\xbf" + rows[1].encode())
    (d / "utf16.txt").write_bytes(FRENCH.encode("utf-16"))  # with its BOM
    (d / "broken.jsonl.gz").write_bytes(gzip.compress(b"x" * 100)[:20])
    (d / "garbage.jsonl.xz").write_bytes(b"not xz at all")
    (d / "garbage.txt.zst").write_bytes(b"not zstd at all")
    (d / "notes.docx").write_bytes(b"PK\x03\x04 a zip")
    (d / "LICENSE").write_text("MIT")
    docs, quarantined = _collect(tmp_path, {"kind": "files", "paths": ["corpus/**/*"]})
    by_loc = {x["locator"]: x["text"] for x in docs}
    reasons = {q["locator"]: q["reason"] for q in quarantined}
    assert reasons == {"corpus/shards/broken.jsonl.gz": "unreadable_file", "corpus/shards/garbage.jsonl.xz":
                       "unreadable_file", "corpus/shards/garbage.txt.zst": "unreadable_file",
                       "corpus/shards/notes.docx": "unsupported_type", "corpus/shards/LICENSE": "unsupported_type"}
    assert "jsonl" in next(q["detail"] for q in quarantined if q["reason"] == "unsupported_type")
    assert [by_loc[f"corpus/shards/a.jsonl.gz:{i}"] for i in (1, 2, 3)] == [json.loads(r)["text"] for r in rows]
    assert by_loc["corpus/shards/b.jsonl.zst:2"].endswith("Record 1.")
    assert by_loc["corpus/shards/c.jsonl.xz:1"].endswith("Record 0.")
    assert by_loc["corpus/shards/d.txt.gz"] == by_loc["corpus/shards/e.csv.bz2:2"] == PARA
    assert by_loc["corpus/shards/f.parquet.gz:row1"] == PARA
    assert by_loc["corpus/shards/bom.jsonl:1"].endswith("Record 0.")  # the first record is not lost
    assert by_loc["corpus/shards/bom1252.jsonl:1"].startswith("café ")
    assert by_loc["corpus/shards/cat.jsonl:2"].endswith("Record 1.")
    assert by_loc["corpus/shards/utf16.txt"] == FRENCH
    assert len(docs) == 3 + 2 + 1 + 1 + 1 + 1 + 2 + 1 + 2 + 1


def test_a_glob_that_matches_only_unsupported_files_says_what_it_reads(tmp_path):
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "a.docx").write_bytes(b"PK")
    with pytest.raises(LmwrightError, match=r"only files of other types \(\.docx\).*\.jsonl.*\.zst"):
        _collect(tmp_path, {"kind": "files", "paths": ["corpus/*"]})


def test_rows_files_read_compressed_and_with_a_byte_order_mark(tmp_path):
    import gzip

    from lmwright.data.rows import read_records

    (tmp_path / "a.jsonl").write_bytes(b'\xef\xbb\xbf{"text": "one"}\n{"text": "two"}\n')
    (tmp_path / "b.jsonl.gz").write_bytes(gzip.compress(b'{"text": "one"}\n'))
    (tmp_path / "c.csv").write_bytes(b"\xef\xbb\xbftext,label\nhi,1\n")
    assert [r for _, r, _ in read_records(tmp_path / "a.jsonl")] == [{"text": "one"}, {"text": "two"}]
    assert read_records(tmp_path / "b.jsonl.gz") == [(1, {"text": "one"}, None)]
    assert read_records(tmp_path / "c.csv") == [(2, {"text": "hi", "label": "1"}, None)]
    (tmp_path / "d.jsonl.gz").write_bytes(b"not gzip")
    with pytest.raises(LmwrightError, match=r"d\.jsonl\.gz: cannot read this data file .*re-create it"):
        read_records(tmp_path / "d.jsonl.gz")
    (tmp_path / "e.jsonl").write_bytes('{"text": "café"}'.encode("cp1252"))
    with pytest.raises(LmwrightError, match=r"e\.jsonl: this data file is not UTF-8 .*convert it"):
        read_records(tmp_path / "e.jsonl")


def test_encoding_policy():
    assert decode("Grüße".encode())[0] == "Grüße"
    assert decode("\ufeffBOM text".encode())[0] == "BOM text"
    assert decode(b"\xef\xbb\xbfcaf\xe9 au lait, un caf\xe9 cr\xe8me")[0] == "café au lait, un café crème"
    assert decode("Grüße".encode("utf-32")) == ("Grüße", "utf-32-le")  # not read as UTF-16 with NULs
    assert decode("Grüße".encode("utf-16") + b"x")[0] == "Grüße\ufffd"  # an odd byte is replaced, not NULs
    assert decode("Grüße aus München, schöne Grüße".encode("latin-1"))[0] == "Grüße aus München, schöne Grüße"
    assert decode(b"ok \xff", encoding="utf-8")[0] == "ok \ufffd"  # explicit codec: replacement, no crash
    russian = "Комитет собрался в мэрии, чтобы обсудить бюджет на следующий год. Депутаты решили продлить часы."
    assert decode(russian.encode("cp1251")) == (russian, "cp1251")


def test_sql_source_maps_columns_and_quarantines_empty_rows(tmp_path):
    db = tmp_path / "notes.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE notes (note_id INTEGER, body TEXT)")
        conn.executemany("INSERT INTO notes VALUES (?, ?)", [(1, PARA), (2, ""), (3, "Another note here.")])
    src = SqlSource(url=f"sqlite:///{db}", query="SELECT note_id, body FROM notes ORDER BY note_id",
                    text_column="body", id_column="note_id", name="notes")
    recs = list(collect_sql(src))
    assert [r.locator for r in recs] == ["notes:1", "notes:2", "notes:3"]
    assert recs[1].reason == "missing_text_field" and recs[2].text == "Another note here."
    with pytest.raises(LmwrightError, match="no column 'text'"):
        list(collect_sql(src.model_copy(update={"text_column": "text"})))
    with pytest.raises(LmwrightError, match="the query failed"):
        list(collect_sql(src.model_copy(update={"query": "SELECT * FROM missing"})))


class _Site(BaseHTTPRequestHandler):
    hits: dict[str, list[float]] = {}
    flaky_left = 1

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):  # noqa: N802 - the http.server API
        _Site.hits.setdefault(self.path, []).append(time.monotonic())
        ua = self.headers.get("User-Agent", "")
        pages = {
            "/robots.txt": ("text/plain", "User-agent: *\nDisallow: /private\n"),
            "/": ("text/html", f"<html><body><article><p>{PARA}</p></article><a href='/a'>a</a> <a href='/private/x'>"
                               "p</a> <a href='/img.png'>i</a> <a href='/flaky'>f</a> "
                               "<a href='http://example.invalid/out'>out</a></body></html>"),
            "/a": ("text/html", f"<html><body><p>Page A. {PARA}</p><a href='/a/b'>b</a></body></html>"),
            "/a/b": ("text/html", f"<html><body><p>Page B, depth two. {PARA}</p><a href='/a/b/c'>c</a></body></html>"),
            "/flaky": ("text/html", f"<html><body><p>Flaky page recovered. {PARA}</p></body></html>"),
            "/img.png": ("image/png", "\x89PNG"),
        }
        if not ua.startswith("lmwright/"):
            self.send_response(403)
            self.end_headers()
            return
        if self.path == "/flaky" and _Site.flaky_left:
            _Site.flaky_left -= 1
            self.send_response(503)
            self.end_headers()
            return
        if self.path not in pages:
            self.send_response(404)
            self.end_headers()
            return
        ctype, body = pages[self.path]
        data = body.encode("latin-1") if ctype == "image/png" else body.encode()
        self.send_response(200)
        self.send_header("Content-Type", f"{ctype}; charset=utf-8" if ctype.startswith("text") else ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def site():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Site.hits, _Site.flaky_left = {}, 1
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_crawler_is_polite_and_accounts_for_every_url(site, monkeypatch):
    from lmwright.data.sources import crawl

    released: list[float] = []  # when the crawler let each request to the host go (its own clock)
    real_wait = crawl._Fetcher._wait

    def spy(self, host):
        real_wait(self, host)
        released.append(self.last[host])

    monkeypatch.setattr(crawl._Fetcher, "_wait", spy)
    src = CrawlSource(seeds=[site + "/"], max_depth=2, delay_s=0.05, retries=2, backoff_s=0.01, timeout_s=5)
    recs = list(collect_crawl(src))
    docs = {r.locator: r for r in recs if hasattr(r, "text")}
    bad = {r.locator: r.reason for r in recs if hasattr(r, "reason")}
    assert set(docs) == {site + "/", site + "/a", site + "/a/b", site + "/flaky"}  # /a/b/c is depth 3
    assert bad == {site + "/private/x": "robots_disallowed", site + "/img.png": "content_type"}
    assert "Flaky page recovered" in docs[site + "/flaky"].text and len(_Site.hits["/flaky"]) == 2  # retried
    assert "/private/x" not in _Site.hits and not any("example.invalid" in k for k in docs)  # same site only
    # per-host delay, on the crawler's side: arrival times at the server jitter with the machine's load
    assert len(released) >= 6 and min(b - a for a, b in zip(released, released[1:], strict=False)) >= 0.05
    assert len(list(collect_crawl(src.model_copy(update={"max_pages": 2})))) <= 3  # robots record + 2 pages


def test_a_killed_collect_redoes_only_unfinished_sources(tmp_path, monkeypatch):
    import lmwright.stages.data as stages

    (tmp_path / "a.txt").write_text(PARA)
    (tmp_path / "b.txt").write_text(PARA + " Second source.")
    spec = {"data": {"sources": [{"kind": "files", "name": "first", "paths": ["a.txt"]},
                                 {"kind": "files", "name": "second", "paths": ["b.txt"]}]}}
    root = make_project(tmp_path, spec)
    real = stages.iter_source

    def dies_on_second(source, where):
        if source.name == "second":
            raise KeyboardInterrupt  # the run is killed while reading the second source
        return real(source, where)

    monkeypatch.setattr(stages, "iter_source", dies_on_second)
    with pytest.raises(KeyboardInterrupt):
        lmwright.run(root, until="collect", reporter=quiet())
    calls = []
    monkeypatch.setattr(stages, "iter_source", lambda s, w: calls.append(s.name) or real(s, w))
    out = lmwright.run(root, until="collect", reporter=quiet())["collect"]
    assert calls == ["second"] and out.summary["resumed_sources"] == 1
    assert out.summary["by_source"] == {"first": 1, "second": 1}
