"""The model registry's records: versions, aliases with their history, tags and retirement, on the store.

Every model a stage registers is a version of its name, numbered from 1 (`name@3`). An alias (`champion`,
`challenger`, any name) points at one version and moves; every move is a row of the transition history (who, when,
from which version to which, why, and whether a failing gate was overridden). A move is compare-and-set on the
alias's revision, so of two processes moving the same alias at once one wins and the other gets `Conflict`, and the
history never records a move that did not happen. `ref` strings are `NAME`, `NAME@VERSION`, `NAME@ALIAS` or
`NAME@latest` (the newest version that is not retiring); the gates and commands that move aliases are in
`ops/registry.py`.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from lmwright.core.schema import Alias, Model, Transition, utcnow
from lmwright.core.store import Store, actor
from lmwright.errors import LmwrightError

ALIAS_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")


class Conflict(LmwrightError):
    """Another process moved the alias between this one reading it and writing it."""


def as_utc(when: datetime | None) -> datetime | None:
    """A time from the store in UTC: SQLite hands back naive datetimes (UTC, as they were written)."""
    return when if when is None or when.tzinfo else when.replace(tzinfo=timezone.utc)


def unknown(store: Store, ref: str) -> LmwrightError:
    """The error for a model name with no registered version, listing the names there are."""
    return LmwrightError(f"no registered model {ref.partition('@')[0]!r}; registered: "
                         f"{', '.join(names(store)) or 'none yet (run `lmwright run`)'}")


def split_ref(ref: str) -> tuple[str, str | None]:
    name, at, what = ref.partition("@")
    return name, (what if at else None)


def versions(store: Store, name: str) -> list[Model]:
    with store.session() as s:
        return list(s.scalars(select(Model).where(Model.name == name).order_by(Model.version)))


def names(store: Store) -> list[str]:
    with store.session() as s:
        return list(s.scalars(select(Model.name).group_by(Model.name).order_by(func.min(Model.id))))


def aliases(store: Store, name: str | None = None) -> list[Alias]:
    with store.session() as s:
        q = select(Alias).order_by(Alias.name, Alias.alias)
        return list(s.scalars(q.where(Alias.name == name) if name else q))


def alias_of(store: Store, name: str, alias: str) -> Alias | None:
    with store.session() as s:
        return s.scalars(select(Alias).where(Alias.name == name, Alias.alias == alias)).first()


def version(store: Store, ref: str) -> Model | None:
    """The version `ref` names (NAME: the latest), or None when NAME has no versions; an unknown version or alias
    of a known name is an error that lists what there is."""
    name, what = split_ref(ref)
    known = versions(store, name)
    if not known:
        return None
    if what is None or what == "latest":  # the newest that is not retired (or retiring), else the newest
        return next((m for m in reversed(known) if m.retire_after is None), known[-1])
    if what.isdigit():
        hit = next((m for m in known if m.version == int(what)), None)
        if hit is None:
            raise LmwrightError(f"model {name!r} has versions 1 to {known[-1].version}; {ref!r} is not one of them")
        return hit
    a = alias_of(store, name, what)
    if a is None:
        have = ", ".join(f"@{x.alias} (v{x.version})" for x in aliases(store, name)) or "none"
        raise LmwrightError(f"model {name!r} has no alias {what!r}; its aliases: {have}; versions 1 to "
                            f"{known[-1].version} (`lmwright models show {name}`)")
    return next(m for m in known if m.version == a.version)


def version_of_digest(store: Store, name: str, digest: str) -> Model | None:
    """The first version of `name` with this content (a model registered twice is one version)."""
    return next((m for m in versions(store, name) if m.digest == digest), None)


def move_alias(store: Store, name: str, alias: str, to_version: int | None, action: str, reason: str | None = None,
               forced: bool = False, detail: dict[str, Any] | None = None,
               expect: tuple[int | None, int | None] | None = None) -> Transition:
    """Point `name@alias` at `to_version` (None: remove the alias) and record the transition, in one transaction.
    `expect` is the (version, revision) the caller read and decided on (None: read now); if the alias moved since,
    `Conflict`."""
    if not ALIAS_NAME.match(alias) or alias == "latest" or alias.isdigit():
        raise LmwrightError(f"{alias!r} cannot be an alias: use a letter, then letters, digits, '-' or '_' "
                            "(and not 'latest', which always means the newest version)")
    if expect is None:
        cur = alias_of(store, name, alias)
        expect = (cur.version, cur.revision) if cur else (None, None)
    from_version, revision = expect
    row = Transition(at=utcnow(), actor=actor(), name=name, alias=alias, action=action, from_version=from_version,
                     to_version=to_version, reason=reason, forced=forced, detail=detail or {})
    moved_on = Conflict(f"{name}@{alias} was moved by someone else while this ran (see `lmwright models history "
                        f"{name}`); run the command again to decide against where it points now")
    try:
        with store.session() as s, s.begin():
            if revision is None:
                if to_version is None:
                    raise LmwrightError(f"model {name!r} has no alias {alias!r} to remove")
                s.add(Alias(name=name, alias=alias, version=to_version, revision=1, updated_at=utcnow()))
                s.flush()  # a concurrent first move of the same alias fails here, on the unique constraint
            elif to_version is None:
                gone = s.execute(Alias.__table__.delete().where(
                    Alias.name == name, Alias.alias == alias, Alias.revision == revision,
                    Alias.version == from_version))
                if gone.rowcount != 1:
                    raise moved_on
            else:
                moved = s.execute(update(Alias).where(Alias.name == name, Alias.alias == alias,
                                                      Alias.revision == revision, Alias.version == from_version)
                                  .values(version=to_version, revision=revision + 1, updated_at=utcnow()))
                if moved.rowcount != 1:
                    raise moved_on
            s.add(row)
    except IntegrityError:
        raise moved_on from None
    return row


def history(store: Store, name: str | None = None) -> list[Transition]:
    with store.session() as s:
        q = select(Transition).order_by(Transition.id)
        return list(s.scalars(q.where(Transition.name == name) if name else q))


def set_tags(store: Store, model_id: int, add: dict[str, str], remove: list[str]) -> dict[str, Any]:
    with store.session() as s, s.begin():
        m = s.get(Model, model_id)
        tags = {k: v for k, v in {**(m.tags or {}), **add}.items() if k not in remove}
        m.tags = tags
    return tags


def schedule_retirement(store: Store, model_id: int, successor: str | None, after: datetime) -> None:
    with store.session() as s, s.begin():
        m = s.get(Model, model_id)
        m.successor, m.retire_after = successor, after


def mark_retired(store: Store, model_id: int, weights: str) -> None:
    with store.session() as s, s.begin():
        m = s.get(Model, model_id)
        m.retired_at, m.weights = utcnow(), weights


def is_retired(m: Model, now: datetime | None = None) -> bool:
    """Past its retirement date (its requests are refused), whether or not its weights are gone yet."""
    if m.retired_at is not None:
        return True
    if m.retire_after is None:
        return False
    return (now or utcnow()) >= as_utc(m.retire_after)


def record(store: Store, name: str, action: str, from_version: int | None, to_version: int | None,
           reason: str | None = None, detail: dict[str, Any] | None = None) -> Transition:
    """A history row for an event that moves no alias (a retirement announced, weights archived)."""
    row = Transition(at=utcnow(), actor=actor(), name=name, alias=None, action=action, from_version=from_version,
                     to_version=to_version, reason=reason, forced=False, detail=detail or {})
    with store.session() as s, s.begin():
        s.add(row)
    return row
