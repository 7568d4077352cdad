"""The `files` source: the user's own text by glob, relative to the project directory.

- `.txt`, `.md`: one document per file. `.html`/`.htm`: one document per file, its main text (trafilatura).
- `.jsonl`: one document per line, text in `text_field`. `.csv` and `.parquet`: one per row, text in the
  `text_field` column.
- Encoding (`encoding: auto`): UTF-8 (a BOM is dropped); if that fails, the encoding charset-normalizer
  detects (windows-1252 when it is among the near-best guesses); if none is found, UTF-8 with replacement characters, and the clean stage's encoding check decides.
  Undecodable bytes never stop the run.
- Quarantined with file, line and reason, the run going on: empty files, binary files, files or records over
  `max_record_mb`, an HTML page with no main text, a `.jsonl` line that is not JSON or lacks the text field,
  a table without the text column or with an empty cell.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from lmwright.data.document import Document, doc_id
from lmwright.data.sources import Quarantined
from lmwright.errors import LmwrightError

SUFFIXES = {".txt", ".md", ".jsonl", ".csv", ".parquet", ".html", ".htm"}


def matched_files(source, root: Path) -> list[Path]:
    files: set[Path] = set()
    for pattern in source.paths:
        p = Path(pattern)
        matches = [p] if p.is_absolute() and p.exists() else list(root.glob(pattern)) if not p.is_absolute() \
            else list(Path(p.anchor).glob(str(p.relative_to(p.anchor))))
        files.update(m for m in matches if m.is_file() and m.suffix.lower() in SUFFIXES)
    if not files:
        raise LmwrightError(
            f"source '{source.name}': no {'/'.join(sorted(SUFFIXES))} file matches {source.paths} under {root}. "
            "Fix data.sources[].paths in lmwright.yaml (globs are relative to the project directory)."
        )
    return sorted(files)


def decode(data: bytes, encoding: str = "auto") -> tuple[str, str]:
    """(text, encoding used): the policy in the module docstring."""
    if encoding != "auto":
        return data.decode(encoding, errors="replace"), encoding
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    matches = sorted(from_bytes(data), key=lambda m: m.chaos)
    if matches:
        # single-byte Latin encodings are near-indistinguishable on short texts; among the near-best,
        # windows-1252 wins (the WHATWG fallback for undeclared legacy text)
        close = [m for m in matches if m.chaos <= matches[0].chaos + 0.05]
        best = next((m for m in close if m.encoding == "cp1252"), matches[0])
        return str(best), best.encoding
    return data.decode("utf-8", errors="replace"), "utf-8 (with replacements)"


def _is_binary(data: bytes) -> bool:
    head = data[:8192]
    return b"\x00" in head and not head.startswith((b"\xff\xfe", b"\xfe\xff"))  # UTF-16 has NULs too


def collect_files(source, root: Path) -> Iterator[Document | Quarantined]:
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    limit = int(source.max_record_mb * 2**20)

    def doc(rel: str, loc: str, text: str) -> Document:
        return Document(doc_id(source.name, loc), text, rel, source.name, loc, source.license, now)

    def bad(loc: str, reason: str, detail: str) -> Quarantined:
        return Quarantined(source.name, loc, reason, detail)

    for path in matched_files(source, root):
        rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
        suffix = path.suffix.lower()
        size = path.stat().st_size
        if size == 0:
            yield bad(rel, "empty_file", "the file is empty")
            continue
        if suffix == ".parquet":
            yield from _parquet(path, rel, source, doc, bad)
            continue
        if size > limit and suffix not in (".jsonl", ".csv"):
            yield bad(rel, "record_too_large", f"{size / 2**20:.1f} MB > max_record_mb {source.max_record_mb}")
            continue
        data = path.read_bytes()
        if _is_binary(data):
            yield bad(rel, "binary_file", "NUL bytes: not a text file; remove it from the glob")
            continue
        text, _ = decode(data, source.encoding)
        if suffix in (".txt", ".md"):
            yield doc(rel, rel, text)
        elif suffix in (".html", ".htm"):
            from lmwright.data.sources.html import main_text

            extracted = main_text(text)
            yield doc(rel, rel, extracted) if extracted else bad(rel, "no_text", "no main text in the page")
        elif suffix == ".jsonl":
            yield from _jsonl(text, rel, source, limit, doc, bad)
        elif suffix == ".csv":
            yield from _csv(text, rel, source, limit, doc, bad)


def _jsonl(text, rel, source, limit, doc, bad):
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        loc = f"{rel}:{lineno}"
        if len(line) > limit:
            yield bad(loc, "record_too_large", f"line of {len(line) / 2**20:.1f} MB > max_record_mb")
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield bad(loc, "invalid_json", f"{exc.msg} at column {exc.colno}; fix the line")
            continue
        value = record.get(source.text_field) if isinstance(record, dict) else None
        if not isinstance(value, str):
            yield bad(loc, "missing_text_field",
                      f"no string field '{source.text_field}'; add it or set text_field in the spec")
            continue
        yield doc(rel, loc, value)


def _csv(text, rel, source, limit, doc, bad):
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if source.text_field not in (reader.fieldnames or []):
        yield bad(rel, "missing_text_field", f"no column '{source.text_field}' (columns: {reader.fieldnames}); "
                                             "set text_field in the spec")
        return
    for row in reader:
        loc = f"{rel}:{reader.line_num}"
        value = row.get(source.text_field)
        if not value:
            yield bad(loc, "missing_text_field", f"empty '{source.text_field}' cell")
        elif len(value) > limit:
            yield bad(loc, "record_too_large", f"cell of {len(value) / 2**20:.1f} MB > max_record_mb")
        else:
            yield doc(rel, loc, value)


def _parquet(path, rel, source, doc, bad):
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # noqa: BLE001 - any unreadable parquet is quarantined, not fatal
        yield bad(rel, "unreadable_file", f"not a readable Parquet file ({exc})")
        return
    if source.text_field not in pf.schema_arrow.names:
        yield bad(rel, "missing_text_field", f"no column '{source.text_field}' (columns: {pf.schema_arrow.names})")
        return
    row = 0
    for batch in pf.iter_batches(columns=[source.text_field], batch_size=4096):
        for value in batch.column(0).to_pylist():
            row += 1
            loc = f"{rel}:row{row}"
            yield doc(rel, loc, value) if isinstance(value, str) and value else \
                bad(loc, "missing_text_field", f"empty or non-text '{source.text_field}' value")
