"""The model registry: a version number per model name (numbered in registration order, as `name@N` always
meant), tags and retirement on each version, aliases with a revision for safe concurrent moves, the transition
history; per-document test figures for paired comparisons; the model version and route in the request log; the
audit log append-only on PostgreSQL too.

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

NOW = sa.DateTime(timezone=True)


def col(name: str, type_, *args, nullable: bool = False, **kw) -> sa.Column:
    """A column, NOT NULL unless said otherwise (as the ORM makes a non-optional field)."""
    return sa.Column(name, type_, *args, nullable=nullable, **kw)


def upgrade() -> None:
    bind = op.get_bind()
    with op.batch_alter_table("models") as b:
        b.add_column(col("version", sa.Integer, nullable=True))
        b.add_column(col("tags", sa.JSON, nullable=True))
        b.add_column(col("successor", sa.String(160), nullable=True))
        b.add_column(col("retire_after", NOW, nullable=True))
        b.add_column(col("retired_at", NOW, nullable=True))
        b.add_column(col("weights", sa.String(16), nullable=True))
    models = sa.table("models", sa.column("id", sa.Integer), sa.column("name", sa.String),
                      sa.column("version", sa.Integer), sa.column("tags", sa.JSON), sa.column("weights", sa.String))
    counts: dict[str, int] = {}
    for row_id, name in bind.execute(sa.select(models.c.id, models.c.name).order_by(models.c.id)).all():
        counts[name] = counts.get(name, 0) + 1
        bind.execute(models.update().where(models.c.id == row_id)
                     .values(version=counts[name], tags={}, weights="present"))
    with op.batch_alter_table("models") as b:
        b.alter_column("version", existing_type=sa.Integer, nullable=False)
        b.alter_column("tags", existing_type=sa.JSON, nullable=False)
        b.alter_column("weights", existing_type=sa.String(16), nullable=False)
        b.create_unique_constraint("uq_models_name_version", ["name", "version"])
    op.create_table(
        "aliases", col("id", sa.Integer, primary_key=True), col("name", sa.String(128)),
        col("alias", sa.String(64)), col("version", sa.Integer), col("revision", sa.Integer),
        col("updated_at", NOW), sa.UniqueConstraint("name", "alias", name="uq_aliases_name_alias"))
    op.create_table(
        "transitions", col("id", sa.Integer, primary_key=True), col("at", NOW),
        col("actor", sa.String(128)), col("name", sa.String(128), index=True),
        col("alias", sa.String(64), nullable=True), col("action", sa.String(32)),
        col("from_version", sa.Integer, nullable=True), col("to_version", sa.Integer, nullable=True),
        col("reason", sa.Text, nullable=True), col("forced", sa.Boolean), col("detail", sa.JSON))
    with op.batch_alter_table("test_evaluations") as b:
        b.add_column(col("per_document", sa.JSON, nullable=True))
    with op.batch_alter_table("requests") as b:
        b.add_column(col("model_version", sa.Integer, nullable=True))
        b.add_column(col("route", sa.String(128), nullable=True))
    if bind.dialect.name == "postgresql":
        op.execute("CREATE OR REPLACE FUNCTION lmwright_append_only() RETURNS trigger AS $$ BEGIN "
                   "RAISE EXCEPTION 'the audit log is append-only'; END $$ LANGUAGE plpgsql")
        op.execute("CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit "
                   "FOR EACH ROW EXECUTE FUNCTION lmwright_append_only()")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_append_only ON audit")
        op.execute("DROP FUNCTION IF EXISTS lmwright_append_only()")
    with op.batch_alter_table("requests") as b:
        b.drop_column("route")
        b.drop_column("model_version")
    with op.batch_alter_table("test_evaluations") as b:
        b.drop_column("per_document")
    op.drop_table("transitions")
    op.drop_table("aliases")
    with op.batch_alter_table("models") as b:
        b.drop_constraint("uq_models_name_version", type_="unique")
        for col in ("weights", "retired_at", "retire_after", "successor", "tags", "version"):
            b.drop_column(col)
