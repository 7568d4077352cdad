"""The document record (and the quarantined record beside it) and its Parquet form.

Every document carries a stable `id` (hash of source name + locator), so it keeps its identity — and its
split — from collection on, and a takedown can find every dataset it reached.

Beside its text and provenance a document carries two JSON objects (as strings, "{}" when empty), so every
source shares one Parquet schema whatever its records hold:
- `labels`: label name -> value (a string, number or boolean), e.g. {"chapter": "data types"} (pydocs, derived by
  code), a record's own fields (`label_fields` of a files source, `label_columns` of a SQL source), or an
  annotation task's final label. What stratified splits, the dataset card and classification read.
- `meta`: other fields copied from a record (`meta_fields` / `meta_columns`): e.g. a `date` a time-based split
  cuts by (`split.time_field`). Values: strings, numbers, booleans; dates and times as ISO 8601 text.
Files written before these columns existed read with both empty.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA = pa.schema([
    ("id", pa.string()),
    ("text", pa.string()),
    ("source", pa.string()),  # e.g. "json.dumps" or "notes/a.md"
    ("source_name", pa.string()),  # the spec's source name, e.g. "pydocs"
    ("locator", pa.string()),  # where inside the source: "json.dumps", "notes/a.md", "data.jsonl:12"
    ("license", pa.string()),
    ("collected_at", pa.string()),  # ISO 8601, UTC
    ("labels", pa.string()),  # JSON object: label name -> value
    ("meta", pa.string()),  # JSON object: other fields copied from the record
])
CARRIED = ("labels", "meta")  # JSON columns: "{}" when a document has none (and in files older than them)


@dataclass
class Document:
    id: str
    text: str
    source: str
    source_name: str
    locator: str
    license: str
    collected_at: str
    labels: str = "{}"
    meta: str = "{}"


@dataclass
class Quarantined:
    """A record a source could not read, kept with the reason (`quarantine.jsonl`) instead of being dropped."""
    source_name: str
    locator: str  # file and line
    reason: str  # a short machine-readable reason, e.g. invalid_json
    detail: str  # what was wrong and how to fix it


def doc_id(source_name: str, locator: str) -> str:
    return hashlib.sha256(f"{source_name}\x00{locator}".encode()).hexdigest()[:24]


class BadField(ValueError):
    """A record's label or meta field holds a value a document cannot carry; the source quarantines the record."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def _scalar(value: Any, dates: bool) -> Any:
    """The JSON form of a field's value; None for an absent one (None, "", NaN); BadField when not a scalar."""
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool | int | str) or (isinstance(value, float) and math.isfinite(value)):
        return value
    if isinstance(value, Decimal) and value.is_finite():
        return int(value) if value == value.to_integral_value() else float(value)
    if dates and isinstance(value, datetime | date | time):
        return value.isoformat()
    raise TypeError(type(value).__name__)


def carried_fields(record: Mapping[str, Any], label_fields: Sequence[str], meta_fields: Sequence[str]) \
        -> tuple[str, str]:
    """(labels, meta) JSON for a document from its record's fields. A field the record lacks (or leaves empty) is
    simply not carried; a label that is not a string, number or boolean (or a meta value that is neither that nor
    a date) raises BadField naming the field."""
    out: dict[str, dict] = {"labels": {}, "meta": {}}
    for kind, names in (("labels", label_fields), ("meta", meta_fields)):
        for name in names:
            try:
                value = _scalar(record.get(name), dates=kind == "meta")
            except TypeError as exc:
                what = "a string, number or boolean" + (" or a date" if kind == "meta" else "")
                raise BadField(f"bad_{'label' if kind == 'labels' else 'meta'}_field",
                               f"field '{name}' is a {exc} ({str(record.get(name))[:60]!r}), not {what}; fix the "
                               f"record, or stop copying '{name}' into the documents' {kind}") from None
            if value is not None:
                out[kind][name] = value
    return json.dumps(out["labels"], ensure_ascii=False), json.dumps(out["meta"], ensure_ascii=False)


def write_docs(path: Path, docs: list[Document] | list[dict], extra: dict[str, list] | None = None) -> int:
    """Documents to Parquet in SCHEMA's columns (others are dropped), then the `extra` columns (a name of SCHEMA's
    replaces that column): e.g. a removal's reason."""
    rows = [asdict(d) if isinstance(d, Document) else d for d in docs]
    table = pa.Table.from_pylist(rows, schema=SCHEMA) if rows else SCHEMA.empty_table()
    for name in CARRIED:  # rows without them (read from an older file, or built by hand) carry none
        i = table.schema.get_field_index(name)
        table = table.set_column(i, name, table.column(i).fill_null("{}"))
    for name, values in (extra or {}).items():
        column = pa.array(values, type=pa.string())
        i = table.schema.get_field_index(name)
        table = table.set_column(i, name, column) if i >= 0 else table.append_column(name, column)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return table.num_rows


def read_docs(path: Path) -> list[dict]:
    """Every row as a dict; `labels` and `meta` are "{}" where the file predates them or holds none."""
    table = pq.read_table(path)
    for name in CARRIED:
        i = table.schema.get_field_index(name)
        column = pa.array(["{}"] * table.num_rows, pa.string()) if i < 0 else table.column(i).fill_null("{}")
        table = table.append_column(name, column) if i < 0 else table.set_column(i, name, column)
    return table.to_pylist()


def doc_json(doc: Mapping[str, Any], column: str) -> dict[str, Any]:
    """A document's `labels` or `meta` as a dict (empty when absent)."""
    value = doc.get(column)
    return json.loads(value) if value else {}


def read_texts(path: Path) -> list[str]:
    return pq.read_table(path, columns=["text"]).column("text").to_pylist()


def accounting(read: int, kept: int, removed: dict[str, int], quarantined: int) -> dict:
    """A data stage's record count; refuses to report a stage that lost a record."""
    if read != kept + sum(removed.values()) + quarantined:
        raise RuntimeError(f"records went missing: read {read} != kept {kept} + removed {removed} + "
                           f"quarantined {quarantined}")
    return {"read": read, "kept": kept, "removed": dict(sorted(removed.items())), "quarantined": quarantined}
