"""`lmwright evaluate`, `ensemble`, `test`, `cv` and `tune`: the figures of a model, of several models as one, and
of a configuration."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lmwright.cli.common import (
    DirOpt,
    JsonOpt,
    ModelArg,
    QuietOpt,
    SetOpt,
    err,
    find_model,
    out,
    print_results,
    run_stages,
    stage_command,
)
from lmwright.core.models import resolve_model
from lmwright.core.progress import Reporter
from lmwright.core.workspace import Workspace
from lmwright.errors import LmwrightError


def register(app: typer.Typer) -> None:
    app.command()(evaluate)
    app.command()(ensemble)
    app.command()(test)


def register_search(app: typer.Typer) -> None:
    app.command()(cv)
    app.command()(tune)


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
    from lmwright.evaluate.adhoc import evaluate_file, evaluate_split, write_results
    from lmwright.model.hf import load_hf
    from lmwright.spec import EvalSet
    from lmwright.tokenizer import load_tokenizer

    if model is None and file is None and split == "val":
        stage_command("evaluate", "")(dir=dir, set_=set_, force=force, json_=json_, quiet=quiet)
        return
    if split not in ("val", "train", "test"):
        raise LmwrightError(f"--split {split!r}: use val or train (or --file PATH for other data)")
    ws = Workspace.open(dir, set_ or [])
    reporter = Reporter(err, quiet=quiet or json_)
    model_dir, name, _ = find_model(ws, model, reporter)
    lm, tok = load_hf(model_dir), load_tokenizer(model_dir)
    target = ws.out_dir / "eval"
    if file is not None:
        es = EvalSet(name=file.stem, path=str(file.resolve()), task=task, text_field=text_field,
                     label_field=label_field, labels=labels.split(",") if labels else None,
                     prompt_field=prompt_field, reference_field=reference_field)
        res = evaluate_file(ws.spec, ws.root, lm, tok, es, target)
        what = str(file)
    else:
        split_dir = run_stages(ws, until="split", reporter=reporter)["split"].path
        res = evaluate_split(ws.spec, lm, tok, split_dir, split)
        what = f"the {split} split"
    path = write_results(target, f"{name}-{file.stem if file else split}", res)
    print_results(f"{name} on {what}", res, json_)
    if not json_:
        err.print(f"results: {path}")


def ensemble(
    models: Annotated[list[str], typer.Argument(
        help="Two or more models (NAME@N, NAME@ALIAS, a digest prefix or a model directory): all language models "
             "or all classifiers, sharing one tokenizer.", show_default=False)],
    split: Annotated[str, typer.Option(help="The project split to score: val or train.")] = "val",
    combine: Annotated[str, typer.Option(help="logprob: the mean of the models' log-probabilities, renormalised; "
                                         "prob: the mean of their probabilities (a mixture).")] = "logprob",
    dir: DirOpt = Path("."),
    set_: SetOpt = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Several models as one: each model's figure on a split, the ensemble's (the renormalised mean of their
    log-probabilities by default) and a paired bootstrap interval of the difference. Language models: bits per byte; classifiers:
    accuracy, macro-F1 and log-loss."""
    from lmwright.data.document import read_docs
    from lmwright.data.split import split_path
    from lmwright.evaluate import ensemble as ens
    from lmwright.evaluate.adhoc import write_results

    if len(models) < 2 or len(set(models)) < len(models):
        raise LmwrightError("lmwright ensemble: give two or more different models, e.g. NAME@1 NAME@2")
    if split not in ("val", "train"):
        raise LmwrightError(f"--split {split!r}: use val or train (the test split is read once per model, by "
                            "`lmwright test`: choose between a model and an ensemble on validation)")
    if combine not in ens.COMBINE:
        raise LmwrightError(f"--combine {combine!r}: use logprob or prob")
    ws = Workspace.open(dir, set_ or [])
    spec, reporter = ws.spec, Reporter(err, quiet=quiet or json_)
    dirs = {ref: resolve_model(ws, ref)[0] for ref in models}
    ens.check_tokenizers(dirs)
    kinds = {ref: ens.is_classifier(path) for ref, path in dirs.items()}
    if len(set(kinds.values())) > 1:
        raise LmwrightError("lmwright ensemble: give only language models or only classifiers; classifiers here: "
                            + ", ".join(ref for ref, c in kinds.items() if c))
    split_dir = run_stages(ws, until="split", reporter=reporter)["split"].path
    e, seed = spec.eval, spec.project.seed
    if any(kinds.values()):
        from lmwright.finetune.fit import with_data_paths

        labels, texts, y = _classify_rows(with_data_paths(spec, ws.root), split_dir, split, dirs)
        seq_len = min(spec.finetune.classify.seq_len or spec.finetune.seq_len, 128)  # as the recipe cuts texts
        res = ens.classify_ensemble(ens.classifier_probabilities(dirs, texts, seq_len)[0], y, labels, combine,
                                    e.bootstrap, e.confidence, seed)
        figures = ("accuracy", "f1_macro", "log_loss")
    else:
        from lmwright.model.hf import load_hf
        from lmwright.tokenizer import load_tokenizer

        texts = [d["text"] for d in read_docs(split_path(split_dir, split, ".parquet"))]
        members = {ref: load_hf(path) for ref, path in dirs.items()}
        res = ens.lm_ensemble(members, load_tokenizer(next(iter(dirs.values()))), texts, spec.train.seq_len, combine,
                              e.bootstrap, e.confidence, seed)
        figures = ("bits_per_byte",)
    res["split"] = split
    path = write_results(ws.out_dir / "eval", f"ensemble-{split}", res)
    if json_:
        out.print_json(json.dumps(res, default=float))
        return
    table = Table(title=f"ensemble of {len(models)} ({combine}) on the {split} split")
    for col in ("model", "metric", "value", "ensemble − model", f"{100 * e.confidence:.0f}% paired interval"):
        table.add_column(col)
    for ref, m in [*res["members"].items(), ("ensemble", res["ensemble"])]:
        for f in figures:
            vs = res["vs"].get(ref, {}).get(f)
            table.add_row(ref, f.replace("bits_per_byte", "bits/byte"), f"{m[f]:.4f}",
                          f"{vs['difference']:+.4f}" if vs else "",
                          f"[{vs['ci'][0]:+.4f}, {vs['ci'][1]:+.4f}]" if vs else "")
    out.print(table)
    err.print(f"results: {path}")


def _classify_rows(spec, split_dir: Path, split: str, dirs: dict[str, Path]) -> tuple[list[str], list[str], list[int]]:
    """The classify recipe's own rows of `split` (its held-out rows for val), with the classifiers' labels."""
    import tempfile

    from lmwright.finetune.recipes import classify_rows

    labels = json.loads((next(iter(dirs.values())) / "config.json").read_text())["id2label"]
    labels = [labels[str(i)] for i in range(len(labels))]
    with tempfile.TemporaryDirectory() as tmp:  # load_rows writes its quarantine file there
        train, val, _, _ = classify_rows(spec, split_dir, Path(tmp))
    rows = [r for r in (val if split == "val" else train) if r["label"] in labels]
    return labels, [r["text"] for r in rows], [labels.index(r["label"]) for r in rows]


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
        outcomes = run_stages(ws, until="test", force=("test",) if force else (), reporter=reporter)
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
        print_results(f"{ws.spec.project.name} on the test split", res, json_)
        return
    model_dir, name, digest = resolve_model(ws, model)
    outcomes = run_stages(ws, until="split", reporter=reporter)
    split = outcomes["split"]
    res, warning = final_evaluation(ws, model_dir, digest, name, split.path, split.digest, "cli", reporter)
    if warning:
        err.print(f"[yellow]{warning}[/yellow]")
    print_results(f"{name} on the test split", res, json_)


def cv(
    dir: DirOpt = Path("."),
    set_: SetOpt = None,
    folds: Annotated[int | None, typer.Option("--folds", help="k (sets cv.folds).")] = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """k-fold cross-validation of the spec over the train + val documents (stratified); resumable."""
    from lmwright.train.cv import cross_validate_project

    ws = Workspace.open(dir, [*(set_ or []), *([f"cv.folds={folds}"] if folds else [])])
    reporter = Reporter(err, quiet=quiet or json_)
    outcomes = run_stages(ws, until="tokenizer", reporter=reporter)
    split, tok = outcomes["split"], outcomes["tokenizer"]
    res = cross_validate_project(ws, split.path, split.digest, tok.path, tok.digest, reporter)
    if json_:
        out.print_json(json.dumps({k: v for k, v in res.items() if k != "path"}))
        return
    table = Table(title=f"{res['k']}-fold cross-validation (stratified by {res['stratify_by']})")
    for col in ("fold", "train docs", "held-out docs", "bits/byte", "loss"):
        table.add_column(col)
    for r in res["folds"]:
        table.add_row(str(r["fold"]), f"{r['train_docs']:,}", f"{r['heldout_docs']:,}", f"{r['bits_per_byte']:.4f}",
                      f"{r['loss']:.4f}")
    out.print(table)
    err.print(f"mean {res['mean_bits_per_byte']:.4f} ± {res['sd_bits_per_byte']:.4f} bits/byte (sd over folds)\n"
              f"  results: {res['path']}")


def tune(dir: DirOpt = Path("."), set_: SetOpt = None, json_: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Search hyper-parameters (tune.space) on the validation split with Optuna; resumable, parallel."""
    from lmwright.train.hpo import tune_project

    ws = Workspace.open(dir, set_ or [])
    reporter = Reporter(err, quiet=quiet or json_)
    outcomes = run_stages(ws, until="tokenize", reporter=reporter)
    t = ws.spec.tune
    if not (quiet or json_):
        err.print(f"tune: {t.trials} trials, {t.sampler} sampler, {t.pruner} pruning, {t.parallel} process(es), "
                  f"minimising {t.metric} over {', '.join(t.space)}")
    study, res = tune_project(ws, outcomes["tokenize"].path, outcomes["tokenizer"].path,
                              outcomes["tokenize"].digest, reporter)
    name, out_dir = res["study"], Path(res["outputs"])
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
