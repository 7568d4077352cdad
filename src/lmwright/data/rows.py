"""Rows of a user's data file (.jsonl/.json, .csv or .parquet) with their line numbers, and what is wrong with
each bad line instead of an exception: evaluation refuses a bad file at its first bad line, fine-tuning
quarantines the line and goes on."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from lmwright.errors import LmwrightError


def read_records(path: Path, what: str = "data") -> list[tuple[int, dict | None, str | None]]:
    """(line or row number, record or None, why not) for every row; `what` names the file's use in errors."""
    path = Path(path)
    if not path.exists():
        raise LmwrightError(f"{path}: no such {what} file")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        out: list[tuple[int, dict | None, str | None]] = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
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
        with open(path, newline="", encoding="utf-8") as f:
            return [(n, rec, None) for n, rec in enumerate(csv.DictReader(f), 2)]
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return [(n, rec, None) for n, rec in enumerate(pq.read_table(path).to_pylist(), 1)]
    raise LmwrightError(f"{path}: unsupported {what} file type {suffix!r}; use .jsonl, .csv or .parquet")
