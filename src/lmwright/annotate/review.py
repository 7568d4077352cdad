"""Review and the work as it stands: the disagreement queue and a reviewer's adjudication (compared and set on the
item's revision), every item as a record with its answers and final label, progress, an annotator's history beside
the final labels, accuracy on gold items over time, stored suggestions, and a takedown's removal of items."""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import delete, func, select, update

from lmwright.annotate.project import SETTLED_BY_REVIEW, _task_row, _view, task
from lmwright.annotate.tasks import AnnotationError, ConflictError, category, check_value
from lmwright.core.schema import Annotation, AnnotationItem, utcnow
from lmwright.core.store import Store


# -- review -----------------------------------------------------------------------------------------------------------
def review_queue(store: Store, name: str) -> list[dict]:
    """Items whose answers disagree, or that carry a comment, and that no reviewer has decided, with every answer and
    where each came from."""
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
            decided = bool(it.final) and it.final.get("how") in SETTLED_BY_REVIEW
            if not decided and ((it.final is None and len(cats) > 1) or commented):
                out.append({**_view(s, it, None), "source": it.source, "final": it.final, "answers": [
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


def progress(store: Store, name: str, annotator: str | None = None, review: bool = True) -> dict:
    """Items, answers, final labels and (with `review`) the review queue's length, counted in SQL; with
    `annotator`, their own answered and skipped items and how many are left for them."""
    with store.session() as s:
        row = _task_row(s, name)
        work = (AnnotationItem.task_id == row.id, AnnotationItem.gold.is_(None))
        n_items = s.scalar(select(func.count()).where(*work))
        n_gold = s.scalar(select(func.count()).where(AnnotationItem.task_id == row.id,
                                                     AnnotationItem.gold.is_not(None)))
        n_final = s.scalar(select(func.count()).where(*work, AnnotationItem.final.is_not(None)))
        per_item = dict(s.execute(select(Annotation.item_id, func.count()).join(AnnotationItem)
                                  .where(*work, Annotation.value.is_not(None)).group_by(Annotation.item_id)).all())
        overlap = int((row.config or {}).get("overlap", 1))
        out = {"items": n_items, "gold_items": n_gold, "answers": sum(per_item.values()), "final": n_final,
               "overlap": overlap}
        if annotator is not None:
            mine = dict(s.execute(select(Annotation.item_id, Annotation.value.is_not(None)).join(AnnotationItem)
                                  .where(AnnotationItem.task_id == row.id, Annotation.annotator == annotator)).all())
            open_ids = s.scalars(select(AnnotationItem.id).where(*work, AnnotationItem.final.is_(None))).all()
            out.update(mine=sum(1 for v in mine.values() if v), skipped=sum(1 for v in mine.values() if not v),
                       left=sum(1 for i in open_ids if i not in mine and per_item.get(i, 0) < overlap))
    if review:
        out["to_review"] = len(review_queue(store, name))
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
            final = it.final if it.gold is None else None  # a spot check's answer is not shown: it stays a check
            corrected = bool(final and a.value is not None and category(t, final["value"]) != category(t, a.value))
            out.append({"item": it.id, "key": it.key, "text": it.data.get("text") or it.data.get("prompt", ""),
                        "answer": a.value, "at": a.updated_at.isoformat(), "final": final, "corrected": corrected})
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


def forget_items(store: Store, doc_ids: list[str]) -> int:
    """Delete the items that are these documents (a takedown: `lmwright forget`), with every answer to them, in
    every task; returns how many items went. Their labels leave later accepted datasets with them."""
    gone = 0
    with store.session() as s, s.begin():
        for i in range(0, len(doc_ids), 500):
            ids = list(s.scalars(select(AnnotationItem.id).where(AnnotationItem.key.in_(doc_ids[i:i + 500]))))
            if ids:
                s.execute(delete(Annotation).where(Annotation.item_id.in_(ids)))
                s.execute(delete(AnnotationItem).where(AnnotationItem.id.in_(ids)))
                gone += len(ids)
    return gone
