"""Monitoring: the drift features of each served request (kept even when its text is not), and alert events.

Revision ID: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

NOW = sa.DateTime(timezone=True)


def col(name: str, type_, *args, nullable: bool = False, **kw) -> sa.Column:
    """A column, NOT NULL unless said otherwise (as the ORM makes a non-optional field)."""
    return sa.Column(name, type_, *args, nullable=nullable, **kw)


def upgrade() -> None:
    with op.batch_alter_table("requests") as b:
        b.add_column(col("features", sa.JSON, nullable=True))
    op.create_table(
        "alerts", col("id", sa.Integer, primary_key=True), col("rule", sa.String(128), index=True),
        col("model", sa.String(128), nullable=True), col("version", sa.Integer, nullable=True),
        col("state", sa.String(16)), col("metric", sa.String(64)), col("value", sa.Float, nullable=True),
        col("threshold", sa.Float), col("started_at", NOW), col("fired_at", NOW, nullable=True),
        col("resolved_at", NOW, nullable=True), col("updated_at", NOW), col("detail", sa.JSON))


def downgrade() -> None:
    op.drop_table("alerts")
    with op.batch_alter_table("requests") as b:
        b.drop_column("features")
