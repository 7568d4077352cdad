"""Annotation task kinds, the shape of an item and of an answer for each, and the one check every answer passes
(from the web tool, an import or the Python API) before it is stored.

| kind | item `data` | answer `value` |
|---|---|---|
| `classification` | `{"text"}` | `{"label": L}` |
| `multilabel` | `{"text"}` | `{"labels": [L, ...]}` (may be empty: none applies) |
| `spans` | `{"text"}` | `{"spans": [{"start", "end", "label"}]}`: character offsets into the text, end exclusive |
| `preference` | `{"prompt", "a", "b"}` | `{"choice": "a" | "b" | "tie"}` |
| `text` | `{"text"}` or `{"prompt"}` | `{"text": T}`: a written answer (an instruction's response, a rewrite) |
| `rating` | `{"text"}` (or `{"prompt", "response"}`) | `{"rating": N}` with `low <= N <= high` |
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lmwright.errors import LmwrightError

KINDS = ("classification", "multilabel", "spans", "preference", "text", "rating")
LABELLED = ("classification", "multilabel", "spans")  # kinds whose answers name labels from the task's label set
CHOICES = ("a", "b", "tie")


class AnnotationError(LmwrightError):
    """Bad annotation input: the message names where (file, task, item, field) and the fix."""


class ConflictError(AnnotationError):
    """Someone else changed the item (or this annotation) since the caller read it: reload and redo."""


@dataclass(frozen=True)
class Task:
    name: str
    kind: str
    labels: tuple[str, ...] = ()
    low: int = 1  # a rating's scale
    high: int = 5
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise AnnotationError(f"task '{self.name}': kind '{self.kind}' is not one of {', '.join(KINDS)}")
        if self.kind in LABELLED and not self.labels:
            raise AnnotationError(f"task '{self.name}': a {self.kind} task needs its labels (labels: [a, b, ...])")
        if len(set(self.labels)) != len(self.labels):
            raise AnnotationError(f"task '{self.name}': labels repeat: {list(self.labels)}")
        if self.kind == "rating" and not self.low < self.high:
            raise AnnotationError(f"task '{self.name}': a rating scale needs low < high (got {self.low}..{self.high})")


def _where(task: Task, where: str) -> str:
    return f"{where}: " if where else f"task '{task.name}': "


def _unicode(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise AnnotationError(f"{where}: not valid Unicode text (a lone surrogate); fix the text") from None


def check_item(task: Task, data: Any, where: str = "") -> dict:
    """The item's data as stored; an error naming the missing field otherwise."""
    at = _where(task, where)
    if not isinstance(data, dict):
        raise AnnotationError(f"{at}an item is an object with its fields (got {type(data).__name__})")
    need = {"preference": ("prompt", "a", "b")}.get(task.kind)
    if need is None:
        need = ("text",) if task.kind != "text" or "prompt" not in data else ("prompt",)
        if task.kind == "rating" and "text" not in data and "response" in data:
            need = ("response",)
    for f in need:
        if not isinstance(data.get(f), str) or not data[f].strip():
            raise AnnotationError(f"{at}field '{f}' is missing or empty; a {task.kind} item needs "
                                  f"{', '.join(repr(n) for n in need)}")
    for f, v in data.items():
        if isinstance(v, str):
            _unicode(v, f"{at}field '{f}'")
    return data


def check_value(task: Task, value: Any, data: dict | None = None, where: str = "") -> dict:
    """The answer normalised (labels sorted, spans ordered); an `AnnotationError` that names the field and the
    allowed values otherwise: a label outside the label set, a span outside the text, a rating off the scale."""
    at = _where(task, where)
    if not isinstance(value, dict):
        raise AnnotationError(f"{at}an answer is an object (got {type(value).__name__})")
    allowed = ", ".join(task.labels)
    k = task.kind
    if k == "classification":
        label = value.get("label")
        if label not in task.labels:
            raise AnnotationError(f"{at}field 'label': {label!r} is not in the label set ({allowed})")
        return {"label": label}
    if k == "multilabel":
        labels = value.get("labels")
        if not isinstance(labels, list) or any(x not in task.labels for x in labels):
            bad = labels if not isinstance(labels, list) else [x for x in labels if x not in task.labels]
            raise AnnotationError(f"{at}field 'labels': {bad!r} not in the label set ({allowed})")
        return {"labels": sorted(set(labels), key=task.labels.index)}
    if k == "spans":
        spans, out = value.get("spans"), []
        if not isinstance(spans, list):
            raise AnnotationError(f"{at}field 'spans' is a list of {{start, end, label}}")
        n = len((data or {}).get("text", "")) if data else None
        for i, s in enumerate(spans):
            ok = isinstance(s, dict) and all(isinstance(s.get(f), int) and not isinstance(s.get(f), bool)
                                             for f in ("start", "end"))
            if not ok or not 0 <= s["start"] < s["end"] or (n is not None and s["end"] > n):
                raise AnnotationError(f"{at}field 'spans[{i}]': start and end are character offsets with "
                                      f"0 <= start < end <= {n if n is not None else 'len(text)'} (got {s!r})")
            if s.get("label") not in task.labels:
                raise AnnotationError(f"{at}field 'spans[{i}].label': {s.get('label')!r} is not in the label set "
                                      f"({allowed})")
            out.append({"start": s["start"], "end": s["end"], "label": s["label"]})
        keys = [(s["start"], s["end"], s["label"]) for s in out]
        if len(set(keys)) != len(keys):
            raise AnnotationError(f"{at}field 'spans': the same span is given twice ({sorted(keys)})")
        return {"spans": sorted(out, key=lambda s: (s["start"], s["end"], s["label"]))}
    if k == "preference":
        if value.get("choice") not in CHOICES:
            raise AnnotationError(f"{at}field 'choice': {value.get('choice')!r} is not one of a, b, tie")
        return {"choice": value["choice"]}
    if k == "text":
        text = value.get("text")
        if not isinstance(text, str) or not text.strip():
            raise AnnotationError(f"{at}field 'text': a written answer is a non-empty string")
        _unicode(text, f"{at}field 'text'")
        return {"text": text}
    r = value.get("rating")
    if not isinstance(r, int) or isinstance(r, bool) or not task.low <= r <= task.high:
        raise AnnotationError(f"{at}field 'rating': {r!r} is not a whole number from {task.low} to {task.high}")
    return {"rating": r}


def category(task: Task, value: dict) -> Any:
    """The answer as one comparable category, for agreement and adjudication: the label, the sorted label tuple,
    the span tuple, the choice, the rating; a written text is compared after whitespace is collapsed."""
    k = task.kind
    if k == "classification":
        return value["label"]
    if k == "multilabel":
        return tuple(sorted(value["labels"]))  # the set, whatever order the task lists its labels in
    if k == "spans":
        return tuple((s["start"], s["end"], s["label"]) for s in value["spans"])
    if k == "preference":
        return value["choice"]
    if k == "text":
        return " ".join(value["text"].split())
    return value["rating"]
