"""The takedown denylist that collection applies: every `lmwright forget` (core/schema.py `Takedown`) denies its
selector (a source's name, a document id, a regular expression over the text), the ids of the documents it found
(with their duplicates) and their texts' exact-duplicate keys, so the same text under another file name or source
is denied too. What it denies is counted as removed with the reason `takedown` and written nowhere (not even to a
removed file: the text is what was taken down). Retraining from feedback applies it to corrections as well."""

from __future__ import annotations

import hashlib
import json
import re

from lmwright.core.store import Store
from lmwright.data.dedup import dedup_key
from lmwright.data.document import Document


def text_hash(text: str) -> str:
    """The text's key as exact deduplication computes it (case and whitespace aside): a copy that dedup would call
    the same document is denied too."""
    return dedup_key(text or "")


class Denylist:
    def __init__(self, entries: list[tuple[str, str]], ids: set[str] = frozenset(),
                 hashes: set[str] = frozenset()):
        self.entries = entries
        self.sources = {v for k, v in entries if k == "source"}
        self.ids = {v for k, v in entries if k == "doc"} | set(ids)
        self.hashes = set(hashes)
        self.patterns = [re.compile(v) for k, v in entries if k == "match"]

    @classmethod
    def of(cls, store: str | Store) -> Denylist:
        rows = (Store(store) if isinstance(store, str) else store).takedowns()
        return cls([(t.kind, t.value) for t in rows], {i for t in rows for i in t.doc_ids or []},
                   {h for t in rows for h in t.text_hashes or []})

    def __bool__(self) -> bool:
        return bool(self.entries)

    def digest(self) -> str:
        """What a collection's fingerprint holds of the denylist: a new takedown collects again."""
        return hashlib.sha256(json.dumps([self.entries, sorted(self.ids), sorted(self.hashes)]).encode()).hexdigest()

    def denies(self, d: Document) -> bool:
        return (d.source_name in self.sources or d.id in self.ids or self.denies_text(d.text))

    def denies_text(self, text: str) -> bool:
        return bool(self.hashes and text_hash(text) in self.hashes) or any(p.search(text or "") for p in
                                                                          self.patterns)
