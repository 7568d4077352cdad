"""`lmwright models list|show|history|tag|alias`, `promote`, `rollback`, `retire` and `deploy`: the registry and
what serves. Thin: parse, call ops/registry.py, ops/retire.py or ops/deploy.py, print."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lmwright.cli.common import DirOpt, JsonOpt, SetOpt, err, out
from lmwright.core.workspace import Workspace
from lmwright.errors import LmwrightError

RefArg = Annotated[str, typer.Argument(help="NAME@VERSION, NAME@ALIAS (e.g. my-model@challenger) or NAME (latest).")]
ReasonOpt = Annotated[str | None, typer.Option("--reason", help="Why: kept in the history and the audit log.")]


def register(app: typer.Typer) -> None:
    models_app = typer.Typer(help="The model registry: versions, aliases, tags, lineage and history.",
                             no_args_is_help=True)
    models_app.command("list")(models_list)
    models_app.command("show")(models_show)
    models_app.command("history")(models_history)
    models_app.command("tag")(models_tag)
    models_app.command("alias")(models_alias)
    app.add_typer(models_app, name="models")
    app.command()(promote)
    app.command()(rollback)
    app.command()(retire)
    app.command()(deploy)


def models_list(name: Annotated[str | None, typer.Argument(help="One model's versions (default: every model).")] = None,
                dir: DirOpt = Path("."), set_: SetOpt = None, json_: JsonOpt = False) -> None:
    """Every registered version: aliases, tags, test bits per byte, status."""
    from lmwright.ops.registry import listing

    rows = listing(Workspace.open(dir, set_ or []), name)
    if json_:
        out.print_json(json.dumps(rows))
        return
    t = Table(title="registered models")
    for col in ("model", "aliases", "test bits/byte", "status", "tags", "digest", "created"):
        t.add_column(col)
    for r in rows:
        bpb = r["test_bits_per_byte"]
        t.add_row(r["model"], " ".join(f"@{a}" for a in r["aliases"]), "" if bpb is None else f"{bpb:.4f}",
                  r["status"], " ".join(f"{k}={v}" for k, v in r["tags"].items()), r["digest"], r["created"])
    out.print(t)


def models_show(ref: RefArg, dir: DirOpt = Path("."), set_: SetOpt = None, json_: JsonOpt = False) -> None:
    """One version: lineage (run, datasets, tokenizer, spec, code), figures, test evaluations, aliases, history."""
    from lmwright.ops.registry import describe

    d = describe(Workspace.open(dir, set_ or []), ref)
    if json_:
        out.print_json(json.dumps(d, default=str))
        return
    lin = d["lineage"]
    out.print(f"[bold]{d['name']}@{d['version']}[/bold]  {d['status']}  digest {d['digest'][:12]}  "
              f"{d['parameters']:,} parameters  created {d['created']}")
    if d["aliases"]:
        out.print("aliases: " + " ".join(f"@{a}" for a in d["aliases"]))
    if d["tags"]:
        out.print("tags: " + " ".join(f"{k}={v}" for k, v in d["tags"].items()))
    if d["base"]:
        out.print(f"fine-tuned from: {d['base']}")
    if d["retire_after"]:
        out.print(f"retires: {d['retire_after']} (successor {d['successor'] or 'none'}; weights {d['weights']})")
    out.print(f"made by: the {lin['stage']} stage, run {lin['run']}, code {lin['code_version'][:12]}; tokenizer "
              f"{lin['tokenizer'] or '-'}")
    out.print("datasets: " + (", ".join(f"{x['name']} ({x['rows']:,} rows, {x['digest']})" for x in lin["datasets"])
                              or "-"))
    out.print("upstream runs: " + ", ".join(f"{r['stage']} {r['digest'][:8]}" for r in lin["upstream"]))
    t = Table(title="recorded figures")
    t.add_column("figure")
    t.add_column("value")
    for k, v in sorted(d["figures"].items()):
        if k.split(".")[0] in ("test", "val", "risk") and isinstance(v, float):
            t.add_row(k, f"{v:.4g}")
    out.print(t)
    for g, w in d["figures_from"].items():
        out.print(f"  {g}.*: {w}")
    _print_history(d["history"], f"history of {d['name']}@{d['version']}")


def _print_history(rows: list[dict], title: str) -> None:
    t = Table(title=title)
    for col in ("when", "who", "action", "alias", "from", "to", "reason"):
        t.add_column(col)
    for h in rows:
        why = h["reason"] or ""
        if h["overrode"]:
            why += " [red](overrode: " + "; ".join(h["overrode"]) + ")[/red]"
        t.add_row(h["at"], h["actor"], h["action"] + (" [red](forced)[/red]" if h["forced"] else ""),
                  h["alias"] or "", str(h["from"] or ""), str(h["to"] or ""), why)
    out.print(t)


def models_history(name: Annotated[str, typer.Argument(help="A registered model name.")], dir: DirOpt = Path("."),
                   set_: SetOpt = None, json_: JsonOpt = False) -> None:
    """Every alias move and retirement of a model: who, when, from which version to which, why."""
    from lmwright.core import registry
    from lmwright.core.store import Store
    from lmwright.ops.registry import transition_dict

    ws = Workspace.open(dir, set_ or [])
    rows = [transition_dict(t) for t in registry.history(Store(ws.store_url), name.partition("@")[0])]
    if json_:
        out.print_json(json.dumps(rows))
        return
    _print_history(rows, f"history of {name}")


def models_tag(ref: RefArg, tags: Annotated[list[str] | None, typer.Argument(help="KEY=VALUE ...")] = None,
               remove: Annotated[list[str] | None, typer.Option("--remove", help="Remove a tag (repeatable).")] = None,
               dir: DirOpt = Path("."), set_: SetOpt = None) -> None:
    """Set or remove tags on a version (`lmwright models tag my-model@3 reviewed=yes`)."""
    from lmwright.core import registry
    from lmwright.core.store import Store

    ws = Workspace.open(dir, set_ or [])
    store = Store(ws.store_url)
    m = registry.version(store, ref)
    if m is None:
        raise registry.unknown(store, ref)
    add = {}
    for kv in tags or []:
        k, eq, v = kv.partition("=")
        if not eq or not k:
            raise LmwrightError(f"tag {kv!r}: write KEY=VALUE")
        add[k] = v
    now = registry.set_tags(store, m.id, add, list(remove or []))
    store.audit("tag", model=m.name, version=m.version, tags=now)
    out.print(f"{m.name}@{m.version}: " + (" ".join(f"{k}={v}" for k, v in now.items()) or "no tags"))


def models_alias(name: Annotated[str, typer.Argument(help="A registered model name.")],
                 alias: Annotated[str, typer.Argument(help="The alias to remove.")],
                 delete: Annotated[bool, typer.Option("--delete", help="Remove the alias.")] = False,
                 reason: ReasonOpt = None, dir: DirOpt = Path("."), set_: SetOpt = None) -> None:
    """Remove an alias (`--delete`); aliases are set by `lmwright promote`, which checks the gate."""
    from lmwright.core import registry
    from lmwright.core.store import Store

    if not delete:
        raise LmwrightError(f"set an alias with `lmwright promote {name}@VERSION --to {alias}` (it checks the gate); "
                            f"`lmwright models alias {name} {alias} --delete` removes one")
    ws = Workspace.open(dir, set_ or [])
    store = Store(ws.store_url)
    t = registry.move_alias(store, name, alias, None, "unalias", reason)
    store.audit("unalias", model=name, alias=alias, from_version=t.from_version, reason=reason)
    out.print(f"{name}@{alias} removed (was version {t.from_version})")


def promote(ref: RefArg,
            to: Annotated[str, typer.Option("--to", help="The alias to move (champion checks the comparison too).")]
            = "champion",
            force: Annotated[bool, typer.Option("--force", help="Override a failing gate (needs --reason).")] = False,
            reason: ReasonOpt = None, dir: DirOpt = Path("."), set_: SetOpt = None, json_: JsonOpt = False) -> None:
    """Move an alias to a version if it passes its gate: requirements.acceptance on its recorded figures and, for
    champion, no worse than the current champion on the test set (paired bootstrap, registry.gate)."""
    from lmwright.ops.registry import promote as run_promote

    res = run_promote(Workspace.open(dir, set_ or []), ref, to, force, reason)
    if json_:
        out.print_json(json.dumps(res, default=str))
        return
    gate = res.get("gate")
    if gate:
        for c in gate["checks"]:
            v = "not measured" if c["value"] is None else f"{c['value']:.4g}"
            err.print(f"  {'ok ' if c['verdict'] == 'pass' else 'NO '} {c['criterion']}: {v}")
        cmp_ = gate["comparison"]
        if cmp_ and "difference" in cmp_:
            err.print(f"  {'ok ' if cmp_['passed'] else 'NO '} vs champion {cmp_['champion']}: "
                      f"{cmp_['difference']:+.4f} bits/byte [{cmp_['ci'][0]:+.4f}, {cmp_['ci'][1]:+.4f}] "
                      f"(tolerance {cmp_['tolerance']:g}, {cmp_['documents']} test documents)")
    out.print(res["said"])


def rollback(name: Annotated[str, typer.Argument(help="A registered model name.")],
             alias: Annotated[str, typer.Option("--alias", help="The alias to return.")] = "champion",
             reason: ReasonOpt = None, dir: DirOpt = Path("."), set_: SetOpt = None, json_: JsonOpt = False) -> None:
    """Return an alias (the champion) to the version it pointed at before; a running server follows within a
    second, and requests already running finish on the version they started on."""
    from lmwright.ops.registry import rollback as run_rollback

    res = run_rollback(Workspace.open(dir, set_ or []), name.partition("@")[0], alias, reason)
    if json_:
        out.print_json(json.dumps(res))
        return
    out.print(res["said"])


def retire(ref: RefArg,
           successor: Annotated[str | None, typer.Option(help="The version that takes over (its aliases move).")]
           = None,
           after: Annotated[str | None, typer.Option(help="End of the deprecation period (2026-12-31); default now.")]
           = None,
           reason: ReasonOpt = None, dir: DirOpt = Path("."), set_: SetOpt = None, json_: JsonOpt = False) -> None:
    """Retire a version: its aliases move to --successor; requests that name it get deprecation headers until
    --after, then 410 naming the successor; its weights are archived (deploy.retired_weights) with a report."""
    from lmwright.ops.retire import parse_when
    from lmwright.ops.retire import retire as run_retire

    res = run_retire(Workspace.open(dir, set_ or []), ref, successor, parse_when(after) if after else None, reason)
    if json_:
        out.print_json(json.dumps(res, default=str))
        return
    out.print(res["said"])


def deploy(dir: DirOpt = Path("."), set_: SetOpt = None, json_: JsonOpt = False,
           model: Annotated[str | None, typer.Option("--model", help="As `lmwright serve MODEL`.")] = None) -> None:
    """What `lmwright serve` routes to now: each model id, its versions with weights, shadow and retirements."""
    from lmwright.ops.deploy import describe, plan

    rows = describe(plan(Workspace.open(dir, set_ or []), model))
    if json_:
        out.print_json(json.dumps(rows))
        return
    t = Table(title="deployments (what lmwright serve routes to now)")
    for col in ("model id", "version", "from", "weight", "routed by", "note"):
        t.add_column(col)
    for d in rows:
        total = sum(r["weight"] for r in d["routes"]) or 1
        for r in d["routes"]:
            note = ""
            if r.get("retire_after"):
                note = (f"retired (410, successor {r['successor']}); its share goes to the other routes"
                        if r["retired"] and len(d["routes"]) > 1 else f"retired: 410, successor {r['successor']}"
                        if r["retired"] else f"deprecated until {r['retire_after'][:19]}, successor {r['successor']}")
            t.add_row(d["name"], r["version"], r["ref"], f"{100 * r['weight'] / total:.0f}%", d["route_by"], note)
        if d["shadow"]:
            t.add_row(d["name"], d["shadow"]["version"], d["shadow"]["ref"], "shadow", "", "mirrored, not returned")
    out.print(t)
