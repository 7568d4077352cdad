"""The `files` source: the user's own text by glob, relative to the project directory.

- `.txt`, `.md`: one document per file. `.html`/`.htm`: one document per file, its main text (trafilatura).
- `.jsonl`: one document per line, text in `text_field`. `.csv` and `.parquet`: one per row, text in the
  `text_field` column.
- `.jsonl`, `.csv`, `.parquet`: the record's fields named in `label_fields` are copied into the document's labels,
  those in `meta_fields` into its meta (e.g. a `date` for a time-based split). A record without such a field (or
  with it empty) simply does not carry it; one whose label is not a string, number or boolean (or whose meta value
  is neither that nor a date) is quarantined (`bad_label_field`, `bad_meta_field`).
- Each of these may be compressed: `.gz`, `.bz2`, `.xz`, `.zst` (e.g. `shard-00001.jsonl.zst`).
- Encoding (`encoding: auto`): a byte-order mark decides when there is one (and is dropped, also at the start of
  a line, as concatenated files have it); else UTF-8; if that fails, the encoding charset-normalizer detects
  (windows-1252 when it is among the near-best guesses); if none is found, UTF-8 with replacement characters, and
  the clean stage's encoding check decides. Undecodable bytes never stop the run.
- Quarantined with file, line and reason, the run going on: a matched file of a type this source does not read
  (`unsupported_type`, with the types it does read), empty files, binary files, unreadable compressed files,
  files or records over `max_record_mb`, an HTML page with no main text, a `.jsonl` line that is not JSON or
  lacks the text field, a table without the text column or with an empty cell. Every file the globs match is
  read or quarantined: nothing a user pointed at vanishes.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from lmwright.data.compressed import COMPRESSIONS, read_bytes, split_suffix
from lmwright.data.document import BadField, Document, Quarantined, carried_fields, doc_id
from lmwright.errors import LmwrightError

SUFFIXES = {".txt", ".md", ".rst", ".jsonl", ".csv", ".parquet", ".html", ".htm"}
READS = f"{', '.join(sorted(SUFFIXES))}, each optionally compressed ({', '.join(COMPRESSIONS)})"


def supported(path: Path) -> bool:
    return split_suffix(path)[0] in SUFFIXES


OWN_DIRS = {".lmwright", "lmwright-out"}  # the workspace and the default output directory: never a source's data


def matched_files(source, root: Path) -> list[Path]:
    """Every file the source's globs match, supported or not (the unsupported ones are quarantined)."""
    files: set[Path] = set()
    for pattern in source.paths:
        p = Path(pattern)
        matches = [p] if p.is_absolute() and p.exists() else list(root.glob(pattern)) if not p.is_absolute() \
            else list(Path(p.anchor).glob(str(p.relative_to(p.anchor))))
        # a recursive glob over a project would read lmwright's own workspace and outputs (reports, model cards)
        files.update(m for m in matches if m.is_file() and not OWN_DIRS.intersection(m.parts))
    if not any(supported(f) for f in files):
        types = sorted({"".join(f.suffixes) or f.name for f in files})
        found = f"only files of other types ({', '.join(types[:8])})" if files else "no file"
        raise LmwrightError(
            f"source '{source.name}': {source.paths} matched {found} under {root}; this source reads {READS}. "
            "Fix data.sources[].paths in lmwright.yaml (globs are relative to the project directory)."
        )
    return sorted(files)


# UTF-32's marks first: UTF-32-LE's begins with UTF-16-LE's
BOMS = [(b"\x00\x00\xfe\xff", "utf-32-be"), (b"\xff\xfe\x00\x00", "utf-32-le"), (b"\xef\xbb\xbf", "utf-8"),
        (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be")]


def decode(data: bytes, encoding: str = "auto") -> tuple[str, str]:
    """(text, encoding used): the policy in the module docstring."""
    if encoding != "auto":
        return data.decode(encoding, errors="replace").removeprefix("\ufeff"), encoding
    for bom, codec in BOMS:
        if data.startswith(bom):
            data = data[len(bom):]
            if codec != "utf-8":  # UTF-16/32 bytes read as anything else are NULs: damage is replaced instead
                return data.decode(codec, errors="replace"), codec
            try:
                return data.decode(codec), codec
            except UnicodeDecodeError:
                break  # a mark that the bytes after it contradict (a UTF-8 mark on Windows-1252 text): detect
    try:
        return data.decode("utf-8"), "utf-8"
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
    return b"\x00" in head and not head.startswith((b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff"))  # UTF-16/32


def collect_files(source, root: Path) -> Iterator[Document | Quarantined]:
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    limit = int(source.max_record_mb * 2**20)

    def doc(rel: str, loc: str, text: str, record: dict | None = None) -> Document | Quarantined:
        """A document; from a record (a JSONL line, a table row), with its label and meta fields."""
        labels = meta = "{}"
        if record is not None:
            try:
                labels, meta = carried_fields(record, source.label_fields, source.meta_fields)
            except BadField as exc:
                return bad(loc, exc.reason, exc.detail)
        return Document(doc_id(source.name, loc), text, rel, source.name, loc, source.license, now, labels, meta)

    def bad(loc: str, reason: str, detail: str) -> Quarantined:
        return Quarantined(source.name, loc, reason, detail)

    for path in matched_files(source, root):
        rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
        suffix, compression = split_suffix(path)
        if suffix not in SUFFIXES:
            yield bad(rel, "unsupported_type", f"'{''.join(path.suffixes) or path.name}' is not a type this source "
                                               f"reads ({READS}); convert it, or narrow the glob to leave it out")
            continue
        size = path.stat().st_size
        if size == 0:
            yield bad(rel, "empty_file", "the file is empty")
            continue
        if suffix == ".parquet":
            yield from _parquet(path, compression, rel, source, doc, bad)
            continue
        whole_file = suffix in (".txt", ".md", ".rst", ".html", ".htm")  # one document: the limit is on the file
        if whole_file and compression is None and size > limit:
            yield bad(rel, "record_too_large", f"{size / 2**20:.1f} MB > max_record_mb {source.max_record_mb}")
            continue
        try:
            data = read_bytes(path, limit if whole_file else None)
        except OSError as exc:  # CorruptFile, or the file vanished or is unreadable
            yield bad(rel, "unreadable_file", f"cannot read it ({exc}); re-create it or leave it out of the glob")
            continue
        if whole_file and len(data) > limit:
            yield bad(rel, "record_too_large", f"over max_record_mb {source.max_record_mb} decompressed")
            continue
        if not data:
            yield bad(rel, "empty_file", "the file is empty once decompressed")
            continue
        if _is_binary(data):
            yield bad(rel, "binary_file", "NUL bytes: not a text file; remove it from the glob")
            continue
        text, _ = decode(data, source.encoding)
        if suffix in (".txt", ".md", ".rst"):
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
        line = line.removeprefix("\ufeff")  # concatenated files keep each one's byte-order mark
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
        yield doc(rel, loc, value, record)


def _csv(text, rel, source, limit, doc, bad):
    csv.field_size_limit(2**31 - 1)  # the csv module's 128 KiB cell limit is not ours: max_record_mb is checked below
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
            yield doc(rel, loc, value, row)


def _parquet(path: Path, compression: str | None, rel, source, doc, bad):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:  # an uncompressed file is read in batches; a compressed one is decompressed whole first
        pf = pq.ParquetFile(path if compression is None else pa.BufferReader(read_bytes(path)))
    except Exception as exc:  # noqa: BLE001 - any unreadable parquet is quarantined, not fatal
        yield bad(rel, "unreadable_file", f"not a readable Parquet file ({exc})")
        return
    if source.text_field not in pf.schema_arrow.names:
        yield bad(rel, "missing_text_field", f"no column '{source.text_field}' (columns: {pf.schema_arrow.names})")
        return
    # the label and meta columns the file has (a row of a file without one simply does not carry it)
    columns = list(dict.fromkeys([source.text_field] + [c for c in source.label_fields + source.meta_fields
                                                        if c in pf.schema_arrow.names]))
    row = 0
    for batch in pf.iter_batches(columns=columns, batch_size=4096):
        for record in batch.to_pylist():
            row += 1
            loc = f"{rel}:row{row}"
            value = record[source.text_field]
            yield doc(rel, loc, value, record) if isinstance(value, str) and value else \
                bad(loc, "missing_text_field", f"empty or non-text '{source.text_field}' value")
