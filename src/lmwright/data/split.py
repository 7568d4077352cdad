"""Train/val/test splits (hash, stratified, time), the leak check across them, and the guard that keeps the
test split unread.

Methods (`split.method`):
- hash (the default): a document's split depends only on its id and the salt, never on the rest of the corpus,
  so it never changes split when the corpus grows — val and test stay clean of documents trained on before.
- stratified: each class of a label (`split.stratify_by`, read from the documents' `labels`, else a column of
  theirs such as `source_name`, else their `meta`) keeps its share in each split to within one document. Within a class the documents are ordered by the same hash as above and cut by counts (cumulative
  rounding), so a document's split is its hash split except for the few nearest a cut that the counts move.
  Growing the corpus moves a cut by O(sqrt(n)) places at most, so only documents near it can change split:
  exact shares are bought with that small instability. Documents without the label form their own stratum
  ("(missing)"); a label no document has is an error naming the labels they do have (a typo, most likely).
  pydocs documents carry their library chapter as the label `chapter`.
- time: by a date field (`split.time_field`, default `collected_at`; another name is read from the documents'
  `meta`, e.g. a `date` a source copied with `meta_fields`, else their labels): train before T1 (`train_before`), val
  from T1 until T2 (`val_before`), test from T2 on. Fully stable: a split depends on the document's date only.
  Naive times are UTC. A document whose date is missing or unreadable is quarantined with the reason, not
  guessed; a field no document can be read from is an error.

The leak check (`split.leak_check`, on by default) removes a val or test document that near-duplicates a
document in an earlier split (train before val before test): MinHash signatures of `data.dedup.near`
(`minhash.py`), LSH banding cut for `split.leak_threshold` (default 0.5, below dedup's 0.7: dedup already
removed every pair above its own threshold, so at the same threshold the check would only find what LSH
missed or what a disabled dedup let through; at 0.5 it also finds a document that shares half its shingles
with a training one, e.g. an edited copy). Every verified pair is checked directly (no transitive clusters:
a chain of 0.5-similar pairs says nothing about its ends), and the later-split copy of each pair is removed.

Every reader of a split (the training loop, early stopping, tuning, cross-validation, `lmwright evaluate`)
opens it through `split_path`, which refuses the test split unless the caller is the final evaluation (inside
`final_test()`: the `test` stage of the pipeline or `lmwright test MODEL`, see evaluate/testset.py). That makes
"tuning never reads the test split" a property of the code, not a convention.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from lmwright.data.document import CARRIED, doc_json
from lmwright.errors import LmwrightError

SPLITS = ("train", "val", "test")


def hash_unit(doc_id: str, salt: str) -> float:
    """A document's stable position in [0, 1): the hash of salt and id."""
    h = hashlib.sha256(f"{salt}\x00{doc_id}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def assign_split(doc_id: str, val: float, test: float, salt: str) -> str:
    u = hash_unit(doc_id, salt)
    if u < test:
        return "test"
    if u < test + val:
        return "val"
    return "train"


MISSING = "(missing)"


def doc_field(doc: dict, name: str, order: tuple[str, ...] = ("labels", "column", "meta")) -> Any:
    """A document's value of `name`: from its labels, a column of its own, or its meta, the first that has it
    (None when none does)."""
    for where in order:
        if where == "column":
            value = doc.get(name) if name not in CARRIED else None
        else:
            value = doc_json(doc, where).get(name)
        if value not in (None, ""):
            return value
    return None


def stratum_of(doc: dict, field: str) -> str:
    """The class a document is stratified by: its label `field` (or column, or meta field) as text."""
    value = doc_field(doc, field)
    return MISSING if value is None else str(value)


def carried_names(docs: list[dict], column: str) -> str:
    """The label (or meta) names documents carry, with how many carry each: for an error message."""
    counts: dict[str, int] = defaultdict(int)
    for d in docs:
        for name in doc_json(d, column):
            counts[name] += 1
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:8]
    return ", ".join(f"{k} ({v:,} documents)" for k, v in top) or "none"


def stratified_splits(ids: list[str], strata: list[str], val: float, test: float, salt: str) -> list[str]:
    """Per stratum: order by the hash, the first round(test*n) are test, up to round((test+val)*n) val, the
    rest train — each split's count within one document of its share of the class."""
    by_class: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(strata):
        by_class[s].append(i)
    out = ["train"] * len(ids)
    for members in by_class.values():
        members.sort(key=lambda i: (hash_unit(ids[i], salt), ids[i]))
        n = len(members)
        cut_test, cut_val = math.floor(test * n + 0.5), math.floor((test + val) * n + 0.5)
        for rank, i in enumerate(members[:cut_val]):
            out[i] = "test" if rank < cut_test else "val"
    return out


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 date or date-time (or a datetime/date value) as an aware datetime; None when unreadable."""
    if isinstance(value, datetime):
        t = value
    elif isinstance(value, date):
        t = datetime(value.year, value.month, value.day)
    elif isinstance(value, str) and value.strip():
        v = value.strip()
        try:
            t = datetime.fromisoformat(v[:-1] + "+00:00" if v.endswith(("Z", "z")) else v)
        except ValueError:
            return None
    else:
        return None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def time_split(t: datetime, train_before: datetime, val_before: datetime) -> str:
    return "train" if t < train_before else "val" if t < val_before else "test"


def assign_splits(docs: list[dict], cfg) -> tuple[list[str | None], list[tuple[int, str, str]]]:
    """Each document's split by `cfg` (the spec's `split`), None for a quarantined one; and the quarantined
    as (index, reason, detail)."""
    if cfg.method == "hash":
        return [assign_split(d["id"], cfg.val, cfg.test, cfg.salt) for d in docs], []
    if cfg.method == "stratified":
        field = cfg.stratify_by
        strata = [stratum_of(d, field) for d in docs]
        if docs and all(s == MISSING for s in strata):
            raise LmwrightError(f"split.stratify_by: no document has a {field!r} label to stratify by; the "
                                f"documents carry the labels: {carried_names(docs, 'labels')}. Name one of them "
                                "(or a column such as source_name), copy a record field into the labels "
                                "(label_fields on a files source, label_columns on a SQL source), or use "
                                "split.method: hash")
        return stratified_splits([d["id"] for d in docs], strata, cfg.val, cfg.test, cfg.salt), []
    field, t1, t2 = cfg.time_field, parse_time(cfg.train_before), parse_time(cfg.val_before)
    out: list[str | None] = []
    quarantined = []
    for i, d in enumerate(docs):
        value = doc_field(d, field, ("column", "meta", "labels"))
        t = parse_time(value)
        if t is None:
            reason = "missing_date" if value is None else "bad_date"
            quarantined.append((i, reason, f"document {d['id']} ({d.get('locator')}): {field} = "
                                           f"{value!r} is not an ISO date (e.g. 2024-01-01)"))
        out.append(None if t is None else time_split(t, t1, t2))
    if docs and len(quarantined) == len(docs):
        raise LmwrightError(f"split.time_field: no document has a readable date in {field!r} (e.g. "
                            f"{quarantined[0][2]}); the documents carry the meta fields: "
                            f"{carried_names(docs, 'meta')}. Name one that holds ISO dates (copy a record's date "
                            "into meta with meta_fields on a files source, meta_columns on a SQL source), or use "
                            "split.method: hash")
    return out, quarantined


def leak_bands(num_perm: int, threshold: float, recall: float = 0.99) -> int:
    """The fewest LSH bands (the fewest chance candidates) that make a pair at `threshold` a candidate with
    probability `recall`: 1 - (1 - t^r)^b for b bands of r rows, b dividing num_perm."""
    for bands in sorted(b for b in range(1, num_perm + 1) if num_perm % b == 0):
        if 1 - (1 - threshold ** (num_perm // bands)) ** bands >= recall:
            return bands
    return num_perm


def cross_split_leaks(texts: list[str], splits: list[str], near, threshold: float) -> list[tuple[int, int, float]]:
    """Near-duplicate pairs across splits as (earlier-split index, later-split index, similarity), each pair
    verified: its estimated Jaccard (the share of equal MinHash entries) reaches `threshold`. `near` is the
    spec's `data.dedup.near` (shingles, permutations, seed)."""
    from lmwright.data.minhash import signatures

    order = {s: k for k, s in enumerate(SPLITS)}
    rank = np.array([order[s] for s in splits])
    if len(set(rank.tolist())) < 2:
        return []
    sigs = signatures(texts, near.shingle_size, near.num_perm, near.seed)
    bands = leak_bands(near.num_perm, threshold)
    rows = near.num_perm // bands
    checked: set[tuple[int, int]] = set()
    pairs = []
    for band in range(bands):
        buckets: dict[bytes, list[int]] = defaultdict(list)
        block = np.ascontiguousarray(sigs[:, band * rows : (band + 1) * rows])
        for i in range(len(texts)):
            buckets[block[i].tobytes()].append(i)
        for members in buckets.values():
            if len(members) < 2 or len({rank[i] for i in members}) < 2:
                continue
            for a in members:
                for b in members:
                    if rank[a] < rank[b] and (a, b) not in checked:
                        checked.add((a, b))
                        if (sim := float((sigs[a] == sigs[b]).mean())) >= threshold:
                            pairs.append((a, b, sim))
    return sorted(pairs)


def leaked(pairs: list[tuple[int, int, float]]) -> dict[int, tuple[int, float]]:
    """The documents a leak check removes: the later-split copy of each pair, each with the earlier-split copy
    it is most similar to (a removed val copy may itself be the earlier copy of a test one's pair: the test
    copy goes too, as its pair was measured directly)."""
    out: dict[int, tuple[int, float]] = {}
    for a, b, sim in pairs:
        if b not in out or sim > out[b][1]:
            out[b] = (a, sim)
    return out


_FINAL = ContextVar("lmwright_final_test", default=False)


class SplitGuardError(LmwrightError):
    pass


@contextmanager
def final_test() -> Iterator[None]:
    """The one context in which the test split may be read."""
    token = _FINAL.set(True)
    try:
        yield
    finally:
        _FINAL.reset(token)


def split_path(directory: Path, split: str, suffix: str) -> Path:
    """`directory/{split}{suffix}`, refusing the test split outside `final_test()`."""
    if split == "test" and not _FINAL.get():
        raise SplitGuardError(
            "the test split is read only by the final evaluation (`lmwright test`, or the test stage of "
            "`lmwright run`); tuning, early stopping and `lmwright evaluate` use the validation split. "
            "Use --split val, or `lmwright test MODEL` for the final figure.")
    return Path(directory) / f"{split}{suffix}"
