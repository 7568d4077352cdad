"""Reading and writing `lmwright.yaml`: `load_spec(path, overrides)` reads a YAML file (or the built-in default
project when there is none), applies `--set a.b=c` overrides and validates; a wrong field raises `SpecError`
naming the file, line, field, value and what is allowed. `dump_spec` writes a spec back as YAML."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from lmwright.errors import SpecError
from lmwright.spec.project import Spec

# the commented form of `Spec()` that `lmwright init` writes (it lives beside the package, in lmwright/)
DEFAULT_SPEC_TEXT = (Path(__file__).parent.parent / "default.yaml").read_text(encoding="utf-8")
SPEC_FILENAME = "lmwright.yaml"


def apply_override(raw: dict[str, Any], assignment: str) -> None:
    """Apply one `a.b=c` override to the raw (unvalidated) spec; the value is parsed as YAML."""
    if "=" not in assignment:
        raise SpecError(f"--set {assignment!r}: expected KEY=VALUE, e.g. --set train.max_steps=100")
    key, _, text = assignment.partition("=")
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise SpecError(f"--set {assignment!r}: the key is empty")
    value = yaml.safe_load(text) if text.strip() else None
    node: Any = raw
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise SpecError(f"--set {key}: {'.'.join(parts[: i + 1])} is a list; use an index below {len(node)}")
            node = node[int(part)]
            continue
        if not isinstance(node.get(part, {}), dict | list):
            raise SpecError(f"--set {key}: {'.'.join(parts[: i + 1])} is a value, not a section")
        node = node.setdefault(part, {})
    if isinstance(node, list):
        node[int(parts[-1])] = value
    else:
        node[parts[-1]] = value


def load_spec(path: Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Spec:
    """Load and validate a project spec; `path=None` means the built-in default project."""
    source = str(path) if path else "the built-in default spec"
    text = Path(path).read_text(encoding="utf-8") if path else DEFAULT_SPEC_TEXT
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}, line {mark.line + 1}" if mark else source
        raise SpecError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)}). Fix the syntax there.") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{source}: the top level must be a mapping of sections (project, data, model, ...)")
    lines = _line_index(text)
    for assignment in overrides:
        apply_override(raw, assignment)
    try:
        return Spec.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(_describe(exc, source, lines, overrides)) from None


def _describe(exc: ValidationError, source: str, lines: dict[tuple, int], overrides) -> str:
    msgs = []
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"] if not (isinstance(p, str) and p in ("pydocs", "files", "sql", "crawl")))
        field = ".".join(loc) or "(top level)"
        line = _nearest_line(lines, loc)
        where = f"{source}, line {line}" if line else source
        keys = [o.split("=")[0].strip() for o in overrides]
        hit = [k for k in keys if k == field or k.startswith(field + ".")]
        if hit:
            where = f"--set {', '.join(hit)}"
        value = err.get("input")
        if err["type"] == "extra_forbidden":
            allowed = _allowed_fields(loc[:-1])
            hint = difflib.get_close_matches(loc[-1], allowed, n=1)
            fix = f"did you mean '{hint[0]}'? " if hint else ""
            msgs.append(f"{where}: unknown field '{field}'. {fix}Allowed here: {', '.join(allowed)}.")
        else:
            shown = "" if err["type"] == "missing" or isinstance(value, dict) else f" = {value!r}"
            msgs.append(f"{where}: {field}{shown}: {err['msg']}.")
    return "invalid project spec:\n  " + "\n  ".join(msgs)


def _allowed_fields(loc: tuple[str, ...]) -> list[str]:
    model: Any = Spec
    for part in loc:
        if part.isdigit():
            continue
        field = model.model_fields.get(part)
        if field is None:
            return []
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        candidates = [a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)]
        if not candidates:  # e.g. list[Source]: look inside
            for a in args:
                candidates += [b for b in getattr(a, "__args__", ()) if isinstance(b, type) and issubclass(b, BaseModel)]
        if not candidates:
            return []
        model = candidates[0]
    return [f.alias or name for name, f in model.model_fields.items()]  # as the file spells them (`from`)


def _line_index(text: str) -> dict[tuple, int]:
    """Map each key path in the YAML text to its 1-based line number."""
    index: dict[tuple, int] = {}
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return index

    def walk(node, path):
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                p = (*path, str(k.value))
                index[p] = k.start_mark.line + 1
                walk(v, p)
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                p = (*path, str(i))
                index[p] = v.start_mark.line + 1
                walk(v, p)

    if root is not None:
        walk(root, ())
    return index


def _nearest_line(lines: dict[tuple, int], loc: tuple[str, ...]) -> int | None:
    for n in range(len(loc), 0, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


def dump_spec(spec: Spec) -> str:
    return yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)
