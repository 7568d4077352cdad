"""The schema of release 0.1.0: stage runs, lineage, datasets, models, metrics, test evaluations, API keys, the
request log, feedback and the append-only audit log (triggers on SQLite).

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

NOW = sa.DateTime(timezone=True)


def col(name: str, type_, *args, nullable: bool = False, **kw) -> sa.Column:
    """A column, NOT NULL unless said otherwise (as the ORM makes a non-optional field)."""
    return sa.Column(name, type_, *args, nullable=nullable, **kw)


def upgrade() -> None:
    op.create_table(
        "stage_runs", col("id", sa.Integer, primary_key=True), col("stage", sa.String(64), index=True),
        col("fingerprint", sa.String(64), index=True), col("status", sa.String(16)),
        col("started_at", NOW), col("finished_at", NOW, nullable=True),
        col("duration_s", sa.Float, nullable=True), col("params", sa.JSON),
        col("code_version", sa.String(64)), col("output_digest", sa.String(64), nullable=True),
        col("summary", sa.JSON), col("error", sa.Text, nullable=True))
    op.create_table(
        "lineage", col("id", sa.Integer, primary_key=True),
        col("run_id", sa.Integer, sa.ForeignKey("stage_runs.id"), index=True),
        col("direction", sa.String(8)), col("name", sa.String(128)),
        col("digest", sa.String(64), index=True), col("rows", sa.Integer, nullable=True))
    for table, cols in (("datasets", [col("path", sa.Text), col("rows", sa.Integer)]),
                        ("models", [col("n_params", sa.Integer), col("metrics", sa.JSON)])):
        op.create_table(
            table, col("id", sa.Integer, primary_key=True), col("name", sa.String(128), index=True),
            col("digest", sa.String(64)), *cols,
            col("run_id", sa.Integer, sa.ForeignKey("stage_runs.id")), col("created_at", NOW))
    op.create_table(
        "metrics", col("id", sa.Integer, primary_key=True),
        col("run_id", sa.Integer, sa.ForeignKey("stage_runs.id"), index=True), col("key", sa.String(64)),
        col("step", sa.Integer), col("value", sa.Float))
    op.create_table(
        "test_evaluations", col("id", sa.Integer, primary_key=True),
        col("model_digest", sa.String(64), index=True), col("model_name", sa.String(128)),
        col("data_digest", sa.String(64)), col("via", sa.String(32)), col("metrics", sa.JSON),
        col("at", NOW))
    op.create_table(
        "api_keys", col("id", sa.Integer, primary_key=True), col("name", sa.String(128), unique=True),
        col("key_hash", sa.String(64)), col("created_at", NOW), col("revoked", sa.Boolean))

    def of_request():
        return [col("id", sa.Integer, primary_key=True), col("request_id", sa.String(64), index=True),
                col("at", NOW), col("key_name", sa.String(128), nullable=True)]

    op.create_table(
        "requests", *of_request(), col("endpoint", sa.String(64)), col("model", sa.String(128)),
        col("model_digest", sa.String(64)), col("status", sa.Integer),
        col("prompt_tokens", sa.Integer), col("completion_tokens", sa.Integer),
        col("finish_reason", sa.String(16), nullable=True), col("queue_s", sa.Float, nullable=True),
        col("ttft_s", sa.Float, nullable=True), col("e2e_s", sa.Float, nullable=True),
        col("flags", sa.JSON), col("prompt", sa.Text, nullable=True),
        col("output", sa.Text, nullable=True))
    op.create_table(
        "feedback", *of_request(), col("rating", sa.Integer, nullable=True),
        col("correction", sa.Text, nullable=True), col("comment", sa.Text, nullable=True))
    op.create_table(
        "audit", col("id", sa.Integer, primary_key=True), col("at", NOW),
        col("actor", sa.String(128)), col("action", sa.String(64)), col("detail", sa.JSON))
    if op.get_bind().dialect.name == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER IF NOT EXISTS audit_no_{verb.lower()} BEFORE {verb} ON audit "
                       "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END")


def downgrade() -> None:
    for table in ("audit", "feedback", "requests", "api_keys", "test_evaluations", "metrics", "models", "datasets",
                  "lineage", "stage_runs"):
        op.drop_table(table)
