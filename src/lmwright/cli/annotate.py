"""`lmwright annotate sync|import|export|status|agreement|suggest|accept|config|pii`: annotation tasks from the
command line; the labelling itself happens in the web tool (`lmwright serve`, then /annotate with an annotator key).
Thin: parse, call annotate/, print."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lmwright.cli.common import DirOpt, JsonOpt, SetOpt, err, out, run_stages
from lmwright.core.progress import Reporter
from lmwright.core.workspace import Workspace
from lmwright.errors import LmwrightError

TaskArg = Annotated[str, typer.Argument(metavar="TASK", help="The annotation task's name (annotate.tasks).")]


def register(app: typer.Typer) -> None:
    a = typer.Typer(no_args_is_help=True, help="Annotation tasks: items, guidelines, agreement, review, datasets.")
    for name, fn in (("sync", sync), ("serve", serve), ("import", import_), ("export", export), ("status", status),
                     ("agreement", agreement_), ("suggest", suggest), ("accept", accept), ("config", config),
                     ("pii", pii)):
        a.command(name)(fn)
    app.add_typer(a, name="annotate")


def _open(dir: Path, set_: list[str] | None):
    from lmwright.core.store import Store

    ws = Workspace.open(dir, set_ or [])
    return ws, Store(ws.store_url)


def _spec(ws: Workspace, name: str):
    try:
        return ws.spec.annotate.task(name)
    except KeyError as e:
        raise LmwrightError(str(e.args[0])) from None


def _config(t) -> dict:
    return {"labels": list(t.labels), "scale": list(t.scale), "overlap": t.overlap, "gold_every": t.gold_every,
            "reviewers": list(t.reviewers), "order": t.order, "suggest": t.suggest}


def _split(ws: Workspace) -> tuple[Path, str]:
    o = run_stages(ws, until="split", reporter=Reporter(quiet=True))["split"]
    return o.path, o.digest


def sync(task: Annotated[str | None, typer.Argument(metavar="[TASK]", help="One task (default: every task).")] = None,
         dir: DirOpt = Path("."), set_: SetOpt = None) -> None:
    """Bring the project file's tasks into the store: settings, a new guidelines version when the file changed, and
    the items from each task's source (a split, a file, the request log). Items already there keep their answers."""
    from lmwright.annotate import dataset
    from lmwright.annotate import project as ap

    ws, store = _open(dir, set_)
    todo = [_spec(ws, task)] if task else ws.spec.annotate.tasks
    if not todo:
        raise LmwrightError("the project has no annotation tasks; add one under annotate.tasks in lmwright.yaml "
                            "(the default file has a commented example)")
    splits = None
    for t in todo:
        text = None
        if t.guidelines:
            path = ws.root / t.guidelines
            if not path.is_file():
                raise LmwrightError(f"annotate task '{t.name}': guidelines {path} not found (annotate.tasks"
                                    f"[{t.name}].guidelines is a markdown file relative to the project)")
            text = path.read_text(encoding="utf-8")
        g = ap.sync_task(store, t.name, t.kind, _config(t), text)
        items, src = t.items, t.items.from_
        if src == "none":
            recs = []
        elif src == "split":
            splits = splits or _split(ws)
            recs = dataset.items_from_split(splits[0] / f"{items.split}.parquet", items.split, t.kind, items.limit,
                                            items.max_chars, splits[1])
        elif src == "requests":
            recs = dataset.items_from_requests(store, t.kind, items.limit, items.max_chars)
        else:
            recs = dataset.items_from_file(ws.root / items.path, ap.task(store, t.name), items.text_field,
                                           items.id_field, items.label_field, items.limit)
        added = ap.add_items(store, t.name, recs)
        gv = f", guidelines v{g['guideline_version']}" if g["guideline_version"] else ", no guidelines"
        where = "items.from: none; add items with `lmwright annotate import`" if src == "none" else f"from {src}"
        err.print(f"{t.name}: {added.get('added', 0)} items added, {added.get('already there', 0)} already there "
                  f"({where}){gv}")


def serve(dir: DirOpt = Path("."), set_: SetOpt = None,
          host: Annotated[str | None, typer.Option(help="Address to listen on (serve.host).")] = None,
          port: Annotated[int | None, typer.Option(help="Port (serve.port; 0 = any free port).")] = None) -> None:
    """Serve the annotation tool alone (/annotate and /v1/annotate), with no model: for a labelling team before
    there is a model to serve, or beside a server elsewhere. `lmwright serve` has the same tool beside the models."""
    import uvicorn

    from lmwright.cli.serve import _bind
    from lmwright.serve.api import create_app
    from lmwright.serve.state import ServeConfig

    ws, store = _open(dir, [*(set_ or []), *([f"serve.host={host}"] if host else []),
                            *([f"serve.port={port}"] if port is not None else [])])
    s = ws.spec.serve
    sock = _bind(s.host, s.port)
    app_ = create_app([], ServeConfig(s, store, ws.sketch_key()))
    keyed = "API keys required: lmwright keys add NAME --role annotator" if app_.state.keys.enabled else \
        "no API keys configured: one local user, open to anyone who can reach it"
    err.print(f"annotation tool on http://{s.host}:{sock.getsockname()[1]}/annotate ({keyed}); "
              f"tasks: {', '.join(t.name for t in ws.spec.annotate.tasks) or 'none (add annotate.tasks)'}")
    uvicorn.Server(uvicorn.Config(app_, log_level="warning", proxy_headers=False)).run(sockets=[sock])


def import_(task: TaskArg, file: Annotated[Path, typer.Argument(help="Label Studio JSON export, JSONL or CSV.")],
            as_: Annotated[str, typer.Option("--as", help="What a label column in a JSONL/CSV file is: gold (known "
                                                          "answers for spot checks) or answers (by --annotator).")]
            = "gold",
            annotator: Annotated[str | None, typer.Option(help="Whose answers a JSONL/CSV label column holds.")] = None,
            text_field: Annotated[str, typer.Option(help="JSONL/CSV: the text field.")] = "text",
            label_field: Annotated[str | None, typer.Option(help="JSONL/CSV: the label field, if any.")] = None,
            id_field: Annotated[str | None, typer.Option(help="JSONL/CSV: the item id field (else a hash of the "
                                                              "text).")] = None,
            dir: DirOpt = Path("."), set_: SetOpt = None) -> None:
    """Add items (and their answers, predictions and gold labels) from a file. Every record is checked before any
    is stored: a bad one names the file, task or line, and field."""
    from lmwright.annotate import dataset
    from lmwright.annotate import project as ap

    ws, store = _open(dir, set_)
    t = ap.task(store, task)
    if as_ not in ("gold", "answers"):
        raise LmwrightError(f"--as {as_!r}: gold or answers")
    if as_ == "answers" and label_field and not annotator and file.suffix != ".json":
        raise LmwrightError("--as answers needs --annotator NAME: whose answers the label column holds")
    recs = dataset.items_from_file(file, t, text_field, id_field, label_field,
                                   as_="gold" if as_ == "gold" else "annotation", annotator=annotator)
    added = ap.add_items(store, task, recs)
    err.print(f"{task}: {len(recs)} records read from {file}: " + ", ".join(f"{n} {k}" for k, n in added.items()))


def export(task: TaskArg, dest: Annotated[Path, typer.Argument(help="The file to write.")],
           format: Annotated[str, typer.Option(help="labelstudio (JSON: tasks with annotations and predictions), "
                                                    "finetune (JSONL rows a recipe reads), parquet.")] = "labelstudio",
           dir: DirOpt = Path("."), set_: SetOpt = None) -> None:
    """Write the task's items, answers and final labels in another tool's format."""
    from lmwright.annotate import formats, labelstudio
    from lmwright.annotate import project as ap
    from lmwright.annotate import review as ar

    ws, store = _open(dir, set_)
    t, recs = ap.task(store, task), ar.records(store, task)
    if format == "labelstudio":
        labelstudio.write_labelstudio(recs, t, dest)
        n = len(recs)
    elif format == "finetune":
        rows = formats.to_finetune([r for r in recs if r["final"]], t)
        formats.write_jsonl(rows, dest)
        n = len(rows)
    elif format == "parquet":
        n = formats.write_parquet(recs, t, dest)["written"]  # one row per item with a final label
    else:
        raise LmwrightError(f"--format {format!r}: labelstudio, finetune or parquet")
    err.print(f"{task}: {n} rows written to {dest} ({format})")


def _agreement(store, task: str) -> dict:
    from lmwright.annotate import agreement
    from lmwright.annotate import project as ap
    from lmwright.annotate import review as ar

    answers, gold = ar.answers_by_item(store, task)
    return agreement.report(ap.task(store, task), answers, gold)


def _f(x) -> str:
    return "–" if x is None else f"{x:.3f}"


def status(task: Annotated[str | None, typer.Argument(metavar="[TASK]")] = None, dir: DirOpt = Path("."),
           set_: SetOpt = None, json_: JsonOpt = False) -> None:
    """Each task's progress: items, answers, final labels, the review queue, and agreement."""
    from lmwright.annotate import project as ap
    from lmwright.annotate import review as ar

    ws, store = _open(dir, set_)
    names = [task] if task else ap.tasks(store)
    rows = {n: {**ar.progress(store, n), "agreement": _agreement(store, n)} for n in names}
    if json_:
        out.print_json(json.dumps(rows))
        return
    tbl = Table("task", "items", "answers", "final", "to review", "Fleiss κ", "Krippendorff α")
    for n, r in rows.items():
        g = r["agreement"]
        tbl.add_row(n, str(r["items"]), str(r["answers"]), str(r["final"]), str(r["to_review"]), _f(g.get("kappa")),
                    _f((g.get("alpha") or {}).get("nominal")))
    out.print(tbl if names else "no annotation tasks in the store yet: lmwright annotate sync")


def agreement_(task: TaskArg, dir: DirOpt = Path("."), set_: SetOpt = None, json_: JsonOpt = False) -> None:
    """Agreement between annotators: Fleiss' kappa, Krippendorff's alpha, Cohen's kappa per pair, each annotator's
    mean kappa and accuracy on gold items."""
    from lmwright.annotate import review as ar

    ws, store = _open(dir, set_)
    rep = {**_agreement(store, task), "gold_over_time": ar.gold_accuracy(store, task)}
    if json_:
        out.print_json(json.dumps(rep))
        return
    out.print(f"{task}: {rep['overlap_items']} items with 2+ answers; Fleiss' kappa {_f(rep.get('kappa'))}, "
              f"Krippendorff's alpha " + ", ".join(f"{k} {_f(v)}" for k, v in (rep.get("alpha") or {}).items()))
    tbl = Table("annotators", "shared items", "agreement", "Cohen's κ")
    for p in rep.get("pairs", []):
        tbl.add_row(" / ".join(p["annotators"]), str(p["n"]), _f(p.get("agreement")), _f(p.get("kappa")))
    out.print(tbl)
    tbl = Table("annotator", "items", "mean κ", "gold n", "gold accuracy")
    for who, a in rep.get("per_annotator", {}).items():
        g = a.get("gold") or {}
        tbl.add_row(who, str(a.get("items")), _f(a.get("mean_kappa")), str(g.get("n", 0)), _f(g.get("accuracy")))
    out.print(tbl)
    for k, v in (rep.get("notes") or {}).items():
        out.print(f"{k}: {v}")


def suggest(task: TaskArg, model: Annotated[str | None, typer.Option(
                help="The project's fine-tuned classifier to suggest with (NAME, NAME@VERSION, NAME@ALIAS, a "
                     "directory); default: the quick model, fitted on the task's labels so far.")] = None,
            dir: DirOpt = Path("."), set_: SetOpt = None) -> None:
    """Model-assisted labelling: a model's suggestion and score on every open item, and the queue ordered by the
    task's uncertainty measure (`order`; least confidence when it has none)."""
    from lmwright.annotate import active, assist

    ws, store = _open(dir, set_)
    clf = None
    if model:
        from lmwright.core.models import resolve_model

        path, name, _ = resolve_model(ws, model)
        clf = active.ClassifierModel(path, name=f"{name}")
    res = assist.refresh(store, task, clf)
    err.print(f"{task}: {res['headline']}")


def accept(task: TaskArg, dir: DirOpt = Path("."), set_: SetOpt = None, json_: JsonOpt = False) -> None:
    """Make the task's final labels a dataset version (labels with provenance, labelled documents, fine-tuning
    rows), recorded with lineage to the split its items came from."""
    from lmwright.annotate import dataset
    from lmwright.core.artifacts import ArtifactStore

    ws, store = _open(dir, set_)
    res = dataset.accept(store, ArtifactStore(ws.artifacts_dir), task)
    if json_:
        out.print_json(json.dumps(res))
        return
    err.print(f"{task}: {res['headline']}; dataset {res['digest'][:12]} at {res['path']}")
    err.print(f"  fine-tune on it: --set finetune.classify.data={res['path']}/finetune.jsonl (classification), "
              f"finetune.sft.data (text), finetune.preference.data (preference)")


def config(task: TaskArg, dir: DirOpt = Path("."), set_: SetOpt = None) -> None:
    """Print the Label Studio labeling config (XML) that sets up the same task there."""
    from lmwright.annotate import labelstudio
    from lmwright.annotate import project as ap

    ws, store = _open(dir, set_)
    out.file.write(labelstudio.labelstudio_config(ap.task(store, task)) + "\n")


def pii(task: TaskArg, dir: DirOpt = Path("."), set_: SetOpt = None, json_: JsonOpt = False) -> None:
    """Score the PII detector (the clean stage's) against a spans task's human-labelled PII: precision, recall, F1."""
    from lmwright.annotate import pii_eval
    from lmwright.annotate import project as ap
    from lmwright.annotate import review as ar

    ws, store = _open(dir, set_)
    t = ap.task(store, task)
    if t.kind != "spans":
        raise LmwrightError(f"task '{task}' is not a spans task; the PII evaluation needs human-labelled spans")
    rep = pii_eval.evaluate_pii([r for r in ar.records(store, task) if r["final"]], t,
                                ip_scope=ws.spec.data.pii.ip_scope)
    if json_:
        out.print_json(json.dumps(rep))
        return
    out.print(f"PII detector against the human spans of '{task}': {rep['items']} items, {rep['human_spans']} "
              f"human and {rep['detected_spans']} detected spans")
    tbl = Table("kind", "human", "detected", "precision", "recall", "F1 (exact)", "F1 (overlapping)")
    for kind, c in {"all": {"human": rep["human_spans"], "detected": rep["detected_spans"], "exact": rep["exact"],
                            "overlap": rep["overlap"]}, **rep["per_kind"]}.items():
        e = c["exact"]
        tbl.add_row(kind, str(c["human"]), str(c["detected"]), _f(e["precision"]), _f(e["recall"]), _f(e["f1"]),
                    _f(c["overlap"]["f1"]))
    out.print(tbl)
    for m in rep["misses"][:5]:
        out.print(f"  missed {m['kind']}: {m['text']!r} (item {m['key']})", markup=False)
    for m in rep["false_alarms"][:5]:
        out.print(f"  false alarm {m['kind']}: {m['text']!r} (item {m['key']})", markup=False)
