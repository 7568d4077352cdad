"""Bring a store's schema to the code's: the Alembic revisions in `core/migrations/`, applied in place.

A new store gets every revision; a store made before the registry (release 0.1.0, which had tables but no
version table) is stamped as revision 0001, its schema, and upgraded from there; a store at the head is
left alone after one query, so opening a store stays cheap. A failed upgrade leaves the store as it was: on
PostgreSQL it runs in one transaction (DDL is transactional there), under an advisory lock so two processes never
upgrade at once; on SQLite, which commits some DDL on its own, under a lock file, from a copy put back on failure.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import Engine, inspect, text

HEAD = "0005"  # the newest revision in core/migrations/versions; tests check it is the script directory's head
# Alembic's bookkeeping table, named so as not to meet Optuna's `alembic_version`: `lmwright tune` keeps its studies
# in the same database, with its own migrations
VERSION_TABLE = "lmwright_schema_version"
_LOCK = 0x6C6D77  # PostgreSQL advisory lock id: "lmw"


def _current(conn) -> str | None:
    names = set(inspect(conn).get_table_names())
    if VERSION_TABLE in names:
        found = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
        if found:
            return found
    return "0001" if "stage_runs" in names else None  # 0.1.0 made its tables without Alembic


def upgrade(engine: Engine) -> str | None:
    """Migrate the store at `engine` to HEAD; returns the revision it was at before (None: a new store)."""
    with engine.connect() as conn:
        if _current(conn) == HEAD:
            return HEAD
    path = engine.url.database if engine.dialect.name == "sqlite" else None
    if not path or path == ":memory:":
        return _upgrade(engine)
    # SQLite: one process upgrades at a time (a lock file beside the store), and since SQLite commits some DDL on
    # its own, a failed upgrade puts back a copy taken first, so the store is never left half-migrated
    import fcntl
    import shutil

    from lmwright.errors import LmwrightError

    with os.fdopen(os.open(f"{path}.upgrade-lock", os.O_CREAT | os.O_WRONLY, 0o600), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        backup = f"{path}.before-upgrade"
        engine.dispose()
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        engine.dispose()
        # the copy holds what the store holds (key hashes, the request log): its owner's alone, as the store is
        with open(path, "rb") as src, os.fdopen(os.open(backup, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600),
                                                "wb") as dst:
            shutil.copyfileobj(src, dst)
        try:
            before = _upgrade(engine)
        except Exception as exc:
            engine.dispose()
            shutil.copyfile(backup, path)
            for extra in (f"{path}-wal", f"{path}-shm"):
                if os.path.exists(extra):
                    os.remove(extra)
            raise LmwrightError(f"upgrading the store {path} to this release's schema failed ({type(exc).__name__}: "
                                f"{exc}); it was put back as it was. Run with --debug and report it.") from exc
        finally:
            engine.dispose()
        os.remove(backup)
        return before


def _upgrade(engine: Engine) -> str | None:
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK})
        before = _current(conn)
        if before == HEAD:  # another process upgraded while this one waited for the lock
            return before
        cfg.attributes["connection"] = conn
        if before is not None and VERSION_TABLE not in inspect(conn).get_table_names():
            command.stamp(cfg, before)
        command.upgrade(cfg, "head")
    return before
