"""The metadata store: stage runs, lineage, datasets, models and an append-only audit log.

SQLAlchemy over SQLite by default (`.lmwright/lmwright.db`); any SQLAlchemy URL works (`project.store_url`).
Lineage rows tie each stage run to the artifacts it read and wrote by content digest, with row counts, so a
dataset or model can be traced back to the source documents and parameters that made it.
"""

from __future__ import annotations

import contextlib
import getpass
import os
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    create_engine,
    event,
    select,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON}


class StageRun(Base):
    __tablename__ = "stage_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stage: Mapped[str] = mapped_column(String(64), index=True)
    fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16))  # running | done | failed
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    code_version: Mapped[str] = mapped_column(String(64))
    output_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


class Lineage(Base):
    __tablename__ = "lineage"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("stage_runs.id"), index=True)
    direction: Mapped[str] = mapped_column(String(8))  # input | output
    name: Mapped[str] = mapped_column(String(128))
    digest: Mapped[str] = mapped_column(String(64), index=True)
    rows: Mapped[int | None] = mapped_column(Integer, nullable=True)


class _Produced:
    """A named, versioned thing a stage run produced, by content digest: a dataset or a model. (`sort_order`
    keeps the tables' column order: these first, the table's own columns, then the run and time.)"""

    id: Mapped[int] = mapped_column(Integer, primary_key=True, sort_order=-1)
    name: Mapped[str] = mapped_column(String(128), index=True, sort_order=-1)
    digest: Mapped[str] = mapped_column(String(64), sort_order=-1)
    run_id: Mapped[int] = mapped_column(ForeignKey("stage_runs.id"), sort_order=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, sort_order=1)


class Dataset(_Produced, Base):
    __tablename__ = "datasets"
    path: Mapped[str] = mapped_column(Text)  # inside the artifact
    rows: Mapped[int] = mapped_column(Integer)


class Model(_Produced, Base):
    __tablename__ = "models"
    n_params: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Metric(Base):
    """A stage run's series: one row per (key, step), e.g. train/loss at every step of a pretrain run."""

    __tablename__ = "metrics"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("stage_runs.id"), index=True)
    key: Mapped[str] = mapped_column(String(64))
    step: Mapped[int] = mapped_column(Integer)
    value: Mapped[float] = mapped_column(Float)


class TestEvaluation(Base):
    """One evaluation of a model on the test split; a second row for the same model is a repeated test."""

    __tablename__ = "test_evaluations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_digest: Mapped[str] = mapped_column(String(64), index=True)
    model_name: Mapped[str] = mapped_column(String(128))
    data_digest: Mapped[str] = mapped_column(String(64))  # the tokenize artifact whose test shard was read
    via: Mapped[str] = mapped_column(String(32))  # "pipeline" (the test stage) or "cli" (`lmwright test MODEL`)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ApiKey(Base):
    """A serving API key: only its SHA-256 is stored; the key itself is shown once, when it is made."""

    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked: Mapped[bool] = mapped_column(default=False)


class _OfRequest:
    """A row about one served request: its id, when, and the API key's name (the table's first columns)."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True, sort_order=-1)
    request_id: Mapped[str] = mapped_column(String(64), index=True, sort_order=-1)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, sort_order=-1)
    key_name: Mapped[str | None] = mapped_column(String(128), nullable=True, sort_order=-1)


class RequestLog(_OfRequest, Base):
    """One served request: ids, model version, token counts, latencies, safety flags; text only if configured."""

    __tablename__ = "requests"
    endpoint: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(128))
    model_digest: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    finish_reason: Mapped[str | None] = mapped_column(String(16), nullable=True)
    queue_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    ttft_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    e2e_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    flags: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prompt: Mapped[str | None] = mapped_column(Text, nullable=True)
    output: Mapped[str | None] = mapped_column(Text, nullable=True)


class Feedback(_OfRequest, Base):
    """A rating or correction of a served response (by its response id): raw material for retraining."""

    __tablename__ = "feedback"
    rating: Mapped[int | None] = mapped_column(Integer, nullable=True)
    correction: Mapped[str | None] = mapped_column(Text, nullable=True)
    comment: Mapped[str | None] = mapped_column(Text, nullable=True)


class Audit(Base):
    """Append-only: on SQLite, triggers refuse UPDATE and DELETE."""

    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


_APPEND_ONLY = [
    "CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit "
    "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit "
    "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
]


def _owner_only(path: str) -> None:
    """The store holds key hashes, the request log and feedback: readable by its owner alone (0600), and its WAL and
    shared-memory files too (SQLite gives those the database file's mode when it makes them)."""
    for p in (path, f"{path}-wal", f"{path}-shm"):
        with contextlib.suppress(OSError):  # not ours to change (a shared workspace): leave it as it is
            if os.path.exists(p) and os.stat(p).st_mode & 0o077:
                os.chmod(p, 0o600)


class Store:
    def __init__(self, url: str):
        if url.startswith("sqlite:///"):
            from pathlib import Path

            path = url.removeprefix("sqlite:///")
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            if path != ":memory:" and not os.path.exists(path):  # made private, never briefly readable by others
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        self.engine = create_engine(url)
        if self.engine.dialect.name == "sqlite":
            # WAL lets `lmwright status` read while a run writes; wait instead of failing on a lock.
            @event.listens_for(self.engine, "connect")
            def _pragmas(conn, _record):
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA busy_timeout=10000")

        Base.metadata.create_all(self.engine)
        if self.engine.dialect.name == "sqlite":
            with self.engine.begin() as conn:
                for stmt in _APPEND_ONLY:
                    conn.execute(text(stmt))
            _owner_only(url.removeprefix("sqlite:///"))

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    # -- stage runs -------------------------------------------------------------------------------------------
    def cached_run(self, stage: str, fingerprint: str) -> StageRun | None:
        with self.session() as s:
            return s.scalars(
                select(StageRun)
                .where(StageRun.stage == stage, StageRun.fingerprint == fingerprint, StageRun.status == "done")
                .order_by(StageRun.id.desc())
            ).first()

    def last_run(self, stage: str, status: str | None = "done") -> StageRun | None:
        with self.session() as s:
            q = select(StageRun).where(StageRun.stage == stage)
            if status:
                q = q.where(StageRun.status == status)
            return s.scalars(q.order_by(StageRun.id.desc())).first()

    def start_run(self, stage: str, fingerprint: str, params: dict, code_version: str) -> StageRun:
        with self.session() as s, s.begin():
            run = StageRun(stage=stage, fingerprint=fingerprint, status="running", params=params,
                           code_version=code_version, started_at=utcnow())
            s.add(run)
        return run

    def finish_run(self, run: StageRun, digest: str, summary: dict, inputs: dict[str, str],
                   datasets: list[tuple[str, str, int]], model: tuple[str, int, dict] | None,
                   duration_s: float, metrics: list[tuple[str, int, float]] = ()) -> None:
        with self.session() as s, s.begin():
            run = s.get(StageRun, run.id)
            run.status, run.finished_at, run.output_digest, run.summary = "done", utcnow(), digest, summary
            run.duration_s = duration_s
            for name, d in inputs.items():
                s.add(Lineage(run_id=run.id, direction="input", name=name, digest=d))
            s.add(Lineage(run_id=run.id, direction="output", name=run.stage, digest=digest,
                          rows=summary.get("kept") if isinstance(summary.get("kept"), int) else None))
            for name, path, rows in datasets:
                s.add(Dataset(name=name, digest=digest, path=path, rows=rows, run_id=run.id))
            if model:
                s.add(Model(name=model[0], digest=digest, n_params=model[1], metrics=model[2], run_id=run.id))
            s.add_all(Metric(run_id=run.id, key=k, step=st, value=v) for k, st, v in metrics)

    def fail_run(self, run: StageRun, error: str, duration_s: float) -> None:
        with self.session() as s, s.begin():
            run = s.get(StageRun, run.id)
            run.status, run.finished_at, run.error, run.duration_s = "failed", utcnow(), error[:4000], duration_s

    # -- audit --------------------------------------------------------------------------------------------------
    def audit(self, action: str, **detail: Any) -> None:
        try:
            actor = getpass.getuser()
        except Exception:  # no user name in some containers
            actor = "unknown"
        with self.session() as s, s.begin():
            s.add(Audit(actor=actor, action=action, detail=detail))

    # -- listings for `lmwright status` --------------------------------------------------------------------------
    def _all(self, table: type[Base]) -> list:
        """Every row of `table`, oldest first."""
        with self.session() as s:
            return list(s.scalars(select(table).order_by(table.id)))

    def datasets(self) -> list[Dataset]:
        return self._all(Dataset)

    def models(self) -> list[Model]:
        return self._all(Model)

    def runs(self, limit: int = 50) -> list[StageRun]:
        with self.session() as s:
            return list(s.scalars(select(StageRun).order_by(StageRun.id.desc()).limit(limit)))

    def metrics(self, run_id: int, key: str | None = None) -> list[Metric]:
        with self.session() as s:
            q = select(Metric).where(Metric.run_id == run_id)
            if key:
                q = q.where(Metric.key == key)
            return list(s.scalars(q.order_by(Metric.key, Metric.step)))

    def test_evaluations(self, model_digest: str | None = None) -> list[TestEvaluation]:
        with self.session() as s:
            q = select(TestEvaluation)
            if model_digest:
                q = q.where(TestEvaluation.model_digest == model_digest)
            return list(s.scalars(q.order_by(TestEvaluation.id)))

    def record_test(self, model_digest: str, model_name: str, data_digest: str, via: str,
                    metrics: dict[str, Any]) -> TestEvaluation:
        with self.session() as s, s.begin():
            row = TestEvaluation(model_digest=model_digest, model_name=model_name, data_digest=data_digest, via=via,
                                 metrics=metrics, at=utcnow())
            s.add(row)
        return row

    # -- serving ----------------------------------------------------------------------------------------------------
    def add_api_key(self, name: str, key_hash: str) -> None:
        with self.session() as s, s.begin():
            if s.scalars(select(ApiKey).where(ApiKey.name == name)).first():
                raise ValueError(f"an API key named {name!r} exists; revoke it first or pick another name")
            s.add(ApiKey(name=name, key_hash=key_hash))

    def revoke_api_key(self, name: str) -> bool:
        with self.session() as s, s.begin():
            key = s.scalars(select(ApiKey).where(ApiKey.name == name)).first()
            if key is None:
                return False
            s.delete(key)
            return True

    def api_keys(self) -> list[ApiKey]:
        with self.session() as s:
            return list(s.scalars(select(ApiKey).order_by(ApiKey.id)))

    def log_requests(self, rows: list[dict[str, Any]]) -> None:
        with self.session() as s, s.begin():
            s.add_all(RequestLog(**r) for r in rows)

    def requests(self, limit: int = 100) -> list[RequestLog]:
        with self.session() as s:
            return list(s.scalars(select(RequestLog).order_by(RequestLog.id.desc()).limit(limit)))

    def request_record(self, request_id: str) -> RequestLog | None:
        """The request log's row for a response id (the last, should an id repeat)."""
        with self.session() as s:
            return s.scalars(select(RequestLog).where(RequestLog.request_id == request_id)
                             .order_by(RequestLog.id.desc())).first()

    def add_feedback(self, **row: Any) -> None:
        with self.session() as s, s.begin():
            s.add(Feedback(**row))

    def feedback(self) -> list[Feedback]:
        return self._all(Feedback)

    def audit_log(self) -> list[Audit]:
        return self._all(Audit)
