"""Cleaning: Unicode normalisation, control characters, whitespace, and basic length/character filters.

`clean_text` repairs a text; `check` names the first rule a text fails (or None). Each removal reason is a rule
name, so a stage reports `removed: {too_short: n, ...}` and kept + removed = read.
"""

from __future__ import annotations

import re
import unicodedata

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_TRAILING_WS = re.compile(r"[ \t]+$", re.MULTILINE)
_BLANK_RUNS = re.compile(r"\n{3,}")


def clean_text(text: str, cfg) -> str:
    if cfg.normalize != "none":
        text = unicodedata.normalize(cfg.normalize, text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if cfg.strip_control:
        text = _CONTROL.sub("", text)
    text = _TRAILING_WS.sub("", text)
    return _BLANK_RUNS.sub("\n\n", text).strip()


def check(text: str, cfg) -> str | None:
    """The reason a cleaned text is removed, or None to keep it."""
    n = len(text)
    if n and text.count("\ufffd") / n > cfg.max_replacement_ratio:
        return "encoding_damage"
    if n < cfg.min_chars:
        return "too_short"
    if n > cfg.max_chars:
        return "too_long"
    visible = sum(1 for c in text if not c.isspace())
    if visible and sum(1 for c in text if c.isalpha()) / visible < cfg.min_alpha_ratio:
        return "low_alpha"
    return None
