"""`lmwright export`: a model for other runtimes (Hugging Face, ONNX, GGUF, int8 ONNX); audited."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from lmwright.cli.common import DirOpt, JsonOpt, ModelArg, SetOpt, err, find_model, out, run_stages
from lmwright.core.progress import Reporter
from lmwright.core.workspace import Workspace


def register(app: typer.Typer) -> None:
    app.command(name="export")(export_cmd)


def export_cmd(
    model: ModelArg = None,
    format_: Annotated[str, typer.Option("--format", help="hf, onnx, gguf or int8 (ONNX with int8 weights).")] = "hf",
    out_dir: Annotated[Path | None, typer.Option("--out", help="Where to write (default lmwright-out/export/FORMAT).")] = None,
    gguf_type: Annotated[str, typer.Option("--gguf-type", help="gguf: f32 or f16 weights.")] = "f32",
    dir: DirOpt = Path("."),
    set_: SetOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Export a model for other runtimes: Hugging Face, ONNX (checked with onnxruntime), GGUF (llama.cpp), int8."""
    from lmwright.data.document import read_texts
    from lmwright.export import export

    ws = Workspace.open(dir, set_ or [])
    reporter = Reporter(err, quiet=json_)
    model_dir, name, digest = find_model(ws, model or ws.spec.serve.model, reporter)
    texts: list[str] = []
    if format_ == "int8":  # the loss change is measured on validation documents
        from lmwright.data.split import split_path

        split_dir = run_stages(ws, until="split", reporter=reporter)["split"].path
        texts = read_texts(split_path(split_dir, "val", ".parquet"))[:64]
    target = out_dir or ws.out_dir / "export" / format_
    res = {"model": name, "digest": digest[:12], **export(model_dir, format_, target, texts,
                                                            **({"dtype": gguf_type} if format_ == "gguf" else {}))}
    from lmwright.core.store import Store

    Store(ws.store_url).audit("export", model=name, digest=digest, format=format_, path=str(target))
    if json_:
        out.print_json(json.dumps(res))
        return
    for k, v in res.items():
        err.print(f"{k:<20} {v}")
