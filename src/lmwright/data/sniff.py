"""What a user's data holds, for `lmwright init --data`: the `data.sources` entries to write and why.

Each argument of `sniff(args, root)` is one of:
- a glob relative to `root` (or absolute): `docs/**/*.md`, `data.jsonl`, `corpus/*.csv.gz`; a `files` source per
  format group it matches: Markdown/reStructuredText/text together (a document per file), HTML, and each of JSONL,
  CSV and Parquet (a document per record, with a text field and labels of their own);
- a SQLAlchemy URL, `sqlite:///notes.db` or `postgresql://user@host/db`, with the table as `#notes` after it (or
  `?table=notes`); without one, the table holding the most text. A relative SQLite path is taken from `root` and
  written absolute: SQLAlchemy would resolve it against whatever directory a run starts in;
- an http(s) URL: a crawl seed, written as given (nothing is fetched); all seeds make one `crawl` source.
Only RECORDS records (or files) and BUDGET bytes per source are read; sizes beyond are extrapolated by file size.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import re
import statistics
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lmwright.data.compressed import COMPRESSIONS, read_bytes, split_suffix
from lmwright.data.filters.code import split_code
from lmwright.data.sources.files import OWN_DIRS, READS, SUFFIXES, decode
from lmwright.errors import LmwrightError
from lmwright.spec.data import BUILTIN_PROFILES, FilesSource

WHOLE = {".txt", ".md", ".rst"}  # a document per file, grouped in one source (.rst when the files source reads it)
RECORDS = 2000  # records (or files) read per source for its figures
BUDGET = 64 * 2**20  # bytes read per source; beyond them sizes are extrapolated
TEXT_NAMES = {"text", "body", "content", "contents", "document", "article", "abstract", "message", "description",
              "review", "comment", "passage", "story", "markdown"}
LABEL_NAMES = ("label", "labels", "category", "class", "topic", "tag", "sentiment", "genre", "section", "type")
DOC_PROFILE = "documentation" if "documentation" in BUILTIN_PROFILES else "technical"
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?")
_MAGIC = re.compile(r"[*?[]")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


@dataclass
class Report:
    """What sniff found in one source, and why its spec entry reads as it does."""
    name: str
    kind: str  # files, sql, crawl
    formats: list[str] = field(default_factory=list)  # e.g. [".md", ".rst"], [".jsonl.gz"]; sql: the dialect
    files: int = 0
    records: int = 0  # records (or whole-file documents) read for these figures
    docs: int = 0  # documents in the whole source (estimated when `estimated`)
    text_bytes: int = 0  # UTF-8 bytes of text in the whole source
    estimated: bool = False  # docs and text_bytes extrapolated from what was read
    text_field: str | None = None  # JSONL/CSV/Parquet field, or SQL column
    text_reason: str = ""
    label_fields: list[str] = field(default_factory=list)  # best first (classify learns the first)
    meta_fields: list[str] = field(default_factory=list)  # ISO dates (for a time split)
    table: str | None = None
    id_column: str | None = None
    query: str | None = None
    code_docs: float = 0.0  # share of the documents read that carry a code block
    code_chars: float = 0.0  # share of their characters inside code blocks
    median_words: int = 0
    profile: str = "prose"
    profile_reason: str = ""
    notes: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)  # this source's part of the sample


@dataclass
class Sniffed:
    sources: list[dict]  # entries for the spec's data.sources, in argument order
    reports: list[Report]  # one per source, same order

    @property
    def samples(self) -> list[str]:
        return [t for r in self.reports for t in r.texts]

    def to_dict(self) -> dict:
        return {"sources": self.sources, "reports": [asdict(r) for r in self.reports]}


def sniff(args: list[str], root: Path, sample: int = 200) -> Sniffed:
    """The sources to write for `args` (globs, database URLs, http(s) seeds), with what was found in each and a
    sample of up to `sample` texts spread across them. Raises LmwrightError naming the argument at fault."""
    root = Path(root)
    found: list[tuple[dict, Report, list[str]]] = []
    seeds = [a for a in args if a.lower().startswith(("http:", "https:"))]
    for arg in args:
        if arg in seeds:
            continue
        found += [_sql(arg, root)] if _URL.match(arg) else _files(arg, root)
    if seeds:
        found.append(_crawl(seeds))
    names: set[str] = set()
    for src, rep, texts in found:  # unique names; then the profile from everything read
        base, i = src["name"], 2
        if base in names and rep.formats:  # two sources from one directory: named by their formats
            src["name"] = base = f"{base}-{rep.formats[0].lstrip('.').split('.')[0]}"
        while src["name"] in names:
            src["name"], i = f"{base}_{i}", i + 1
        names.add(src["name"])
        rep.name = src["name"]
        if not texts and src["kind"] != "crawl":
            where = ", ".join(src.get("paths") or []) or f"table {rep.table}"
            raise LmwrightError(f"--data {where}: no text in the {rep.records or rep.files} record(s) or file(s) "
                                "read (empty, whitespace or binary); point --data at documents with text")
        if texts or src["kind"] != "crawl":
            _judge(rep, texts)
        src["profile"] = rep.profile
    pools = [_pick(texts, sample) for _, _, texts in found]
    taken = 0
    while taken < sample and any(pools):  # round robin, so a small source still shows
        for pool, (_, rep, _) in zip(pools, found, strict=True):
            if pool and taken < sample:
                rep.texts.append(pool.pop(0))
                taken += 1
    return Sniffed([s for s, _, _ in found], [r for _, r, _ in found])


def _files(arg: str, root: Path) -> list[tuple[dict, Report, list[str]]]:
    p = Path(arg)
    if p.is_absolute():
        matches = [p] if p.exists() else list(Path(p.anchor).glob(str(p.relative_to(p.anchor))))
    else:
        matches = list(root.glob(arg)) if arg.strip() else []
    files = sorted(m for m in matches if m.is_file() and not OWN_DIRS.intersection(m.parts))
    if not files:
        raise LmwrightError(f"--data {arg!r} matches no file under {root}: {_nearest(arg, root)}")
    groups: dict[str, list[Path]] = {}
    other: Counter[str] = Counter()
    for f in files:
        fmt = split_suffix(f)[0]
        if fmt in SUFFIXES:
            groups.setdefault("text" if fmt in WHOLE else "html" if fmt == ".htm" else fmt[1:], []).append(f)
        else:
            other[_ext(f) or f.name] += 1
    if not groups:
        raise LmwrightError(f"--data {arg!r} matches {len(files)} file(s) of types lmwright does not read "
                            f"({_counts(other)}); the files source reads {READS}. Convert them, or point --data "
                            "at files of those types")
    base = _slug(next((q for q in reversed(Path(arg).parts) if not _MAGIC.search(q)), ""), strip_ext=True)
    out = []
    for group, paths in groups.items():
        exts = sorted({_ext(f) for f in paths})
        if len(groups) == 1 and not other:
            globs = [arg]
        elif arg.endswith("*"):  # narrow the glob to this group's types, so sources do not read each other's
            globs = sorted({arg + f.name[len(f.name) - len(_ext(f)):] for f in paths})  # as spelled: .MD
        else:
            globs = [f.relative_to(root).as_posix() if f.is_relative_to(root) else str(f) for f in paths]
        rep = Report(name="", kind="files", formats=exts, files=len(paths))
        if other:
            rep.notes.append(f"left out {sum(other.values())} file(s) of types the files source does not read: "
                             f"{_counts(other)}")
        name = base or ("docs" if group == "text" else group)
        src: dict[str, Any] = {"kind": "files", "name": f"{name}_{group}" if len(groups) > 1 and base else name,
                               "paths": globs}
        texts = _scan(paths, root, group, arg, rep, src)
        src["license"] = "unknown"
        out.append((src, rep, texts))
    return out


def _scan(paths: list[Path], root: Path, group: str, arg: str, rep: Report, src: dict) -> list[str]:
    """Read a spread of the files within the budget: texts (a document per file) or records, and the sizes."""
    chosen = _pick(paths, RECORDS if group in ("text", "html") else 100)
    per_file = max(BUDGET // len(chosen), 2**20)
    per_records = max(RECORDS // len(chosen), 20)
    texts: list[str] = []
    records: list[dict] = []
    encodings: Counter[str] = Counter()
    raw = counted = text_bytes = 0
    partial = False
    for path in chosen:
        rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
        size = path.stat().st_size
        if group == "parquet":
            n, rows = _parquet(path, rel, per_records)
            records += rows
            raw, counted = raw + size, counted + n
            continue
        try:
            data = read_bytes(path, per_file)
        except OSError as exc:
            raise LmwrightError(f"--data {arg!r}: cannot read {rel} ({exc}); fix it or leave it out of the glob") \
                from None
        cut = len(data) > per_file
        partial = partial or cut
        if cut:  # stop at the last whole line, so no record or character is read in half
            data = data[:data.rfind(b"\n", 0, per_file) + 1]
        if b"\x00" in data[:8192] and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
            rep.notes.append(f"{rel}: NUL bytes, not text (collect will quarantine it)")
            continue
        text, enc = decode(data, "auto")
        encodings[enc] += 1
        raw += size  # a file read in part is scaled up to its size; a compressed one is not (its figure errs low)
        part = size / max(1, len(data)) if cut and split_suffix(path)[1] is None else 1.0
        if group in ("text", "html"):
            if size > FilesSource.model_fields["max_record_mb"].default * 2**20:
                rep.notes.append(f"{rel}: over max_record_mb, collect will quarantine it (raise max_record_mb)")
            if group == "html":
                from lmwright.data.sources.html import main_text

                text = main_text(text) or ""
            if text.strip():
                texts.append(text)
            text_bytes += int(len(text.encode()) * part)
            counted += 1
            continue
        if group != "jsonl":
            csv.field_size_limit(2**31 - 1)  # as the files source: a long text cell is not an error
        rows = _jsonl(text, rel) if group == "jsonl" else list(csv.DictReader(io.StringIO(text, newline="")))
        records += _pick(rows, per_records)
        counted += int(len(rows) * part)
    total = sum(p.stat().st_size for p in paths)
    scale = total / raw if raw else 0.0
    rep.estimated = len(chosen) < len(paths) or partial
    if len(encodings) == 1 and not (enc := next(iter(encodings))).startswith("utf"):  # BOMs: auto reads them
        src["encoding"] = enc
        rep.notes.append(f"every file read is {enc}, not UTF-8: encoding written as {enc}")
    elif len(encodings) > 1:
        rep.notes.append(f"encodings differ ({_counts(encodings)}): encoding left to auto, which detects each file's")
    if group in ("text", "html"):
        rep.records, rep.docs, rep.text_bytes = len(texts), len(paths), int(text_bytes * scale)
        return texts
    where = f"--data {arg!r} ({group})"
    text_field, rep.text_reason = _choose_text(records, where)
    src["text_field"] = rep.text_field = text_field
    rep.label_fields, rep.meta_fields = _fields(records, text_field)
    for key, value in (("label_fields", rep.label_fields), ("meta_fields", rep.meta_fields)):
        if value:
            src[key] = value
    texts = [r[text_field] for r in records if isinstance(r.get(text_field), str) and r[text_field].strip()]
    rep.records, rep.docs = len(records), int(counted * scale)
    rep.text_bytes = int(sum(len(t.encode()) for t in texts) / max(1, len(records)) * rep.docs)
    rep.estimated = rep.estimated or rep.docs > len(records)
    return texts


def _jsonl(text: str, rel: str) -> list[dict]:
    rows, bad = [], 0
    for line in text.splitlines():
        if line.strip():
            try:
                record = json.loads(line.removeprefix("\ufeff"))
            except json.JSONDecodeError:
                record = None
            if isinstance(record, dict):
                rows.append(record)
            else:
                bad += 1
    if bad and not rows:
        raise LmwrightError(f"{rel}: none of its {bad} lines is a JSON object; a .jsonl file holds one per line")
    return rows


def _parquet(path: Path, rel: str, limit: int) -> tuple[int, list[dict]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path if split_suffix(path)[1] is None else pa.BufferReader(read_bytes(path)))
        batch = next(pf.iter_batches(batch_size=limit), None)
    except Exception as exc:  # noqa: BLE001 - whatever Arrow raises, the file cannot be read
        raise LmwrightError(f"cannot read {rel}: not a readable Parquet file ({exc})") from None
    return pf.metadata.num_rows, batch.to_pylist() if batch is not None else []


def _values(records: list[dict]) -> dict[str, list]:
    out: dict[str, list] = {}
    for r in records:
        for k, v in r.items():  # a CSV row longer than its header puts its extra cells under the key None
            if isinstance(k, str) and v is not None and v != "":
                out.setdefault(k, []).append(v)
    return out


def _choose_text(records: list[dict], where: str) -> tuple[str, str]:
    cols = _values(records)
    means = {k: sum(len(v) for v in vs if isinstance(v, str)) / max(1, len(records)) for k, vs in cols.items()
             if sum(isinstance(v, str) for v in vs) >= 0.8 * len(vs) and not _datelike(vs)}
    if not means:
        raise LmwrightError(f"{where}: no string field in the {len(records)} records read (fields: "
                            f"{', '.join(cols) or 'none'}); the text must be a string field or column")
    longest = max(means, key=means.__getitem__)
    named = [k for k in means if k.lower() in TEXT_NAMES and means[k] >= means[longest] / 2]
    pick = max(named, key=means.__getitem__) if named else longest
    others = ", ".join(f"{k} {means[k]:.0f}" for k in sorted(means, key=means.__getitem__, reverse=True) if k != pick)
    why = "the longest string field" if pick == longest else f"named like text, and at least half as long as " \
                                                              f"the longest ('{longest}')"
    return pick, f"'{pick}': {why}, mean {means[pick]:.0f} characters" + (f" (others: {others})" if others else "")


def _idlike(name: str) -> bool:
    low = name.lower()
    return low in ("id", "uuid", "guid", "key", "index", "idx", "rowid", "url") or low.endswith(("_id", "_key")) \
        or name.endswith("Id")


def _datelike(values: list) -> bool:
    return sum(isinstance(v, date) or (isinstance(v, str) and bool(_ISO.fullmatch(v.strip())))
               for v in values) >= 0.9 * len(values)


def _fields(records: list[dict], text: str) -> tuple[list[str], list[str]]:
    """(label fields, best first: scalars with 2 to 50 values that repeat, not ids; ISO date fields, for meta)."""
    out, dates = [], []
    for k, vs in _values(records).items():
        if k == text or _idlike(k) or len(vs) < 0.5 * len(records):
            continue
        if _datelike(vs):
            dates.append(k)
        elif not all(isinstance(v, str | int) and (not isinstance(v, str) or len(v) <= 60) for v in vs):
            continue  # floats, lists, long strings: not classes
        elif 2 <= len(set(vs)) <= min(50, len(vs) / 2):  # most values repeat
            out.append((k.lower() not in LABEL_NAMES, -len(vs), len(set(vs)), k))
    return [k for *_, k in sorted(out)], dates


def _sql(arg: str, root: Path) -> tuple[dict, Report, list[str]]:
    from sqlalchemy import MetaData, Table, create_engine, func, inspect, select
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    text, _, table = arg.partition("#")
    try:
        url = make_url(text)
    except (SQLAlchemyError, ValueError) as exc:
        raise LmwrightError(f"--data {arg!r} is not a database URL ({exc}); e.g. sqlite:///notes.db#notes") from None
    table = table or url.query.get("table") or ""
    url = url.difference_update_query(["table"])
    shown = url.render_as_string(hide_password=True)
    if url.get_backend_name() == "sqlite":  # a missing file would be created empty on connect: refuse first
        db = Path(url.database or "")
        if not url.database or url.database == ":memory:" or not (db if db.is_absolute() else root / db).is_file():
            raise LmwrightError(f"--data {arg!r}: no database file {url.database or '(none given)'} under {root}: "
                                f"{_nearest(url.database or '', root)}")
        url = url.set(database=str((db if db.is_absolute() else root / db).resolve()))
    engine = None
    try:
        engine = create_engine(url)
        tables = inspect(engine).get_table_names()
        if table and table not in tables:
            raise LmwrightError(f"--data {arg!r}: no table '{table}' in {shown} (tables: {', '.join(tables)})")
        found, skipped = [], []
        for name in [table] if table else tables:
            t = Table(name, MetaData(), autoload_with=engine)
            with engine.connect() as conn:
                rows = [dict(r) for r in conn.execute(select(t).limit(RECORDS)).mappings()]
                count = conn.execute(select(func.count()).select_from(t)).scalar_one()
            try:
                col, why = _choose_text(rows, f"--data {arg!r}: table '{name}'")
            except LmwrightError:
                skipped.append(name)
                continue
            size = sum(len(r[col].encode()) for r in rows if isinstance(r.get(col), str)) / max(1, len(rows))
            found.append((size * count, name, t, rows, count, col, why))
        if not found:
            raise LmwrightError(f"--data {arg!r}: no table in {shown} has a text column "
                                f"(tables: {', '.join(tables) or 'none'}); name one with #table after the URL")
        total, name, t, rows, count, col, why = max(found, key=lambda f: f[0])
        pk = inspect(engine).get_pk_constraint(name).get("constrained_columns") or []
        quote = engine.dialect.identifier_preparer.quote
    except SQLAlchemyError as exc:
        raise LmwrightError(f"--data {arg!r}: cannot read {shown}: {str(exc).splitlines()[0]}; check the URL, that "
                            "the database is up, and that its driver is installed") from None
    except ImportError as exc:
        raise LmwrightError(f"--data {arg!r}: the database driver is not installed ({exc})") from None
    finally:
        if engine is not None:
            engine.dispose()
    rep = Report(name="", kind="sql", formats=[url.get_backend_name()], table=name, records=len(rows), docs=count,
                 text_bytes=int(total), estimated=count > len(rows), text_field=col, text_reason=why)
    if len(pk) == 1:
        rep.id_column = pk[0]
    elif url.get_backend_name() == "sqlite":
        rep.id_column = "rowid"
        rep.notes.append(f"'{name}' has no single-column primary key: rows are identified by SQLite's rowid")
    else:
        raise LmwrightError(f"--data {arg!r}: table '{name}' has no primary key to identify its rows by; add one, "
                            "or write the sql source by hand (id_column: a unique column)")
    rep.label_fields, rep.meta_fields = _fields(rows, col)
    if skipped:
        rep.notes.append(f"tables without a text column, left out: {', '.join(skipped)}")
    if not table and len(found) > 1:
        rep.notes.append(f"'{name}' holds the most text of {len(found)} tables; #table after the URL picks another")
    cols = list(dict.fromkeys([rep.id_column, col, *rep.label_fields, *rep.meta_fields]))
    rep.query = f"SELECT {', '.join(quote(c) for c in cols)} FROM {quote(name)}"
    # SQLAlchemy names are str subclasses (quoted_name) that YAML cannot write: plain str for the spec
    rep.table, rep.text_field, rep.id_column = str(name), str(col), str(rep.id_column)
    rep.label_fields, rep.meta_fields = [str(c) for c in rep.label_fields], [str(c) for c in rep.meta_fields]
    src = {"kind": "sql", "name": _slug(name) or "sql", "url": url.render_as_string(hide_password=False),
           "query": rep.query, "text_column": rep.text_field, "id_column": rep.id_column}
    if rep.label_fields:
        src["label_columns"] = rep.label_fields
    if rep.meta_fields:
        src["meta_columns"] = rep.meta_fields
    src["license"] = "unknown"
    return src, rep, [r[col] for r in rows if isinstance(r.get(col), str) and r[col].strip()]


def _crawl(seeds: list[str]) -> tuple[dict, Report, list[str]]:
    for s in seeds:
        if not urlsplit(s).hostname or " " in s:
            raise LmwrightError(f"--data {s!r} is not an http(s) URL a crawl can start from "
                                "(e.g. https://docs.example.org/guide/)")
    hosts = list(dict.fromkeys(urlsplit(s).hostname or "" for s in seeds))
    rep = Report(name="", kind="crawl", formats=["html"], profile="prose",
                 profile_reason="web pages, not fetched here: the prose profile; check what collect keeps")
    rep.notes.append(f"seeds on {', '.join(hosts)}: nothing fetched; the crawl follows same-site links "
                     "to depth 2, at most 100 pages (max_depth, max_pages)")
    src = {"kind": "crawl", "name": _slug(hosts[0]) if len(hosts) == 1 else "web", "seeds": seeds,
           "license": "unknown"}
    return src, rep, []


def code_chars(text: str) -> int:
    """Characters in code blocks (fences and directive heads included), as the documentation profile's
    splitter finds them: fenced, indented, reStructuredText literal blocks and code directives, doctests."""
    lines = text.split("\n")
    return sum(len(lines[k]) + 1 for a, b in split_code(text).spans for k in range(a, min(b, len(lines))))


def _judge(rep: Report, texts: list[str]) -> None:
    """Code shares, median length and the filter profile they suggest, with the reason."""
    if not texts:
        rep.profile, rep.profile_reason = "prose", "no text read to judge by: the prose profile"
        return
    chars = [code_chars(t) for t in texts]
    rep.code_docs = round(sum(c > 0 for c in chars) / len(texts), 3)
    rep.code_chars = round(sum(chars) / max(1, sum(len(t) for t in texts)), 3)
    rep.median_words = int(statistics.median(len(t.split()) for t in texts))
    n, with_code = len(texts), sum(c > 0 for c in chars)
    kept = _kept_shares(texts)
    shares = ", ".join(f"{name} {share:.0%}" for name, share in kept.items())
    if rep.code_docs >= 0.2:
        rep.profile = DOC_PROFILE
        rep.profile_reason = (f"{with_code} of {n} documents read ({rep.code_docs:.0%}) carry code blocks "
                              f"({rep.code_chars:.0%} of the characters); share of them each profile keeps: {shares}")
    elif kept["prose"] >= PROSE_KEEPS:
        rep.profile = "prose"
        rep.profile_reason = f"prose keeps {kept['prose']:.0%} of the {n} documents read ({shares})"
    else:  # the published web-prose rules would drop much of it: short records, lists, docstrings
        rep.profile = max(("technical", DOC_PROFILE), key=lambda k: kept.get(k, 0))
        rep.profile_reason = (f"prose would keep only {kept['prose']:.0%} of the {n} documents read (median "
                              f"{rep.median_words} words); share each profile keeps: {shares}")


PROSE_KEEPS = 0.7  # below this share of the sample kept, the prose profile is the wrong one for the data


def _kept_shares(texts: list[str]) -> dict[str, float]:
    """The share of the sampled texts each built-in profile would keep, run as the clean stage runs it."""
    from lmwright.data.filters import apply_profile
    from lmwright.data.filters.normalise import clean_text
    from lmwright.spec.data import CleanSpec, DataSpec

    profiles, repair = DataSpec().profiles, CleanSpec()
    fixed = [clean_text(t, repair) for t in texts[:200]]
    names = ["prose", "technical", *([DOC_PROFILE] if DOC_PROFILE != "technical" else [])]
    return {name: sum(apply_profile(t, profiles[name])[1] is None for t in fixed) / max(1, len(fixed))
            for name in names}


def _pick(items: list, n: int) -> list:
    """At most n items spread evenly over the list (first and last parts alike)."""
    if n <= 0:
        return []
    return list(items) if len(items) <= n else [items[int(i * len(items) / n)] for i in range(n)]


def _ext(path: Path) -> str:
    """The format suffix with its compression suffix: '.jsonl.gz'."""
    fmt, comp = split_suffix(path)
    return fmt + (path.suffix.lower() if comp and path.suffix.lower() in COMPRESSIONS else "")


def _slug(text: str, strip_ext: bool = False) -> str:
    if strip_ext:
        text = text.split(".")[0] if not text.startswith(".") else text
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def _counts(c: Counter) -> str:
    return ", ".join(f"{k} ({v})" for k, v in c.most_common(8))


def _nearest(pattern: str, root: Path) -> str:
    """The deepest existing directory on the pattern's literal path, and what near the missing part exists."""
    p = Path(pattern)
    base, parts = (Path(p.anchor), p.parts[1:]) if p.is_absolute() else (root, p.parts)
    for i, part in enumerate(parts):
        if _MAGIC.search(part) or part == "..":
            break
        if not (base / part).exists():
            names = sorted(x.name for x in base.iterdir()) if base.is_dir() else []
            close = difflib.get_close_matches(part, names, n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(close)}?" if close else f"it holds {', '.join(names[:8]) or 'nothing'}"
            return f"{base} has no '{part}' ({hint})"
        base = base / part
        if i == len(parts) - 1 and base.is_dir():
            return f"{base} is a directory; for the files in it give '{pattern.rstrip('/')}/**/*' (or **/*.md)"
    kinds: Counter[str] = Counter()
    for i, f in enumerate(base.rglob("*")):
        if i > 20000:
            break
        if f.is_file():
            kinds[_ext(f) or f.name] += 1
    return f"{base} holds {_counts(kinds) if kinds else 'no files'}; nothing there matches {pattern!r}"
