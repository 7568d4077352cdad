"""The project's commands: `run`, `status`, one command per stage (`lmwright collect`, ...), `train`,
`generate` and `model plan`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from lmwright.cli.common import (
    DirOpt,
    JsonOpt,
    QuietOpt,
    SetOpt,
    err,
    out,
    outcomes_json,
    run_stages,
    stage_command,
)
from lmwright.core.progress import Reporter
from lmwright.core.status import project_status
from lmwright.core.workspace import Workspace
from lmwright.errors import LmwrightError
from lmwright.stages.registry import STAGES

# evaluate and test also take a model and data of the user's choosing (cli/evaluate.py); the fine-tuning stages
# are `lmwright finetune sft|classify|preference` (cli/finetune.py)
OWN_COMMANDS = ("evaluate", "test", "sft", "classify", "preference")


def register(app: typer.Typer) -> None:
    app.command()(run)
    app.command()(status)
    app.command()(generate)


def register_stages(app: typer.Typer) -> None:
    """A command per stage: `lmwright collect`, `lmwright pretrain`, ..."""
    for name, st in STAGES.items():
        if name not in OWN_COMMANDS:
            app.command(name=name)(stage_command(name, st.help.rstrip(".")))


def register_design(app: typer.Typer) -> None:
    """`lmwright train` (pretraining across processes) and `lmwright model plan`."""
    app.command()(train)
    model_app = typer.Typer(no_args_is_help=True, help="Model design tools.")
    model_app.command("plan")(model_plan)
    app.add_typer(model_app, name="model")


def print_where(ws: Workspace, outcomes) -> None:
    where = [("model", ws.out_dir / "model"), ("report", ws.out_dir / "report.html"),
             ("metrics", ws.out_dir / "metrics.json")]
    done = [(k, p) for k, p in where if p.exists()]
    if "evaluate" in outcomes:
        val = outcomes["evaluate"].summary["val"]
        err.print(f"[bold]val bits/byte {val['bits_per_byte']:.3f}[/bold], perplexity {val['perplexity']:.1f}")
    for k, p in done:
        err.print(f"{k:<8} {p}")


def print_warnings(outcomes) -> None:
    """Every stage's `warnings` (a list of lines in its summary), at the end of the run where they are seen."""
    found = [(name, w) for name, o in outcomes.items() for w in (o.summary or {}).get("warnings") or []]
    if found:
        err.print("[yellow]warnings:[/yellow]")
        for name, w in found:
            err.print(f"  [yellow]{name}[/yellow]: {escape(str(w))}", highlight=False)


ACCEPTANCE_FAILED = 3  # `lmwright run`'s exit status when the model fails requirements.acceptance (errors: 2)


def run(
    dir: DirOpt = Path("."),
    set_: SetOpt = None,
    until: Annotated[str | None, typer.Option(help="Stop after this stage.")] = None,
    from_: Annotated[str | None, typer.Option("--from", help="Rerun this stage and everything after it.")] = None,
    force: Annotated[list[str] | None, typer.Option(help="Rerun this stage even if cached (repeatable).")] = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Run every stage of the project (the built-in default when there is no lmwright.yaml); cached stages are skipped.
    Exits 3 when the model fails requirements.acceptance (and then moves no alias)."""
    ws = Workspace.open(dir, set_ or [])
    err.print(f"lmwright: project [bold]{ws.spec.project.name}[/bold] "
              f"({ws.spec_path or 'built-in default spec'}) in {ws.root}")
    outcomes = run_stages(ws, until=until, from_=from_, force=tuple(force or ()),
                         reporter=Reporter(err, quiet=quiet))
    if all(o.status == "cached" for o in outcomes.values()):
        err.print("every stage is cached: nothing to do")
    if json_:
        out.print_json(json.dumps(outcomes_json(outcomes)))
    print_where(ws, outcomes)
    print_warnings(outcomes)
    report = outcomes.get("report")
    req = report.summary.get("requirements", {}) if report else {}
    if req.get("failing"):
        err.print(f"[red]acceptance failed:[/red] {req['passed']} of {req['total']} criteria pass "
                  "(requirements.acceptance); no alias moved, so nothing this run made is served by default:")
        for line in req["failing"]:
            err.print(f"  - {line}")
        err.print("  see the report card's Requirements section; `lmwright promote NAME@VERSION --force --reason "
                  "\"...\"` overrides (recorded)")
        raise typer.Exit(ACCEPTANCE_FAILED)


def status(dir: DirOpt = Path("."), set_: SetOpt = None, json_: JsonOpt = False) -> None:
    """The project at a glance: stages (cached / stale / new), datasets, runs, models and alerts."""
    ws = Workspace.open(dir, set_ or [])
    st = project_status(ws, STAGES)
    stages, datasets, runs, models = st["stages"], st["datasets"], st["runs"], st["models"]
    if json_:
        out.print_json(json.dumps(st))
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
    for col in ("name@version", "aliases", "params", "val bits/byte", "test bits/byte", "digest", "created"):
        t.add_column(col)
    for m in models:
        val = m["metrics"].get("val", {}).get("bits_per_byte")
        test = f"{m['test']['bits_per_byte']:.3f} ({m['test_evaluations']}x)" if m["test"] else "not tested"
        gone = "" if m["weights"] == "present" else f" [red]({m['weights']})[/red]"
        t.add_row(f"{m['name']}@{m['version']}{gone}", " ".join(f"@{a}" for a in m["aliases"]), f"{m['params']:,}",
                  "" if val is None else f"{val:.3f}", test, m["digest"], m["created_at"][:19])
    out.print(t)
    if st["alerts"]:
        t = Table(title="alerts (lmwright monitor)")
        for col in ("state", "rule", "version", "value", "since", "resolved"):
            t.add_column(col)
        colour = {"firing": "red", "pending": "yellow", "resolved": "green"}
        for a in st["alerts"]:
            t.add_row(f"[{colour.get(a['state'], 'dim')}]{a['state']}[/]", a["rule"], f"{a['model']}@{a['version']}",
                      "" if a["value"] is None else f"{a['value']:.4g} (threshold {a['threshold']:g})",
                      a["started_at"][:19], (a["resolved_at"] or "")[:19])
        out.print(t)
    g = st["governance"]
    out.print(f"audit log: {g['audit_rows']} rows, chain {g['audit_chain']}; "
              f"{len(g['takedowns'])} takedown{'s' * (len(g['takedowns']) != 1)} (lmwright forget)")


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
    from lmwright.core.models import saved_model_dir
    from lmwright.model.generate import generate_text
    from lmwright.model.hf import load_hf
    from lmwright.tokenizer import load_tokenizer

    model_dir = saved_model_dir(model or dir)
    m, tok = load_hf(model_dir), load_tokenizer(model_dir)
    text = generate_text(m, tok, prompt, max_tokens, temperature, top_k, seed)
    out.print(prompt + text, highlight=False, markup=False)


def train(
    dir: DirOpt = Path("."),
    set_: SetOpt = None,
    nproc: Annotated[int | None, typer.Option("--nproc", help="Processes (GPUs) to train with on this machine, via "
                                              "torchrun; sets train.nproc.")] = None,
    fsdp: Annotated[bool, typer.Option("--fsdp", help="Shard the model with FSDP2 instead of DDP.")] = False,
    nnodes: Annotated[int, typer.Option("--nnodes", envvar="PET_NNODES", help="Machines in the run; each runs this "
                                        "command with its own --node-rank.")] = 1,
    node_rank: Annotated[int, typer.Option("--node-rank", envvar="PET_NODE_RANK", help="This machine's rank, 0 to "
                                           "nnodes-1; node 0 records the outcome, the others only train.")] = 0,
    rdzv_endpoint: Annotated[str, typer.Option("--rdzv-endpoint", envvar="PET_RDZV_ENDPOINT", help="HOST:PORT on "
                                               "node 0 where the nodes meet (with --nnodes > 1).")] = "",
    force: Annotated[bool, typer.Option("--force", help="Retrain even if cached.")] = False,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Pretrain the model (the pretrain stage), optionally across processes and machines: `lmwright train --nproc 4`,
    or on each of two machines `lmwright train --nnodes 2 --node-rank 0|1 --rdzv-endpoint node0:29500`."""
    from lmwright.train.distributed import Nodes, check_world, on_nodes

    extra = [*(set_ or []), *([f"train.nproc={nproc}"] if nproc else []), *(["train.distributed=fsdp"] if fsdp else [])]
    nodes = Nodes(nnodes, node_rank, rdzv_endpoint)  # per machine: not in the spec, so not in the cache key
    ws = Workspace.open(dir, extra)
    check_world(ws.spec.train, ws.spec.train.nproc * nodes.count, nodes.count)  # before any stage runs
    if nodes.rank > 0:
        from lmwright.stages.pretrain import join_pretrain

        status = join_pretrain(ws, STAGES, nodes, Reporter(err, quiet=quiet or json_), force)
        if json_:
            out.print_json(json.dumps({"stage": "pretrain", "status": status, "node_rank": nodes.rank,
                                       "nnodes": nodes.count}))
        return
    with on_nodes(nodes):
        stage_command("pretrain", "")(dir=dir, set_=extra, force=force, json_=json_, quiet=quiet)


def _plan_precision(train_device: str, target: str | None) -> str:
    """What `auto` trains in on the plan's device: a named GPU, bf16 unless it predates bf16 tensor cores; else
    this machine, as training here resolves it, or bf16 when the spec names a CUDA GPU this machine lacks."""
    from lmwright.model.plan import EMULATED_BF16
    from lmwright.train.step import pick_device, resolve_precision

    if target is not None:
        return "fp32" if target in EMULATED_BF16 else "bf16"

    try:
        return resolve_precision("auto", pick_device(train_device))
    except LmwrightError:  # train.device names a device this machine does not have
        return "bf16" if train_device == "cuda" else "fp32"


def model_plan(
    dir: DirOpt = Path("."),
    set_: SetOpt = None,
    batch: Annotated[int | None, typer.Option(help="Sequences per step (default: train.batch_size / grad_accum "
                                              "per process).")] = None,
    seq: Annotated[int | None, typer.Option(help="Sequence length (default: train.seq_len).")] = None,
    precision: Annotated[str | None, typer.Option(help="fp32, bf16 or fp16 (default: train.precision; "
                                                     "auto: bf16 on --device if it has bf16, else as "
                                                     "training here resolves it).")] = None,
    optimizer: Annotated[str | None, typer.Option(help="Optimizer (default: train.optimizer).")] = None,
    device: Annotated[str | None, typer.Option(help="A device to check the fit against: "
                                               "h100, a100-40, l4, t4, rtx4090, ...")] = None,
    memory_gib: Annotated[float | None, typer.Option("--memory-gib", help="Or a memory size in GiB.")] = None,
    tokens: Annotated[int | None, typer.Option("--tokens", min=1, help="Training tokens to size against (default: "
                                               "the train split of the latest `lmwright tokenize`).")] = None,
    json_: JsonOpt = False,
) -> None:
    """Parameters, FLOPs per token and training memory of the spec's model, whether it fits a device, and against
    the corpus: tokens per parameter, epochs and warnings with a suggested size."""
    from lmwright.model.config import ModelConfig
    from lmwright.model.plan import DEVICES, GIB, PRECISION_BYTES, plan
    from lmwright.model.sizing import CHINCHILLA_TOKENS_PER_PARAM, data_fit

    ws = Workspace.open(dir, set_ or [])
    spec = ws.spec
    tr = spec.train
    if device is not None and device not in DEVICES:
        raise LmwrightError(f"--device {device!r} is not one I know; use one of {', '.join(DEVICES)} "
                            "or --memory-gib N")
    precision = precision or tr.precision
    if precision == "auto":
        precision = _plan_precision(tr.device, device)
    if precision not in PRECISION_BYTES:
        raise LmwrightError(f"--precision {precision!r}: use auto, fp32, bf16 or fp16")
    cfg = ModelConfig.from_spec(spec, spec.tokenizer.vocab_size)
    b = batch or tr.batch_size // (tr.grad_accum * tr.nproc)
    p = plan(cfg, b, seq or tr.seq_len, precision, optimizer or tr.optimizer, tr.activation_checkpointing,
             device, memory_gib)
    corpus = (tokens, "--tokens") if tokens else corpus_tokens(ws)
    fit = data_fit(cfg, corpus[0], tr) if corpus else None
    if json_:
        data = {**fit.to_dict(), "tokens_from": corpus[1]} if fit else None
        out.print_json(json.dumps({**p.to_dict(), "data": data}))
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
    if fit:
        t.add_row("training tokens", f"{fit.train_tokens:,} ({corpus[1]})")
        t.add_row("tokens per parameter", f"{fit.tokens_per_param:.3g} (compute-optimal ~{CHINCHILLA_TOKENS_PER_PARAM}: "
                                          f"{fit.chinchilla_tokens:,} tokens)")
        t.add_row("tokens the run sees", f"{fit.run_tokens:,} ({tr.max_steps:,} steps x {tr.batch_size} x "
                                         f"{tr.seq_len})")
        t.add_row("epochs over the train split", f"{fit.epochs:.2f}")
        t.add_row("training tokens per vocabulary entry", f"{fit.tokens_per_vocab_entry:,.1f}")
    out.print(t)
    if not fit:
        out.print("corpus: no tokenized data yet; run `lmwright tokenize` (or pass --tokens N) for tokens per "
                  "parameter and epochs")
    for w in fit.warnings if fit else []:
        out.print(f"[yellow]warning:[/yellow] {escape(w)}", highlight=False)


def corpus_tokens(ws: Workspace) -> tuple[int, str] | None:
    """The train split's tokens from the latest tokenize run, and which run; None before there is one."""
    if not ws.spec.project.store_url and not (ws.internal / "lmwright.db").exists():
        return None  # no store yet: opening one would create it
    from lmwright.core.store import Store

    r = Store(ws.store_url).last_run("tokenize")
    train = ((r.summary or {}).get("tokens") or {}).get("train") if r else None
    if train is None:
        return None
    return int(train), f"tokenize run {r.id}"
