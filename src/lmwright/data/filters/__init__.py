"""Document filters: normalisation, quality heuristics, language identification, PII and blocklist.

Each filter is a plain function `(text, settings) -> (text, reason | None)`; a reason names the rule group and
the rule (`gopher_quality.min_words`). `apply_profile` runs a source's filter profile over one document in a
fixed order — cheap checks first — and stops at the first rule that removes it.
"""

from __future__ import annotations

from lmwright.data.filters.blocklist import blocklist
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


def apply_profile(text: str, profile) -> tuple[str, str | None]:
    for field, fn in FILTERS:
        cfg = getattr(profile, field)
        if cfg.enabled:
            text, reason = fn(text, cfg)
            if reason:
                return text, reason
    return text, None
