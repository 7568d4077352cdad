"""Annotation items in and final labels out: items from CSV/JSONL/Parquet rows (a label column becomes the gold
answer or an annotation), and final labels exported to the fine-tuning formats (finetune/formats.py reads them)
and to Parquet. Label Studio JSON is in annotate/labelstudio.py.

Pure functions over *item records*; nothing here touches the store:

    {"key": str, "data": {...}, "source": str, "gold": value | None,
     "predictions": [{"value", "score", "model"}],
     "annotations": [{"annotator", "value", "created_at", "comment", "guideline_version"}],
     "final": {"value", "by", "at", "how", "guideline_version"} | None}

Every answer passes `check_value`; a bad row stops the import with an `AnnotationError` naming file:line and the
column. Exports count what they leave out (no final label, preference ties) instead of losing it silently.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lmwright.annotate.tasks import AnnotationError, Task, check_item, check_value
from lmwright.data.rows import read_records
from lmwright.errors import LmwrightError


class Records(list):
    """A list of item records (or export rows) with `counts`: what was read, written, skipped and why."""

    def __init__(self, items: Iterable = (), counts: dict[str, int] | None = None):
        super().__init__(items)
        self.counts: dict[str, int] = dict(counts or {})


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def item_key(data: dict) -> str:
    """A stable key for an item without an id: a hash of its data."""
    return "h" + hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


def type_name(v: Any) -> str:
    return type(v).__name__ if v is not None else "nothing"


def write_text(path: Path, text: str) -> None:
    """Write whole or not at all: a temporary file renamed over the target."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# --- rows of items (CSV, JSONL, Parquet) -------------------------------------------------------------------------

def read_rows(path: Path, task: Task, text_field: str = "text", label_field: str | None = None,
              id_field: str | None = None, as_: str | None = None, annotator: str | None = None,
              at: str | None = None) -> Records:
    """Item records from a CSV, JSONL or Parquet file (optionally compressed). Item fields: `text_field` (a text
    task may give `prompt`, a rating task `prompt` and `response`, a preference task `prompt`, `a`, `b`). A label
    column becomes the gold answer (`as_="gold"`) or an annotation by `annotator` (default `file:<name>`) made
    `at` (default now). Keys: the id column, else a hash of the item's data. A row repeating an earlier one is
    skipped and counted; the same key with other data or another label is an error."""
    if as_ not in (None, "gold", "annotation"):
        raise AnnotationError(f"as_ is 'gold' or 'annotation' (got {as_!r})")
    if as_ is not None and not label_field:
        raise AnnotationError(f"importing labels as {as_} needs the label column (label_field)")
    path = Path(path)
    try:
        rows = read_records(path, "annotation items")
    except LmwrightError as exc:
        raise AnnotationError(str(exc)) from None
    who, when = annotator or f"file:{path.name}", at or now_iso()
    out = Records(counts={"rows": 0, "duplicates": 0, "unlabelled": 0})
    seen: dict[str, tuple[int, dict]] = {}
    for line, row, why in rows:
        where = f"{path}:{line}"
        if row is None:
            raise AnnotationError(f"{where}: {why}")
        out.counts["rows"] += 1
        data = _row_data(task, row, text_field, where)
        if id_field:
            raw_id = row.get(id_field)
            if raw_id is None or not str(raw_id).strip():
                raise AnnotationError(f"{where}: column '{id_field}' is missing or empty; every row needs its id "
                                      "(or import without an id column to key rows by their text)")
            key = str(raw_id).strip()
        else:
            key = item_key(data)
        rec = {"key": key, "data": data, "source": f"file:{path.name}:{line}", "gold": None, "predictions": [],
               "annotations": [], "final": None}
        raw = row.get(label_field) if label_field else None
        if label_field and (raw is None or (isinstance(raw, str) and not raw.strip())):
            out.counts["unlabelled"] += 1
        elif label_field:
            value = _parse_label(task, raw, data, f"{where}: column '{label_field}'")
            if as_ == "gold":
                rec["gold"] = value
            else:
                rec["annotations"] = [{"annotator": who, "value": value, "created_at": when, "comment": None,
                                       "guideline_version": None}]
        if key in seen:
            first, prev = seen[key]
            if prev["data"] == data and prev["gold"] == rec["gold"] and [a["value"] for a in prev["annotations"]] \
                    == [a["value"] for a in rec["annotations"]]:
                out.counts["duplicates"] += 1
                continue
            what = "data" if prev["data"] != data else "label"
            raise AnnotationError(f"{where}: key {key!r} repeats line {first} with another {what}; give each item "
                                  "one row (or distinct ids)")
        seen[key] = (line, rec)
        out.append(rec)
    return out


def _row_data(task: Task, row: dict, text_field: str, where: str) -> dict:
    k = task.kind
    if k == "preference":
        cols, optional = ["prompt", "a", "b"], []
    elif k == "text" and text_field not in row and "prompt" in row:
        cols, optional = ["prompt"], []
    elif k == "rating" and text_field not in row and "response" in row:
        cols, optional = ["response"], ["prompt"]
    else:
        cols, optional = [text_field], []
    data = {}
    for col in cols + optional:
        v = row.get(col)
        if col in optional and (v is None or v == ""):
            continue
        if not isinstance(v, str) or not v.strip():
            got = "missing" if v is None else ("empty" if isinstance(v, str) else f"a {type(v).__name__}")
            raise AnnotationError(f"{where}: column '{col}' is {got}; a {k} item needs the column(s) "
                                  f"{', '.join(repr(c) for c in cols)}")
        data["text" if col == text_field and k not in ("preference",) else col] = v
    return check_item(task, data, where)


def _parse_label(task: Task, raw: Any, data: dict, where: str) -> dict:
    """A label cell as an answer: a label, `a|b` or a JSON list (multilabel), JSON spans, a/b/tie, a text, a
    whole number; or the answer object itself (JSONL)."""
    k = task.kind
    if isinstance(raw, dict):
        return check_value(task, raw, data, where)
    if isinstance(raw, str) and k in ("multilabel", "spans") and raw.strip()[:1] in "[{":
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise AnnotationError(f"{where}: not valid JSON ({exc.msg}, column {exc.colno})") from None
    if k == "classification":
        value: dict = {"label": raw.strip() if isinstance(raw, str) else str(raw)}
    elif k == "multilabel":
        value = {"labels": [x.strip() for x in raw.split("|") if x.strip()] if isinstance(raw, str) else raw}
    elif k == "spans":
        value = raw if isinstance(raw, dict) else {"spans": raw}
    elif k == "preference":
        value = {"choice": raw.strip().lower() if isinstance(raw, str) else raw}
    elif k == "text":
        value = {"text": raw}
    else:
        value = {"rating": int(raw) if isinstance(raw, str) and re.fullmatch(r"\s*[+-]?\d+\s*", raw) else raw}
    return check_value(task, value, data, where)


# --- exports of final labels ---------------------------------------------------------------------------------------

def _final(rec: dict, task: Task) -> dict | None:
    final = rec.get("final")
    if not final:
        return None
    where = f"item {rec.get('key')!r}"
    data = check_item(task, rec.get("data"), f"{where}: data")
    return check_value(task, final.get("value"), data, f"{where}: final")


def to_finetune(records: Iterable[dict], task: Task, with_key: bool = False) -> Records:
    """Rows for fine-tuning from the final labels (finetune/formats.py reads them): classification and rating
    `{text, label}`, text tasks OpenAI chat `{messages}`, preference `{prompt, chosen, rejected}`; multilabel
    `{text, labels}` and spans `{text, spans}` for other tools. `counts`: records, exported, no_final, ties and
    same_answers (a preference whose two answers are equal: nothing to learn)."""
    out = Records(counts=dict.fromkeys(("records", "exported", "no_final", "ties", "same_answers"), 0))
    instruction = task.extra.get("instruction")
    for rec in records:
        out.counts["records"] += 1
        value, data = _final(rec, task), rec.get("data") or {}
        if value is None:
            out.counts["no_final"] += 1
            continue
        k = task.kind
        if k == "classification":
            row: dict = {"text": data["text"], "label": value["label"]}
        elif k == "multilabel":
            row = {"text": data["text"], "labels": value["labels"]}
        elif k == "spans":
            row = {"text": data["text"], "spans": value["spans"]}
        elif k == "preference":
            if value["choice"] == "tie":
                out.counts["ties"] += 1
                continue
            chosen, rejected = (data["a"], data["b"]) if value["choice"] == "a" else (data["b"], data["a"])
            if chosen == rejected:
                out.counts["same_answers"] += 1
                continue
            row = {"prompt": data["prompt"], "chosen": chosen, "rejected": rejected}
        elif k == "text":
            prompt = data.get("prompt") or data["text"]
            prompt = f"{instruction}\n\n{prompt}" if instruction and "prompt" not in data else prompt
            row = {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": value["text"]}]}
        else:
            text = data.get("text") or "\n\n".join(x for x in (data.get("prompt"), data.get("response")) if x)
            row = {"text": text, "label": str(value["rating"]), "rating": value["rating"]}
        if with_key:
            row["key"] = rec["key"]
        out.append(row)
        out.counts["exported"] += 1
    return out


def write_jsonl(rows: Iterable[dict], path: Path) -> int:
    """One JSON object per line; the number of rows written."""
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    write_text(Path(path), "".join(line + "\n" for line in lines))
    return len(lines)


PARQUET_COLUMNS = ("key", "task", "kind", "text", "data", "value", "by", "at", "how", "guideline_version",
                   "n_annotations", "annotators", "answers", "source")


def write_parquet(records: Iterable[dict], task: Task, path: Path) -> dict[str, int]:
    """One row per item with a final label (key, text, data and value as JSON, by, at, how, guideline version,
    annotation count, annotators, every answer as JSON (who, what, when, which guidelines, comment), source):
    the labels with the work behind them; `{"written", "no_final"}`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("key", pa.string()), ("task", pa.string()), ("kind", pa.string()), ("text", pa.string()),
                        ("data", pa.string()), ("value", pa.string()), ("by", pa.string()), ("at", pa.string()),
                        ("how", pa.string()), ("guideline_version", pa.int64()), ("n_annotations", pa.int64()),
                        ("annotators", pa.list_(pa.string())), ("answers", pa.string()), ("source", pa.string())])
    cols: dict[str, list] = {c: [] for c in PARQUET_COLUMNS}
    skipped = 0
    for rec in records:
        value = _final(rec, task)
        if value is None:
            skipped += 1
            continue
        data, final, anns = rec.get("data") or {}, rec["final"], rec.get("annotations") or []
        row = {"key": str(rec["key"]), "task": task.name, "kind": task.kind,
               "text": data.get("text", data.get("prompt")), "data": json.dumps(data, ensure_ascii=False),
               "value": json.dumps(value, ensure_ascii=False), "by": final.get("by"), "at": final.get("at"),
               "how": final.get("how"), "guideline_version": final.get("guideline_version"),
               "n_annotations": len(anns), "annotators": sorted({a["annotator"] for a in anns}),
               "answers": json.dumps(anns, ensure_ascii=False), "source": rec.get("source")}
        for c in PARQUET_COLUMNS:
            cols[c].append(row[c])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(pa.table(cols, schema=schema), tmp)
    os.replace(tmp, path)
    return {"written": len(cols["key"]), "no_final": skipped}
