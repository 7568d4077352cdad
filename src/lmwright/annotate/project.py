"""An annotation task in the store: its versioned guidelines, its items, each annotator's answers, the queue that
hands items out (overlap, gold spot checks, active-learning order), review and adjudication, and final labels with
their provenance. The web tool (serve/annotate.py), `lmwright annotate` and imports all go through here, so every
answer passes the same check (annotate/tasks.py) and the same conflict rules:

- an edit names the revision of the answer it was made from; a stale one (another tab, another person behind the
  same key) is refused with the answer as it now is, so nothing is lost;
- an adjudication names the item's revision; two reviewers deciding at once: the second is refused;
- an answer that arrives after an item was settled (two annotators were handed its last place at once) is kept, and
  if it disagrees the item goes back to the review queue.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from lmwright.annotate.tasks import AnnotationError, ConflictError, Task, category, check_item, check_value
from lmwright.core.schema import Annotation, AnnotationItem, AnnotationTask, Guideline, utcnow
from lmwright.core.store import Store

SETTLED_BY_REVIEW = ("adjudicated", "gold")  # final labels an annotator's late answer does not reopen


def task_from_row(row: AnnotationTask) -> Task:
    c = row.config or {}
    low, high = c.get("scale", (1, 5))
    return Task(row.name, row.kind, tuple(c.get("labels", ())), low, high)


def _task_row(s, name: str) -> AnnotationTask:
    row = s.scalars(select(AnnotationTask).where(AnnotationTask.name == name)).first()
    if row is None:
        known = ", ".join(s.scalars(select(AnnotationTask.name)).all()) or "none"
        raise AnnotationError(f"no annotation task '{name}' in the store (tasks: {known}); add it under "
                              f"annotate.tasks and run `lmwright annotate sync`")
    return row


def sync_task(store: Store, name: str, kind: str, config: dict[str, Any], guidelines: str | None) -> dict:
    """Create or update a task from the spec; a new guidelines version when their text changed. A task's kind
    cannot change once it has items (their answers would not fit); its labels may grow, and may shrink only if no
    stored answer uses a removed one."""
    Task(name, kind, tuple(config.get("labels", ())), *config.get("scale", (1, 5)))  # the checks, before storing
    with store.session() as s, s.begin():
        row = s.scalars(select(AnnotationTask).where(AnnotationTask.name == name)).first()
        changed = row is not None and row.config != config
        if row is None:
            row = AnnotationTask(name=name, kind=kind, config=config)
            s.add(row)
            s.flush()
        else:
            n = s.scalar(select(func.count()).where(AnnotationItem.task_id == row.id))
            if row.kind != kind and n:
                raise AnnotationError(f"task '{name}' is a {row.kind} task with {n} items; its kind cannot become "
                                      f"{kind}. Give the new task another name")
            gone = set(row.config.get("labels", ())) - set(config.get("labels", ()))
            if gone and kind in ("classification", "multilabel", "spans"):
                used = _labels_used(s, row)
                if gone & used:
                    raise AnnotationError(f"task '{name}': labels {sorted(gone & used)} are in stored answers; "
                                          f"keep them in the label set (or start a new task)")
            row.kind, row.config = kind, config
        version = None
        if guidelines is not None:
            digest = hashlib.sha256(guidelines.encode()).hexdigest()
            last = s.scalars(select(Guideline).where(Guideline.task_id == row.id)
                             .order_by(Guideline.version.desc()).limit(1)).first()
            version = last.version if last else 0
            if last is None or last.digest != digest:
                version += 1
                s.add(Guideline(task_id=row.id, version=version, text=guidelines, digest=digest))
        task_id = row.id
    if changed:  # a new overlap may settle items already answered, or unsettle none: decide each again
        for item_id in _open_items(store, task_id):
            settle(store, name, item_id)
    return {"task": name, "guideline_version": version}


def _open_items(store: Store, task_id: int) -> list[int]:
    with store.session() as s:
        return list(s.scalars(select(AnnotationItem.id).where(AnnotationItem.task_id == task_id,
                                                             AnnotationItem.gold.is_(None),
                                                             AnnotationItem.final.is_(None))))


def _labels_used(s, row: AnnotationTask) -> set[str]:
    """Every label an answer, a gold answer or a final label uses."""
    task, used = task_from_row(row), set()
    values = list(s.scalars(select(Annotation.value).join(AnnotationItem).where(AnnotationItem.task_id == row.id)))
    for gold, final in s.execute(select(AnnotationItem.gold, AnnotationItem.final)
                                 .where(AnnotationItem.task_id == row.id)):
        values += [gold, (final or {}).get("value")]
    for v in values:
        if v:
            c = category(task, v)
            used |= {c} if isinstance(c, str) else {x[-1] if isinstance(x, tuple) else x for x in c}
    return used


def task(store: Store, name: str) -> Task:
    with store.session() as s:
        return task_from_row(_task_row(s, name))


def config(store: Store, name: str) -> dict[str, Any]:
    with store.session() as s:
        return dict(_task_row(s, name).config or {})


def tasks(store: Store) -> list[str]:
    with store.session() as s:
        return list(s.scalars(select(AnnotationTask.name).order_by(AnnotationTask.id)).all())


def guideline(store: Store, name: str) -> tuple[int, str] | None:
    """The newest guidelines (version, markdown), or None."""
    with store.session() as s:
        row = _task_row(s, name)
        g = s.scalars(select(Guideline).where(Guideline.task_id == row.id)
                      .order_by(Guideline.version.desc()).limit(1)).first()
        return (g.version, g.text) if g else None


def add_items(store: Store, name: str, records: list[dict]) -> dict[str, int]:
    """Add item records (annotate/formats.py's shape); an item already stored (same key) keeps its answers, and
    its imported answers are added unless that annotator already answered, then settle it as the tool's answers do.
    Every record is checked first: one bad record stores nothing."""
    t = task(store, name)
    for r in records:
        where = f"item '{r.get('key')}' ({r.get('source', '?')})"
        if not isinstance(r.get("key"), str) or not 0 < len(r["key"]) <= 128:
            raise AnnotationError(f"{where}: an item's key is a string of 1 to 128 characters")
        r["source"] = str(r.get("source", "?"))[:256]
        check_item(t, r.get("data"), where)
        for f in ("gold",):
            if r.get(f) is not None:
                r[f] = check_value(t, r[f], r["data"], f"{where}: {f}")
        for i, a in enumerate(r.get("annotations") or []):
            a["value"] = check_value(t, a["value"], r["data"], f"{where}: annotations[{i}]")
        if r.get("final"):
            r["final"]["value"] = check_value(t, r["final"]["value"], r["data"], f"{where}: final")
    counts, touched = Counter(), set()
    with store.session() as s, s.begin():
        row = _task_row(s, name)
        have = {k: i for k, i in s.execute(select(AnnotationItem.key, AnnotationItem.id)
                                           .where(AnnotationItem.task_id == row.id))}
        for r in records:
            item_id = have.get(r["key"])
            if item_id is None:
                item = AnnotationItem(task_id=row.id, key=r["key"], data=r["data"], source=r.get("source", "?"),
                                      gold=r.get("gold"), predictions=r.get("predictions") or None,
                                      final=_stamp(r.get("final")), revision=0)
                s.add(item)
                s.flush()
                item_id = have[r["key"]] = item.id
                counts["added"] += 1
            else:
                stored = s.get(AnnotationItem, item_id)
                if stored.data != r["data"]:
                    raise AnnotationError(f"item '{r['key']}' ({r.get('source')}) is already in task '{name}' with "
                                          f"other data (from {stored.source}); its answers would land on another "
                                          f"text. Give the file its own ids (--id-field) or start a new task")
                counts["already there"] += 1
            answered = set(s.scalars(select(Annotation.annotator).where(Annotation.item_id == item_id)).all())
            for a in r.get("annotations") or []:
                if a["annotator"] in answered:
                    counts["answers already there"] += 1
                    continue
                at = _when(a.get("created_at"))
                s.add(Annotation(item_id=item_id, annotator=a["annotator"], value=a["value"],
                                 comment=a.get("comment"), guideline_version=a.get("guideline_version"),
                                 created_at=at, updated_at=at))
                answered.add(a["annotator"])
                counts["answers added"] += 1
                touched.add(item_id)
    for item_id in sorted(touched):  # imported answers settle items (or send them to review) as the tool's do
        settle(store, name, item_id)
    return dict(counts)


def _when(iso: str | None) -> datetime:
    if not iso:
        return utcnow()
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError as e:
        raise AnnotationError(f"created_at {iso!r} is not an ISO 8601 time") from e


def _stamp(final: dict | None) -> dict | None:
    if not final:
        return None
    return {"value": final["value"], "by": final.get("by", "import"), "at": final.get("at") or utcnow().isoformat(),
            "how": final.get("how", "imported"), "guideline_version": final.get("guideline_version"),
            **({"note": final["note"]} if final.get("note") else {})}


# -- the queue ------------------------------------------------------------------------------------------------------
def _order_key(order: str, item: AnnotationItem) -> tuple:
    if order == "random":  # stable per item, the same for every annotator
        return (hashlib.sha256(item.key.encode()).hexdigest(),)
    if order in ("least_confidence", "margin", "entropy"):
        return (-(item.priority if item.priority is not None else -1.0), item.id)
    return (item.id,)


LEASE_S = 600.0  # an item handed to an annotator holds one of its `overlap` places this long (in this process)
_leases: dict[tuple[str, int], dict[str, float]] = {}  # (store url, item id) -> {annotator: expiry}
_lease_lock = threading.Lock()


def _leased(store: Store, item_id: int, annotator: str) -> int:
    """Places on an item held by others' leases (expired ones dropped)."""
    now = time.monotonic()
    with _lease_lock:
        held = _leases.get((str(store.engine.url), item_id), {})
        for who in [w for w, until in held.items() if until < now]:
            del held[who]
        return sum(1 for who in held if who != annotator)


def _lease(store: Store, item_id: int, annotator: str) -> None:
    with _lease_lock:
        _leases.setdefault((str(store.engine.url), item_id), {})[annotator] = time.monotonic() + LEASE_S


def _release(store: Store, item_id: int, annotator: str) -> None:
    with _lease_lock:
        _leases.get((str(store.engine.url), item_id), {}).pop(annotator, None)


def next_item(store: Store, name: str, annotator: str) -> dict | None:
    """The next item for `annotator`: every `gold_every`-th one a gold item they have not seen (when there are any),
    else the first item in the task's order with a free place: fewer than `overlap` answers and leases (an item
    handed out holds its place for LEASE_S, so two annotators are not both given an item's last place) and none
    from them. None when their queue is empty."""
    with store.session() as s:
        row = _task_row(s, name)
        cfg = row.config or {}
        mine = set(s.scalars(select(Annotation.item_id).join(AnnotationItem)
                             .where(AnnotationItem.task_id == row.id, Annotation.annotator == annotator)).all())
        every = int(cfg.get("gold_every", 0))
        if every and (len(mine) + 1) % every == 0:
            gold = s.scalars(select(AnnotationItem).where(AnnotationItem.task_id == row.id,
                                                          AnnotationItem.gold.is_not(None))
                             .order_by(AnnotationItem.id)).all()
            pick = next((g for g in gold if g.id not in mine), None)
            if pick is not None:
                return _view(s, pick, annotator)
        counts = dict(s.execute(select(Annotation.item_id, func.count()).join(AnnotationItem)
                                .where(AnnotationItem.task_id == row.id, Annotation.value.is_not(None))
                                .group_by(Annotation.item_id)).all())
        overlap = int(cfg.get("overlap", 1))
        candidates = s.scalars(select(AnnotationItem).where(AnnotationItem.task_id == row.id,
                                                            AnnotationItem.gold.is_(None),
                                                            AnnotationItem.final.is_(None))).all()
        order = cfg.get("order", "sequential")
        for it in sorted((i for i in candidates if i.id not in mine), key=lambda i: _order_key(order, i)):
            if counts.get(it.id, 0) + _leased(store, it.id, annotator) < overlap:
                _lease(store, it.id, annotator)
                return _view(s, it, annotator)
        return None


def _view(s, item: AnnotationItem, annotator: str | None) -> dict:
    """An item as the tool shows an annotator: data, suggestion, their own answer and its revision (for edits). A
    gold item is not marked as one, nor is where it came from shown (a spot check the annotator can spot is no
    check), and others' answers are not shown."""
    own = s.scalars(select(Annotation).where(Annotation.item_id == item.id,
                                             Annotation.annotator == annotator)).first() if annotator else None
    return {"id": item.id, "key": item.key, "data": item.data, "predictions": item.predictions or [],
            "revision": item.revision, "answer": (own.value if own else None),
            "answer_revision": own.revision if own else 0, "comment": own.comment if own else None,
            "skipped": bool(own and own.value is None)}


def item(store: Store, name: str, item_id: int, annotator: str | None = None) -> dict:
    with store.session() as s:
        return _view(s, _item_row(s, name, item_id), annotator)


def _item_row(s, name: str, item_id: int) -> AnnotationItem:
    row = _task_row(s, name)
    it = s.get(AnnotationItem, item_id) if 0 < item_id < 2**31 else None
    if it is None or it.task_id != row.id:
        raise AnnotationError(f"task '{name}' has no item {item_id}")
    return it


def _guideline_version(s, row: AnnotationTask, given: int | None) -> int | None:
    """The guideline version an answer was made under: the one the client saw, checked against those that exist."""
    latest = s.scalar(select(func.max(Guideline.version)).where(Guideline.task_id == row.id))
    if given is not None and not (latest and 1 <= given <= latest):
        raise AnnotationError(f"field 'guideline_version': {given} is not a version of task '{row.name}''s "
                              f"guidelines (the newest is {latest or 'none'})")
    return given if given is not None else latest


# -- answers ----------------------------------------------------------------------------------------------------------
def submit(store: Store, name: str, item_id: int, annotator: str, value: dict | None, *, comment: str | None = None,
           revision: int | None = None, guideline_version: int | None = None) -> dict:
    """Store `annotator`'s answer (None: a skip) to an item. `revision` is that of the answer the edit was made from
    (0: a first answer); a different one raises `ConflictError`, checked as the row is written, so of two edits
    made from one copy exactly one lands. The item is settled in the same transaction. Returns the stored answer
    and the item's `status`: "open", "settled", "review" (answers differ) or "conflict" (a late answer that
    disagrees reopened it)."""
    t = task(store, name)
    with store.session() as s:
        data = _item_row(s, name, item_id).data
    if value is not None:
        value = check_value(t, value, data, f"task '{name}', item {item_id}")
    if comment is not None:
        comment = check_comment(comment)
    try:
        with store.session() as s, s.begin():
            row = _task_row(s, name)
            gv = _guideline_version(s, row, guideline_version)
            # the item first: its row lock (PostgreSQL) or the write lock (SQLite) orders this against a reviewer
            s.execute(update(AnnotationItem).where(AnnotationItem.id == item_id)
                      .values(revision=AnnotationItem.revision + 1))
            it = s.get(AnnotationItem, item_id, populate_existing=True)
            own = s.scalars(select(Annotation).where(Annotation.item_id == item_id,
                                                     Annotation.annotator == annotator)).first()
            have = own.revision if own else 0
            if revision is not None and revision != have:
                raise _stale(item_id, annotator, have, revision)
            if it.gold is not None and own is not None and own.value is not None:
                raise ConflictError(f"item {item_id}: this answer is recorded for a spot check and cannot be "
                                    f"changed")
            now = utcnow()
            if own is None:
                s.add(Annotation(item_id=item_id, annotator=annotator, value=value, comment=comment,
                                 guideline_version=gv, revision=1, created_at=now, updated_at=now))
                new_revision = 1
            else:
                values = {"value": value, "revision": have + 1, "updated_at": now, "guideline_version": gv}
                if comment is not None:
                    values["comment"] = comment
                done = s.execute(update(Annotation).where(Annotation.id == own.id, Annotation.revision == have)
                                 .values(**values))
                if done.rowcount != 1:
                    raise _stale(item_id, annotator, have + 1, have)
                new_revision = have + 1
            s.flush()
            status = _settle(s, row, t, it)
    except IntegrityError as e:  # the same annotator's first answer from two places at once
        raise ConflictError(f"item {item_id} was answered by {annotator} elsewhere at the same moment; reload it") \
            from e
    _release(store, item_id, annotator)
    return {"item": item_id, "annotator": annotator, "value": value, "revision": new_revision, "status": status}


def _stale(item_id: int, annotator: str, have: int, made_from: int) -> ConflictError:
    return ConflictError(f"item {item_id} was changed by {annotator} elsewhere since this copy was loaded (revision "
                         f"{have}, this edit was made from {made_from}); reload it: nothing was overwritten")


def check_comment(text: str) -> str:
    if not text.strip():
        raise AnnotationError("field 'comment': a comment has some text")
    if len(text) > 4000:
        raise AnnotationError("field 'comment': at most 4,000 characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise AnnotationError("field 'comment': not valid Unicode text (a lone surrogate)") from None
    return text


def comment(store: Store, name: str, item_id: int, annotator: str, text: str) -> dict:
    """A comment on an item (a question for the reviewer, a note on a hard case), kept with the answer; it sends
    the item to the review queue until a reviewer decides it. A comment before any answer counts as a skip until
    the answer comes."""
    text = check_comment(text)
    with store.session() as s, s.begin():
        _item_row(s, name, item_id)
        own = s.scalars(select(Annotation).where(Annotation.item_id == item_id,
                                                 Annotation.annotator == annotator)).first()
        now = utcnow()
        if own is None:
            s.add(Annotation(item_id=item_id, annotator=annotator, value=None, comment=text, revision=1,
                             created_at=now, updated_at=now))
            rev = 1
        else:
            own.comment, own.revision, own.updated_at = text, own.revision + 1, now
            rev = own.revision
    return {"item": item_id, "comment": text, "revision": rev}


def undo(store: Store, name: str, annotator: str) -> dict | None:
    """Take back `annotator`'s latest answer or skip in the task (not once a reviewer has decided the item, nor a
    spot check's answer); returns the item, to be answered again, or None when there is nothing to undo. An item
    that had settled on the answer taken back is settled again from the answers left."""
    t = task(store, name)
    with store.session() as s, s.begin():
        row = _task_row(s, name)
        last = s.scalars(select(Annotation).join(AnnotationItem)  # answers and skips; a comment alone is neither
                         .where(AnnotationItem.task_id == row.id, Annotation.annotator == annotator,
                                or_(Annotation.value.is_not(None), Annotation.comment.is_(None)))
                         .order_by(Annotation.updated_at.desc(), Annotation.id.desc()).limit(1)).first()
        if last is None:
            return None
        s.execute(update(AnnotationItem).where(AnnotationItem.id == last.item_id)
                  .values(revision=AnnotationItem.revision + 1))
        it = s.get(AnnotationItem, last.item_id, populate_existing=True)
        if it.final and it.final.get("how") in SETTLED_BY_REVIEW:
            raise ConflictError(f"item {it.id} was decided by {it.final.get('by')}; an answer to it cannot be undone")
        if it.gold is not None and last.value is not None:
            raise ConflictError(f"item {it.id}: this answer is recorded for a spot check and cannot be undone")
        if last.comment and last.value is not None:  # the answer goes, the comment on the item stays
            last.value, last.revision, last.updated_at = None, last.revision + 1, utcnow()
        else:
            s.execute(delete(Annotation).where(Annotation.id == last.id))
        s.flush()
        if last.value is not None and it.final and annotator in it.final.get("by", "").split("+"):
            it.final = None  # it settled on this answer: decide again from the answers left
            _settle(s, row, t, it)
        item_id = it.id
    return item(store, name, item_id, annotator)


def settle(store: Store, name: str, item_id: int) -> str:
    """Decide an item from its answers (see `_settle`); returns its status."""
    t = task(store, name)
    with store.session() as s, s.begin():
        row = _task_row(s, name)
        s.execute(update(AnnotationItem).where(AnnotationItem.id == item_id)
                  .values(revision=AnnotationItem.revision + 1))
        return _settle(s, row, t, s.get(AnnotationItem, item_id, populate_existing=True))


def _settle(s, row: AnnotationTask, t: Task, it: AnnotationItem) -> str:
    """`overlap` answers that agree make the item's final label ("agreed", or "single" with an overlap of 1);
    answers that differ send it to review. An answer arriving after the item settled reopens it when it disagrees
    (unless a reviewer decided it). Runs inside the caller's transaction, after the item's row was written."""
    if it.gold is not None:
        return "settled"  # a spot check looks like any settled item
    answers = s.scalars(select(Annotation).where(Annotation.item_id == it.id, Annotation.value.is_not(None))
                        .execution_options(populate_existing=True)).all()
    cats = {category(t, a.value) for a in answers}
    if it.final and it.final.get("how") in SETTLED_BY_REVIEW:
        return "settled"
    overlap = int(row.config.get("overlap", 1))
    if len(answers) >= overlap and len(cats) == 1:
        a0 = answers[0]
        if it.final is None or category(t, it.final["value"]) != category(t, a0.value):
            it.final = {"value": a0.value, "by": "+".join(sorted(a.annotator for a in answers)),
                        "at": utcnow().isoformat(), "how": "single" if overlap == 1 else "agreed",
                        "guideline_version": max((a.guideline_version or 0) for a in answers) or None}
        return "settled"
    if it.final is not None:  # settled, then a disagreeing answer came: a conflict for the reviewer
        it.final = None
        return "conflict"
    return "review" if len(cats) > 1 else "open"
