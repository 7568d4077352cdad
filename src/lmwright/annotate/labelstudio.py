"""Label Studio JSON in and out: import an export (tasks with `data`, `annotations`, `predictions`), export item
records the same way, and write the labeling config that sets up the same project there. Pure functions over
item records (see annotate/formats.py); every answer passes `check_value`, and a bad file stops with an
`AnnotationError` naming the file, the task (index from 0, and id) and the field, e.g.
`tasks.json: task 3 (id 17): annotations[0].result[1].value.choices: 'foo' is not in the label set (a, b)`.

The mapping. One control per task: its name is `task.extra["from_name"]` (default "label"; when it is
not set, results of any control of the right type are read), the object it labels `task.extra["to_name"]`
(default "text"); the item's text lives in the task data under `task.extra["text_field"]` (default "text").

| kind | result `type` | result `value` |
|---|---|---|
| classification | choices | `{"choices": [L]}` |
| multilabel | choices | `{"choices": [L, ...]}`; no result means none applies |
| spans | labels | `{"start", "end", "text", "labels": [L]}`, one result per span; no result means no spans |
| preference | pairwise | `{"selected": "left" | "right"}`: a is left, b is right (a tie: see below) |
| text | textarea | `{"text": [T, ...]}` (several boxes are joined by newlines) |
| rating | rating | `{"rating": n}`; Label Studio's stars start at 1, so n = rating - low + 1 |

A preference item's data in Label Studio is `{"prompt", "answer1", "answer2"}` (`a` and `b` are read too); Label
Studio's Pairwise has no tie, so a tie is a `choices` result `["tie"]` of a second control `<from_name>_tie`
(`labelstudio_config` adds it).

`completed_by`: a user id n becomes the annotator `labelstudio:n`, a user object its email; on export
`labelstudio:n` goes back to n and any other annotator to `{"email": annotator}`. Span offsets are code points;
old Label Studio versions wrote UTF-16 offsets (HumanSignal/label-studio#1347), which are converted when the
result's `text` matches only that way. What Label Studio has no place for (the item key, its source, the gold
answer, the final label, an annotation's comment and guideline version) travels in the task's `meta.lmwright`,
so an export imports back exactly. Cancelled annotations (`was_cancelled`) are skipped and counted; an annotation
with no result of the control is counted as empty (for multilabel and spans it means "none").
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from lmwright.annotate.formats import Records, item_key, type_name, write_text
from lmwright.annotate.tasks import AnnotationError, Task, check_item, check_value

RESULT_TYPE = {"classification": "choices", "multilabel": "choices", "spans": "labels", "preference": "pairwise",
               "text": "textarea", "rating": "rating"}
PAIR_FIELDS = (("a", "answer1"), ("b", "answer2"))  # ours -> Label Studio's data key


def _names(task: Task) -> tuple[str, str, str]:
    """(from_name, to_name, text_field) of the task's Label Studio project."""
    to = "answer1,answer2" if task.kind == "preference" else "text"
    return (task.extra.get("from_name") or "label", task.extra.get("to_name") or to,
            task.extra.get("text_field") or "text")


# --- Label Studio import -------------------------------------------------------------------------------------------

def read_labelstudio(path: Path, task: Task) -> Records:
    """Item records from a Label Studio JSON export (a list of tasks). `counts`: tasks, annotations, predictions,
    cancelled, empty, ignored_results (results of other controls or types)."""
    path, name = Path(path), str(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise AnnotationError(f"{name}: cannot read this Label Studio file ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise AnnotationError(f"{name}: not UTF-8 (byte {exc.start}: {exc.reason}); export it again") from None
    try:
        tasks = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AnnotationError(f"{name}: line {exc.lineno}, column {exc.colno}: not valid JSON ({exc.msg}); "
                              "export the project again (Export > JSON)") from None
    if isinstance(tasks, dict) and "data" in tasks:
        tasks = [tasks]  # one task on its own
    if not isinstance(tasks, list):
        raise AnnotationError(f"{name}: a Label Studio export is a JSON list of tasks (got {type_name(tasks)})")
    out = Records(counts=dict.fromkeys(("tasks", "annotations", "predictions", "cancelled", "empty",
                                        "ignored_results"), 0))
    seen: dict[str, str] = {}
    for i, t in enumerate(tasks):
        tid = t.get("id") if isinstance(t, dict) else None
        at = f"{name}: task {i}" + (f" (id {tid})" if tid is not None else "")
        rec = _ls_task(t, path, i, at, task, out.counts)
        if rec["key"] in seen:
            raise AnnotationError(f"{at}: item key {rec['key']!r} repeats {seen[rec['key']]}; each task is one item")
        seen[rec["key"]] = f"task {i}"
        out.append(rec)
        out.counts["tasks"] += 1
    return out


def _ls_task(t: Any, path: Path, i: int, at: str, task: Task, counts: dict[str, int]) -> dict:
    if not isinstance(t, dict):
        raise AnnotationError(f"{at}: a task is an object with 'data' (got {type_name(t)})")
    meta = t.get("meta") if isinstance(t.get("meta"), dict) else {}
    ours = meta.get("lmwright") if isinstance(meta.get("lmwright"), dict) else {}
    raw = t.get("data")
    if not isinstance(raw, dict):
        raise AnnotationError(f"{at}: data: an object with the item's fields (got {type_name(raw)})")
    data = _data_in(task, raw, f"{at}: data")
    tid = t.get("id")
    key = ours.get("key") or (str(tid) if tid is not None else item_key(data))
    notes = ours.get("annotations") if isinstance(ours.get("annotations"), dict) else {}
    gold = (check_value(task, ours["gold"], data, f"{at}: meta.lmwright.gold")
            if ours.get("gold") is not None else None)
    annotations = []
    listed = t.get("annotations", t.get("completions")) or []  # "completions": Label Studio before 1.0
    if not isinstance(listed, list):
        raise AnnotationError(f"{at}: annotations: a list (got {type_name(listed)})")
    for j, a in enumerate(listed):
        wa = f"{at}: annotations[{j}]"
        if not isinstance(a, dict):
            raise AnnotationError(f"{wa}: an annotation is an object with 'result' (got {type_name(a)})")
        if a.get("was_cancelled"):
            counts["cancelled"] += 1
            continue
        value = _ls_value(task, a.get("result"), data, wa, counts)
        if value is None:
            counts["empty"] += 1
            continue
        note = notes.get(str(a.get("id"))) or {}
        created = a.get("created_at")
        annotations.append({"annotator": _annotator(a, wa), "value": value,
                            "created_at": str(created) if created is not None else None,
                            "comment": note.get("comment"), "guideline_version": note.get("guideline_version")})
        if a.get("ground_truth") and "gold" not in ours and gold is None:
            gold = value  # a Label Studio ground-truth annotation is the item's gold answer
        counts["annotations"] += 1
    predictions = []
    listed = t.get("predictions") or []
    if not isinstance(listed, list):
        raise AnnotationError(f"{at}: predictions: a list (got {type_name(listed)})")
    for j, p in enumerate(listed):
        wp = f"{at}: predictions[{j}]"
        if not isinstance(p, dict):
            raise AnnotationError(f"{wp}: a prediction is an object with 'result' (got {type_name(p)})")
        value = _ls_value(task, p.get("result"), data, wp, counts)
        score = p.get("score")
        if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float))):
            raise AnnotationError(f"{wp}.score: a number (got {score!r})")
        if value is None:
            counts["empty"] += 1
            continue
        predictions.append({"value": value, "score": float(score) if score is not None else None,
                            "model": str(p.get("model_version") or "labelstudio")})
        counts["predictions"] += 1
    final = ours.get("final")
    if final is not None:
        if not isinstance(final, dict) or "value" not in final:
            raise AnnotationError(f"{at}: meta.lmwright.final: an object with value, by, at, how")
        final = {**final, "value": check_value(task, final["value"], data, f"{at}: meta.lmwright.final.value")}
    source = ours.get("source") or f"labelstudio:{path.name}#{tid if tid is not None else i}"
    return {"key": str(key), "data": data, "source": source, "gold": gold, "predictions": predictions,
            "annotations": annotations, "final": final}


def _data_in(task: Task, raw: dict, where: str) -> dict:
    data = dict(raw)
    text_field = _names(task)[2]
    if text_field != "text" and text_field in data:
        data["text"] = data.pop(text_field)
    if task.kind == "preference":
        for ours, theirs in PAIR_FIELDS:
            if theirs in data and ours not in data:
                data[ours] = data.pop(theirs)
    return check_item(task, data, where)


def _annotator(a: dict, where: str) -> str:
    who = a.get("completed_by")
    if isinstance(who, dict):  # newer exports expand the user
        who = who.get("email") or (f"labelstudio:{who['id']}" if who.get("id") is not None else None)
    elif isinstance(who, int) and not isinstance(who, bool):
        who = f"labelstudio:{who}"
    if not isinstance(who, str) or not who.strip():
        raise AnnotationError(f"{where}.completed_by: a user id, a user object with an email, or a name "
                              f"(got {a.get('completed_by')!r}); who made this annotation?")
    return who


def _labels(v: dict, name: str, where: str, task: Task) -> list[str]:
    got = v.get(name)
    if not isinstance(got, list) or not all(isinstance(x, str) for x in got):
        raise AnnotationError(f"{where}.value.{name}: a list of label names (got {got!r})")
    for x in got:
        if x not in task.labels:
            raise AnnotationError(f"{where}.value.{name}: {x!r} is not in the label set ({', '.join(task.labels)})")
    return got


def _ls_value(task: Task, result: Any, data: dict, where: str, counts: dict[str, int]) -> dict | None:
    """The answer in one annotation's (or prediction's) result list, checked; None when it holds none."""
    if not isinstance(result, list):
        raise AnnotationError(f"{where}.result: a list of result items (got {type_name(result)})")
    kind, want = task.kind, RESULT_TYPE[task.kind]
    control = task.extra.get("from_name")
    hits, controls = [], set()
    for k, r in enumerate(result):
        wr = f"{where}.result[{k}]"
        if not isinstance(r, dict):
            raise AnnotationError(f"{wr}: a result item is an object with from_name, to_name, type and value")
        name = str(r.get("from_name"))
        is_tie = kind == "preference" and r.get("type") == "choices" and (
            name == f"{control}_tie" if control else name.endswith("_tie"))
        if control and name != (f"{control}_tie" if is_tie else control):
            counts["ignored_results"] += 1
            continue
        if r.get("type") != want and not is_tie:
            counts["ignored_results"] += 1
            continue
        if not isinstance(r.get("value"), dict):
            raise AnnotationError(f"{wr}.value: an object (got {type_name(r.get('value'))})")
        if not is_tie:
            controls.add(name)
        hits.append((wr, r["type"], r["value"]))
    if len(controls) > 1:
        raise AnnotationError(f"{where}: {want} results from several controls ({', '.join(sorted(controls))}); "
                              "set the task's from_name to the one to import")
    value = _value_from_hits(task, hits, data, where)
    return None if value is None else check_value(task, value, data, where)


def _value_from_hits(task: Task, hits: list, data: dict, where: str) -> dict | None:
    kind = task.kind
    if kind == "multilabel":
        labels: list[str] = []
        for wr, _, v in hits:
            labels += _labels(v, "choices", wr, task)
        return {"labels": labels}
    if kind == "spans":
        return {"spans": [s for wr, _, v in hits for s in _spans(v, data["text"], wr, task)]}
    if not hits:
        return None
    if len(hits) > 1 and kind != "preference":
        raise AnnotationError(f"{hits[1][0]}: a second {hits[1][1]} result; a {kind} answer is one")
    wr, _, v = hits[0]
    if kind == "classification":
        got = _labels(v, "choices", wr, task)
        if len(got) != 1:
            raise AnnotationError(f"{wr}.value.choices: a classification answer is one choice (got {got!r})")
        return {"label": got[0]}
    if kind == "preference":
        for wr, typ, v in hits:
            if typ == "choices":
                if v.get("choices") != ["tie"]:
                    raise AnnotationError(f"{wr}.value.choices: the tie control's one choice is 'tie' "
                                          f"(got {v.get('choices')!r})")
                return {"choice": "tie"}
        picked = [v.get("selected") for _, _, v in hits]
        if len(set(picked)) > 1 or picked[0] not in ("left", "right"):
            raise AnnotationError(f"{wr}.value.selected: 'left' (a) or 'right' (b) (got {picked!r})")
        return {"choice": "a" if picked[0] == "left" else "b"}
    if kind == "text":
        got = v.get("text")
        got = [got] if isinstance(got, str) else got
        if not isinstance(got, list) or not got or not all(isinstance(x, str) for x in got):
            raise AnnotationError(f"{wr}.value.text: a list of strings (got {v.get('text')!r})")
        return {"text": "\n".join(got)}
    n = v.get("rating")  # rating
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= task.high - task.low + 1:
        raise AnnotationError(f"{wr}.value.rating: a whole number of stars from 1 to {task.high - task.low + 1} "
                              f"(the scale {task.low}..{task.high}; got {n!r})")
    return {"rating": n + task.low - 1}


def _spans(v: dict, text: str, where: str, task: Task) -> list[dict]:
    start, end = v.get("start"), v.get("end")
    for f, x in (("start", start), ("end", end)):
        if not isinstance(x, int) or isinstance(x, bool):
            raise AnnotationError(f"{where}.value.{f}: a character offset (got {x!r})")
    quoted = v.get("text")
    if isinstance(quoted, str) and text[start:end] != quoted:
        s16, e16 = _from_utf16(text, start), _from_utf16(text, end)
        if s16 is None or e16 is None or text[s16:e16] != quoted:
            raise AnnotationError(f"{where}.value: the text at {start}..{end} is {text[start:end]!r}, not the "
                                  f"span's text {quoted!r}; the offsets do not fit this item's text")
        start, end = s16, e16
    if not 0 <= start < end <= len(text):
        raise AnnotationError(f"{where}.value: start and end are offsets with 0 <= start < end <= {len(text)} "
                              f"(got {start}..{end})")
    return [{"start": start, "end": end, "label": x} for x in _labels(v, "labels", where, task)]


def _from_utf16(text: str, offset: int) -> int | None:
    """The code-point offset of a UTF-16 offset (what JavaScript counts), or None when it splits a pair."""
    units = 0
    for i, ch in enumerate(text):
        if units == offset:
            return i
        units += 2 if ord(ch) > 0xFFFF else 1
        if units > offset:
            return None
    return len(text) if units == offset else None


# --- Label Studio export -------------------------------------------------------------------------------------------

def write_labelstudio(records: Iterable[dict], task: Task, path: Path) -> int:
    """Write records as a Label Studio JSON export (tasks with data, annotations, predictions, meta.lmwright);
    the number of tasks written."""
    records = list(records)
    numeric = all(str(r.get("key", "")).isdigit() for r in records) and len({r["key"] for r in records}) == len(
        records)
    tasks = []
    for n, rec in enumerate(records):
        where = f"record {n} (key {rec.get('key')!r})"
        data = check_item(task, rec.get("data"), f"{where}: data")
        gold = rec.get("gold")
        anns, notes = [], {}
        for j, a in enumerate(rec.get("annotations") or []):
            value = check_value(task, a["value"], data, f"{where}: annotations[{j}]")
            ann = {"id": j + 1, "completed_by": _completed_by(a["annotator"]),
                   "result": _ls_result(task, value, data), "was_cancelled": False,
                   "ground_truth": gold is not None and value == gold}
            if a.get("created_at") is not None:
                ann["created_at"] = a["created_at"]
            anns.append(ann)
            if a.get("comment") is not None or a.get("guideline_version") is not None:
                notes[str(j + 1)] = {"comment": a.get("comment"), "guideline_version": a.get("guideline_version")}
        preds = []
        for j, p in enumerate(rec.get("predictions") or []):
            value = check_value(task, p["value"], data, f"{where}: predictions[{j}]")
            pred = {"model_version": p.get("model") or "labelstudio", "result": _ls_result(task, value, data)}
            if p.get("score") is not None:
                pred["score"] = p["score"]
            preds.append(pred)
        meta = {"key": str(rec["key"]), "source": rec.get("source"), "task": task.name, "gold": gold,
                "final": rec.get("final"), "annotations": notes}
        tasks.append({"id": int(rec["key"]) if numeric else n + 1, "data": _data_out(task, data),
                      "annotations": anns, "predictions": preds, "meta": {"lmwright": meta}})
    write_text(Path(path), json.dumps(tasks, ensure_ascii=False, indent=1) + "\n")
    return len(tasks)


def _data_out(task: Task, data: dict) -> dict:
    out = dict(data)
    text_field = _names(task)[2]
    if text_field != "text" and "text" in out:
        out[text_field] = out.pop("text")
    if task.kind == "preference":
        for ours, theirs in PAIR_FIELDS:
            out[theirs] = out.pop(ours)
    return out


def _completed_by(annotator: str) -> int | dict:
    m = re.fullmatch(r"labelstudio:(\d+)", annotator)
    return int(m.group(1)) if m else {"email": annotator}


def _ls_result(task: Task, value: dict, data: dict) -> list[dict]:
    """The result items of one answer (the inverse of `_value_from_hits`)."""
    frm, to, _ = _names(task)

    def item(typ: str, v: dict, name: str = frm, target: str = to) -> dict:
        return {"from_name": name, "to_name": target, "type": typ, "value": v}

    k = task.kind
    if k == "classification":
        return [item("choices", {"choices": [value["label"]]})]
    if k == "multilabel":
        return [item("choices", {"choices": value["labels"]})] if value["labels"] else []
    if k == "spans":
        return [item("labels", {"start": s["start"], "end": s["end"], "text": data["text"][s["start"]:s["end"]],
                                "labels": [s["label"]]}) for s in value["spans"]]
    if k == "preference":
        if value["choice"] == "tie":
            return [item("choices", {"choices": ["tie"]}, f"{frm}_tie", "prompt")]
        return [item("pairwise", {"selected": "left" if value["choice"] == "a" else "right"})]
    if k == "text":
        return [item("textarea", {"text": [value["text"]]})]
    return [item("rating", {"rating": value["rating"] - task.low + 1})]


def labelstudio_config(task: Task, records: Iterable[dict] = ()) -> str:
    """The labeling config (XML) that sets up the same project in Label Studio. The first record, when given,
    decides which data fields a text or rating task shows (a prompt and response, or a text)."""
    frm, to, text_field = _names(task)
    first = next(iter(records), None)
    data = first.get("data", {}) if isinstance(first, dict) else {}

    def q(s: Any) -> str:  # an attribute value in double quotes
        return '"' + escape(str(s), {'"': "&quot;", "\n": "&#10;", "\t": "&#9;"}) + '"'

    def text(name: str, field: str) -> str:
        return f"  <Text name={q(name)} value={q('$' + field)}/>"

    def options(tag: str, child: str) -> list[str]:
        return [f"    <{child} value={q(x)}/>" for x in task.labels] + [f"  </{tag}>"]

    lines = ["<View>", f"  <Header value={q(task.name)}/>"]
    k = task.kind
    if k in ("classification", "multilabel"):
        choice = "single" if k == "classification" else "multiple"
        lines += [text(to, text_field),
                  f"  <Choices name={q(frm)} toName={q(to)} choice={q(choice)} showInline=\"true\">",
                  *options("Choices", "Choice")]
    elif k == "spans":
        lines += [f"  <Labels name={q(frm)} toName={q(to)}>", *options("Labels", "Label"), text(to, text_field)]
    elif k == "preference":
        left, right = to.split(",", 1) if "," in to else ("answer1", "answer2")
        lines += [text("prompt", "prompt"), text(left, "answer1"), text(right, "answer2"),
                  f"  <Pairwise name={q(frm)} toName={q(to)}/>",
                  f"  <Choices name={q(frm + '_tie')} toName=\"prompt\" choice=\"single\">",
                  "    <Choice value=\"tie\"/>", "  </Choices>"]
    elif k == "text":
        field = "prompt" if "prompt" in data and "text" not in data else text_field
        lines += [text(to, field), f"  <TextArea name={q(frm)} toName={q(to)} rows=\"6\" editable=\"true\" "
                                   "maxSubmissions=\"1\" required=\"true\"/>"]
    else:
        if "response" in data and "text" not in data:
            lines += [text("prompt", "prompt")] if "prompt" in data else []
            lines.append(text(to, "response"))
        else:
            lines.append(text(to, text_field))
        lines.append(f"  <Rating name={q(frm)} toName={q(to)} maxRating={q(task.high - task.low + 1)} "
                     "icon=\"star\" required=\"true\"/>")
    return "\n".join(lines + ["</View>"]) + "\n"
