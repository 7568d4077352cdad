"""`lmwright data redact|card|inspect|history`: look at and work on data."""

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
    data_app.command("history")(data_history)
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
    report["pii_detector"] = _pii_against_humans(ws)
    if json_:
        out.print_json(json.dumps(report))
        return
    for task, ev in report["pii_detector"].items():
        e, o = ev["exact"], ev["overlap"]
        f = lambda x: "–" if x is None else f"{x:.2f}"  # noqa: E731 - undefined when nothing was found or labelled
        out.print(f"[bold]PII detector against the human spans of '{task}'[/bold] ({ev['items']} items, "
                  f"{ev['human_spans']} spans): precision {f(e['precision'])}, recall {f(e['recall'])} "
                  f"(exact spans; overlapping: {f(o['precision'])} / {f(o['recall'])})")
    for stage_name, st in report["stages"].items():
        out.print(f"[bold]{stage_name}[/bold]: read {st['read']:,}, kept {st['kept']:,}, "
                  f"removed {sum(st['removed'].values()):,}, quarantined {st['quarantined']:,}")
        for group in st["groups"]:
            out.print(f"  [yellow]{group['reason']}[/yellow] ({group['count']:,})")
            for x in group["samples"]:
                out.print(f"    {x['locator']}: {x['text']!r}", highlight=False, markup=False)


def _pii_against_humans(ws: Workspace) -> dict:
    """The clean stage's PII detector scored on every spans annotation task whose labels name PII kinds (emails,
    phones, addresses...), from their final labels: human-labelled PII as the detector's evaluation set."""
    from lmwright.annotate import pii_eval
    from lmwright.annotate import project as ap
    from lmwright.annotate import review as ar
    from lmwright.core.store import Store

    store, out_ = Store(ws.store_url), {}
    for name in ap.tasks(store):
        task = ap.task(store, name)
        if task.kind != "spans" or not any(pii_eval.detector_kind(x) for x in task.labels):
            continue
        final = [r for r in ar.records(store, name) if r["final"]]
        if final:
            out_[name] = pii_eval.evaluate_pii(final, task, ip_scope=ws.spec.data.pii.ip_scope)
    return out_


def data_history(
    dir: DirOpt = Path("."),
    set_: SetOpt = None,
    last: Annotated[int, typer.Option("-n", "--last", min=1, help="Only the last N versions.")] = 20,
    json_: JsonOpt = False,
) -> None:
    """Data quality over time: each dataset version's documents read and kept, removals by reason, PII found,
    duplicate rate and languages, with the change from the version before (read from the store; runs nothing)."""
    from rich.table import Table

    from lmwright.core.store import Store
    from lmwright.data.history import history

    ws = Workspace.open(dir, set_ or [])
    versions = history(Store(ws.store_url))[-last:]
    if json_:
        out.print_json(json.dumps(versions))
        return
    if not versions:
        err.print("no dataset versions yet: `lmwright data card` (or `lmwright run`) makes the first")
        return

    def delta(row: dict, key: str, pct: bool = False) -> str:
        d = (row["change"] or {}).get(key)
        return "" if not d else f" ({100 * d:+.1f} pt)" if pct else f" ({d:+,})"

    table = Table(title="Dataset versions (distinct outputs of the split stage), oldest first")
    for col in ("version", "date", "read", "kept", "removed (top 3)", "PII", "duplicates", "languages",
                "change from the previous version"):
        table.add_column(col, no_wrap=col in ("version", "read", "kept"), overflow="fold")
    for v in versions:
        ch = v["change"] or {}
        moved = [f"{r} {n:+,}" for r, n in list(ch.get("removed", {}).items())[:3]]
        moved += [f"PII {k} {n:+,}" for k, n in list(ch.get("pii", {}).items())[:2]]
        moved += [f"{k} share {100 * n:+.1f} pt" for k, n in list(ch.get("language_share", {}).items())[:2]]
        table.add_row(
            v["version"], v["date"] or "–", f"{v['documents_read']:,}{delta(v, 'documents_read')}",
            f"{v['documents_kept']:,}{delta(v, 'documents_kept')}",
            ", ".join(f"{r} {n:,}" for r, n in list(v["removed"].items())[:3]) or "none",
            f"{v['pii_total']:,}{delta(v, 'pii_total')}",
            "–" if v["duplicate_rate"] is None
            else f"{100 * v['duplicate_rate']:.1f} %{delta(v, 'duplicate_rate', pct=True)}",
            ", ".join(f"{k} {n:,}" for k, n in (v["languages"] or {}).items()) or "–",
            "first version" if v["change"] is None else ", ".join(moved) or "no change in removals, PII or languages")
    out.print(table)
