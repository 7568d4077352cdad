"""The audit log's hash chain: each row carries the SHA-256 of the row before it and its own, so a row that is
changed, removed or inserted afterwards breaks the chain at that point (as a transparency log or git's commits do).

A row's hash covers its id, time (UTC, microseconds), actor, action, its detail as canonical JSON and the previous
row's hash. The format must never change: rows written by older releases are checked with it. `verify` walks the
rows in id order and returns the problems found, each naming the row; an empty list means the chain holds.

The triggers of migrations 0001 and 0002 refuse UPDATE and DELETE through SQL; the chain is what catches someone
who drops them or edits the database file itself.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64  # the previous hash of the first row


def _utc(at: datetime) -> str:
    """A timestamp as the store gives it back, whichever database: PostgreSQL returns it aware, SQLite naive UTC."""
    if at.tzinfo is not None:
        at = at.astimezone(UTC).replace(tzinfo=None)
    return at.isoformat(timespec="microseconds")


def row_hash(prev: str, row_id: int, at: datetime, actor: str, action: str, detail: dict[str, Any]) -> str:
    body = json.dumps({"prev": prev, "id": row_id, "at": _utc(at), "actor": actor, "action": action,
                       "detail": detail}, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(body.encode()).hexdigest()


def verify(rows: list) -> list[dict[str, Any]]:
    """Problems in the chain of `rows` (audit rows, oldest first): each {id, problem}; [] when it holds."""
    problems: list[dict[str, Any]] = []
    prev = GENESIS
    for r in rows:
        if r.prev_hash != prev:
            problems.append({"id": r.id, "problem": "its previous hash is not the hash of the row before it "
                             "(a row before it was removed, inserted or changed)"})
        if r.hash != row_hash(r.prev_hash or "", r.id, r.at, r.actor, r.action, r.detail or {}):
            problems.append({"id": r.id, "problem": "its content does not match its hash (the row was changed)"})
        prev = r.hash
    return problems
