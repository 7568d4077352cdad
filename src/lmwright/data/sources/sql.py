"""The `sql` source: rows of any SQLAlchemy URL's query, with the text and id columns mapped.

A row's locator is `<source name>:<id>`, so its document id stays stable as long as the row's id does.
Rows whose text is empty or not a string are quarantined. `label_columns` are copied into the documents' labels,
`meta_columns` into their meta (a NULL or empty value is not carried); a column the query does not return is an
error, a row whose label is not a string, number or boolean (or whose meta value is neither that nor a date or
time) is quarantined (`bad_label_field`, `bad_meta_field`).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

from sqlalchemy import create_engine, text
from sqlalchemy.exc import SQLAlchemyError

from lmwright.data.document import BadField, Document, Quarantined, carried_fields, doc_id
from lmwright.errors import LmwrightError


def collect_sql(source) -> Iterator[Document | Quarantined]:
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    engine = create_engine(source.url)
    try:
        with engine.connect() as conn:
            result = conn.execution_options(stream_results=True).execute(text(source.query))
            columns = list(result.keys())
            for col in (source.text_column, source.id_column, *source.label_columns, *source.meta_columns):
                if col not in columns:
                    raise LmwrightError(f"source '{source.name}': the query returns no column '{col}' "
                                        f"(it returns {columns}); fix text_column / id_column / label_columns / "
                                        "meta_columns or the query")
            for row in result.mappings():
                loc = f"{source.name}:{row[source.id_column]}"
                value = row[source.text_column]
                if not isinstance(value, str) or not value:
                    yield Quarantined(source.name, loc, "missing_text_field", f"empty or non-text '{source.text_column}'")
                    continue
                try:
                    labels, meta = carried_fields(row, source.label_columns, source.meta_columns)
                except BadField as exc:
                    yield Quarantined(source.name, loc, exc.reason, exc.detail)
                    continue
                yield Document(doc_id(source.name, loc), value, source.name, source.name, loc, source.license, now,
                               labels, meta)
    except SQLAlchemyError as exc:
        raise LmwrightError(f"source '{source.name}': the query failed: {str(exc).splitlines()[0]}") from None
    finally:
        engine.dispose()
