"""The `lmwright` command: one command per stage, each thin — parse, call the stage, print.

Every command takes `-C DIR` (the project directory, default `.`) and `--set a.b=c` overrides; commands that
report figures take `--json`. A `LmwrightError` is printed as a one-paragraph message (exit 2), never a traceback;
so is any other error (exit 1), whose traceback goes to a log file under the workspace. `--debug` anywhere on the
command line (or LMWRIGHT_DEBUG=1) prints tracebacks in the terminal too.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lmwright import api
from lmwright.core.pipeline import STAGES, load_stages, stage_status
from lmwright.core.progress import Reporter
from lmwright.core.workspace import Workspace
from lmwright.errors import LmwrightError, StageFailed
from lmwright.spec import DEFAULT_SPEC_TEXT, SPEC_FILENAME

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Build a language model through its whole life from one project file, lmwright.yaml. "
                       "Add --debug to any command to see the full traceback of a failure.")
out = Console()
err = Console(stderr=True, soft_wrap=True)  # log lines are not wrapped at 80 columns in CI

DirOpt = Annotated[Path, typer.Option("-C", "--dir", help="Project directory (holds lmwright.yaml).")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a spec field: --set train.max_steps=100")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the figures as JSON on stdout.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")]


def _outcomes_json(outcomes) -> dict:
    return {n: {"status": o.status, "digest": o.digest, "seconds": round(o.seconds, 2), **o.summary}
            for n, o in outcomes.items()}


def _print_where(ws: Workspace, outcomes) -> None:
    where = [("model", ws.out_dir / "model"), ("report", ws.out_dir / "report.html"),
             ("metrics", ws.out_dir / "metrics.json")]
    done = [(k, p) for k, p in where if p.exists()]
    if "evaluate" in outcomes:
        val = outcomes["evaluate"].summary["val"]
        err.print(f"[bold]val bits/byte {val['bits_per_byte']:.3f}[/bold], perplexity {val['perplexity']:.1f}")
    for k, p in done:
        err.print(f"{k:<8} {p}")


@app.command()
def run(
    dir: DirOpt = Path("."),
    set_: SetOpt = None,
    until: Annotated[str | None, typer.Option(help="Stop after this stage.")] = None,
    from_: Annotated[str | None, typer.Option("--from", help="Rerun this stage and everything after it.")] = None,
    force: Annotated[list[str] | None, typer.Option(help="Rerun this stage even if cached (repeatable).")] = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Run every stage of the project (the built-in default when there is no lmwright.yaml); cached stages are skipped."""
    ws = Workspace.open(dir, set_ or [])
    err.print(f"lmwright: project [bold]{ws.spec.project.name}[/bold] "
              f"({ws.spec_path or 'built-in default spec'}) in {ws.root}")
    outcomes = api.run_workspace(ws, until=until, from_=from_, force=tuple(force or ()),
                                 reporter=Reporter(err, quiet=quiet))
    if all(o.status == "cached" for o in outcomes.values()):
        err.print("every stage is cached: nothing to do")
    if json_:
        out.print_json(json.dumps(_outcomes_json(outcomes)))
    _print_where(ws, outcomes)


@app.command()
def init(directory: Annotated[Path, typer.Argument(help="Directory to create the project in.")] = Path(".")) -> None:
    """Write a commented lmwright.yaml for the default project, to edit."""
    target = directory / SPEC_FILENAME
    if target.exists():
        raise LmwrightError(f"{target} already exists; edit it, or remove it to start again")
    directory.mkdir(parents=True, exist_ok=True)
    target.write_text(DEFAULT_SPEC_TEXT, encoding="utf-8")
    err.print(f"wrote {target}; edit it, then run `lmwright run -C {directory}`")


@app.command()
def status(dir: DirOpt = Path("."), set_: SetOpt = None, json_: JsonOpt = False) -> None:
    """The project at a glance: stages (cached / stale / new), datasets, runs and models."""
    from lmwright.core.store import Store

    ws = Workspace.open(dir, set_ or [])
    store = Store(ws.store_url)
    stages = stage_status(ws)
    datasets = [{"name": d.name, "rows": d.rows, "digest": d.digest[:12], "path": d.path,
                 "created_at": d.created_at.isoformat()} for d in store.datasets()]
    runs = [{"id": r.id, "stage": r.stage, "status": r.status, "seconds": r.duration_s,
             "started_at": r.started_at.isoformat(), "summary": r.summary} for r in store.runs(limit=30)]
    tests: dict[str, list] = {}
    for t in store.test_evaluations():
        tests.setdefault(t.model_digest, []).append(t)
    models = []
    for m in store.models():
        tested = tests.get(m.digest, [])
        models.append({"name": m.name, "version": sum(x["name"] == m.name for x in models) + 1,
                       "digest": m.digest[:12], "params": m.n_params, "metrics": m.metrics,
                       "test": tested[0].metrics if tested else None, "test_evaluations": len(tested),
                       "created_at": m.created_at.isoformat()})
    if json_:
        out.print_json(json.dumps({"project": ws.spec.project.name, "root": str(ws.root), "stages": stages,
                                   "datasets": datasets, "runs": runs, "models": models}))
        return
    t = Table(title=f"stages of {ws.spec.project.name}")
    for col in ("stage", "state", "last run", "seconds", "result"):
        t.add_column(col)
    colour = {"cached": "green", "stale": "yellow", "new": "dim"}
    for s in stages:
        t.add_row(s["stage"], f"[{colour[s['state']]}]{s['state']}[/]", (s["last_run"] or "")[:19],
                  "" if s["seconds"] is None else f"{s['seconds']:.1f}", s["headline"])
    out.print(t)
    latest: dict[str, dict] = {d["name"]: d for d in datasets}
    t = Table(title="datasets (latest version of each)")
    for col in ("name", "rows", "digest", "created"):
        t.add_column(col)
    for d in latest.values():
        t.add_row(d["name"], f"{d['rows']:,}", d["digest"], d["created_at"][:19])
    out.print(t)
    t = Table(title="recent stage runs")
    for col in ("id", "stage", "status", "seconds", "started", "result"):
        t.add_column(col)
    for r in runs[:12]:
        t.add_row(str(r["id"]), r["stage"], r["status"], "" if r["seconds"] is None else f"{r['seconds']:.1f}",
                  r["started_at"][:19], (r["summary"] or {}).get("headline", ""))
    out.print(t)
    t = Table(title="models (test: the first test-split evaluation, and how many there were)")
    for col in ("name@version", "params", "val bits/byte", "test bits/byte", "digest", "created"):
        t.add_column(col)
    for m in models:
        val = m["metrics"].get("val", {}).get("bits_per_byte")
        test = f"{m['test']['bits_per_byte']:.3f} ({m['test_evaluations']}x)" if m["test"] else "not tested"
        t.add_row(f"{m['name']}@{m['version']}", f"{m['params']:,}", "" if val is None else f"{val:.3f}", test,
                  m["digest"], m["created_at"][:19])
    out.print(t)


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(help="Text to continue.")],
    dir: DirOpt = Path("."),
    model: Annotated[Path | None, typer.Option(help="A model directory; default: the project's latest model.")] = None,
    max_tokens: Annotated[int, typer.Option(min=1)] = 64,
    temperature: Annotated[float, typer.Option(min=0.0)] = 0.8,
    top_k: Annotated[int | None, typer.Option(min=1)] = 50,
    seed: int = 0,
) -> None:
    """Print a continuation of PROMPT from the latest model (or --model DIR)."""
    path = model or dir
    m, tok = api.load_model(path), api.load_tokenizer(model or Workspace.open(dir).out_dir / "model")
    text = api.generate(m, tok, prompt, max_new_tokens=max_tokens, temperature=temperature, top_k=top_k, seed=seed)
    out.print(prompt + text, highlight=False, markup=False)


data_app = typer.Typer(no_args_is_help=True, help="Look at and work on data: redact PII, inspect removals.")
app.add_typer(data_app, name="data")


@data_app.command("redact")
def data_redact(
    file: Annotated[str, typer.Argument(help="A text file (one document per line) or - for standard input.")],
    field: Annotated[str | None, typer.Option(help="Read JSONL and redact this field of each record.")] = None,
    types: Annotated[list[str] | None, typer.Option("--type", help="Only these PII types (repeatable).")] = None,
    ip_scope: Annotated[str, typer.Option("--ip-scope", help="public: only public addresses are PII (as "
                                          "data.pii.ip_scope's default); all: private and documentation ones "
                                          "too.")] = "public",
    json_: Annotated[bool, typer.Option("--json", help="Print the spans found, one JSON object per line.")] = False,
) -> None:
    """Redact PII with the same detector as the clean stage; prints the redacted text (or spans with --json)."""
    from lmwright.data.filters.pii import find_pii, redact

    if ip_scope not in ("public", "all"):
        raise LmwrightError(f"--ip-scope {ip_scope!r}: use public or all")
    stream = sys.stdin if file == "-" else open(file, encoding="utf-8", errors="replace")  # noqa: SIM115
    with stream:
        for lineno, line in enumerate(stream, start=1):
            line = line.rstrip("\n")
            record = None
            if field is not None:
                try:
                    record = json.loads(line)
                    text = record[field]
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise LmwrightError(f"{file}, line {lineno}: not a JSON object with a '{field}' field; "
                                        "fix the line or drop --field to treat lines as plain text") from None
            else:
                text = line
            if json_:
                spans = [{"start": x.start, "end": x.end, "type": x.type, "text": x.text}
                         for x in find_pii(text, types, ip_scope=ip_scope)]
                out.print_json(json.dumps({"line": lineno, "spans": spans}), indent=None)
                continue
            redacted, _ = redact(text, types, ip_scope=ip_scope)
            if record is not None:
                record[field] = redacted
                redacted = json.dumps(record, ensure_ascii=False)
            print(redacted)


@data_app.command("card")
def data_card(dir: DirOpt = Path("."), set_: SetOpt = None, json_: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Write the dataset card (runs the data stages as needed) and print where it is."""
    ws = Workspace.open(dir, set_ or [])
    outcomes = api.run_workspace(ws, until="card", reporter=Reporter(err, quiet=quiet or json_))
    path = ws.out_dir / "dataset_card" / "README.md"
    if json_:
        out.print_json(json.dumps({"path": str(path), **outcomes["card"].summary}))
    else:
        err.print(f"dataset card: {path}")


@data_app.command("inspect")
def data_inspect(
    dir: DirOpt = Path("."),
    set_: SetOpt = None,
    reason: Annotated[str | None, typer.Option(help="Only reasons that start with this, e.g. gopher_quality.")] = None,
    samples: Annotated[int, typer.Option("-n", "--samples", min=0, help="Samples per reason.")] = 3,
    json_: JsonOpt = False,
) -> None:
    """Kept, removed (by reason, from every data stage) and quarantined samples."""
    from lmwright.data.inspect import inspect_data

    ws = Workspace.open(dir, set_ or [])
    report = inspect_data(ws, reason, samples)
    if json_:
        out.print_json(json.dumps(report))
        return
    for stage_name, st in report["stages"].items():
        out.print(f"[bold]{stage_name}[/bold]: read {st['read']:,}, kept {st['kept']:,}, "
                  f"removed {sum(st['removed'].values()):,}, quarantined {st['quarantined']:,}")
        for group in st["groups"]:
            out.print(f"  [yellow]{group['reason']}[/yellow] ({group['count']:,})")
            for x in group["samples"]:
                out.print(f"    {x['locator']}: {x['text']!r}", highlight=False, markup=False)


def _stage_command(name: str, help_text: str):
    def command(dir: DirOpt = Path("."), set_: SetOpt = None,
                force: Annotated[bool, typer.Option("--force", help="Rerun this stage even if cached.")] = False,
                json_: JsonOpt = False, quiet: QuietOpt = False) -> None:
        outcomes = api.run(dir, set_ or [], until=name, force=(name,) if force else (),
                           reporter=Reporter(err, quiet=quiet or json_))
        o = outcomes[name]
        if json_:
            out.print_json(json.dumps({"stage": name, "status": o.status, "digest": o.digest,
                                       "path": str(o.path), **o.summary}))
        else:
            err.print(f"{name}: {o.status} — {o.summary.get('headline', '')}\n  artifact: {o.path}")

    command.__doc__ = f"{help_text} (runs the stages before it as needed)."
    return command


load_stages()
for _name, _st in STAGES.items():
    # evaluate and test also take a model and data of the user's choosing (below); the fine-tuning stages are
    # `lmwright finetune sft|classify|preference` (finetune/commands.py)
    if _name not in ("evaluate", "test", "sft", "classify", "preference"):
        app.command(name=_name)(_stage_command(_name, _st.help.rstrip(".")))


ModelArg = Annotated[str | None, typer.Argument(
    help="A Hugging Face model directory, a registered model name (latest version), NAME@N, or a digest prefix "
         "(see `lmwright status`). Default: the project's own model.")]


def _print_results(title: str, res: dict, json_: bool) -> None:
    from lmwright.evaluate.suite import flatten, interval

    if json_:
        out.print_json(json.dumps(res, default=float))
        return
    table = Table(title=title)
    for col in ("metric", "value", "interval"):
        table.add_column(col)
    for name, value in flatten(res).items():
        ci = interval(res, name)
        table.add_row(name, f"{value:.4f}" if not float(value).is_integer() else f"{int(value):,}",
                      f"[{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "")
    out.print(table)


@app.command()
def evaluate(
    model: ModelArg = None,
    split: Annotated[str, typer.Option(help="The project split to score: val or train (test: `lmwright test`).")] = "val",
    file: Annotated[Path | None, typer.Option(help="Score an external .jsonl/.csv/.parquet file instead.")] = None,
    task: Annotated[str, typer.Option(help="With --file: lm, generate or classify.")] = "lm",
    text_field: Annotated[str, typer.Option(help="--file: the text field (lm, classify).")] = "text",
    label_field: Annotated[str, typer.Option(help="--file: the label field (classify).")] = "label",
    labels: Annotated[str | None, typer.Option(help="--file, classify: the label set, comma-separated.")] = None,
    prompt_field: Annotated[str, typer.Option(help="--file, generate: the prompt field.")] = "prompt",
    reference_field: Annotated[str, typer.Option(help="--file, generate: the reference field.")] = "reference",
    dir: DirOpt = Path("."),
    set_: SetOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Rerun the evaluate stage even if cached.")] = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Evaluate a model on a split or an external file: loss, perplexity, bits/byte, generation or classification
    metrics, with bootstrap intervals and slices. Without MODEL or --file: the pipeline's evaluate stage."""
    from lmwright.data.split import split_path
    from lmwright.evaluate.suite import evaluate_docs, evaluate_set
    from lmwright.spec import EvalSet

    if model is None and file is None and split == "val":
        _stage_command("evaluate", "")(dir=dir, set_=set_, force=force, json_=json_, quiet=quiet)
        return
    if split not in ("val", "train", "test"):
        raise LmwrightError(f"--split {split!r}: use val or train (or --file PATH for other data)")
    ws = Workspace.open(dir, set_ or [])
    reporter = Reporter(err, quiet=quiet or json_)
    model_dir, name, _ = api.project_model(ws, model, reporter)
    lm, tok = api.load_model(model_dir), api.load_tokenizer(model_dir)
    e, target = ws.spec.eval, ws.out_dir / "eval"
    target.mkdir(parents=True, exist_ok=True)
    if file is not None:
        es = EvalSet(name=file.stem, path=str(file.resolve()), task=task, text_field=text_field,
                     label_field=label_field, labels=labels.split(",") if labels else None,
                     prompt_field=prompt_field, reference_field=reference_field)
        res = evaluate_set(lm, tok, es, ws.root, ws.spec.train.seq_len, e, ws.spec.project.seed, target)
        what = str(file)
    else:
        split_dir = api.run_workspace(ws, until="split", reporter=reporter)["split"].path
        from lmwright.data.document import read_docs

        docs = read_docs(split_path(split_dir, split, ".parquet"))  # refuses test: see data/split.py
        res = evaluate_docs(lm, tok, docs, ws.spec.train.seq_len, e, ws.spec.project.seed,
                            ws.spec.data.pydocs_sources())
        what = f"the {split} split"
    stem = f"{name}-{file.stem if file else split}"
    (target / f"{stem}.json").write_text(json.dumps(res, indent=2, default=float))
    _print_results(f"{name} on {what}", res, json_)
    if not json_:
        err.print(f"results: {target / (stem + '.json')}")


@app.command()
def test(
    model: ModelArg = None,
    dir: DirOpt = Path("."),
    set_: SetOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Evaluate again although this model was tested "
                                        "(recorded, with a warning).")] = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """The final evaluation on the test split: once per model, recorded in the store; a repeat warns."""
    from lmwright.core.store import Store
    from lmwright.evaluate.testset import final_evaluation

    ws = Workspace.open(dir, set_ or [])
    reporter = Reporter(err, quiet=quiet or json_)
    if model is None:
        outcomes = api.run_workspace(ws, until="test", force=("test",) if force else (), reporter=reporter)
        o = outcomes["test"]
        if o.status == "cached":
            first = Store(ws.store_url).test_evaluations(outcomes["save"].digest)
            when = f" at {first[0].at:%Y-%m-%d %H:%M} UTC" if first else ""
            err.print(f"test: this model was evaluated on the test split{when}; these are the recorded figures "
                      "(--force evaluates again, with a warning)")
        res = json.loads((o.path / "metrics.json").read_text())["test"]
        if json_:  # the stage's record, like every stage command, with the figures
            res = {"stage": "test", "status": o.status, "digest": o.digest, "path": str(o.path),
                   "headline": o.summary.get("headline", ""), **res}
        _print_results(f"{ws.spec.project.name} on the test split", res, json_)
        return
    model_dir, name, digest = api.resolve_model(ws, model)
    outcomes = api.run_workspace(ws, until="split", reporter=reporter)
    split = outcomes["split"]
    res, warning = final_evaluation(ws, model_dir, digest, name, split.path, split.digest, "cli", reporter)
    if warning:
        err.print(f"[yellow]{warning}[/yellow]")
    _print_results(f"{name} on the test split", res, json_)


@app.command()
def train(
    dir: DirOpt = Path("."),
    set_: SetOpt = None,
    nproc: Annotated[int | None, typer.Option("--nproc", help="Processes (GPUs) to train with, via torchrun; "
                                              "sets train.nproc.")] = None,
    fsdp: Annotated[bool, typer.Option("--fsdp", help="Shard the model with FSDP2 instead of DDP.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Retrain even if cached.")] = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Pretrain the model (the pretrain stage), optionally across processes: `lmwright train --nproc 4`."""
    extra = [*(set_ or []), *([f"train.nproc={nproc}"] if nproc else []), *(["train.distributed=fsdp"] if fsdp else [])]
    _stage_command("pretrain", "")(dir=dir, set_=extra, force=force, json_=json_, quiet=quiet)


@app.command()
def cv(
    dir: DirOpt = Path("."),
    set_: SetOpt = None,
    folds: Annotated[int | None, typer.Option("--folds", help="k (sets cv.folds).")] = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """k-fold cross-validation of the spec over the train + val documents (stratified); resumable."""
    import hashlib

    from lmwright.core.store import Store
    from lmwright.tokenizer import load_tokenizer
    from lmwright.train.cv import cross_validate

    ws = Workspace.open(dir, [*(set_ or []), *([f"cv.folds={folds}"] if folds else [])])
    reporter = Reporter(err, quiet=quiet or json_)
    outcomes = api.run_workspace(ws, until="tokenizer", reporter=reporter)
    key = json.dumps([ws.spec.slice("project.seed", "model", "train", "cv"), outcomes["split"].digest,
                      outcomes["tokenizer"].digest], sort_keys=True)
    work = ws.work_dir / f"cv-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    res = cross_validate(ws.spec, outcomes["split"].path, load_tokenizer(outcomes["tokenizer"].path), work, reporter)
    target = ws.out_dir / "cv"
    target.mkdir(parents=True, exist_ok=True)
    (target / "results.json").write_text(json.dumps(res, indent=2))
    Store(ws.store_url).audit("cv", k=res["k"], mean_bits_per_byte=res["mean_bits_per_byte"])
    if json_:
        out.print_json(json.dumps(res))
        return
    table = Table(title=f"{res['k']}-fold cross-validation (stratified by {res['stratify_by']})")
    for col in ("fold", "train docs", "held-out docs", "bits/byte", "loss"):
        table.add_column(col)
    for r in res["folds"]:
        table.add_row(str(r["fold"]), f"{r['train_docs']:,}", f"{r['heldout_docs']:,}", f"{r['bits_per_byte']:.4f}",
                      f"{r['loss']:.4f}")
    out.print(table)
    err.print(f"mean {res['mean_bits_per_byte']:.4f} ± {res['sd_bits_per_byte']:.4f} bits/byte (sd over folds)\n"
              f"  results: {target / 'results.json'}")


@app.command()
def tune(dir: DirOpt = Path("."), set_: SetOpt = None, json_: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Search hyper-parameters (tune.space) on the validation split with Optuna; resumable, parallel."""
    from lmwright.core.store import Store
    from lmwright.train.hpo import run_study, write_outputs

    ws = Workspace.open(dir, set_ or [])
    reporter = Reporter(err, quiet=quiet or json_)
    outcomes = api.run_workspace(ws, until="tokenize", reporter=reporter)
    t = ws.spec.tune
    if not (quiet or json_):
        err.print(f"tune: {t.trials} trials, {t.sampler} sampler, {t.pruner} pruning, {t.parallel} process(es), "
                  f"minimising {t.metric} over {', '.join(t.space)}")
    study, name, resumed = run_study(ws.spec, ws.store_url, outcomes["tokenize"].path, outcomes["tokenizer"].path,
                                     outcomes["tokenize"].digest, reporter)
    out_dir = ws.out_dir / "tune"
    res = {"study": name, "resumed_trials": resumed, **write_outputs(study, ws.spec, out_dir),
           "outputs": str(out_dir)}
    Store(ws.store_url).audit("tune", study=name, trials=res["trials"], best_value=res["best_value"],
                              best_params=res["best_params"])
    if json_:
        out.print_json(json.dumps(res))
        return
    table = Table(title=f"study {name}: {res['complete']} complete, {res['pruned']} pruned, {res['fail']} failed")
    for col in ["#", "state", *t.space, t.metric]:
        table.add_column(col)
    for tr in study.trials:
        table.add_row(str(tr.number), tr.state.name.lower(), *[f"{tr.params.get(k, '')!s:.8}" for k in t.space],
                      "" if tr.value is None else f"{tr.value:.4f}")
    out.print(table)
    err.print(f"best {t.metric} {res['best_value']:.4f} with {res['best_params']}\n"
              f"  overlay: {out_dir / 'best.yaml'}\n  importances: {res['importances']}\n"
              f"  plots: {out_dir}")


model_app = typer.Typer(no_args_is_help=True, help="Model design tools.")
app.add_typer(model_app, name="model")


@model_app.command("plan")
def model_plan(
    dir: DirOpt = Path("."),
    set_: SetOpt = None,
    batch: Annotated[int | None, typer.Option(help="Sequences per step (default: train.batch_size / grad_accum "
                                              "per process).")] = None,
    seq: Annotated[int | None, typer.Option(help="Sequence length (default: train.seq_len).")] = None,
    precision: Annotated[str | None, typer.Option(help="fp32, bf16 or fp16 (default: train.precision).")] = None,
    optimizer: Annotated[str | None, typer.Option(help="Optimizer (default: train.optimizer).")] = None,
    device: Annotated[str | None, typer.Option(help="A device to check the fit against: "
                                               "h100, a100-40, l4, t4, rtx4090, ...")] = None,
    memory_gib: Annotated[float | None, typer.Option("--memory-gib", help="Or a memory size in GiB.")] = None,
    json_: JsonOpt = False,
) -> None:
    """Parameters, FLOPs per token and training memory of the spec's model, and whether it fits a device."""
    from lmwright.model.config import ModelConfig
    from lmwright.model.plan import DEVICES, GIB, PRECISION_BYTES, plan

    spec = Workspace.open(dir, set_ or []).spec
    tr = spec.train
    if device is not None and device not in DEVICES:
        raise LmwrightError(f"--device {device!r} is not one I know; use one of {', '.join(DEVICES)} "
                            "or --memory-gib N")
    precision = precision or tr.precision
    if precision not in PRECISION_BYTES:
        raise LmwrightError(f"--precision {precision!r}: use fp32, bf16 or fp16")
    cfg = ModelConfig.from_spec(spec, spec.tokenizer.vocab_size)
    b = batch or tr.batch_size // (tr.grad_accum * tr.nproc)
    p = plan(cfg, b, seq or tr.seq_len, precision, optimizer or tr.optimizer, tr.activation_checkpointing,
             device, memory_gib)
    if json_:
        out.print_json(json.dumps(p.to_dict()))
        return
    t = Table(title=f"{cfg.n_layers} layers · width {cfg.d_model} · {cfg.n_heads}/{cfg.n_kv_heads} heads · "
                    f"batch {b} x {seq or tr.seq_len} · {precision} · {optimizer or tr.optimizer}")
    t.add_column("")
    t.add_column("value", justify="right")
    t.add_row("parameters", f"{p.params:,} ({p.params_non_embedding:,} without embeddings)")
    t.add_row("training FLOPs per token", f"{p.flops_per_token:,.0f}")
    t.add_row("training FLOPs per step", f"{p.flops_per_step:.3e}")
    for label, v in [("weights (fp32)", p.weights_bytes), ("gradients", p.grads_bytes),
                     ("optimizer state", p.optimizer_bytes), ("weight copies (fused matmuls, autocast)", p.weight_copies_bytes),
                     ("activations", p.activations_bytes), ("total", p.total_bytes)]:
        t.add_row(label, f"{v / GIB:,.3f} GiB")
    if p.fits is not None:
        t.add_row(f"fits {device or ''} ({p.device_bytes / GIB:.0f} GiB)",
                  "[green]yes[/green]" if p.fits else "[red]no[/red]")
    out.print(t)


# serving commands (export, serve, keys, chat) live beside the server; importing them registers them on `app`
from lmwright.finetune import commands as _finetune_commands  # noqa: E402, F401
from lmwright.serve import commands as _serve_commands  # noqa: E402, F401


def _crash_log(text: str) -> Path | None:
    """Where an error outside any stage keeps its traceback: the workspace in the current directory if there is
    one, else the system's temporary directory."""
    from lmwright.core.pipeline import write_log

    here = Path.cwd() / ".lmwright"
    return write_log(here / "logs" if here.is_dir() else Path(tempfile.gettempdir()) / "lmwright-logs", "error", text)


def main() -> None:
    debug = "--debug" in sys.argv[1:] or os.environ.get("LMWRIGHT_DEBUG", "") not in ("", "0")
    if "--debug" in sys.argv[1:]:
        sys.argv.remove("--debug")
    try:
        app()
    except LmwrightError as exc:
        if debug and isinstance(exc, StageFailed):
            err.print(exc.traceback, highlight=False, markup=False)
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)  # 'lmwright[ray]' is not markup
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted; run the same command again to resume")
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - a bug or an environment problem: a message, and the trace in a file
        text = "".join(traceback.format_exception(exc))
        if debug:
            err.print(text, highlight=False, markup=False)
        log = _crash_log(text)
        where = f"the traceback in {escape(str(log))}" if log else "the traceback (--debug prints it)"
        err.print(f"[red]error:[/red] {type(exc).__name__}: {escape(str(exc))}\n  this is likely a bug in lmwright; "
                  f"please report it with {where}", highlight=False)
        sys.exit(1)


if __name__ == "__main__":
    main()
