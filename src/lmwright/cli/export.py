"""`lmwright export`: a model for other runtimes (Hugging Face, ONNX, GGUF, int8 ONNX); audited. A registered model
whose sources' licences conflict with governance.license (`core/licenses.py`) is not exported unless `--force
--reason` says why (recorded in the audit log). The Hugging Face export carries the model card, brought up to date
with the recorded test evaluation and the licence check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from lmwright.cli.common import DirOpt, JsonOpt, ModelArg, SetOpt, err, find_model, out, run_stages
from lmwright.core.progress import Reporter
from lmwright.core.workspace import Workspace
from lmwright.errors import LmwrightError


def register(app: typer.Typer) -> None:
    app.command(name="export")(export_cmd)


def export_cmd(
    model: ModelArg = None,
    format_: Annotated[str, typer.Option("--format", help="hf, onnx, gguf or int8 (ONNX with int8 weights).")] = "hf",
    out_dir: Annotated[Path | None, typer.Option("--out", help="Where to write (default lmwright-out/export/FORMAT).")] = None,
    gguf_type: Annotated[str, typer.Option("--gguf-type", help="gguf: f32 or f16 weights.")] = "f32",
    force: Annotated[bool, typer.Option("--force", help="Export despite a licence conflict (needs --reason; "
                                                        "audited).")] = False,
    reason: Annotated[str | None, typer.Option("--reason", help="Why --force: kept in the audit log.")] = None,
    dir: DirOpt = Path("."),
    set_: SetOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Export a model for other runtimes: Hugging Face, ONNX (checked with onnxruntime), GGUF (llama.cpp), int8."""
    from lmwright.core import licenses
    from lmwright.core.store import Store
    from lmwright.data.document import read_texts
    from lmwright.export import export

    ws = Workspace.open(dir, set_ or [])
    if force and not (reason or "").strip():
        raise LmwrightError("--force needs --reason \"...\": an export despite a licence conflict is recorded with "
                            "its reason in the audit log")
    reporter = Reporter(err, quiet=json_)
    model_dir, name, digest = find_model(ws, model or ws.spec.serve.model, reporter)
    store = Store(ws.store_url)
    registered = next((m for m in store.models() if m.digest == digest), None)
    # the licences of the sources that reached the model, from its lineage; a directory from elsewhere has none
    sources, found = licenses.model_findings(store, registered.run_id, ws.spec.governance) if registered else ({}, [])
    conflicts = [f for f in found if f["blocks"]]
    if conflicts and not force:
        lines = "\n".join(f"  - {licenses.message(f)}" for f in conflicts)
        raise LmwrightError(f"{name} is not exported: a licence conflict blocks publishing it\n{lines}")
    texts: list[str] = []
    if format_ == "int8":  # the loss change is measured on validation documents
        from lmwright.data.split import split_path

        split_dir = run_stages(ws, until="split", reporter=reporter)["split"].path
        texts = read_texts(split_path(split_dir, "val", ".parquet"))[:64]
    target = out_dir or ws.out_dir / "export" / format_
    res = {"model": name, "digest": digest[:12], **export(model_dir, format_, target, texts,
                                                            **({"dtype": gguf_type} if format_ == "gguf" else {}))}
    if format_ == "hf" and registered is not None:  # the card as of now: test figures, today's licence check
        from lmwright.evaluate.model_card import export_card

        card = export_card(store, registered, ws.spec, target)
        res["card"] = str(card) if card else None
    res["licence"] = {"model": ws.spec.governance.license, "sources": sources,
                      "conflicts": [licenses.message(f) for f in conflicts],
                      "warnings": [licenses.message(f) for f in found if not f["blocks"]],
                      **({} if registered else {"checked": False, "why": "not a model registered in this project"})}
    store.audit("export", model=name, digest=digest, format=format_, path=str(target),
                licence_conflicts=res["licence"]["conflicts"], forced=bool(conflicts), reason=reason)
    if json_:
        out.print_json(json.dumps(res))
        return
    for w in res["licence"]["warnings"] + (res["licence"]["conflicts"] if conflicts else []):
        err.print(f"[yellow]licence:[/yellow] {w}", highlight=False)
    for k, v in res.items():
        if k != "licence":
            err.print(f"{k:<20} {v}")
