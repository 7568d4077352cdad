"""What every command shares: the two consoles, the common options, running the project's stages, and printing
outcomes and figures. Commands are thin: parse, call the library, print."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from lmwright.core.models import project_model
from lmwright.core.pipeline import StageOutcome
from lmwright.core.progress import Reporter
from lmwright.core.publish import run_project
from lmwright.core.workspace import Workspace
from lmwright.stages.registry import STAGES

out = Console()
err = Console(stderr=True, soft_wrap=True)  # log lines are not wrapped at 80 columns in CI

DirOpt = Annotated[Path, typer.Option("-C", "--dir", help="Project directory (holds lmwright.yaml).")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a spec field: --set train.max_steps=100")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the figures as JSON on stdout.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")]
ModelArg = Annotated[str | None, typer.Argument(
    help="A Hugging Face model directory, a registered model name (latest version), NAME@VERSION, NAME@ALIAS "
         "(NAME@champion), or a digest prefix (see `lmwright models list`). Default: the project's own model.")]


def run_stages(ws: Workspace, until: str | None = None, from_: str | None = None, force: tuple[str, ...] = (),
               reporter: Reporter | None = None) -> dict[str, StageOutcome]:
    """The project's stages (up to `until`), cached where they can be, with their outputs published."""
    return run_project(ws, STAGES, until=until, from_=from_, force=force, reporter=reporter)


def find_model(ws: Workspace, ref: str | None, reporter: Reporter) -> tuple[Path, str, str]:
    """The model a command was given, or the project's own (built first if there is none)."""
    return project_model(ws, STAGES, ref, reporter)


def build_project(ws: Workspace, reporter: Reporter) -> None:
    """Run the whole project when it has no registered model yet (`lmwright serve` and `chat` on a fresh project):
    the report stage's gate decides which version becomes the champion they serve."""
    from lmwright.core.store import Store

    if not any(m.name == ws.spec.project.name for m in Store(ws.store_url).models()):
        run_stages(ws, reporter=reporter)


def outcomes_json(outcomes: dict[str, StageOutcome]) -> dict:
    return {n: {"status": o.status, "digest": o.digest, "seconds": round(o.seconds, 2), **o.summary}
            for n, o in outcomes.items()}


def stage_command(name: str, help_text: str):
    """`lmwright NAME`: run the stages up to NAME and print its outcome (or its record as JSON)."""
    def command(dir: DirOpt = Path("."), set_: SetOpt = None,
                force: Annotated[bool, typer.Option("--force", help="Rerun this stage even if cached.")] = False,
                json_: JsonOpt = False, quiet: QuietOpt = False) -> None:
        ws = Workspace.open(dir, set_ or [])
        outcomes = run_stages(ws, until=name, force=(name,) if force else (),
                              reporter=Reporter(err, quiet=quiet or json_))
        o = outcomes[name]
        if json_:
            out.print_json(json.dumps({"stage": name, "status": o.status, "digest": o.digest,
                                       "path": str(o.path), **o.summary}))
        else:
            err.print(f"{name}: {o.status} — {o.summary.get('headline', '')}\n  artifact: {o.path}")

    command.__doc__ = f"{help_text} (runs the stages before it as needed)."
    return command


def print_results(title: str, res: dict, json_: bool) -> None:
    """Figures as a table (metric, value, interval) or as JSON."""
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
