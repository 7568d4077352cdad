"""`lmwright data redact|card|inspect`: look at and work on data."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from lmwright.cli.common import DirOpt, JsonOpt, QuietOpt, SetOpt, err, out, run_stages
from lmwright.core.pipeline import run_pipeline
from lmwright.core.progress import Reporter
from lmwright.core.workspace import Workspace
from lmwright.errors import LmwrightError
from lmwright.stages.registry import STAGES


def register(app: typer.Typer) -> None:
    data_app = typer.Typer(no_args_is_help=True, help="Look at and work on data: redact PII, inspect removals.")
    data_app.command("redact")(data_redact)
    data_app.command("card")(data_card)
    data_app.command("inspect")(data_inspect)
    app.add_typer(data_app, name="data")


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


def data_card(dir: DirOpt = Path("."), set_: SetOpt = None, json_: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Write the dataset card (runs the data stages as needed) and print where it is."""
    ws = Workspace.open(dir, set_ or [])
    outcomes = run_stages(ws, until="card", reporter=Reporter(err, quiet=quiet or json_))
    path = ws.out_dir / "dataset_card" / "README.md"
    if json_:
        out.print_json(json.dumps({"path": str(path), **outcomes["card"].summary}))
    else:
        err.print(f"dataset card: {path}")


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
    outcomes = run_pipeline(ws, STAGES, until="dedup", reporter=Reporter(quiet=True))  # reads, publishes nothing
    report = inspect_data(outcomes, reason, samples)
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
