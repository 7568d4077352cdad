"""Governance: the audit log's hash chain (each row carries the previous row's hash and its own; rows written before
this revision are chained now, in id order), roles and scopes on API keys, and the takedowns of `lmwright forget`
(append-only too: their selectors and text hashes are the denylist every later collection applies).

Keys made before this revision could reach every route, so they become `admin` keys: an upgrade takes no access
away. New keys are `user` keys unless made with `--role`.

Revision ID: 0004
"""

import sqlalchemy as sa
from alembic import op

from lmwright.core.audit_chain import GENESIS, row_hash

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

NOW = sa.DateTime(timezone=True)


def col(name: str, type_, *args, nullable: bool = False, **kw) -> sa.Column:
    """A column, NOT NULL unless said otherwise (as the ORM makes a non-optional field)."""
    return sa.Column(name, type_, *args, nullable=nullable, **kw)


def _append_only(on: bool, table: str = "audit") -> None:
    """The triggers that refuse UPDATE and DELETE on an append-only table (the audit log's: 0001 on SQLite, 0002 on
    PostgreSQL; the takedowns', whose rows are the denylist: here)."""
    prefix = "audit" if table == "audit" else table
    if op.get_bind().dialect.name == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(f"DROP TRIGGER IF EXISTS {prefix}_no_{verb.lower()}")
            if on:
                op.execute(f"CREATE TRIGGER {prefix}_no_{verb.lower()} BEFORE {verb} ON {table} "
                           f"BEGIN SELECT RAISE(ABORT, 'the {table} table is append-only'); END")
    elif on:
        op.execute(f"CREATE TRIGGER {prefix}_append_only BEFORE UPDATE OR DELETE ON {table} "
                   "FOR EACH ROW EXECUTE FUNCTION lmwright_append_only()")
    else:
        op.execute(f"DROP TRIGGER IF EXISTS {prefix}_append_only ON {table}")


def upgrade() -> None:
    bind = op.get_bind()
    _append_only(False)  # the one time rows are written to: to chain those made before the chain existed
    with op.batch_alter_table("audit") as b:
        b.add_column(col("prev_hash", sa.String(64), nullable=True))
        b.add_column(col("hash", sa.String(64), nullable=True))
    audit = sa.table("audit", sa.column("id", sa.Integer), sa.column("at", NOW), sa.column("actor", sa.String),
                     sa.column("action", sa.String), sa.column("detail", sa.JSON),
                     sa.column("prev_hash", sa.String), sa.column("hash", sa.String))
    prev = GENESIS
    rows = bind.execute(sa.select(audit.c.id, audit.c.at, audit.c.actor, audit.c.action, audit.c.detail)
                        .order_by(audit.c.id)).all()
    for row_id, at, actor, action, detail in rows:
        h = row_hash(prev, row_id, at, actor, action, detail or {})
        bind.execute(audit.update().where(audit.c.id == row_id).values(prev_hash=prev, hash=h))
        prev = h
    with op.batch_alter_table("audit") as b:
        b.alter_column("prev_hash", existing_type=sa.String(64), nullable=False)
        b.alter_column("hash", existing_type=sa.String(64), nullable=False)
        b.create_unique_constraint("uq_audit_prev_hash", ["prev_hash"])
    _append_only(True)
    with op.batch_alter_table("api_keys") as b:
        b.add_column(col("role", sa.String(16), nullable=True))
        b.add_column(col("scopes", sa.JSON, nullable=True))
    keys = sa.table("api_keys", sa.column("role", sa.String), sa.column("scopes", sa.JSON))
    bind.execute(keys.update().values(role="admin", scopes={}))
    with op.batch_alter_table("api_keys") as b:
        b.alter_column("role", existing_type=sa.String(16), nullable=False)
        b.alter_column("scopes", existing_type=sa.JSON, nullable=False)
    op.create_table(
        "takedowns", col("id", sa.Integer, primary_key=True), col("at", NOW), col("actor", sa.String(128)),
        col("kind", sa.String(16)), col("value", sa.Text), col("reason", sa.Text, nullable=True),
        col("doc_ids", sa.JSON), col("text_hashes", sa.JSON), col("reached", sa.JSON))
    _append_only(True, "takedowns")


def downgrade() -> None:
    _append_only(False, "takedowns")
    op.drop_table("takedowns")
    with op.batch_alter_table("api_keys") as b:
        b.drop_column("scopes")
        b.drop_column("role")
    _append_only(False)
    with op.batch_alter_table("audit") as b:
        b.drop_constraint("uq_audit_prev_hash", type_="unique")
        b.drop_column("hash")
        b.drop_column("prev_hash")
    _append_only(True)
