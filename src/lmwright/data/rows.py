"""Rows of a user's data file (.jsonl/.json, .csv or .parquet, each optionally compressed: .gz, .bz2, .xz, .zst)
with their line numbers, and what is wrong with each bad line instead of an exception: evaluation refuses a bad
file at its first bad line, fine-tuning quarantines the line and goes on."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from lmwright.data.compressed import read_bytes, split_suffix
from lmwright.errors import LmwrightError


def read_records(path: Path, what: str = "data") -> list[tuple[int, dict | None, str | None]]:
    """(line or row number, record or None, why not) for every row; `what` names the file's use in errors."""
    path = Path(path)
    if not path.exists():
        raise LmwrightError(f"{path}: no such {what} file")
    suffix = split_suffix(path)[0]
    if suffix in (".jsonl", ".json"):
        out: list[tuple[int, dict | None, str | None]] = []
        for n, line in enumerate(_text(path, what).splitlines(), 1):
            line = line.removeprefix("\ufeff")  # a byte-order mark (at the start of each concatenated file)
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                out.append((n, None, f"not valid JSON ({exc.msg}); one JSON object per line"))
                continue
            out.append((n, rec, None) if isinstance(rec, dict) else
                       (n, None, f"not an object: a JSON {type(rec).__name__}; one JSON object per line"))
        return out
    if suffix == ".csv":
        text = _text(path, what)
        return [(n, rec, None) for n, rec in enumerate(csv.DictReader(io.StringIO(text, newline="")), 2)]
    if suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path if split_suffix(path)[1] is None else pa.BufferReader(read_bytes(path)))
        except (OSError, pa.ArrowException) as exc:
            raise LmwrightError(f"{path}: not a readable Parquet {what} file ({exc})") from None
        return [(n, rec, None) for n, rec in enumerate(table.to_pylist(), 1)]
    raise LmwrightError(f"{path}: unsupported {what} file type {suffix!r}; use .jsonl, .csv or .parquet "
                        "(each may be compressed: .gz, .bz2, .xz, .zst)")


def _text(path: Path, what: str) -> str:
    """The file's text (UTF-8; a byte-order mark dropped), or an error that names the file and the fix."""
    try:
        return read_bytes(path).decode("utf-8-sig")
    except OSError as exc:
        raise LmwrightError(f"{path}: cannot read this {what} file ({exc}); re-create it") from None
    except UnicodeDecodeError as exc:
        raise LmwrightError(f"{path}: this {what} file is not UTF-8 (byte {exc.start}: {exc.reason}); "
                            "convert it to UTF-8") from None
