"""The metadata store's tables (SQLAlchemy ORM): stage runs and lineage, datasets and models, metrics, test
evaluations, the model registry (aliases and their transition history), serving (keys, the request log, feedback)
and the append-only audit log.

These classes are the schema as the code reads it; `core/migrations/` holds every change to it as an Alembic
revision, so a workspace made by an older release upgrades in place (`core/migrate.py`). A change here needs a new
revision there; tests/test_registry.py checks the two agree.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


# a JSON column whose None is SQL NULL (not the JSON text 'null'), so `IS NULL` finds it
NULL_JSON = JSON(none_as_null=True)


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
    """A registered model version: `version` counts from 1 per name. Retirement: `retire_after` is when its
    deprecation ends (requests to it then get 410 naming `successor`); `weights` says whether its weight files are
    still there ("present"), or were "archived" or "deleted" when it retired (`retired_at`)."""

    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_models_name_version"),)
    n_params: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    version: Mapped[int] = mapped_column(Integer)
    tags: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    successor: Mapped[str | None] = mapped_column(String(160), nullable=True)
    retire_after: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    retired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    weights: Mapped[str] = mapped_column(String(16), default="present")


class Alias(Base):
    """A movable name for one version of a model (`champion`, `challenger`, any name). `revision` counts its
    moves: a move names the revision it read, so of two concurrent moves one wins and the other is refused."""

    __tablename__ = "aliases"
    __table_args__ = (UniqueConstraint("name", "alias", name="uq_aliases_name_alias"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    alias: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    revision: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Transition(Base):
    """The registry's history: who moved which alias of which model from which version to which, when and why
    (promote, rollback, run, retire, alias, unalias), and whether a failing gate was overridden (`forced`)."""

    __tablename__ = "transitions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    actor: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(128), index=True)
    alias: Mapped[str | None] = mapped_column(String(64), nullable=True)
    action: Mapped[str] = mapped_column(String(32))
    from_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    to_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    forced: Mapped[bool] = mapped_column(default=False)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


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
    # per test document, in order: [nats of its text tokens, its bytes]; for the paired comparison of two versions
    per_document: Mapped[list | None] = mapped_column(JSON, nullable=True)


class ApiKey(Base):
    """A serving API key: only its SHA-256 is stored; the key itself is shown once, when it is made."""

    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked: Mapped[bool] = mapped_column(default=False)
    role: Mapped[str] = mapped_column(String(16), default="user")  # admin | operator | annotator | user
    # what the key may reach beyond its role's routes: {"models": [...] | ["*"], "routes": [...] | ["*"]}
    scopes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


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
    model_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    route: Mapped[str | None] = mapped_column(String(128), nullable=True)  # the model id the client asked for
    status: Mapped[int] = mapped_column(Integer)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    finish_reason: Mapped[str | None] = mapped_column(String(16), nullable=True)
    queue_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    ttft_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    e2e_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    flags: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # what drift monitoring reads, kept whether or not the text is: the prompt's bytes, unknown-byte rate,
    # language, nats per byte under the model that answered, and a hashed bag-of-words sketch (data/sketch.py)
    features: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    prompt: Mapped[str | None] = mapped_column(Text, nullable=True)
    output: Mapped[str | None] = mapped_column(Text, nullable=True)


class Feedback(_OfRequest, Base):
    """A rating or correction of a served response (by its response id): raw material for retraining."""

    __tablename__ = "feedback"
    rating: Mapped[int | None] = mapped_column(Integer, nullable=True)
    correction: Mapped[str | None] = mapped_column(Text, nullable=True)
    comment: Mapped[str | None] = mapped_column(Text, nullable=True)


class AlertEvent(Base):
    """One episode of a `monitor.alerts` rule on one model version, as Prometheus keeps them: "pending" while its
    condition holds for less than the rule's `for`, then "firing", then "resolved" when it stops holding (a pending
    one that stops holding first becomes "inactive"). `delivered` records the webhook's answers."""

    __tablename__ = "alerts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rule: Mapped[str] = mapped_column(String(128), index=True)
    model: Mapped[str | None] = mapped_column(String(128), nullable=True)
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    state: Mapped[str] = mapped_column(String(16))  # pending | firing | resolved | inactive
    metric: Mapped[str] = mapped_column(String(64))
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    threshold: Mapped[float] = mapped_column(Float)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    fired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Audit(Base):
    """Append-only: triggers refuse UPDATE and DELETE (on SQLite and PostgreSQL), and a hash chain shows any change
    made around them."""

    __tablename__ = "audit"
    __table_args__ = (UniqueConstraint("prev_hash", name="uq_audit_prev_hash"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # the hash chain (core/audit_chain.py); prev_hash is unique, so two writers can never both extend one row
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class Takedown(Base):
    """`lmwright forget`: what was taken down and what it reached. Every row's selector and text hashes stay on the
    denylist that later collections apply; the documents found then are listed too, for the record. Append-only
    (triggers, as on the audit log), and each row has its `takedown` audit row: `lmwright audit --verify` checks
    that neither is missing."""

    __tablename__ = "takedowns"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    actor: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))  # source | doc | match
    value: Mapped[str] = mapped_column(Text)  # the source name, document id or regular expression
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    doc_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    # each text's exact-duplicate key (data/dedup.py): a copy under another name or path is denied too
    text_hashes: Mapped[list[str]] = mapped_column(JSON, default=list)
    reached: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # the artifacts found, by kind


class AnnotationTask(Base):
    """An annotation task (`annotate.tasks` in the spec, annotate/tasks.py): its kind and settings as last synced."""

    __tablename__ = "annotation_tasks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # labels, scale, overlap, gold share
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Guideline(Base):
    """One version of a task's guidelines (markdown): a new version each time the file's text changes, so every
    answer names the guidelines its annotator saw."""

    __tablename__ = "annotation_guidelines"
    __table_args__ = (UniqueConstraint("task_id", "version", name="uq_guideline_version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("annotation_tasks.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    digest: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AnnotationItem(Base):
    """One item to label: its data, where it came from, a gold answer if it is a spot check, the model's
    suggestions, its active-learning priority, and its final label with provenance once agreed or adjudicated.
    `revision` counts the changes to its answers: a reviewer's adjudication is compared and set on it."""

    __tablename__ = "annotation_items"
    __table_args__ = (UniqueConstraint("task_id", "key", name="uq_annotation_item_key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("annotation_tasks.id"), index=True)
    key: Mapped[str] = mapped_column(String(128))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    source: Mapped[str] = mapped_column(String(256))
    gold: Mapped[dict[str, Any] | None] = mapped_column(NULL_JSON, nullable=True)
    predictions: Mapped[list | None] = mapped_column(NULL_JSON, nullable=True)
    priority: Mapped[float | None] = mapped_column(Float, nullable=True)
    revision: Mapped[int] = mapped_column(Integer, default=0)
    final: Mapped[dict[str, Any] | None] = mapped_column(NULL_JSON, nullable=True)  # value, by, at, how, guideline
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Annotation(Base):
    """One annotator's answer to one item (or their skip), with its comment and guideline version. `revision`
    counts its edits: an edit made from a stale copy is refused (two tabs, two people behind one key)."""

    __tablename__ = "annotations"
    __table_args__ = (UniqueConstraint("item_id", "annotator", name="uq_annotation_annotator"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("annotation_items.id"), index=True)
    annotator: Mapped[str] = mapped_column(String(128), index=True)
    value: Mapped[dict[str, Any] | None] = mapped_column(NULL_JSON, nullable=True)  # None: skipped
    comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    guideline_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    revision: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
