"""The `annotate` section: the project's annotation tasks (annotate/), each with its kind, labels, where its items
come from, its guidelines file, how many annotators see each item, who reviews, and how the queue is ordered."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from lmwright.spec.base import Section

KINDS = ("classification", "multilabel", "spans", "preference", "text", "rating")  # as annotate/tasks.py


class ItemsSpec(Section):
    """Where a task's items come from: nowhere but `lmwright annotate import` (none, the default), a split of the
    project's documents, a file (JSONL, CSV, Label Studio JSON), or the served request log (prompts kept with
    `serve.log_prompts`)."""

    from_: Literal["none", "split", "file", "requests"] = Field("none", alias="from")
    split: Literal["train", "val"] = "train"  # never test: the test split is read by the final evaluation only
    path: str | None = None  # from: file (relative to the project)
    text_field: str = "text"
    id_field: str | None = None  # a file's own item ids (else a hash of the text)
    label_field: str | None = None  # a file's labels, imported as gold answers
    limit: int = Field(200, ge=1)  # at most this many items (a stable sample by id)
    max_chars: int = Field(2000, ge=50)  # longer texts are cut, at a line end where there is one

    model_config = {**Section.model_config, "populate_by_name": True}

    @model_validator(mode="after")
    def _has_path(self) -> ItemsSpec:
        if self.from_ == "file" and not self.path:
            raise ValueError("items from a file need its path (items: {from: file, path: items.jsonl})")
        return self


class TaskSpec(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    kind: Literal["classification", "multilabel", "spans", "preference", "text", "rating"]
    labels: list[str] = Field(default_factory=list)
    scale: tuple[int, int] = (1, 5)  # a rating's low and high
    items: ItemsSpec = Field(default_factory=ItemsSpec)
    guidelines: str | None = None  # a markdown file (relative to the project), shown beside each item
    overlap: int = Field(2, ge=1, le=10)  # how many annotators answer each item
    gold_every: int = Field(10, ge=0)  # every Nth item an annotator gets is a gold item, when there are any (0: never)
    reviewers: list[str] = Field(default_factory=list)  # key names that may adjudicate (admin keys always may)
    order: Literal["sequential", "random", "least_confidence", "margin", "entropy"] = "sequential"
    suggest: bool = True  # show the quick model's suggestion (classification) once there are enough labels

    @model_validator(mode="after")
    def _labels_fit(self) -> TaskSpec:
        if self.kind in ("classification", "multilabel", "spans") and len(self.labels) < (
                1 if self.kind == "spans" else 2):
            raise ValueError(f"task '{self.name}': a {self.kind} task needs its labels "
                             f"(labels: [{', '.join(['a', 'b'])}])")
        if self.order in ("least_confidence", "margin", "entropy") and self.kind != "classification":
            raise ValueError(f"task '{self.name}': order '{self.order}' ranks by a classifier's uncertainty, which "
                             f"only a classification task has; use sequential or random")
        if self.scale[0] >= self.scale[1]:
            raise ValueError(f"task '{self.name}': scale needs low < high (got {list(self.scale)})")
        return self


class AnnotateSpec(Section):
    tasks: list[TaskSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> AnnotateSpec:
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"annotation task names must be unique (got {names})")
        return self

    @model_validator(mode="before")
    @classmethod
    def _labels_once(cls, data):
        for t in (data or {}).get("tasks") or [] if isinstance(data, dict) else []:
            labels = t.get("labels") if isinstance(t, dict) else None
            if isinstance(labels, list) and len(set(map(str, labels))) != len(labels):
                raise ValueError(f"task '{t.get('name')}': labels repeat: {labels}")
        return data

    def task(self, name: str) -> TaskSpec:
        for t in self.tasks:
            if t.name == name:
                return t
        known = ", ".join(t.name for t in self.tasks) or "none yet: add one under annotate.tasks"
        raise KeyError(f"no annotation task '{name}' in the project file (tasks: {known})")
