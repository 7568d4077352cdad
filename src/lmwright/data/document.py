"""The document record (and the quarantined record beside it) and its Parquet form.

Every document carries a stable `id` (hash of source name + locator), so it keeps its identity — and its
split — from collection on, and a takedown can find every dataset it reached.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

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
])


@dataclass
class Document:
    id: str
    text: str
    source: str
    source_name: str
    locator: str
    license: str
    collected_at: str


@dataclass
class Quarantined:
    """A record a source could not read, kept with the reason (`quarantine.jsonl`) instead of being dropped."""
    source_name: str
    locator: str  # file and line
    reason: str  # a short machine-readable reason, e.g. invalid_json
    detail: str  # what was wrong and how to fix it


def doc_id(source_name: str, locator: str) -> str:
    return hashlib.sha256(f"{source_name}\x00{locator}".encode()).hexdigest()[:24]


def write_docs(path: Path, docs: list[Document] | list[dict], extra: dict[str, list] | None = None) -> int:
    rows = [asdict(d) if isinstance(d, Document) else d for d in docs]
    table = pa.Table.from_pylist(rows, schema=SCHEMA) if rows else SCHEMA.empty_table()
    for name, values in (extra or {}).items():
        table = table.append_column(name, pa.array(values, type=pa.string()))
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return table.num_rows


def read_docs(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def read_texts(path: Path) -> list[str]:
    return pq.read_table(path, columns=["text"]).column("text").to_pylist()


def accounting(read: int, kept: int, removed: dict[str, int], quarantined: int) -> dict:
    """A data stage's record count; refuses to report a stage that lost a record."""
    if read != kept + sum(removed.values()) + quarantined:
        raise RuntimeError(f"records went missing: read {read} != kept {kept} + removed {removed} + "
                           f"quarantined {quarantined}")
    return {"read": read, "kept": kept, "removed": dict(sorted(removed.items())), "quarantined": quarantined}
