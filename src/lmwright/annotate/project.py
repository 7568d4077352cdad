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
from collections import Counter, defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
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
        return {"task": name, "guideline_version": version}


def _labels_used(s, row: AnnotationTask) -> set[str]:
    task, used = task_from_row(row), set()
    values = s.scalars(select(Annotation.value).join(AnnotationItem).where(AnnotationItem.task_id == row.id)).all()
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
            "how": final.get("how", "imported"), "guideline_version": final.get("guideline_version")}


# -- the queue ------------------------------------------------------------------------------------------------------
def _order_key(order: str, item: AnnotationItem) -> tuple:
    if order == "random":  # stable per item, the same for every annotator
        return (hashlib.sha256(item.key.encode()).hexdigest(),)
    if order in ("least_confidence", "margin", "entropy"):
        return (-(item.priority if item.priority is not None else -1.0), item.id)
    return (item.id,)


def next_item(store: Store, name: str, annotator: str) -> dict | None:
    """The next item for `annotator`: every `gold_every`-th one a gold item they have not seen (when there are any),
    else the first item in the task's order that has fewer than `overlap` answers and none from them. None when
    their queue is empty."""
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
                return _view(s, row, pick, annotator)
        counts = dict(s.execute(select(Annotation.item_id, func.count()).join(AnnotationItem)
                                .where(AnnotationItem.task_id == row.id, Annotation.value.is_not(None))
                                .group_by(Annotation.item_id)).all())
        overlap = int(cfg.get("overlap", 1))
        open_ = [i for i in s.scalars(select(AnnotationItem).where(AnnotationItem.task_id == row.id,
                                                                   AnnotationItem.gold.is_(None),
                                                                   AnnotationItem.final.is_(None))).all()
                 if i.id not in mine and counts.get(i.id, 0) < overlap]
        if not open_:
            return None
        return _view(s, row, min(open_, key=lambda i: _order_key(cfg.get("order", "sequential"), i)), annotator)


def _view(s, row: AnnotationTask, item: AnnotationItem, annotator: str | None) -> dict:
    """An item as the tool shows it: data, suggestion, the caller's own answer and its revision (for edits). A gold
    item is not marked as one (a spot check the annotator can spot is no check), and others' answers are not shown."""
    own = s.scalars(select(Annotation).where(Annotation.item_id == item.id,
                                             Annotation.annotator == annotator)).first() if annotator else None
    return {"id": item.id, "key": item.key, "data": item.data, "source": item.source,
            "predictions": item.predictions or [], "revision": item.revision,
            "answer": (own.value if own else None), "answer_revision": own.revision if own else 0,
            "comment": own.comment if own else None, "skipped": bool(own and own.value is None)}


def item(store: Store, name: str, item_id: int, annotator: str | None = None) -> dict:
    with store.session() as s:
        row = _task_row(s, name)
        it = s.get(AnnotationItem, item_id)
        if it is None or it.task_id != row.id:
            raise AnnotationError(f"task '{name}' has no item {item_id}")
        return _view(s, row, it, annotator)


# -- answers ----------------------------------------------------------------------------------------------------------
def submit(store: Store, name: str, item_id: int, annotator: str, value: dict | None, *, comment: str | None = None,
           revision: int | None = None, guideline_version: int | None = None) -> dict:
    """Store `annotator`'s answer (None: a skip) to an item. `revision` is that of the answer the edit was made from
    (0: a first answer); a different one raises `ConflictError`. Returns the stored answer and what became of the
    item (`final` when it settled, `conflict` when a late answer reopened it)."""
    t = task(store, name)
    with store.session() as s:
        it = s.get(AnnotationItem, item_id)
        if it is None or it.task_id != _task_row(s, name).id:
            raise AnnotationError(f"task '{name}' has no item {item_id}")
        data = it.data
    if value is not None:
        value = check_value(t, value, data, f"task '{name}', item {item_id}")
    if comment is not None and len(comment) > 4000:
        raise AnnotationError("field 'comment': at most 4,000 characters")
    try:
        with store.session() as s, s.begin():
            own = s.scalars(select(Annotation).where(Annotation.item_id == item_id,
                                                     Annotation.annotator == annotator)).first()
            have = own.revision if own else 0
            if revision is not None and revision != have:
                raise ConflictError(
                    f"item {item_id} was changed by {annotator} elsewhere since this copy was loaded (revision "
                    f"{have}, this edit was made from {revision}); reload it: nothing was overwritten",
                    ) from None
            now = utcnow()
            if own is None:
                own = Annotation(item_id=item_id, annotator=annotator, value=value, comment=comment,
                                 guideline_version=guideline_version, revision=1, created_at=now, updated_at=now)
                s.add(own)
            else:
                own.value, own.revision, own.updated_at = value, own.revision + 1, now
                own.guideline_version = guideline_version
                if comment is not None:
                    own.comment = comment
            s.execute(update(AnnotationItem).where(AnnotationItem.id == item_id)
                      .values(revision=AnnotationItem.revision + 1))
            s.flush()
            result = {"item": item_id, "annotator": annotator, "value": value, "revision": own.revision}
        result.update(settle(store, name, item_id))
        return result
    except IntegrityError as e:  # the same annotator's first answer from two places at once
        raise ConflictError(f"item {item_id} was answered by {annotator} elsewhere at the same moment; reload it") \
            from e


def comment(store: Store, name: str, item_id: int, annotator: str, text: str) -> dict:
    """A comment on an item (a question for the reviewer, a note on a hard case), kept with the answer."""
    if len(text) > 4000:
        raise AnnotationError("field 'comment': at most 4,000 characters")
    with store.session() as s, s.begin():
        own = s.scalars(select(Annotation).where(Annotation.item_id == item_id,
                                                 Annotation.annotator == annotator)).first()
        if own is None:
            it = s.get(AnnotationItem, item_id)
            if it is None or it.task_id != _task_row(s, name).id:
                raise AnnotationError(f"task '{name}' has no item {item_id}")
            now = utcnow()
            s.add(Annotation(item_id=item_id, annotator=annotator, value=None, comment=text, revision=1,
                             created_at=now, updated_at=now))
        else:
            own.comment, own.revision, own.updated_at = text, own.revision + 1, utcnow()
    return {"item": item_id, "comment": text}


def undo(store: Store, name: str, annotator: str) -> dict | None:
    """Take back `annotator`'s latest answer or skip in the task (not once a reviewer has decided the item); returns
    the item, to be answered again, or None when there is nothing to undo."""
    with store.session() as s, s.begin():
        row = _task_row(s, name)
        last = s.scalars(select(Annotation).join(AnnotationItem)
                         .where(AnnotationItem.task_id == row.id, Annotation.annotator == annotator)
                         .order_by(Annotation.updated_at.desc(), Annotation.id.desc()).limit(1)).first()
        if last is None:
            return None
        it = s.get(AnnotationItem, last.item_id)
        if it.final and it.final.get("how") in SETTLED_BY_REVIEW:
            raise ConflictError(f"item {it.id} was decided by {it.final.get('by')}; an answer to it cannot be undone")
        s.execute(delete(Annotation).where(Annotation.id == last.id))
        values = {"revision": AnnotationItem.revision + 1}
        if it.final:  # it settled on this answer: open again
            values["final"] = None
        s.execute(update(AnnotationItem).where(AnnotationItem.id == it.id).values(**values))
        item_id = it.id
    return item(store, name, item_id, annotator)


def settle(store: Store, name: str, item_id: int) -> dict:
    """Decide an item from its answers: `overlap` answers that agree make its final label ("agreed", or "single"
    with an overlap of 1); answers that disagree send it to the review queue. An answer arriving after the item
    settled reopens it when it disagrees (unless a reviewer decided it)."""
    t = task(store, name)
    with store.session() as s, s.begin():
        row = _task_row(s, name)
        it = s.get(AnnotationItem, item_id)
        answers = s.scalars(select(Annotation).where(Annotation.item_id == item_id,
                                                     Annotation.value.is_not(None))).all()
        cats = {category(t, a.value) for a in answers}
        if it.gold is not None:
            return {}
        if it.final and it.final.get("how") in SETTLED_BY_REVIEW:
            late = [a for a in answers if category(t, a.value) != category(t, it.final["value"])]
            return {"final": it.final, "disagrees_with_final": bool(late)}
        overlap = int(row.config.get("overlap", 1))
        if len(answers) >= overlap and len(cats) == 1:
            a0 = answers[0]
            final = {"value": a0.value, "by": "+".join(sorted(a.annotator for a in answers)),
                     "at": utcnow().isoformat(), "how": "single" if overlap == 1 else "agreed",
                     "guideline_version": max((a.guideline_version or 0) for a in answers) or None}
            if it.final is None or category(t, it.final["value"]) != category(t, a0.value):
                it.final = final
            return {"final": it.final}
        if it.final is not None:  # settled, then a disagreeing answer came: a conflict for the reviewer
            it.final = None
            return {"final": None, "conflict": True}
        return {"final": None, "disagreement": len(cats) > 1}


# -- review -----------------------------------------------------------------------------------------------------------
def review_queue(store: Store, name: str) -> list[dict]:
    """Items whose answers disagree (or that have a comment) and that no reviewer has decided, with every answer."""
    t = task(store, name)
    out = []
    with store.session() as s:
        row = _task_row(s, name)
        by_item = defaultdict(list)
        for a, it in s.execute(select(Annotation, AnnotationItem).join(AnnotationItem)
                               .where(AnnotationItem.task_id == row.id, AnnotationItem.gold.is_(None))
                               .order_by(Annotation.item_id, Annotation.id)).all():
            by_item[it.id].append((a, it))
        for rows in by_item.values():
            it = rows[0][1]
            answers = [a for a, _ in rows if a.value is not None]
            cats = {category(t, a.value) for a in answers}
            commented = any(a.comment for a, _ in rows)
            if it.final is None and (len(cats) > 1 or (commented and answers)):
                out.append({**_view(s, row, it, None), "answers": [
                    {"annotator": a.annotator, "value": a.value, "comment": a.comment,
                     "guideline_version": a.guideline_version, "at": a.updated_at.isoformat()} for a, _ in rows],
                    "reason": "disagreement" if len(cats) > 1 else "comment"})
    return out


def adjudicate(store: Store, name: str, item_id: int, reviewer: str, value: dict, revision: int,
               note: str | None = None, guideline_version: int | None = None) -> dict:
    """A reviewer's final label for an item, compared and set on the item's `revision`: a second reviewer deciding
    the same item from the same copy is refused with `ConflictError`."""
    t = task(store, name)
    with store.session() as s, s.begin():
        row = _task_row(s, name)
        it = s.get(AnnotationItem, item_id)
        if it is None or it.task_id != row.id:
            raise AnnotationError(f"task '{name}' has no item {item_id}")
        value = check_value(t, value, it.data, f"task '{name}', item {item_id}")
        final = {"value": value, "by": reviewer, "at": utcnow().isoformat(), "how": "adjudicated",
                 "guideline_version": guideline_version, "note": note}
        done = s.execute(update(AnnotationItem).where(AnnotationItem.id == item_id,
                                                      AnnotationItem.revision == revision)
                         .values(final=final, revision=AnnotationItem.revision + 1))
        if done.rowcount != 1:
            now = s.get(AnnotationItem, item_id)
            s.refresh(now)
            by = (now.final or {}).get("by")
            raise ConflictError(f"item {item_id} changed since this review was loaded (revision {now.revision}, "
                                f"not {revision})" + (f"; {by} decided it" if by else "") + ": reload it")
    store.audit("annotation_review", task=name, item=item_id, reviewer=reviewer, value=value, note=note)
    return {"item": item_id, "final": final}


# -- reading the work -------------------------------------------------------------------------------------------------
def records(store: Store, name: str) -> list[dict]:
    """Every item as an item record (annotate/formats.py's shape), answers and final label included; a gold item's
    final label is its gold answer."""
    with store.session() as s:
        row = _task_row(s, name)
        items = s.scalars(select(AnnotationItem).where(AnnotationItem.task_id == row.id)
                          .order_by(AnnotationItem.id)).all()
        answers = defaultdict(list)
        for a in s.scalars(select(Annotation).join(AnnotationItem).where(AnnotationItem.task_id == row.id)
                           .order_by(Annotation.id)).all():
            if a.value is not None:
                answers[a.item_id].append({"annotator": a.annotator, "value": a.value,
                                           "created_at": a.updated_at.isoformat(), "comment": a.comment,
                                           "guideline_version": a.guideline_version})
        out = []
        for it in items:
            final = it.final
            if it.gold is not None:
                final = {"value": it.gold, "by": "gold", "at": it.created_at.isoformat(), "how": "gold",
                         "guideline_version": None}
            out.append({"key": it.key, "data": it.data, "source": it.source, "gold": it.gold,
                        "predictions": it.predictions or [], "annotations": answers[it.id], "final": final})
        return out


def answers_by_item(store: Store, name: str) -> tuple[dict[str, dict[str, dict]], dict[str, dict]]:
    """(item key -> {annotator -> answer}, item key -> gold answer): what agreement is computed from."""
    recs = records(store, name)
    return ({r["key"]: {a["annotator"]: a["value"] for a in r["annotations"]} for r in recs},
            {r["key"]: r["gold"] for r in recs if r["gold"] is not None})


def progress(store: Store, name: str, annotator: str | None = None) -> dict:
    """Items, answers, settled and waiting for review; with `annotator`, their own answered count and queue left."""
    recs = records(store, name)
    cfg = config(store, name)
    overlap = int(cfg.get("overlap", 1))
    work = [r for r in recs if r["gold"] is None]
    out = {"items": len(work), "gold_items": len(recs) - len(work),
           "answers": sum(len(r["annotations"]) for r in work),
           "final": sum(1 for r in work if r["final"]), "overlap": overlap,
           "to_review": len(review_queue(store, name))}
    if annotator is not None:
        done = sum(1 for r in recs if any(a["annotator"] == annotator for a in r["annotations"]))
        left = sum(1 for r in work if not r["final"] and len(r["annotations"]) < overlap
                   and all(a["annotator"] != annotator for a in r["annotations"]))
        out.update(mine=done, left=left)
    return out


def history(store: Store, name: str, annotator: str, limit: int = 50) -> list[dict]:
    """`annotator`'s latest answers with each item's final label, so a reviewer's correction is visible to them."""
    t = task(store, name)
    with store.session() as s:
        row = _task_row(s, name)
        rows = s.execute(select(Annotation, AnnotationItem).join(AnnotationItem)
                         .where(AnnotationItem.task_id == row.id, Annotation.annotator == annotator)
                         .order_by(Annotation.updated_at.desc()).limit(limit)).all()
        out = []
        for a, it in rows:
            final = it.final or ({"value": it.gold, "by": "gold", "how": "gold"} if it.gold is not None else None)
            corrected = bool(final and a.value is not None and category(t, final["value"]) != category(t, a.value))
            out.append({"item": it.id, "key": it.key, "text": it.data.get("text") or it.data.get("prompt", ""),
                        "answer": a.value, "at": a.updated_at.isoformat(), "final": final,
                        "corrected": corrected if final and final.get("how") != "gold" else False})
        return out


def gold_accuracy(store: Store, name: str) -> dict[str, list[dict]]:
    """Each annotator's accuracy on gold items, by day: how their spot checks went over time."""
    t = task(store, name)
    per: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    with store.session() as s:
        row = _task_row(s, name)
        for a, it in s.execute(select(Annotation, AnnotationItem).join(AnnotationItem)
                               .where(AnnotationItem.task_id == row.id, AnnotationItem.gold.is_not(None),
                                      Annotation.value.is_not(None))).all():
            cell = per[a.annotator][a.updated_at.date().isoformat()]
            cell[0] += category(t, a.value) == category(t, it.gold)
            cell[1] += 1
    return {who: [{"day": d, "correct": c, "n": n, "accuracy": c / n} for d, (c, n) in sorted(days.items())]
            for who, days in sorted(per.items())}


def set_predictions(store: Store, name: str, by_key: dict[str, tuple[list[dict], float | None]]) -> int:
    """Store model suggestions and active-learning priorities for items, by key."""
    n = 0
    with store.session() as s, s.begin():
        row = _task_row(s, name)
        for it in s.scalars(select(AnnotationItem).where(AnnotationItem.task_id == row.id)).all():
            if it.key in by_key:
                it.predictions, it.priority = by_key[it.key]
                n += 1
    return n
