"""`lmwright finetune sft|classify|preference`: one fine-tuning recipe, as a pipeline stage (cached, resumable,
registered), with the base model, data and method from options or the spec's `finetune:` section."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from lmwright.cli.common import DirOpt, JsonOpt, SetOpt, err, out, run_stages
from lmwright.core.progress import Reporter
from lmwright.core.workspace import Workspace
from lmwright.errors import LmwrightError


def register(app: typer.Typer) -> None:
    finetune_app = typer.Typer(help="Fine-tune a model: instructions (sft), a classifier (classify) or preferences "
                                    "(preference, DPO); full or LoRA; from this project's model or any HF Llama.",
                               no_args_is_help=True)
    finetune_app.command("sft")(sft_cmd)
    finetune_app.command("classify")(classify_cmd)
    finetune_app.command("preference")(preference_cmd)
    app.add_typer(finetune_app, name="finetune")


BaseOpt = Annotated[str | None, typer.Option(
    "--base", help="The model to start from: a Hugging Face Llama/Qwen3 directory, a registered name, NAME@N or a "
                   "digest prefix (default: finetune.base, else this project's model).")]
DataOpt = Annotated[Path | None, typer.Option("--data", help="Training rows (.jsonl or .parquet); default: "
                                                              "finetune.<task>.data, else made from pydocs.")]
ValOpt = Annotated[Path | None, typer.Option("--val-data", help="Held-out rows (default: 10% of --data).")]
MethodOpt = Annotated[str | None, typer.Option("--method", help="lora or full (default: finetune.method).")]
StepsOpt = Annotated[int | None, typer.Option("--steps", help="Optimizer steps (default: finetune.steps).")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Run again even if cached.")]


def _run(task: str, dir: Path, set_: list[str] | None, base: str | None, data: Path | None, val_data: Path | None,
         method: str | None, steps: int | None, force: bool, json_: bool) -> None:
    overrides = list(set_ or []) + [f"finetune.{task}.enabled=true"]
    if base:
        overrides.append(f"finetune.base={base}")
    if data:
        overrides.append(f"finetune.{task}.data={data.resolve()}")
    if val_data:
        overrides.append(f"finetune.{task}.val_data={val_data.resolve()}")
    if method:
        overrides.append(f"finetune.method={method}")
    if steps:
        overrides.append(f"finetune.{task}.steps={steps}")
    outcomes = run_stages(Workspace.open(dir, overrides), until=task, force=(task,) if force else (),
                          reporter=Reporter(err, quiet=json_))
    o = outcomes[task]
    if json_:
        out.print_json(json.dumps({"task": task, "status": o.status, "path": str(o.path), **o.summary}))
        return
    s = o.summary
    if s.get("skipped"):
        raise LmwrightError(f"finetune {task}: not run: {s.get('reason', s.get('headline', ''))}")
    err.print(f"finetune {task}: {o.status} — {s.get('headline', '')}")
    err.print(f"  model: {o.path / 'model'} (registered as {s.get('registered_as')})")
    if (o.path / "adapter").exists():
        err.print(f"  LoRA adapter (PEFT format): {o.path / 'adapter'}")
    err.print(f"  base {s.get('base_figures')}\n  tuned {s.get('tuned_figures')}")
    q = s.get("data", {}).get("quarantined", 0)
    if q:
        err.print(f"  {q} malformed row(s) quarantined, with reasons: {o.path / 'quarantine.jsonl'}")


def sft_cmd(dir: DirOpt = Path("."), set_: SetOpt = None, base: BaseOpt = None, data: DataOpt = None,
            val_data: ValOpt = None, method: MethodOpt = None, steps: StepsOpt = None, force: ForceOpt = False,
            json_: JsonOpt = False) -> None:
    """Instruction tuning on Alpaca, ShareGPT or OpenAI-messages rows; loss on assistant tokens only."""
    _run("sft", dir, set_, base, data, val_data, method, steps, force, json_)


def classify_cmd(dir: DirOpt = Path("."), set_: SetOpt = None, base: BaseOpt = None, data: DataOpt = None,
                 val_data: ValOpt = None, method: MethodOpt = None, steps: StepsOpt = None, force: ForceOpt = False,
                 json_: JsonOpt = False) -> None:
    """A classification head on text/label rows, with class weights for imbalance."""
    _run("classify", dir, set_, base, data, val_data, method, steps, force, json_)


def preference_cmd(dir: DirOpt = Path("."), set_: SetOpt = None, base: BaseOpt = None, data: DataOpt = None,
                   val_data: ValOpt = None, method: MethodOpt = None, steps: StepsOpt = None,
                   force: ForceOpt = False, json_: JsonOpt = False) -> None:
    """DPO on prompt/chosen/rejected rows, against the base model as the reference."""
    _run("preference", dir, set_, base, data, val_data, method, steps, force, json_)
