"""Language identification with py3langid, whose model ships inside the package: nothing is downloaded.

`detect` returns (ISO 639-1 code, probability); the filter keeps documents whose language is in the keep-list
with at least `min_score` probability.
"""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def _identifier():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def detect(text: str) -> tuple[str, float]:
    lang, prob = _identifier().classify(text[:4000])  # the opening is enough, and bounds the cost
    return lang, float(prob)


def language(text: str, cfg) -> tuple[str, str | None]:
    lang, prob = detect(text)
    if lang not in cfg.keep:
        return text, "language.not_kept"
    if prob < cfg.min_score:
        return text, "language.low_score"
    return text, None
