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


def upgrade() -> None:
    op.create_table(
        "stage_runs", sa.Column("id", sa.Integer, primary_key=True), sa.Column("stage", sa.String(64), index=True),
        sa.Column("fingerprint", sa.String(64), index=True), sa.Column("status", sa.String(16)),
        sa.Column("started_at", NOW), sa.Column("finished_at", NOW, nullable=True),
        sa.Column("duration_s", sa.Float, nullable=True), sa.Column("params", sa.JSON),
        sa.Column("code_version", sa.String(64)), sa.Column("output_digest", sa.String(64), nullable=True),
        sa.Column("summary", sa.JSON), sa.Column("error", sa.Text, nullable=True))
    op.create_table(
        "lineage", sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("stage_runs.id"), index=True),
        sa.Column("direction", sa.String(8)), sa.Column("name", sa.String(128)),
        sa.Column("digest", sa.String(64), index=True), sa.Column("rows", sa.Integer, nullable=True))
    for table, cols in (("datasets", [sa.Column("path", sa.Text), sa.Column("rows", sa.Integer)]),
                        ("models", [sa.Column("n_params", sa.Integer), sa.Column("metrics", sa.JSON)])):
        op.create_table(
            table, sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String(128), index=True),
            sa.Column("digest", sa.String(64)), *cols,
            sa.Column("run_id", sa.Integer, sa.ForeignKey("stage_runs.id")), sa.Column("created_at", NOW))
    op.create_table(
        "metrics", sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("stage_runs.id"), index=True), sa.Column("key", sa.String(64)),
        sa.Column("step", sa.Integer), sa.Column("value", sa.Float))
    op.create_table(
        "test_evaluations", sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("model_digest", sa.String(64), index=True), sa.Column("model_name", sa.String(128)),
        sa.Column("data_digest", sa.String(64)), sa.Column("via", sa.String(32)), sa.Column("metrics", sa.JSON),
        sa.Column("at", NOW))
    op.create_table(
        "api_keys", sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String(128), unique=True),
        sa.Column("key_hash", sa.String(64)), sa.Column("created_at", NOW), sa.Column("revoked", sa.Boolean))

    def of_request():
        return [sa.Column("id", sa.Integer, primary_key=True), sa.Column("request_id", sa.String(64), index=True),
                sa.Column("at", NOW), sa.Column("key_name", sa.String(128), nullable=True)]

    op.create_table(
        "requests", *of_request(), sa.Column("endpoint", sa.String(64)), sa.Column("model", sa.String(128)),
        sa.Column("model_digest", sa.String(64)), sa.Column("status", sa.Integer),
        sa.Column("prompt_tokens", sa.Integer), sa.Column("completion_tokens", sa.Integer),
        sa.Column("finish_reason", sa.String(16), nullable=True), sa.Column("queue_s", sa.Float, nullable=True),
        sa.Column("ttft_s", sa.Float, nullable=True), sa.Column("e2e_s", sa.Float, nullable=True),
        sa.Column("flags", sa.JSON), sa.Column("prompt", sa.Text, nullable=True),
        sa.Column("output", sa.Text, nullable=True))
    op.create_table(
        "feedback", *of_request(), sa.Column("rating", sa.Integer, nullable=True),
        sa.Column("correction", sa.Text, nullable=True), sa.Column("comment", sa.Text, nullable=True))
    op.create_table(
        "audit", sa.Column("id", sa.Integer, primary_key=True), sa.Column("at", NOW),
        sa.Column("actor", sa.String(128)), sa.Column("action", sa.String(64)), sa.Column("detail", sa.JSON))
    if op.get_bind().dialect.name == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER IF NOT EXISTS audit_no_{verb.lower()} BEFORE {verb} ON audit "
                       "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END")


def downgrade() -> None:
    for table in ("audit", "feedback", "requests", "api_keys", "test_evaluations", "metrics", "models", "datasets",
                  "lineage", "stage_runs"):
        op.drop_table(table)
