"""Blocklist filter: a document with more than `max_hits` blocklisted words is removed.

The list ships with lmwright (`blocklist_en.txt`: unambiguous English profanity and sexual terms, whole-word,
case-insensitive — chosen so technical words such as "kill", "abort" or "execute" never match); a spec adds
words with `extra_words`.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

LIST_FILE = Path(__file__).with_name("blocklist_en.txt")


@lru_cache(maxsize=8)
def _pattern(extra: tuple[str, ...]) -> re.Pattern:
    words = [w.strip().lower() for w in LIST_FILE.read_text(encoding="utf-8").splitlines()
             if w.strip() and not w.startswith("#")]
    words += [w.lower() for w in extra]
    return re.compile(r"\b(?:" + "|".join(sorted(map(re.escape, set(words)), key=len, reverse=True)) + r")\b",
                      re.IGNORECASE)


def blocklist_hits(text: str, extra: tuple[str, ...] = ()) -> int:
    return len(_pattern(tuple(extra)).findall(text))


def blocklist(text: str, cfg) -> tuple[str, str | None]:
    if blocklist_hits(text, tuple(cfg.extra_words)) > cfg.max_hits:
        return text, "blocklist.hits"
    return text, None
