"""Which fine-tunings fit a project's data, decided from the spec alone, before any work starts.

A recipe runs when its rows exist: a `finetune.<recipe>.data` file, or rows made from the documents (a pydocs
source gives instructions, chapter labels and preference pairs; a source that carries labels, `label_fields` or
`label_columns`, gives the classifier its labels). Otherwise it is skipped with one line saying what it would need,
so a project on a user's own corpus runs to its report card instead of failing after pretraining.

Some shortfalls show only in the data (a label with one class, too few documents): the recipe raises
`RecipeSkipped`, and the stage records the skip with that reason instead of failing the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lmwright.errors import LmwrightError

KINDS = ("sft", "classify", "preference")

# what each recipe would need, said when it is skipped
NEEDS = {
    "sft": "instruction rows: set finetune.sft.data to a JSONL or Parquet file of Alpaca ({instruction, output}), "
           "ShareGPT ({conversations}) or OpenAI ({messages}) rows",
    "classify": "labelled text: name a label in a source (label_fields: [FIELD] on a files source, label_columns "
                "on a sql source) or set finetune.classify.data to a JSONL/CSV of {text, label} rows",
    "preference": "preference pairs: set finetune.preference.data to a JSONL of {prompt, chosen, rejected} rows",
}


class RecipeSkipped(LmwrightError):
    """The recipe's rows, made from the documents, are too few to train and judge it on; the reason says why."""


@dataclass(frozen=True)
class Fit:
    kind: str
    runs: bool
    rows: str  # where its rows come from, or why it does not run

    def line(self) -> str:
        return f"{self.kind}: {'runs on ' if self.runs else 'skipped: '}{self.rows}"


def label_sources(spec) -> dict[str, list[str]]:
    """Source name -> the labels its documents carry (pydocs: its chapter)."""
    out: dict[str, list[str]] = {}
    for s in spec.data.sources:
        names = ["chapter"] if s.kind == "pydocs" else list(getattr(s, "label_fields", None)
                                                             or getattr(s, "label_columns", None) or [])
        if names:
            out[s.name] = names
    return out


def classify_label(spec) -> tuple[str, list[str]] | None:
    """(the label the classifier learns, the sources whose documents carry it), or None when no source has labels.
    `finetune.classify.label` chooses; unset, a label of the user's own sources comes before pydocs' chapter."""
    carried = label_sources(spec)
    want = spec.finetune.classify.label
    if want is None:
        own = [n for src, names in carried.items() if src not in spec.data.pydocs_sources() for n in names]
        want = own[0] if own else ("chapter" if carried else None)
    if want is None:
        return None
    return want, [src for src, names in carried.items() if want in names]


def recipe_fit(spec, kind: str) -> Fit:
    recipe = getattr(spec.finetune, kind)
    if not recipe.enabled:
        rows = _rows_fit(spec, kind)
        return Fit(kind, False, f"off (finetune.{kind}.enabled: false; `lmwright finetune {kind}` runs it)"
                   if rows.runs else f"off, and {rows.rows}")
    return _rows_fit(spec, kind)


def _rows_fit(spec, kind: str) -> Fit:
    """Whether the recipe has rows, ignoring `enabled`."""
    recipe = getattr(spec.finetune, kind)
    if recipe.data:
        return Fit(kind, True, recipe.data)
    pydocs = spec.data.pydocs_sources()
    if kind == "classify":
        found = classify_label(spec)
        if found and found[1]:
            return Fit(kind, True, f"the documents' {found[0]!r} label ({', '.join(found[1])})")
        if found:
            carried = "; ".join(f"{src}: {', '.join(names)}" for src, names in label_sources(spec).items())
            return Fit(kind, False, f"no source carries the label finetune.classify.label: {found[0]!r} "
                                    f"(labels carried: {carried or 'none'})")
        return Fit(kind, False, "no labels; it needs " + NEEDS[kind])
    if pydocs:
        made = {"sft": "instructions", "preference": "preference pairs"}[kind]
        return Fit(kind, True, f"{made} made from the {', '.join(sorted(pydocs))} documents")
    return Fit(kind, False, "no rows; it needs " + NEEDS[kind])


def fits(spec) -> dict[str, Fit]:
    return {k: recipe_fit(spec, k) for k in KINDS}


def with_data_paths(spec, root: Path):
    """`spec` with each recipe's `data` and `val_data` made absolute against the project directory (the recipes may
    run in torchrun workers, whose directory is not the project's)."""
    ft, update = spec.finetune, {}
    for kind in KINDS:
        r = getattr(ft, kind)
        paths = {k: str(Path(root) / v) for k in ("data", "val_data") if (v := getattr(r, k)) and not Path(v).is_absolute()}
        if paths:
            update[kind] = r.model_copy(update=paths)
    return spec.model_copy(update={"finetune": ft.model_copy(update=update)}) if update else spec


def check_files(spec, root: Path, kinds: tuple[str, ...] = KINDS) -> None:
    """Refuse, before any work, a recipe that runs on a data file that is not there."""
    missing = []
    for kind in kinds:
        r = getattr(spec.finetune, kind)
        if not r.enabled:
            continue
        for key in ("data", "val_data"):
            v = getattr(r, key)
            if v and not (Path(root) / v).is_file():
                missing.append(f"  finetune.{kind}.{key}: {v} is not a file (paths are relative to {root})")
    if missing:
        raise LmwrightError("fine-tuning data files are missing, so nothing was started:\n" + "\n".join(missing)
                            + "\nfix the path, or set the recipe's enabled: false")
