"""`lmwright lineage`, `lmwright forget` and `lmwright audit`: what came from what, taking documents down, and the
verifiable audit log. Thin: parse, call ops/lineage.py, ops/takedown.py or the store, print."""

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

TAMPERED_EXIT = 5  # `lmwright audit --verify` when the chain is broken (2 = an error, 3 = acceptance, 4 = alerts)


def register(app: typer.Typer) -> None:
    app.command()(lineage)
    app.command()(forget)
    app.command()(audit)


def lineage(ident: Annotated[str | None, typer.Argument(
                metavar="ID", help="A model (NAME@VERSION, NAME@ALIAS, NAME), a request id, a document id, a stage "
                                   "name or an artifact digest (prefix).")] = None,
            dir: DirOpt = Path("."), set_: SetOpt = None, json_: JsonOpt = False,
            openlineage: Annotated[Path | None, typer.Option(
                "--openlineage", help="Write OpenLineage run events (JSON lines) for every stage run, or for ID's "
                                      "lineage, to this file ('-' for stdout).")] = None,
            post: Annotated[str | None, typer.Option(
                "--post", help="POST those events to a lineage server (e.g. Marquez's "
                               "http://localhost:5000/api/v1/lineage).")] = None) -> None:
    """Where something came from and what it reached: sources, documents, datasets, runs, models, deployments and
    the requests they answered."""
    from lmwright.ops.lineage import openlineage_events, post_events, query

    ws = Workspace.open(dir, set_ or [])
    if post is not None:
        if not post.startswith(("http://", "https://")):
            raise LmwrightError(f"--post {post!r} is not an http(s) URL; e.g. http://localhost:5000/api/v1/lineage")
        n = post_events(openlineage_events(ws, ident), post)
        err.print(f"{n} OpenLineage run events posted to {post}")
    if openlineage is not None:
        lines = "".join(json.dumps(e) + "\n" for e in openlineage_events(ws, ident))
        if str(openlineage) == "-":
            out.file.write(lines)
        else:
            try:
                openlineage.write_text(lines, encoding="utf-8")
            except OSError as exc:
                raise LmwrightError(f"cannot write --openlineage {openlineage}: {exc.strerror}; give a file path in "
                                    "an existing directory, or '-' for stdout") from exc
            err.print(f"{lines.count(chr(10))} OpenLineage run events written to {openlineage}")
        return
    if post is not None:
        return
    if ident is None:
        raise LmwrightError("name what to trace: `lmwright lineage ID` (or --openlineage FILE for every run)")
    q = query(ws, ident)
    if json_:
        out.print_json(json.dumps(q, default=str))
        return
    out.print(f"[bold]{q['kind']}[/bold] {ident}: " + ", ".join(
        f"{k} {v}" for k, v in q["subject"].items() if v not in (None, False) and k not in ("digest", "taken_down")))
    for t in q["subject"].get("taken_down") or []:
        out.print(f"[red]taken down[/red] by takedown #{t['takedown']} ({t['selector']}) on {t['at']} by "
                  f"{t['actor']}" + (f": {t['reason']}" if t["reason"] else ""))
    up, down = q.get("upstream", {}), q.get("downstream", {})
    if up.get("sources"):
        out.print("sources: " + ", ".join(f"{s['source']} ({s.get('license') or '?'}"
                                          + (f", {s['documents']:,} documents" if s.get("documents") is not None else "")
                                          + ")" for s in up["sources"]))
    if up.get("runs"):
        out.print("upstream runs: " + ", ".join(f"{r['stage']} {(r['digest'] or '')[:8]}" for r in up["runs"]))
    if "feedback" in down:
        out.print(f"feedback: {len(down['feedback'])} rows")
    for d in down.get("datasets", []):
        out.print(f"in dataset: {d['stage']} {d['digest'][:12]} (" + ", ".join(
            f"{k} {v}" for k, v in d["documents"].items()) + ")")
    if down.get("runs"):
        out.print("downstream runs: " + _runs(down["runs"]))
    _models_table(down)


def _runs(runs: list[dict]) -> str:
    """Runs as `stage digest`, each artifact once (runs of the same content share a digest)."""
    seen: dict[str, None] = {}
    for r in runs:
        seen.setdefault(f"{r['stage']} {(r['digest'] or '')[:8]}")
    return ", ".join(seen)


def _models_table(found: dict) -> None:
    if found.get("models"):
        t = Table(title="model versions")
        for c in ("model", "weights", "requests answered", "aliases"):
            t.add_column(c)
        for m in found["models"]:
            name = m["model"].rpartition("@")[0]
            aliases = [f"@{a['alias']}" for a in found.get("deployments", [])
                       if a["model"] == name and f"{a['model']}@{a['version']}" == m["model"]]
            t.add_row(m["model"], m["weights"] + (" (retired)" if m["retired"] else ""), str(m["requests"]),
                      " ".join(aliases))
        out.print(t)
    if found.get("published"):
        out.print("published copies (in the output directory): " + ", ".join(found["published"]))


def forget(source: Annotated[str | None, typer.Option("--source", help="Every document of this source.")] = None,
           doc: Annotated[str | None, typer.Option("--doc", help="One document, by id.")] = None,
           match: Annotated[str | None, typer.Option("--match", help="Every document whose text this regular "
                                                                     "expression matches.")] = None,
           reason: Annotated[str | None, typer.Option("--reason", help="Why (the request, a ticket): kept in the "
                                                                       "takedown record and the audit log.")] = None,
           dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what the documents reached.")] = False,
           rebuild: Annotated[bool, typer.Option("--rebuild", help="Then run the project again: the stages whose "
                                                                   "artifacts were taken down rerun.")] = False,
           yes: Annotated[bool, typer.Option("--yes", help="Confirm a takedown of more than a tenth of the "
                                                           "collected documents.")] = False,
           keep_duplicates: Annotated[bool, typer.Option(
               "--keep-duplicates", help="Leave the documents' exact and near duplicates (other ids with the same or "
                                         "nearly the same text) in; by default they go too.")] = False,
           list_: Annotated[bool, typer.Option("--list", help="List the takedowns recorded so far, and stop.")] = False,
           dir: DirOpt = Path("."), set_: SetOpt = None, json_: JsonOpt = False) -> None:
    """Take documents down: list every artifact they reached, record the takedown in the audit log and the denylist
    later collections apply, quarantine or delete those artifacts (governance.takedown), retire the model versions
    made from them and name what to rebuild."""
    from lmwright.ops.takedown import forget as do_forget
    from lmwright.ops.takedown import plan

    ws = Workspace.open(dir, set_ or [])
    if list_:
        _list_takedowns(ws, json_)
        return
    given = [(k, v) for k, v in (("source", source), ("doc", doc), ("match", match)) if v is not None]
    if len(given) != 1:
        raise LmwrightError("name exactly one of --source NAME, --doc ID or --match REGEX")
    if dry_run and rebuild:
        raise LmwrightError("--dry-run changes nothing, so there is nothing to --rebuild; drop one of them")
    kind, value = given[0]
    res = (plan(ws, kind, value, not keep_duplicates) if dry_run
           else do_forget(ws, kind, value, reason, yes=yes, duplicates_too=not keep_duplicates))
    if rebuild and not dry_run:
        res["rebuilt"] = {n: o.status for n, o in run_stages(ws, reporter=Reporter(err, quiet=json_)).items()}
    if json_:
        out.print_json(json.dumps(res, default=str))
        return
    n = len(res["documents"])
    out.print(f"{'would take' if dry_run else 'took'} down {n} document{'s' * (n != 1)} ({kind} {value!r}"
              + (f", with {res['duplicates']} duplicates deduplication had grouped with them" if res["duplicates"]
                 else "") + f"); {len(res['datasets'])} datasets and later stage runs reached them")
    if not n:
        out.print("  no collected document matches: recorded all the same, later collections exclude what it names"
                  if not dry_run else "  no collected document matches")
    for d in res["datasets"]:
        out.print(f"  {d['stage']} {d['digest'][:12]}: " + ", ".join(f"{k} {v}" for k, v in d["documents"].items()))
    if res["runs"]:
        out.print("  then: " + _runs(res["runs"]))
    _models_table(res)
    for e in res["exports"]:
        where = "inside the project: put away with the rest" if e["inside_project"] else "[red]outside the " \
            "project: delete it by hand[/red]"
        out.print(f"  export {e['format']} of {e['model']}: {e['path']} ({where if e['exists'] or dry_run else 'gone'})")
    if dry_run:
        return
    out.print(f"{len(res['moved'])} artifacts {res['mode'] + 'd' if res['mode'] == 'quarantine' else 'deleted'}"
              + (" to .lmwright/quarantine/" if res["mode"] == "quarantine" else "")
              + f"; takedown #{res['takedown']} recorded; later collections exclude these documents")
    if res["retired"]:
        out.print("retired (retrain or replace them): " + ", ".join(res["retired"]))
    if res.get("annotation_items"):
        out.print(f"{res['annotation_items']} annotation items (and their answers) deleted")
    if not rebuild:
        out.print(f"rebuild with `lmwright run`: it reruns {', '.join(res['rebuild']) or 'nothing'}")


def audit(dir: DirOpt = Path("."), set_: SetOpt = None, json_: JsonOpt = False,
          verify: Annotated[bool, typer.Option("--verify", help="Check the hash chain; exit 5 when a row was "
                                                                "changed, removed or inserted.")] = False,
          action: Annotated[str | None, typer.Option("--action", help="Only rows of this action.")] = None,
          limit: Annotated[int, typer.Option("--limit", min=0, help="The last N rows (0 = all).")] = 50,
          expect_head: Annotated[str | None, typer.Option(
              "--expect-head", help="A head hash printed by an earlier --verify and kept elsewhere: checks no row "
                                    "was cut from the end and the chain was not rewritten.")] = None) -> None:
    """The audit log: who did what when (runs, promotions, deployments, retirements, takedowns, key changes,
    exports), each row chained to the one before it by its hash."""
    from lmwright.core.store import Store

    store = Store(Workspace.open(dir, set_ or []).store_url)
    rows = store.audit_log()
    if expect_head and not verify:
        raise LmwrightError("--expect-head is checked by --verify: add it")
    problems = store.verify_audit(expect_head) if verify else []
    head = rows[-1].hash if rows else None
    shown = [r for r in rows if action is None or r.action == action]
    shown = shown[-limit:] if limit else shown
    if json_:
        out.print_json(json.dumps({"rows": [{"id": r.id, "at": r.at.isoformat(), "actor": r.actor,
                                             "action": r.action, "detail": r.detail, "prev_hash": r.prev_hash,
                                             "hash": r.hash} for r in shown], "head": head,
                                   **({"verified": not problems, "problems": problems} if verify else {})}))
    else:
        t = Table(title=f"audit log ({len(shown)} of {len(rows)} rows)")
        for c in ("#", "when", "who", "action", "detail"):
            t.add_column(c)
        for r in shown:
            t.add_row(str(r.id), f"{r.at:%Y-%m-%d %H:%M:%S}", r.actor, r.action,
                      json.dumps(r.detail, default=str)[:120])
        out.print(t)
        if verify:
            for p in problems:
                where = "" if p["id"] is None else f"row {p['id']}: "
                err.print(f"[red]{where}{p['problem']}[/red]")
            if not problems:
                err.print(f"the chain holds: {len(rows)} rows, each as it was written; head {head} (keep it "
                          "elsewhere and pass it to --expect-head later: it shows rows cut from the end)")
    if problems:
        raise typer.Exit(TAMPERED_EXIT)


def _list_takedowns(ws: Workspace, json_: bool) -> None:
    from lmwright.core.store import Store

    rows = [{"takedown": t.id, "at": f"{t.at:%Y-%m-%d %H:%M:%S}", "actor": t.actor, "kind": t.kind, "value": t.value,
             "reason": t.reason, "documents": len(t.doc_ids or []),
             "models": [m["model"] for m in (t.reached or {}).get("models", [])]}
            for t in Store(ws.store_url).takedowns()]
    if json_:
        out.print_json(json.dumps(rows))
        return
    t = Table(title="takedowns (lmwright forget): later collections exclude what each names")
    for c in ("#", "when", "who", "selector", "documents", "models retired", "reason"):
        t.add_column(c)
    for r in rows:
        t.add_row(str(r["takedown"]), r["at"], r["actor"], f"{r['kind']} {r['value']}", str(r["documents"]),
                  ", ".join(r["models"]), r["reason"] or "")
    out.print(t)
