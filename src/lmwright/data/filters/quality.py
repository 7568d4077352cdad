"""Quality heuristics with their published default thresholds: Gopher quality and repetition (Rae et al.,
2021), C4 (Raffel et al., 2020) and FineWeb's line rules (Penedo et al., 2024).

Every function takes a text and a settings object and returns `(text, reason)`: `reason` is None to keep the
document, else `"<rule group>.<rule>"`, e.g. `"gopher_quality.alpha_words"`. Only C4 rewrites the text (it drops
lines); the others only decide.
"""

from __future__ import annotations

import re
from collections import Counter

_WORD = re.compile(r"\S+")
_HAS_ALPHA = re.compile(r"[^\W\d_]")
_PUNCT_STRIP = ".,;:!?\"'()[]{}<>«»“”‘’`"
STOP_WORDS = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})
BULLETS = ("•", "-", "*", "‣", "⁃", "◦", "▪", "·")
ELLIPSES = ("...", "…")
TERMINAL_PUNCT = (".", "!", "?", '"', "'", "”", "’", ":", ")")
_SENTENCE_END = re.compile(r"[.!?]+(?:\s|$)")
_CITATION = re.compile(r"\[\d+\]|\[citation needed\]|\[edit\]", re.IGNORECASE)
POLICY_PHRASES = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies",
                  "use cookies")


def words(text: str) -> list[str]:
    return _WORD.findall(text)


def gopher_quality(text: str, cfg) -> tuple[str, str | None]:
    toks = words(text)
    n = len(toks)
    if n < cfg.min_words:
        return text, "gopher_quality.min_words"
    if n > cfg.max_words:
        return text, "gopher_quality.max_words"
    stripped = [w.strip(_PUNCT_STRIP) for w in toks]
    stripped = [w for w in stripped if w] or [""]
    avg = sum(len(w) for w in stripped) / len(stripped)
    if avg < cfg.min_avg_word_length:
        return text, "gopher_quality.short_words"
    if avg > cfg.max_avg_word_length:
        return text, "gopher_quality.long_words"
    symbols = text.count("#") + sum(text.count(e) for e in ELLIPSES)
    if symbols / n > cfg.max_symbol_word_ratio:
        return text, "gopher_quality.symbols"
    lines = [ln for ln in text.splitlines() if ln.strip()] or [""]
    if sum(ln.lstrip().startswith(BULLETS) for ln in lines) / len(lines) > cfg.max_bullet_lines_ratio:
        return text, "gopher_quality.bullet_lines"
    if sum(ln.rstrip().endswith(ELLIPSES) for ln in lines) / len(lines) > cfg.max_ellipsis_lines_ratio:
        return text, "gopher_quality.ellipsis_lines"
    if sum(bool(_HAS_ALPHA.search(w)) for w in toks) / n < cfg.min_alpha_words_ratio:
        return text, "gopher_quality.alpha_words"
    if sum(w.lower() in STOP_WORDS for w in stripped) < cfg.min_stop_words:
        return text, "gopher_quality.stop_words"
    return text, None


def _dup_stats(chunks: list[str]) -> tuple[float, float]:
    """(fraction of chunks that repeat an earlier one, fraction of characters in those repeats)."""
    if not chunks:
        return 0.0, 0.0
    seen: set[str] = set()
    dup = dup_chars = 0
    for c in chunks:
        if c in seen:
            dup += 1
            dup_chars += len(c)
        seen.add(c)
    return dup / len(chunks), dup_chars / max(1, sum(len(c) for c in chunks))


def _ngrams(toks: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)]


def _top_ngram_frac(toks: list[str], n: int) -> float:
    grams = _ngrams(toks, n)
    if not grams:
        return 0.0
    gram, count = Counter(grams).most_common(1)[0]
    if count < 2:  # an n-gram seen once is not a repetition (matters for short texts)
        return 0.0
    return count * sum(len(w) for w in gram) / max(1, sum(len(w) for w in toks))


def _dup_ngram_frac(toks: list[str], n: int) -> float:
    """Fraction of word characters covered by n-grams that occur more than once (each word counted once)."""
    grams = _ngrams(toks, n)
    if not grams:
        return 0.0
    counts = Counter(grams)
    covered = [False] * len(toks)
    for i, g in enumerate(grams):
        if counts[g] > 1:
            for j in range(i, i + n):
                covered[j] = True
    total = sum(len(w) for w in toks)
    return sum(len(w) for w, c in zip(toks, covered, strict=True) if c) / max(1, total)


def gopher_repetition(text: str, cfg) -> tuple[str, str | None]:
    paras = [p.strip() for p in re.split(r"\n{2,}", text) if p.strip()]
    frac, char_frac = _dup_stats(paras)
    if frac > cfg.max_dup_para_frac:
        return text, "gopher_repetition.dup_paragraphs"
    if char_frac > cfg.max_dup_para_char_frac:
        return text, "gopher_repetition.dup_paragraph_chars"
    lines = [ln for ln in text.splitlines() if ln.strip()]
    frac, char_frac = _dup_stats(lines)
    if frac > cfg.max_dup_line_frac:
        return text, "gopher_repetition.dup_lines"
    if char_frac > cfg.max_dup_line_char_frac:
        return text, "gopher_repetition.dup_line_chars"
    toks = words(text)
    if len(toks) < cfg.ngram_min_words:
        return text, None
    for n, limit in sorted(cfg.top_ngram_max_frac.items()):
        if _top_ngram_frac(toks, int(n)) > limit:
            return text, f"gopher_repetition.top_{n}gram"
    for n, limit in sorted(cfg.dup_ngram_max_frac.items()):
        if _dup_ngram_frac(toks, int(n)) > limit:
            return text, f"gopher_repetition.dup_{n}gram"
    return text, None


def c4(text: str, cfg) -> tuple[str, str | None]:
    """C4's line filter: keep lines that end in terminal punctuation and have enough words; drop boilerplate
    lines; then remove the document if it has lorem ipsum, curly brackets or too few sentences."""
    low = text.lower()
    if cfg.lorem_ipsum and "lorem ipsum" in low:
        return text, "c4.lorem_ipsum"
    if cfg.curly_bracket and "{" in text:
        return text, "c4.curly_bracket"
    kept = []
    for line in text.splitlines():
        line = _CITATION.sub("", line).strip()
        if not line:
            continue
        lw = line.lower()
        if cfg.terminal_punct and not line.endswith(TERMINAL_PUNCT):
            continue
        if len(words(line)) < cfg.min_words_per_line:
            continue
        if any(len(w) > cfg.max_word_length for w in words(line)):
            continue
        if cfg.javascript and "javascript" in lw:
            continue
        if cfg.policy and any(p in lw for p in POLICY_PHRASES):
            continue
        kept.append(line)
    out = "\n".join(kept)
    if len(_SENTENCE_END.findall(out)) < cfg.min_sentences:
        return out, "c4.few_sentences"
    return out, None


def fineweb(text: str, cfg) -> tuple[str, str | None]:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return text, "fineweb.empty"
    if sum(ln.endswith(TERMINAL_PUNCT) for ln in lines) / len(lines) < cfg.min_line_punct_ratio:
        return text, "fineweb.line_punct"
    if sum(len(ln) <= cfg.short_line_chars for ln in lines) / len(lines) > cfg.max_short_line_ratio:
        return text, "fineweb.short_lines"
    _, dup_char_frac = _dup_stats(lines)
    if dup_char_frac > cfg.max_dup_line_char_ratio:
        return text, "fineweb.dup_line_chars"
    if text.count("\n") / max(1, len(words(text))) > cfg.max_newline_per_word:
        return text, "fineweb.newlines"
    return text, None
