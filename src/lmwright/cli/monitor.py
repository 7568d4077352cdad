"""`lmwright monitor` (performance, drift, alerts; JSON, an HTML report, Prometheus rules) and `lmwright retrain`
(continuous learning). Thin: parse, call ops/monitor.py, ops/alerts.py or ops/lifecycle.py, print."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lmwright.cli.common import DirOpt, JsonOpt, SetOpt, err, out, run_stages
from lmwright.core.progress import Reporter
from lmwright.core.workspace import Workspace
from lmwright.spec.monitor import seconds

FIRING_EXIT = 4  # `lmwright monitor` when an alert is firing: for cron jobs and CI checks (2 = an error)


def register(app: typer.Typer) -> None:
    app.command()(monitor)
    app.command()(retrain)


def _fmt(v, unit: str = "") -> str:
    if v is None:
        return "-"
    if unit == "ms":
        return f"{1000 * v:.0f} ms"
    if unit == "%":
        return f"{100 * v:.1f}%"
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def monitor(dir: DirOpt = Path("."), set_: SetOpt = None, json_: JsonOpt = False,
            window: Annotated[str | None, typer.Option(help="How far back: 90s, 15m, 1h, 2d (default monitor.window).")] = None,
            html: Annotated[Path | None, typer.Option(help="Also write the HTML report with plots here.")] = None,
            prometheus_rules: Annotated[Path | None, typer.Option(
                "--prometheus-rules", help="Write monitor.alerts as a Prometheus rule file here, and stop.")] = None,
            alerts: Annotated[bool, typer.Option("--alerts/--no-alerts",
                                                 help="Evaluate the alert rules (and deliver to the webhook).")] = True,
            ) -> None:
    """Latency, errors, throughput, safety flags, feedback and prompt drift per model version over a window; the
    alert rules evaluated and delivered. Exits 4 while an alert is firing (for cron; not with --no-alerts)."""
    from lmwright.ops import alerts as alerting
    from lmwright.ops import lifecycle
    from lmwright.ops.monitor import alert_dict, report

    ws = Workspace.open(dir, set_ or [])
    if prometheus_rules is not None:
        prometheus_rules.write_text(alerting.prometheus_rules(ws))
        err.print(f"{len(ws.spec.monitor.alerts)} alerting rule(s) written to {prometheus_rules}")
        return
    try:
        w = seconds(window) if window is not None else ws.spec.monitor.window
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--window") from None
    if w <= 0:
        raise typer.BadParameter("the window must be above 0, e.g. 15m or 1h", param_hint="--window")
    moves: list[dict] = []
    if alerts:
        moves = alerting.evaluate(ws)
        trigger = lifecycle.due(ws, moves)
        if trigger and lifecycle.start_in_background(ws, trigger):
            err.print(f"retraining started in the background ({trigger}); its log is under .lmwright/logs/")
    rep = report(ws, w, series_drift=html is not None)
    from lmwright.core.store import Store

    rep["alerts"] = [alert_dict(a) for a in Store(ws.store_url).alerts(open_only=True)]
    if html is not None:
        from lmwright.ops.monitor_html import render

        html.parent.mkdir(parents=True, exist_ok=True)
        html.write_text(render(rep), encoding="utf-8")
        err.print(f"HTML report: {html}")
    if json_:
        out.print_json(json.dumps(rep))
    else:
        _print(rep, moves)
    if alerts and any(a["state"] == "firing" for a in rep["alerts"]):
        raise typer.Exit(FIRING_EXIT)


def _print(rep: dict, moves: list[dict]) -> None:
    t = Table(title=f"model versions, last {rep['window_s']:g} s (until {rep['until'][:19]})")
    for col in ("version", "requests", "errors", "latency p50/p95/p99", "TTFT p95", "tokens/s", "feedback", "drift"):
        t.add_column(col)
    for v in rep["versions"]:
        p, d = v["performance"], v["drift"]
        verdict = d["status"] + (f" (AUC {d['text']['auc']:.2f})" if d.get("text") else "")
        fb = p["feedback"]
        t.add_row(" ".join([v["label"], *(f"@{a}" for a in v["aliases"])]), str(p["requests"]),
                  _fmt(p["error_rate"], "%"),
                  "/".join(_fmt(p[f"latency_p{q}_s"], "ms").removesuffix(" ms") for q in (50, 95, 99)) + " ms",
                  _fmt(p["ttft_p95_s"], "ms"), _fmt(p["tokens_per_s"]),
                  f"{fb['rows']}" + (f" (mean {fb['mean_rating']:.2g})" if fb["mean_rating"] is not None else ""),
                  verdict)
    out.print(t if rep["versions"] else "no requests in the window")
    for v in rep["versions"]:
        drifted = [f["feature"] for f in v["drift"].get("features", []) if f.get("drifted")]
        if drifted:
            out.print(f"{v['label']}: drifted features: {', '.join(drifted)}")
        if v["drift"].get("why"):
            out.print(f"{v['label']}: drift {v['drift']['status']}: {v['drift']['why']}")
    for m in moves:
        sent = f" (webhook: {m['delivered']})" if m.get("delivered") else ""
        out.print(f"alert {m['rule']} on {m['model']}@{m['version']}: {m['from'] or 'new'} -> {m['to']}{sent}")
    for a in rep["alerts"]:
        out.print(f"[{'red' if a['state'] == 'firing' else 'yellow'}]{a['state']}[/] {a['summary']}")


def retrain(dir: DirOpt = Path("."), set_: SetOpt = None, json_: JsonOpt = False,
            trigger: Annotated[str, typer.Option(help="Why (recorded with the run).")] = "manual",
            promote: Annotated[bool | None, typer.Option("--promote/--no-promote",
                                                        help="Promote through the gate (default lifecycle.retrain.promote).")] = None,
            ) -> None:
    """Continuous learning: the new corrections (and source snapshots) into a new dataset version, a challenger
    trained from the champion, judged on the frozen test set and the new data, promoted only through the gate."""
    from lmwright.ops.lifecycle import retrain as run

    ws = Workspace.open(dir, set_ or [])
    s = run(ws, trigger, lambda w, until: run_stages(w, until=until, reporter=Reporter(err, quiet=json_)),
            Reporter(err, quiet=json_), promote)
    if json_:
        out.print_json(json.dumps(s, default=str))
        return
    err.print(f"retrain ({s['trigger']}): {s['champion']} -> {s['challenger']}")
    new = s.get("new_data", {})
    if "ci" in new:
        err.print(f"  on {new['rows']} held-out new rows: {new['champion_bpb']:.4f} -> {new['challenger_bpb']:.4f} "
                  f"bits/byte (difference {new['difference']:+.4f}, {100 * new['confidence']:.0f}% interval "
                  f"[{new['ci'][0]:+.4f}, {new['ci'][1]:+.4f}])")
    err.print(f"  {'promoted' if s['promoted'] else 'not promoted'}: {s['why']}")
