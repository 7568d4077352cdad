"""The clean stage's work on one shard of documents, run by the executor in a worker process.

Reads rows [start, stop) of the collected documents, repairs each text, runs its source's filter profile,
redacts PII, and writes `kept.parquet` and `removed.parquet` for the shard; returns the counts, in all and per
source. `removal_warnings` turns the per-source counts into the stage's warnings: a source that lost more than
`data.warn_removed_share` of its documents, why, and the setting that would change it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from lmwright.data.document import write_docs
from lmwright.data.filters import apply_profile
from lmwright.data.filters.normalise import clean_text
from lmwright.data.filters.pii import redact
from lmwright.spec import DataSpec


@dataclass(frozen=True)
class CleanShard:
    """Picklable: the worker gets the input path, its row range and the data spec as JSON."""

    docs_path: str
    shard_docs: int
    data_json: str

    def __call__(self, i: int, out: Path) -> dict:
        data = DataSpec.model_validate_json(self.data_json)
        profile_of = {s.name: data.profiles[s.profile] for s in data.sources}
        table = pq.read_table(self.docs_path).slice(i * self.shard_docs, self.shard_docs)
        kept, removed, reasons, pii = [], [], [], Counter()
        by_source: dict[str, dict] = {}
        for d in table.to_pylist():
            name = d["source_name"]
            text, reason = apply_profile(clean_text(d["text"], data.clean), profile_of[name])
            if reason is None and data.pii.enabled:
                text, found = redact(text, data.pii.types, ip_scope=data.pii.ip_scope)
                pii.update(found)
            d["text"] = text
            acc = by_source.setdefault(name, {"read": 0, "kept": 0, "removed": {}})
            acc["read"] += 1
            if reason:
                removed.append(d)
                reasons.append(reason)
                acc["removed"][reason] = acc["removed"].get(reason, 0) + 1
            else:
                kept.append(d)
                acc["kept"] += 1
        write_docs(out / "kept.parquet", kept)
        write_docs(out / "removed.parquet", removed, extra={"reason": reasons})
        return {"read": table.num_rows, "kept": len(kept), "removed": dict(Counter(reasons)), "pii": dict(pii),
                "by_source": by_source}


def merge_by_source(results: list[dict]) -> dict[str, dict]:
    """The shards' per-source counts added up: source -> {read, kept, removed: {reason: n}} (most removed first)."""
    total: dict[str, dict] = {}
    for r in results:
        for name, acc in r.get("by_source", {}).items():
            t = total.setdefault(name, {"read": 0, "kept": 0, "removed": Counter()})
            t["read"] += acc["read"]
            t["kept"] += acc["kept"]
            t["removed"].update(acc["removed"])
    return {name: {**t, "removed": dict(t["removed"].most_common())} for name, t in total.items()}


# rule -> the threshold field of its rule group that decides it
_FIELD = {
    "basic.too_short": "min_chars", "basic.too_long": "max_chars", "basic.low_alpha": "min_alpha_ratio",
    "basic.encoding_damage": "max_replacement_ratio",
    "gopher_quality.min_words": "min_words", "gopher_quality.max_words": "max_words",
    "gopher_quality.short_words": "min_avg_word_length", "gopher_quality.long_words": "max_avg_word_length",
    "gopher_quality.symbols": "max_symbol_word_ratio", "gopher_quality.bullet_lines": "max_bullet_lines_ratio",
    "gopher_quality.ellipsis_lines": "max_ellipsis_lines_ratio",
    "gopher_quality.alpha_words": "min_alpha_words_ratio", "gopher_quality.stop_words": "min_stop_words",
    "gopher_repetition.dup_paragraphs": "max_dup_para_frac",
    "gopher_repetition.dup_paragraph_chars": "max_dup_para_char_frac",
    "gopher_repetition.dup_lines": "max_dup_line_frac", "gopher_repetition.dup_line_chars": "max_dup_line_char_frac",
    "c4.lorem_ipsum": "lorem_ipsum", "c4.curly_bracket": "curly_bracket", "c4.few_sentences": "min_sentences",
    "fineweb.line_punct": "min_line_punct_ratio", "fineweb.short_lines": "max_short_line_ratio",
    "fineweb.dup_line_chars": "max_dup_line_char_ratio", "fineweb.newlines": "max_newline_per_word",
    "language.not_kept": "keep", "language.low_score": "min_score", "blocklist.hits": "max_hits",
}
# rules that code blocks and markup trip: the documentation profile reads around them
_CODE_TRIPPED = {"c4.curly_bracket", "c4.few_sentences", "fineweb.line_punct", "fineweb.short_lines",
                 "fineweb.dup_line_chars", "fineweb.newlines", "gopher_quality.long_words",
                 "gopher_quality.symbols", "gopher_quality.alpha_words", "gopher_quality.short_words",
                 "gopher_repetition.dup_lines", "gopher_repetition.dup_line_chars", "basic.low_alpha"}


def _setting(reason: str, profile_name: str, profile) -> str:
    """The setting that would keep the documents a rule removes, with its value now."""
    group, _, rule = reason.partition(".")
    base = f"data.profiles.{profile_name}.{group}"
    if group == "gopher_repetition" and rule[:4] in ("top_", "dup_") and rule.endswith("gram"):
        n = int(rule[4:-4])
        field = "top_ngram_max_frac" if rule.startswith("top_") else "dup_ngram_max_frac"
        return f"{base}.{field}.{n} (now {getattr(profile.gopher_repetition, field).get(n)})"
    field = _FIELD.get(reason)
    if field is None:  # a rule with no threshold (fineweb.empty, or one this table does not know)
        return f"{base}.enabled: false"
    value = getattr(getattr(profile, group), field)
    if group == "language" and field == "keep":
        return f"{base}.keep (now {value}; add the corpus's language)"
    if field in ("lorem_ipsum", "curly_bracket"):
        return f"{base}.{field}: false"
    return f"{base}.{field} (now {value})"


def removal_warnings(by_source: dict[str, dict], data) -> list[str]:
    """One line per source whose removed share exceeds `data.warn_removed_share` (None or 0: never): the source,
    n of N removed, the top three reasons, and the settings that would change it."""
    limit = data.warn_removed_share
    if not limit:
        return []
    index = {s.name: i for i, s in enumerate(data.sources)}
    out = []
    for name, acc in by_source.items():
        n_read, n_removed = acc["read"], acc["read"] - acc["kept"]
        if not n_read or n_removed / n_read <= limit or name not in index:
            continue
        src = data.sources[index[name]]
        profile = data.profiles[src.profile]
        top = Counter(acc["removed"]).most_common(3)
        advice = []
        if profile.code_blocks == "filter" and any(r in _CODE_TRIPPED for r, _ in top):
            advice.append(f"data.sources[{index[name]}].profile: documentation (for text with code blocks: "
                          "the line rules read the prose only)")
        advice += [_setting(r, src.profile, profile) for r, _ in top]
        if src.profile != "minimal" and any(not r.startswith("basic.") for r, _ in top):
            advice.append(f"data.sources[{index[name]}].profile: minimal (length and encoding checks only)")
        out.append(f"source '{name}' lost {n_removed / n_read:.0%} of its documents to the filters ({n_removed} of "
                   f"{n_read}, profile {src.profile}): " + ", ".join(f"{r} {c}" for r, c in top)
                   + "; to keep more, set " + " or ".join(dict.fromkeys(advice))
                   + f" (this warns above data.warn_removed_share: {limit})")
    return out
