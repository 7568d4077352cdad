"""Document filters: normalisation, quality heuristics, language identification, PII and blocklist.

Each filter is a plain function `(text, settings) -> (text, reason | None)`; a reason names the rule group and
the rule (`gopher_quality.min_words`). `apply_profile` runs a source's filter profile over one document in a
fixed order — cheap checks first — and stops at the first rule that removes it.
"""

from __future__ import annotations

from lmwright.data.filters.blocklist import blocklist
from lmwright.data.filters.code import split_code
from lmwright.data.filters.language import language
from lmwright.data.filters.normalise import basic
from lmwright.data.filters.quality import c4, fineweb, gopher_quality, gopher_repetition

# (profile field, function) in the order they run
FILTERS = (
    ("basic", basic),
    ("gopher_quality", gopher_quality),
    ("c4", c4),
    ("fineweb", fineweb),
    ("gopher_repetition", gopher_repetition),
    ("language", language),
    ("blocklist", blocklist),
)


_READ_WHOLE = ("basic", "blocklist")  # with code_blocks keep/strip these read what is kept, the others the prose


def apply_profile(text: str, profile) -> tuple[str, str | None]:
    """Run a filter profile over one repaired document: (the text to keep, the first reason to remove it or None).

    `profile.code_blocks: filter`: every rule reads the whole text (and may rewrite it). `keep`/`strip`: the rules
    read the prose (code blocks out, inline markup reduced to its words) and only decide; the kept text is the
    document, or the document without its code blocks (`data/filters/code.py`)."""
    if profile.code_blocks == "filter":
        for field, fn in FILTERS:
            cfg = getattr(profile, field)
            if cfg.enabled:
                text, reason = fn(text, cfg)
                if reason:
                    return text, reason
        return text, None
    parts = split_code(text)
    kept = text if profile.code_blocks == "keep" else parts.without_code
    for field, fn in FILTERS:
        cfg = getattr(profile, field)
        if cfg.enabled and (reason := fn(kept if field in _READ_WHOLE else parts.prose, cfg)[1]):
            return kept, reason
    return kept, None
