"""Repairs applied to every document: Unicode damage (ftfy), normal form, control characters, whitespace."""

from __future__ import annotations

import re
import unicodedata

import ftfy

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_TRAILING_WS = re.compile(r"[ \t]+$", re.MULTILINE)
_BLANK_RUNS = re.compile(r"\n{3,}")


def clean_text(text: str, cfg) -> str:
    if cfg.fix_unicode:
        # mojibake and bad escapes only: keep the user's own quotes, ligatures and line breaks as they are
        text = ftfy.fix_text(text, uncurl_quotes=False, fix_latin_ligatures=False, fix_line_breaks=False,
                             normalization=None)
    if cfg.normalize != "none":
        text = unicodedata.normalize(cfg.normalize, text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if cfg.strip_control:
        text = _CONTROL.sub("", text)
    text = _TRAILING_WS.sub("", text)
    return _BLANK_RUNS.sub("\n\n", text).strip()


def basic(text: str, cfg) -> tuple[str, str | None]:
    """Length and character checks: `basic.encoding_damage`, `too_short`, `too_long`, `low_alpha`."""
    n = len(text)
    if n and text.count("\ufffd") / n > cfg.max_replacement_ratio:
        return text, "basic.encoding_damage"
    if n < cfg.min_chars:
        return text, "basic.too_short"
    if n > cfg.max_chars:
        return text, "basic.too_long"
    visible = sum(1 for c in text if not c.isspace())
    if visible and sum(1 for c in text if c.isalpha()) / visible < cfg.min_alpha_ratio:
        return text, "basic.low_alpha"
    return text, None
