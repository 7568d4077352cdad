"""Document sources. Each yields `Document`s and reports records it could not read as quarantined."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from lmwright.data.document import Document, Quarantined

__all__ = ["Quarantined", "iter_source"]


def iter_source(source, root: Path) -> Iterator[Document | Quarantined]:
    if source.kind == "pydocs":
        from lmwright.data.sources.pydocs import collect_pydocs

        return collect_pydocs(source)
    if source.kind == "files":
        from lmwright.data.sources.files import collect_files

        return collect_files(source, root)
    if source.kind == "sql":
        from lmwright.data.sources.sql import collect_sql

        return collect_sql(source)
    if source.kind == "crawl":
        from lmwright.data.sources.crawl import collect_crawl

        return collect_crawl(source)
    raise ValueError(f"unknown source kind {source.kind!r}")
