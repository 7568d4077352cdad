"""Input and output filters for serving, from the data layer: PII redaction and the blocklist.

Each filter returns the text to use and the flags to record with the request (PII types and counts, blocklist
hits), so the request log shows what was changed or flagged without storing the text itself.
"""

from __future__ import annotations

from lmwright.data.filters.blocklist import blocklist_hits
from lmwright.data.filters.pii import redact


class Refused(Exception):
    """A prompt the blocklist policy refuses; `flags` what was found (the request log records the refusal's cause)."""

    def __init__(self, message: str, flags: dict | None = None):
        super().__init__(message)
        self.flags = flags or {}


def screen(text: str, cfg, where: str) -> tuple[str, dict]:
    """(text to use, flags). `where` is "input" or "output"; `cfg` is the spec's serve.safety."""
    flags: dict = {}
    if cfg.redact_pii:
        text, counts = redact(text)
        if counts:
            flags[f"{where}_pii"] = dict(counts)
    if cfg.blocklist != "off":
        hits = blocklist_hits(text)
        if hits:
            flags[f"{where}_blocklist"] = hits
            if cfg.blocklist == "refuse" and where == "input":
                raise Refused(f"the prompt contains {hits} blocklisted word(s); this server refuses such prompts", flags)
    return text, flags
