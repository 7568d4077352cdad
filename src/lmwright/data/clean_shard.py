"""The clean stage's work on one shard of documents, run by the executor in a worker process.

Reads rows [start, stop) of the collected documents, repairs each text, runs its source's filter profile,
redacts PII, and writes `kept.parquet` and `removed.parquet` for the shard; returns the counts.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from lmwright.data.document import write_docs
from lmwright.data.filters import apply_profile
from lmwright.data.filters.normalise import clean_text
from lmwright.data.filters.pii import redact
from lmwright.spec import DataSpec


@dataclass(frozen=True)
class CleanShard:
    """Picklable: the worker gets the input path, its row range and the data spec as JSON."""

    docs_path: str
    shard_docs: int
    data_json: str

    def __call__(self, i: int, out: Path) -> dict:
        data = DataSpec.model_validate_json(self.data_json)
        profile_of = {s.name: data.profiles[s.profile] for s in data.sources}
        table = pq.read_table(self.docs_path).slice(i * self.shard_docs, self.shard_docs)
        kept, removed, reasons, pii = [], [], [], Counter()
        for d in table.to_pylist():
            text, reason = apply_profile(clean_text(d["text"], data.clean), profile_of[d["source_name"]])
            if reason is None and data.pii.enabled:
                text, found = redact(text, data.pii.types, ip_scope=data.pii.ip_scope)
                pii.update(found)
            d["text"] = text
            if reason:
                removed.append(d)
                reasons.append(reason)
            else:
                kept.append(d)
        write_docs(out / "kept.parquet", kept)
        write_docs(out / "removed.parquet", removed, extra={"reason": reasons})
        return {"read": table.num_rows, "kept": len(kept), "removed": dict(Counter(reasons)), "pii": dict(pii)}
