"""Alembic's entry point: run the migrations on the connection `core/migrate.py` hands over."""

from alembic import context

from lmwright.core.migrate import VERSION_TABLE
from lmwright.core.schema import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True,
                  version_table=VERSION_TABLE)
with context.begin_transaction():
    context.run_migrations()
