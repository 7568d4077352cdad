"""The metadata store: stage runs, lineage, datasets, models and an append-only audit log.

SQLAlchemy over SQLite by default (`.lmwright/lmwright.db`); any SQLAlchemy URL works (`project.store_url`).
Lineage rows tie each stage run to the artifacts it read and wrote by content digest, with row counts, so a
dataset or model can be traced back to the source documents and parameters that made it.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import time
from typing import Any

from sqlalchemy import create_engine, event, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lmwright.core.audit_chain import GENESIS, row_hash, verify
from lmwright.core.migrate import upgrade
from lmwright.core.schema import (  # noqa: F401 - the tables, importable from here as before
    AlertEvent,
    Alias,
    ApiKey,
    Audit,
    Base,
    Dataset,
    Feedback,
    Lineage,
    Metric,
    Model,
    RequestLog,
    StageRun,
    Takedown,
    TestEvaluation,
    Transition,
    utcnow,
)


def actor() -> str:
    """Who is acting, for the audit log and the registry's history: the operating system's user name."""
    try:
        return getpass.getuser()
    except Exception:  # no user name in some containers
        return "unknown"


def _owner_only(path: str) -> None:
    """The store holds key hashes, the request log and feedback: readable by its owner alone (0600), and its WAL and
    shared-memory files too (SQLite gives those the database file's mode when it makes them)."""
    for p in (path, f"{path}-wal", f"{path}-shm", f"{path}.upgrade-lock"):
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

        upgrade(self.engine)  # the schema: made, or migrated in place from an older release's
        if self.engine.dialect.name == "sqlite":
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
        """Record a finished run, its lineage, datasets and model version in one transaction. Two runs registering
        a version of the same name at once both read the same next number; the one that loses on the unique
        (name, version) constraint tries again with the next."""
        for attempt in range(5):
            try:
                return self._finish_run(run, digest, summary, inputs, datasets, model, duration_s, metrics)
            except IntegrityError:
                if attempt == 4 or not model:
                    raise

    def _finish_run(self, run: StageRun, digest: str, summary: dict, inputs: dict[str, str],
                    datasets: list[tuple[str, str, int]], model: tuple[str, int, dict] | None,
                    duration_s: float, metrics: list[tuple[str, int, float]]) -> None:
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
            known = model and s.scalars(select(Model).where(Model.name == model[0], Model.digest == digest)).first()
            if model and not known:  # the same content registered again (a forced rerun) stays one version
                version = (s.scalar(select(func.max(Model.version)).where(Model.name == model[0])) or 0) + 1
                s.add(Model(name=model[0], digest=digest, n_params=model[1], metrics=model[2], run_id=run.id,
                            version=version, tags={}, weights="present"))
            s.add_all(Metric(run_id=run.id, key=k, step=st, value=v) for k, st, v in metrics)

    def fail_run(self, run: StageRun, error: str, duration_s: float) -> None:
        with self.session() as s, s.begin():
            run = s.get(StageRun, run.id)
            run.status, run.finished_at, run.error, run.duration_s = "failed", utcnow(), error[:4000], duration_s

    # -- audit --------------------------------------------------------------------------------------------------
    def audit(self, action: str, **detail: Any) -> Audit:
        """Append a row to the audit log, chained to the row before it (core/audit_chain.py). The id is taken as the
        last one plus one, so the hash can cover it; two writers racing for the same place collide on the id or on
        the unique previous hash, and the loser takes the next place."""
        detail = json.loads(json.dumps(detail, default=str))  # hashed as the store will give it back
        who = actor()
        for attempt in range(50):
            try:
                with self.session() as s, s.begin():
                    last = s.scalars(select(Audit).order_by(Audit.id.desc()).limit(1)).first()
                    prev, row_id = (last.hash, last.id + 1) if last else (GENESIS, 1)
                    at = utcnow()
                    row = Audit(id=row_id, at=at, actor=who, action=action, detail=detail, prev_hash=prev,
                                hash=row_hash(prev, row_id, at, who, action, detail))
                    s.add(row)
                return row
            except IntegrityError:
                if attempt == 49:
                    raise
                time.sleep(0.005 * (attempt + 1))
        raise AssertionError("unreachable")

    def verify_audit(self, expect_head: str | None = None) -> list[dict[str, Any]]:
        """The audit log's problems ([] when it is as it was written), each naming its row where it has one: the
        chain (core/audit_chain.py); the append-only triggers still in place; each takedown with both its record
        (the denylist) and its audit row; and, given the head hash someone kept elsewhere, that row still there
        (the one thing that shows rows cut from the end, or a chain rewritten from the start)."""
        rows = self.audit_log()
        problems = verify(rows) + self._missing_triggers()
        if expect_head and expect_head not in {r.hash for r in rows}:
            problems.append({"id": None, "problem": f"no row has the head hash {expect_head[:16]}... kept earlier: "
                                                    "rows were cut from the end, or the chain was rewritten"})
        audited = {r.detail.get("takedown"): r for r in rows if r.action == "takedown"}
        recorded = {t.id: t for t in self.takedowns()}
        for tid in sorted(recorded.keys() - audited.keys()):
            problems.append({"id": None, "problem": f"takedown #{tid} has no audit row (it was added around "
                                                    "`lmwright forget`)"})
        for tid in sorted(audited.keys() - recorded.keys(), key=str):
            problems.append({"id": audited[tid].id, "problem": f"the record of takedown #{tid} is gone (its "
                                                               "documents would be collected again)"})
        for tid in sorted(audited.keys() & recorded.keys()):
            a, t = audited[tid].detail, recorded[tid]
            if (a.get("kind"), a.get("value")) != (t.kind, t.value):
                problems.append({"id": audited[tid].id, "problem": f"takedown #{tid}'s record names "
                                 f"{t.kind} {t.value!r}, its audit row {a.get('kind')} {a.get('value')!r}"})
        return problems

    def _missing_triggers(self) -> list[dict[str, Any]]:
        """The append-only triggers that are gone (or disabled, on PostgreSQL)."""
        dialect = self.engine.dialect.name
        if dialect == "sqlite":
            query = "SELECT name FROM sqlite_master WHERE type = 'trigger'"
            expected = {f"{t}_no_{v}" for t in ("audit", "takedowns") for v in ("update", "delete")}
        elif dialect == "postgresql":
            query = "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND tgenabled <> 'D'"
            expected = {"audit_append_only", "takedowns_append_only"}
        else:
            return []
        with self.engine.connect() as c:
            present = {r[0] for r in c.exec_driver_sql(query)}
        return [{"id": None, "problem": f"the append-only trigger {n} is missing or disabled: UPDATE and DELETE "
                                        "are no longer refused"} for n in sorted(expected - present)]

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
                    metrics: dict[str, Any], per_document: list | None = None) -> TestEvaluation:
        with self.session() as s, s.begin():
            row = TestEvaluation(model_digest=model_digest, model_name=model_name, data_digest=data_digest, via=via,
                                 metrics=metrics, at=utcnow(), per_document=per_document)
            s.add(row)
        return row

    # -- serving ----------------------------------------------------------------------------------------------------
    def add_api_key(self, name: str, key_hash: str, role: str = "user", scopes: dict | None = None) -> None:
        with self.session() as s, s.begin():
            if s.scalars(select(ApiKey).where(ApiKey.name == name)).first():
                raise ValueError(f"an API key named {name!r} exists; revoke it first or pick another name")
            s.add(ApiKey(name=name, key_hash=key_hash, role=role, scopes=scopes or {}))

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
        """The request log's row for the response a client got (the last, should an id repeat; a shadow's row under
        the same id is not it)."""
        with self.session() as s:
            return s.scalars(select(RequestLog).where(RequestLog.request_id == request_id,
                                                      ~RequestLog.endpoint.startswith("shadow:"))
                             .order_by(RequestLog.id.desc())).first()

    def add_feedback(self, **row: Any) -> None:
        with self.session() as s, s.begin():
            s.add(Feedback(**row))

    def feedback(self) -> list[Feedback]:
        return self._all(Feedback)

    def requests_between(self, since, until) -> list[RequestLog]:
        """The request log from `since` to `until` (the monitor's window), oldest first, shadows' rows included."""
        with self.session() as s:
            return list(s.scalars(select(RequestLog).where(RequestLog.at >= since, RequestLog.at <= until)
                                  .order_by(RequestLog.id)))

    def feedback_between(self, since, until) -> list[tuple[Feedback, RequestLog | None]]:
        """Feedback rows from `since` to `until`, each with the request-log row of the response it is about."""
        with self.session() as s:
            rows = s.execute(select(Feedback, RequestLog)
                             .outerjoin(RequestLog, (RequestLog.request_id == Feedback.request_id)
                                        & ~RequestLog.endpoint.startswith("shadow:"))
                             .where(Feedback.at >= since, Feedback.at <= until).order_by(Feedback.id)).all()
            return [(f, r) for f, r in rows]

    def first_requests(self, model: str, version: int | None, n: int) -> list[RequestLog]:
        """A version's first `n` logged requests that kept drift features (a production baseline)."""
        with self.session() as s:
            return list(s.scalars(select(RequestLog).where(RequestLog.model == model,
                                                           RequestLog.model_version == version,
                                                           RequestLog.features.is_not(None))
                                  .order_by(RequestLog.id).limit(n)))

    def alerts(self, open_only: bool = False) -> list[AlertEvent]:
        """Alert events, newest first; `open_only`: the pending and firing ones."""
        with self.session() as s:
            q = select(AlertEvent).order_by(AlertEvent.id.desc())
            if open_only:
                q = q.where(AlertEvent.state.in_(("pending", "firing")))
            return list(s.scalars(q))

    def audit_log(self) -> list[Audit]:
        return self._all(Audit)

    # -- takedowns (`lmwright forget`) ---------------------------------------------------------------------------
    def add_takedown(self, kind: str, value: str, reason: str | None, doc_ids: list[str], text_hashes: list[str],
                     reached: dict) -> Takedown:
        with self.session() as s, s.begin():
            row = Takedown(actor=actor(), kind=kind, value=value, reason=reason, doc_ids=doc_ids,
                           text_hashes=text_hashes, reached=reached)
            s.add(row)
        return row

    def takedowns(self) -> list[Takedown]:
        return self._all(Takedown)
