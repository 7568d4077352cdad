"""The data sections: where documents come from (`data.sources`), how they are repaired, filtered (the filter
profiles and their thresholds), scrubbed of personal data and deduplicated, how the work is spread over
processes, and how the result is split (`split`)."""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from lmwright.spec.base import Section, Toggle


class PydocsSource(Section):
    kind: Literal["pydocs"] = "pydocs"
    name: str = "pydocs"
    modules: list[str] | None = None  # None = every importable standard-library module
    topics: bool = True  # include pydoc_data.topics (the language reference topics)
    license: str = "PSF-2.0"
    profile: str = "technical"  # the filter profile (data.profiles) its documents go through


class FilesSource(Section):
    kind: Literal["files"] = "files"
    name: str = "files"
    paths: list[str] = Field(min_length=1)  # globs, relative to the project directory
    text_field: str = "text"  # .jsonl / .csv / .parquet: the field or column that holds the text
    label_fields: list[str] = Field(default_factory=list)  # .jsonl / .csv / .parquet: fields copied into labels
    meta_fields: list[str] = Field(default_factory=list)  # ... and into meta (e.g. a date for split.time_field)
    encoding: str = "auto"  # auto = UTF-8, else the detected encoding (charset-normalizer); or a codec name
    max_record_mb: float = Field(16.0, gt=0)  # a larger file or record is quarantined (record_too_large)
    license: str = "unknown"
    profile: str = "prose"


class SqlSource(Section):
    kind: Literal["sql"] = "sql"
    name: str = "sql"
    url: str  # any SQLAlchemy URL, e.g. sqlite:///notes.db or postgresql://user@host/db
    query: str  # e.g. SELECT id, body FROM notes WHERE lang = 'en'
    text_column: str = "text"
    id_column: str = "id"
    label_columns: list[str] = Field(default_factory=list)  # columns copied into the documents' labels
    meta_columns: list[str] = Field(default_factory=list)  # ... and into their meta (e.g. a date column)
    license: str = "unknown"
    profile: str = "prose"


class CrawlSource(Section):
    kind: Literal["crawl"] = "crawl"
    name: str = "crawl"
    seeds: list[str] = Field(min_length=1)  # start URLs
    same_site: bool = True  # follow links to the seeds' hosts only
    max_depth: int = Field(2, ge=0)
    max_pages: int = Field(100, ge=1)
    delay_s: float = Field(1.0, ge=0)  # at least this long between two requests to one host
    retries: int = Field(3, ge=0)  # on connection errors, 429 and 5xx, with exponential back-off
    backoff_s: float = Field(0.5, ge=0)
    timeout_s: float = Field(10.0, gt=0)
    max_page_mb: float = Field(8.0, gt=0)
    user_agent: str = "lmwright/0.1 (+https://github.com/lmwright/lmwright)"
    license: str = "unknown"
    profile: str = "prose"


Source = Annotated[PydocsSource | FilesSource | SqlSource | CrawlSource, Field(discriminator="kind")]


class CleanSpec(Section):
    """Repairs applied to every document before the filters."""

    fix_unicode: bool = True  # ftfy: mojibake, bad escapes, curly-quote damage
    normalize: Literal["NFC", "NFKC", "none"] = "NFC"
    strip_control: bool = True  # drop control characters other than newline and tab


class BasicSpec(Toggle):
    min_chars: int = Field(48, ge=0)
    max_chars: int = Field(200_000, gt=0)
    min_alpha_ratio: float = Field(0.3, ge=0, le=1)  # letters / non-space characters
    max_replacement_ratio: float = Field(0.01, ge=0, le=1)  # U+FFFD / characters


class LanguageSpec(Toggle):
    keep: list[str] = Field(default_factory=lambda: ["en"])  # ISO 639-1 codes (py3langid's model)
    min_score: float = Field(0.65, ge=0, le=1)  # probability of the detected language


class GopherQualitySpec(Toggle):
    min_words: int = Field(50, ge=0)
    max_words: int = Field(100_000, ge=1)
    min_avg_word_length: float = Field(3.0, ge=0)
    max_avg_word_length: float = Field(10.0, ge=0)
    max_symbol_word_ratio: float = Field(0.1, ge=0)  # '#' and ellipses per word
    max_bullet_lines_ratio: float = Field(0.9, ge=0, le=1)
    max_ellipsis_lines_ratio: float = Field(0.3, ge=0, le=1)
    min_alpha_words_ratio: float = Field(0.8, ge=0, le=1)  # words with at least one letter
    min_stop_words: int = Field(2, ge=0)


class GopherRepetitionSpec(Toggle):
    max_dup_line_frac: float = Field(0.3, ge=0, le=1)
    max_dup_para_frac: float = Field(0.3, ge=0, le=1)
    max_dup_line_char_frac: float = Field(0.2, ge=0, le=1)
    max_dup_para_char_frac: float = Field(0.2, ge=0, le=1)
    ngram_min_words: int = Field(0, ge=0)  # the n-gram rules skip shorter texts (their statistics mean nothing)
    top_ngram_max_frac: dict[int, float] = Field(default_factory=lambda: {2: 0.2, 3: 0.18, 4: 0.16})
    dup_ngram_max_frac: dict[int, float] = Field(
        default_factory=lambda: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10})


class C4Spec(Toggle):
    terminal_punct: bool = True  # drop lines that do not end in terminal punctuation
    min_words_per_line: int = Field(3, ge=0)
    max_word_length: int = Field(1000, ge=1)
    min_sentences: int = Field(5, ge=0)
    lorem_ipsum: bool = True
    curly_bracket: bool = True
    javascript: bool = True
    policy: bool = True


class FineWebSpec(Toggle):
    min_line_punct_ratio: float = Field(0.12, ge=0, le=1)
    short_line_chars: int = Field(30, ge=0)
    max_short_line_ratio: float = Field(0.67, ge=0, le=1)
    max_dup_line_char_ratio: float = Field(0.01, ge=0, le=1)
    max_newline_per_word: float = Field(0.3, ge=0)


class BlocklistSpec(Toggle):
    max_hits: int = Field(0, ge=0)  # a document with more blocklisted words than this is removed
    extra_words: list[str] = Field(default_factory=list)  # added to lmwright's shipped list


class FilterProfile(Section):
    """Which filters a source's documents go through, and their thresholds (defaults: the published ones).

    `code_blocks`: what the rules make of code blocks (Markdown fences and indented blocks, reStructuredText literal
    blocks and code directives, doctest lines). `filter` (the default): nothing special, every rule reads the whole
    text and C4 keeps only the lines it passes. `keep` and `strip`: the quality, repetition, C4, FineWeb and
    language rules read the prose only (inline markup reduced to its words), and decide without rewriting; the
    document is kept whole (`keep`) or without its code blocks (`strip`). The length/encoding checks (`basic`) and
    the blocklist read what is kept."""

    code_blocks: Literal["filter", "keep", "strip"] = "filter"
    basic: BasicSpec = Field(default_factory=BasicSpec)
    language: LanguageSpec = Field(default_factory=LanguageSpec)
    gopher_quality: GopherQualitySpec = Field(default_factory=GopherQualitySpec)
    gopher_repetition: GopherRepetitionSpec = Field(default_factory=GopherRepetitionSpec)
    c4: C4Spec = Field(default_factory=C4Spec)
    fineweb: FineWebSpec = Field(default_factory=FineWebSpec)
    blocklist: BlocklistSpec = Field(default_factory=BlocklistSpec)


# documentation repeats its own terms ("the host parameter ... the host parameter"; a changelog's "Related issues
# and pull requests on GitHub"): only heavy repetition
_DOC_REPETITION = {"ngram_min_words": 50, "top_ngram_max_frac": {2: 0.3, 3: 0.3, 4: 0.3},
                   "dup_ngram_max_frac": {5: 0.35, 6: 0.33, 7: 0.31, 8: 0.29, 9: 0.27, 10: 0.25}}

# Built-in profiles. `prose`: web-prose rules at their published thresholds. `technical`: for docstrings, where
# those rules are wrong (Gopher's 50-word minimum alone removes 81% of the stdlib docstrings; C4 drops any text
# with a curly bracket) — measured on the default corpus, see the data notes. `documentation`: for Markdown and
# reStructuredText with code blocks (READMEs, guides): every rule reads the prose only, and the code is kept; the
# thresholds it relaxes were measured on 229 package READMEs (benchmarks/readme_corpus.py, RESULTS.md).
BUILTIN_PROFILES: dict[str, dict[str, Any]] = {
    "prose": {},
    "technical": {
        "language": {"min_score": 0.3},
        "gopher_quality": {"min_words": 8, "min_alpha_words_ratio": 0.5, "min_stop_words": 1},
        "gopher_repetition": _DOC_REPETITION,
        "c4": {"enabled": False},
        "fineweb": {"enabled": False},
    },
    "documentation": {
        "code_blocks": "keep",
        # headings and list items are most of a README's lines: C4 drops them (no final punctuation) before it
        # counts sentences, and they are FineWeb's short lines; changelogs repeat "Added" / "Fixed" headings; the
        # prose's blank line between paragraphs doubles FineWeb's newlines per word (web text has one newline)
        "c4": {"min_sentences": 3},
        "fineweb": {"max_short_line_ratio": 0.8, "max_dup_line_char_ratio": 0.1, "max_newline_per_word": 0.6},
        "gopher_repetition": _DOC_REPETITION,
    },
    "minimal": {k: {"enabled": False} for k in ("language", "gopher_quality", "gopher_repetition", "c4",
                                                   "fineweb", "blocklist")},
}


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


PII_TYPES = ("email", "phone", "ip", "credit_card", "iban", "national_id", "secret")


class PiiSpec(Toggle):
    types: list[Literal["email", "phone", "ip", "credit_card", "iban", "national_id", "secret"]] = Field(
        default_factory=lambda: list(PII_TYPES))
    ip_scope: Literal["public", "all"] = "public"  # all: private, loopback and documentation addresses count too


class NearDedupSpec(Toggle):
    shingle_size: int = Field(5, ge=1)  # words per shingle
    num_perm: int = Field(112, ge=8)  # MinHash permutations
    bands: int = Field(28, ge=1)  # LSH bands of num_perm / bands rows each (28 x 4: a pair at J = 0.75 is a
    # candidate with probability ~1.0, against 0.77 for 14 x 8; the Jaccard verification keeps precision)
    threshold: float = Field(0.7, gt=0, le=1)  # estimated Jaccard similarity a candidate pair must reach
    seed: int = 1

    @model_validator(mode="after")
    def _bands_divide(self) -> NearDedupSpec:
        if self.num_perm % self.bands:
            raise ValueError(f"num_perm ({self.num_perm}) must be divisible by bands ({self.bands})")
        return self


class DedupSpec(Section):
    exact: bool = True  # drop documents whose normalised text (case-folded, whitespace collapsed) repeats
    near: NearDedupSpec = Field(default_factory=NearDedupSpec)  # MinHash + LSH near-duplicates


class ExecutorSpec(Section):
    kind: Literal["local", "ray"] = "local"  # processes on this machine, or Ray tasks (pip install lmwright[ray])
    workers: int | None = Field(None, ge=1)  # None = every core (local) / every CPU of the cluster (ray)
    ray_address: str | None = None  # None = start a local Ray instance; "auto" or ray://host:port = a cluster
    # whose workers see the project directory (shared storage)
    shard_docs: int = Field(1000, ge=1)  # documents per shard: the unit of parallel work and of resume


class DataSpec(Section):
    sources: list[Source] = Field(default_factory=lambda: [PydocsSource()], min_length=1)
    executor: ExecutorSpec = Field(default_factory=ExecutorSpec)
    clean: CleanSpec = Field(default_factory=CleanSpec)
    profiles: dict[str, FilterProfile] = Field(default_factory=dict)  # built-ins plus yours; yours override
    pii: PiiSpec = Field(default_factory=PiiSpec)
    dedup: DedupSpec = Field(default_factory=DedupSpec)
    # the clean stage warns (its summary's `warnings`, printed at the end of a run) about each source it removed
    # more than this share of, with the top reasons and the setting that would change it; null or 0: never
    warn_removed_share: float | None = Field(0.3, ge=0, le=1)

    def pydocs_sources(self) -> set[str]:
        """Names of the pydocs sources: their documents are labelled by library chapter."""
        return {src.name for src in self.sources if src.kind == "pydocs"}

    @model_validator(mode="before")
    @classmethod
    def _builtin_profiles(cls, data: Any) -> Any:
        """Start from the built-in profiles; a user's profile of the same name overrides field by field."""
        if not isinstance(data, dict):
            return data
        user = data.get("profiles") or {}
        if not isinstance(user, dict):
            return data
        merged = {name: _merge(p, user.get(name) or {}) for name, p in BUILTIN_PROFILES.items()}
        merged.update({k: v for k, v in user.items() if k not in BUILTIN_PROFILES})
        return {**data, "profiles": merged}

    @model_validator(mode="after")
    def _profiles_exist(self) -> DataSpec:
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ValueError(f"source names must be unique (got {names}); give each source a distinct name")
        for s in self.sources:
            if s.profile not in self.profiles:
                raise ValueError(f"source '{s.name}' uses profile '{s.profile}', which is not defined; "
                                 f"defined: {', '.join(self.profiles)}")
        return self


def _iso_time(value: str) -> datetime:
    """An ISO 8601 date or date-time; naive means UTC (as documents' `collected_at` is)."""
    t = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value)
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


class SplitSpec(Section):
    """How the deduplicated documents become train / val / test, and the leak check across them.

    hash: by a stable hash of the document id (a document never changes split as the corpus grows).
    stratified: each class of `stratify_by` keeps its share in each split to within one document.
    time: by a date field, train before `train_before`, val until `val_before`, test from then on.
    """

    method: Literal["hash", "stratified", "time"] = "hash"
    val: float = Field(0.05, ge=0, lt=1)  # hash, stratified: the share of documents in val
    test: float = Field(0.05, ge=0, lt=1)
    salt: str = "lmwright"  # hash, stratified: part of the hash; change it to draw a different split
    stratify_by: str | None = None  # stratified: the document field whose classes are kept (default: label)
    time_field: str | None = None  # time: the ISO date field the split is cut by (default: collected_at)
    train_before: str | None = None  # time: T1, an ISO date or date-time; train is what is dated before it
    val_before: str | None = None  # time: T2 > T1; val is [T1, T2), test is T2 on
    leak_check: bool = True  # remove val/test documents that near-duplicate one in an earlier split
    leak_threshold: float = Field(0.5, gt=0, le=1)  # estimated Jaccard (MinHash of data.dedup.near) of a leak

    @model_validator(mode="before")
    @classmethod
    def _method_defaults(cls, data: Any) -> Any:
        """Fill the method's field defaults; YAML reads an unquoted 2024-01-01 as a date: keep it as text."""
        if not isinstance(data, dict):
            return data
        data = {k: v.isoformat() if isinstance(v, date) and k in ("train_before", "val_before") else v
                for k, v in data.items()}
        if data.get("method") == "stratified" and data.get("stratify_by") is None:
            data["stratify_by"] = "label"
        if data.get("method") == "time" and data.get("time_field") is None:
            data["time_field"] = "collected_at"
        return data

    @model_validator(mode="after")
    def _fields_fit_method(self) -> SplitSpec:
        m = self.method
        if self.stratify_by is not None and m != "stratified":
            raise ValueError(f"split.stratify_by applies to method: stratified only (method is {m}); "
                             "set split.method: stratified or remove stratify_by")
        for name in ("time_field", "train_before", "val_before"):
            if getattr(self, name) is not None and m != "time":
                raise ValueError(f"split.{name} applies to method: time only (method is {m}); "
                                 f"set split.method: time or remove {name}")
        if m == "time":
            for name in ("val", "test", "salt"):  # their defaults are harmless; a value of one's own is a mistake
                if getattr(self, name) != SplitSpec.model_fields[name].default:
                    raise ValueError(f"split.{name} does not apply to method: time, which cuts by dates "
                                     "(train_before, val_before); remove it")
            if self.train_before is None or self.val_before is None:
                raise ValueError("split.method: time needs split.train_before (T1) and split.val_before (T2), "
                                 "ISO dates such as 2024-01-01: train is dated before T1, val from T1 until T2, "
                                 "test from T2 on")
            times = {}
            for name in ("train_before", "val_before"):
                try:
                    times[name] = _iso_time(getattr(self, name))
                except ValueError:
                    raise ValueError(f"split.{name}: {getattr(self, name)!r} is not an ISO date or date-time "
                                     "(e.g. 2024-01-01 or 2024-01-01T12:00:00Z)") from None
            if times["train_before"] >= times["val_before"]:
                raise ValueError(f"split.train_before ({self.train_before}) must be earlier than split.val_before "
                                 f"({self.val_before}), or the validation split is empty")
        elif self.val + self.test >= 1:
            raise ValueError(f"val + test must be below 1 so that a train split remains (got {self.val + self.test})")
        if not self.leak_check and self.leak_threshold != SplitSpec.model_fields["leak_threshold"].default:
            raise ValueError("split.leak_threshold applies only with split.leak_check: true")
        return self
