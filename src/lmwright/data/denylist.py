"""The takedown denylist that collection applies: every `lmwright forget` selector (a source's name, a document id, a
regular expression over the text) excludes the documents it names from every later collection, counted as removed
with the reason `takedown` and never written anywhere (not even to a removed file: their text is what was taken
down)."""

from __future__ import annotations

import re

from lmwright.core.store import Store
from lmwright.data.document import Document


class Denylist:
    def __init__(self, entries: list[tuple[str, str]]):
        self.entries = entries
        self.sources = {v for k, v in entries if k == "source"}
        self.ids = {v for k, v in entries if k == "doc"}
        self.patterns = [re.compile(v) for k, v in entries if k == "match"]

    @classmethod
    def of(cls, store_url: str) -> Denylist:
        return cls([(t.kind, t.value) for t in Store(store_url).takedowns()])

    def __bool__(self) -> bool:
        return bool(self.entries)

    def denies(self, d: Document) -> bool:
        return (d.source_name in self.sources or d.id in self.ids
                or any(p.search(d.text) for p in self.patterns))
