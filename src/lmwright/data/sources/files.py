"""The `files` source: the user's own text by glob, relative to the project directory.

`.txt` and `.md`: one document per file. `.jsonl`: one document per line, text in `text_field`. Files are read
as UTF-8; a file that is not valid UTF-8 is decoded with replacement characters (and the clean stage's
`max_replacement_ratio` then decides), never crashing the run. A `.jsonl` line that is not JSON, or lacks the text
field, is quarantined with its file, line and the fix.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from lmwright.data.document import Document, doc_id
from lmwright.data.sources import Quarantined
from lmwright.errors import LmwrightError

SUFFIXES = {".txt", ".md", ".jsonl"}


def matched_files(source, root: Path) -> list[Path]:
    files: set[Path] = set()
    for pattern in source.paths:
        p = Path(pattern)
        matches = [p] if p.is_absolute() and p.exists() else list(root.glob(pattern)) if not p.is_absolute() \
            else list(Path(p.anchor).glob(str(p.relative_to(p.anchor))))
        files.update(m for m in matches if m.is_file() and m.suffix.lower() in SUFFIXES)
    if not files:
        raise LmwrightError(
            f"source '{source.name}': no .txt/.md/.jsonl file matches {source.paths} under {root}. "
            "Fix data.sources[].paths in lmwright.yaml (globs are relative to the project directory)."
        )
    return sorted(files)


def collect_files(source, root: Path) -> Iterator[Document | Quarantined]:
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    for path in matched_files(source, root):
        rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
        text = path.read_bytes().decode("utf-8", errors="replace")
        if path.suffix.lower() != ".jsonl":
            yield Document(doc_id(source.name, rel), text, rel, source.name, rel, source.license, now)
            continue
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            loc = f"{rel}:{lineno}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                yield Quarantined(source.name, loc, "invalid_json", f"{exc.msg} at column {exc.colno}; fix the line")
                continue
            value = record.get(source.text_field) if isinstance(record, dict) else None
            if not isinstance(value, str):
                yield Quarantined(source.name, loc, "missing_text_field",
                                  f"no string field '{source.text_field}'; add it or set text_field in the spec")
                continue
            yield Document(doc_id(source.name, loc), value, rel, source.name, loc, source.license, now)
