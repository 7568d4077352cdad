"""Annotation: tasks, their versioned guidelines, items (with gold answers, model suggestions, priority and final
labels) and each annotator's answers.

Revision ID: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

NOW = sa.DateTime(timezone=True)


def col(name: str, type_, *args, nullable: bool = False, **kw) -> sa.Column:
    """A column, NOT NULL unless said otherwise (as the ORM makes a non-optional field)."""
    return sa.Column(name, type_, *args, nullable=nullable, **kw)


def upgrade() -> None:
    op.create_table(
        "annotation_tasks", col("id", sa.Integer, primary_key=True), col("name", sa.String(128), unique=True),
        col("kind", sa.String(16)), col("config", sa.JSON), col("created_at", NOW))
    op.create_table(
        "annotation_guidelines", col("id", sa.Integer, primary_key=True),
        col("task_id", sa.Integer, sa.ForeignKey("annotation_tasks.id"), index=True), col("version", sa.Integer),
        col("text", sa.Text), col("digest", sa.String(64)), col("at", NOW),
        sa.UniqueConstraint("task_id", "version", name="uq_guideline_version"))
    op.create_table(
        "annotation_items", col("id", sa.Integer, primary_key=True),
        col("task_id", sa.Integer, sa.ForeignKey("annotation_tasks.id"), index=True), col("key", sa.String(128)),
        col("data", sa.JSON), col("source", sa.String(256)), col("gold", sa.JSON, nullable=True),
        col("predictions", sa.JSON, nullable=True), col("priority", sa.Float, nullable=True),
        col("revision", sa.Integer), col("final", sa.JSON, nullable=True), col("created_at", NOW),
        sa.UniqueConstraint("task_id", "key", name="uq_annotation_item_key"))
    op.create_table(
        "annotations", col("id", sa.Integer, primary_key=True),
        col("item_id", sa.Integer, sa.ForeignKey("annotation_items.id"), index=True),
        col("annotator", sa.String(128), index=True), col("value", sa.JSON, nullable=True),
        col("comment", sa.Text, nullable=True), col("guideline_version", sa.Integer, nullable=True),
        col("revision", sa.Integer), col("created_at", NOW), col("updated_at", NOW),
        sa.UniqueConstraint("item_id", "annotator", name="uq_annotation_annotator"))


def downgrade() -> None:
    for table in ("annotations", "annotation_items", "annotation_guidelines", "annotation_tasks"):
        op.drop_table(table)
