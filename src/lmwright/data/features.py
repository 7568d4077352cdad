"""The features of a prompt that drift monitoring compares with the training data's, computed the same way for
both sides: by the server for each request (kept in the request log even when its text is not) and by the monitor
for the reference rows (`ops/monitor.py`).

- `bytes`: the prompt's UTF-8 length;
- `unknown_rate`: the share of its tokens that are single bytes, i.e. pieces the tokenizer never learned to merge
  (a byte-level BPE has no <unk>: unfamiliar text shows up as byte fallbacks);
- `language`: py3langid's ISO 639-1 code;
- `sketch`: a hashed bag of words and word pairs (`data/sketch.py`), for the text drift test;
- `nats_per_byte`: the prompt's negative log-likelihood under the model that answered, per byte (the engine
  measures it in prefill; the monitor, for the reference, with the same model).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from lmwright.data.filters.language import detect
from lmwright.data.sketch import sketch

_BYTE_PIECE = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")  # SentencePiece's byte fallback tokens


@lru_cache(maxsize=8)
def _byte_ids(tok) -> frozenset[int]:
    """The ids of a tokenizer's single-byte tokens: a byte-level BPE's 256-symbol alphabet (one character each),
    or SentencePiece's <0xAB> pieces."""
    return frozenset(i for t, i in tok.get_vocab(with_added_tokens=False).items()
                     if len(t) == 1 or _BYTE_PIECE.match(t))


def unknown_rate(tok, text: str) -> float | None:
    ids = tok.encode(text, add_special_tokens=False).ids
    if not ids:
        return None
    byte_ids = _byte_ids(tok)
    return sum(i in byte_ids for i in ids) / len(ids)


def prompt_features(text: str, tok, keep_sketch: bool = True, key: bytes | None = None) -> dict[str, Any]:
    """The drift features of one prompt's text (without `nats_per_byte`, which needs the model); the sketch keyed
    with `key` (the workspace's)."""
    n = len(text.encode("utf-8"))
    out: dict[str, Any] = {"bytes": n, "unknown_rate": unknown_rate(tok, text) if n else None,
                           "language": detect(text)[0] if text.strip() else None}
    if keep_sketch:
        out["sketch"] = sketch(text, key)
    return out
