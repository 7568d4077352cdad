"""The monitoring report as one self-contained HTML page: `render(report)` (the dict `ops/monitor.report` returns).

A header (window, time of generation), the alerts (firing first), and per model version its performance figures,
plots over the window's buckets (requests and errors; latency and time-to-first-token p95; the text drift score
against its threshold) and the drift section: the status, the text test and, per feature, the reference and
current histograms with the test's figures and a drifted/ok badge. Plots are matplotlib figures (made with
`Figure` directly, never pyplot's state) embedded as inline SVG: no external URL, no JavaScript. Every string from
the report is escaped (model names are user data). The look is the report card's (`evaluate/report.py`).
"""

from __future__ import annotations

import html
import io
import math
import re
from datetime import datetime

import matplotlib
from matplotlib.axes import Axes
from matplotlib.dates import DateFormatter
from matplotlib.figure import Figure

from lmwright.evaluate.report import _CSS

_EXTRA_CSS = """.badge{display:inline-block;padding:1px 8px;border-radius:9px;font-size:12px;font-weight:bold;color:#fff;
background:#888}
.badge.drift,.badge.drifted,.badge.firing{background:#c0392b}.badge.ok{background:#2e8b57}
.badge.pending{background:#d68910}tr.firing td{background:#fde8e8}
.plots{display:flex;flex-wrap:wrap;gap:8px}.plots svg{max-width:100%;height:auto}
.features{display:flex;flex-wrap:wrap;gap:12px}.feature{border:1px solid #ddd;padding:6px;width:300px}
.feature h4{margin:2px 0 4px}.feature svg{width:100%;height:auto}.muted{color:#666}"""

DASH = "—"  # a figure with no data
_ORDER = {"firing": 0, "pending": 1, "resolved": 2}  # alert states, most urgent first


def _e(value: object) -> str:
    """A report value as escaped HTML text."""
    return html.escape(str(value))


def _fmt(key: str, value: object) -> str:
    """One figure for a table cell (unescaped): latencies in ms, rates in percent, null as a dash."""
    if value is None:
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if not isinstance(value, float):
        return str(value)
    if math.isnan(value):
        return DASH
    if key.endswith("_s") and key.startswith(("latency", "ttft")):
        return f"{value * 1000:.1f} ms" if value < 0.1 else f"{value * 1000:.0f} ms"
    if key.endswith("_per_s"):
        return f"{value:.3g}/s"
    if key.endswith("rate") and key != "mean_rating":
        return f"{value:.2%}"
    return f"{value:.3g}"


def _duration(seconds: object) -> str:
    """A window or bucket length in words: 900 -> "15 min", 3600 -> "1 h"."""
    s = _num(seconds)
    if math.isnan(s):
        return DASH
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size and s % size == 0:
            return f"{s / size:g} {unit}"
    return f"{s:g} s"


def _table(head: list[str], rows: list[list[str]], classes: list[str] | None = None) -> str:
    """An HTML table of plain strings (escaped here); `classes` gives each body row a class."""
    out = ["<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>"]
    for i, row in enumerate(rows):
        cls = f" class='{_e(classes[i])}'" if classes and classes[i] else ""
        out.append(f"<tr{cls}>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>")
    return "".join(out) + "</table>"


def _badge(state: str) -> str:
    """A coloured state label: drift/drifted/firing red, ok green, the rest grey."""
    return f"<span class='badge {_e(state)}'>{_e(state)}</span>"


def _svg(fig: Figure) -> str:
    """The figure as an inline `<svg>` element: no XML prologue, no metadata, and none of matplotlib's element ids
    (`figure_1`, `axes_1`...: every plot has them; the hashed ids that clip paths and markers refer to stay)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    text = buf.getvalue().decode("utf-8")
    return re.sub(r' id="[^"]*_[^"]*"', "", text[text.index("<svg"):])


def _num(value: object) -> float:
    """A figure as a float for plotting (null: NaN, a gap in the line)."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan


def _times(series: list[dict]) -> list:
    """The buckets' start times (datetimes), or their indexes when a start does not parse."""
    try:
        return [datetime.fromisoformat(str(row["start"])) for row in series]
    except (KeyError, ValueError):
        return list(range(len(series)))


def _axes(title: str, ylabel: str, size: tuple[float, float] = (4.6, 2.4)) -> tuple[Figure, Axes]:
    """A small figure with one grid-lined axes."""
    fig = Figure(figsize=size, dpi=100, layout="constrained")
    ax = fig.subplots()
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    return fig, ax


def _time_axis(ax: Axes, x: list) -> None:
    """Hours and minutes on a time axis spanning the whole window (bucket starts); bucket numbers otherwise."""
    if x and isinstance(x[0], datetime):
        step = x[1] - x[0] if len(x) > 1 else None
        ax.set_xlim(x[0], x[-1] + step if step else x[0])
        ax.xaxis.set_major_formatter(DateFormatter("%H:%M" if (x[-1] - x[0]).days < 1 else "%m-%d %H:%M"))
    else:
        ax.set_xlabel("bucket", fontsize=8)


def _series_plots(series: list[dict], threshold: float | None) -> str:
    """Requests and errors per bucket; latency and TTFT p95 (ms); the drift score against its threshold."""
    x = _times(series)
    width = (x[1] - x[0]) * 0.8 if len(x) > 1 else 0.8
    fig, ax = _axes("requests per bucket", "requests")
    _time_axis(ax, x)
    ax.bar(x, [_num(r.get("requests")) for r in series], width=width, color="#4c72b0", label="requests")
    ax.bar(x, [_num(r.get("errors")) for r in series], width=width, color="#c0392b", label="errors")
    ax.legend(fontsize=7)
    plots = [_svg(fig)]
    fig, ax = _axes("latency and TTFT p95", "ms")
    _time_axis(ax, x)
    ax.plot(x, [_num(r.get("latency_p95_s")) * 1000 for r in series], "o-", ms=3, label="latency p95")
    ax.plot(x, [_num(r.get("ttft_p95_s")) * 1000 for r in series], "s-", ms=3, label="TTFT p95")
    ax.legend(fontsize=7)
    plots.append(_svg(fig))
    if all(math.isnan(_num(r.get("drift_score"))) for r in series):  # no bucket had enough prompts to test
        return "<div class='plots'>" + "".join(plots) + "<p>text drift per bucket: no bucket had enough prompts " \
               "for the test</p></div>"
    fig, ax = _axes("text drift score (ROC AUC)", "AUC")
    _time_axis(ax, x)
    ax.plot(x, [_num(r.get("drift_score")) for r in series], "o-", ms=3, color="tab:purple", label="AUC")
    if threshold is not None:
        ax.axhline(threshold, ls="--", color="#c0392b", lw=1, label=f"threshold {threshold:g}")
    ax.legend(fontsize=7)
    plots.append(_svg(fig))
    return "<div class='plots'>" + "".join(plots) + "</div>"


def _feature_plot(f: dict) -> str:
    """The reference against the current distribution of one feature: shares per bin or per category."""
    fig, ax = _axes("", "share", size=(3.0, 1.9))
    ref, cur = f.get("reference_share") or [], f.get("current_share") or []
    if f.get("kind") == "categorical":
        cats = [str(c) for c in f.get("categories") or []]
        pos = range(len(cats))
        ax.bar([p - 0.2 for p in pos], ref, width=0.4, color="#9db4d6", label="reference")
        ax.bar([p + 0.2 for p in pos], cur, width=0.4, color="#dd8452", label="current")
        ax.set_xticks(list(pos), cats)
    elif f.get("edges") and len(f["edges"]) == len(ref) + 1 == len(cur) + 1:
        ax.stairs(ref, f["edges"], fill=True, color="#9db4d6", label="reference")
        ax.stairs(cur, f["edges"], color="#dd8452", lw=1.6, label="current")
    ax.legend(fontsize=6)
    return _svg(fig)


def _feature(f: dict) -> str:
    """A feature's card: its histogram plot, the test's figures and a drifted/ok badge."""
    rows = [[k.replace("_", " "), _fmt(k, f.get(k))]
            for k in ("method", "statistic", "p_value", "threshold", "psi", "wasserstein", "jensen_shannon")
            if k in f]
    state = "drifted" if f.get("drifted") else "ok"
    return (f"<div class='feature'><h4>{_e(f.get('feature', '?'))} <span class='muted'>({_e(f.get('kind', ''))})"
            f"</span> {_badge(state)}</h4>{_feature_plot(f)}{_table(['test', 'value'], rows)}</div>")


def _drift(d: dict) -> str:
    """The drift section of one version: status line, reference, text test and features."""
    status = str(d.get("status", "insufficient"))
    out = ["<h3>Drift</h3>"]
    if status == "insufficient":
        out.append(f"<p>{_badge('insufficient')} insufficient data: {_e(_fmt('n', d.get('requests')))} production "
                   f"requests in the window; the drift tests need at least {_e(_fmt('n', d.get('min_requests')))}"
                   ".</p>")
    elif status not in ("ok", "drift"):  # "no reference": nothing to compare with, and why
        out.append(f"<p>{_badge(status)} no drift tests: {_e(d.get('why', status))}</p>")
    else:
        feats = d.get("features") or []
        drifted = [str(f.get("feature")) for f in feats if f.get("drifted")]
        out.append(f"<p>{_badge(status)} {'drift detected' if d.get('detected') else 'no drift'}: "
                   f"{len(drifted)} of {len(feats)} features drifted ({_e(', '.join(drifted) or 'none')}; share "
                   f"{_e(_fmt('x', d.get('share_drifted')))}, drift at {_e(_fmt('x', d.get('drift_share')))}), "
                   f"over {_e(_fmt('n', d.get('requests')))} requests.</p>")
    ref = d.get("reference") or {}
    if ref:
        out.append(f"<p class='muted'>reference: {_e(ref.get('kind', '?'))}, {_e(_fmt('n', ref.get('rows')))} "
                   "rows</p>")
    text = d.get("text")
    if text:
        state = "drifted" if text.get("drifted") else "ok"
        out.append(f"<p>text test ({_e(text.get('method', '?'))}): ROC AUC {_e(_fmt('x', text.get('auc')))} vs "
                   f"threshold {_e(_fmt('x', text.get('threshold')))} {_badge(state)}</p>")
        if text.get("top_terms"):
            out.append(f"<p class='muted'>top terms: {_e(', '.join(map(str, text['top_terms'])))}</p>")
    if status in ("ok", "drift") and d.get("features"):
        out.append("<div class='features'>" + "".join(_feature(f) for f in d["features"]) + "</div>")
    return "".join(out)


def _performance(perf: dict) -> str:
    """Every figure of `performance` (nested groups flattened), null as a dash."""
    rows = []
    for key, value in perf.items():
        pairs = [(f"{key} / {k}", k, v) for k, v in value.items()] if isinstance(value, dict) else [(key, key, value)]
        for name, k, v in pairs:
            label = name.removesuffix("_s") if k.startswith(("latency", "ttft")) else name
            rows.append([label.replace("_", " ").replace("ttft", "TTFT"), _fmt(k, v)])
    return _table(["figure", "value"], rows)


def _version(v: dict) -> str:
    """One version's section: performance, plots over time, drift."""
    label = v.get("label") or f"{v.get('model')}@{v.get('version')}"
    aliases = ", ".join(map(str, v.get("aliases") or []))
    drift = v.get("drift") or {}
    threshold = (drift.get("text") or {}).get("threshold")
    series = v.get("series") or []
    plots = _series_plots(series, threshold) if series else "<p class='muted'>no requests in the window</p>"
    return (f"<section class='version' data-label='{_e(label)}'><h2>{_e(label)}"
            + (f" <span class='muted'>({_e(aliases)})</span>" if aliases else "") + "</h2>"
            + f"<h3>Performance</h3>{_performance(v.get('performance') or {})}<h3>Over time</h3>{plots}"
            + f"{_drift(drift)}</section>")


def _alerts(alerts: list[dict]) -> str:
    """The alerts table, firing first."""
    if not alerts:
        return "<p class='muted'>no alerts</p>"
    rows = sorted(alerts, key=lambda a: _ORDER.get(str(a.get("state")), 3))
    cells = [[str(a.get("rule", "")), f"{a.get('model', '')}@{a.get('version', '')}", str(a.get("state", "")),
              _fmt("x", a.get("value")), _fmt("x", a.get("threshold")), _fmt("t", a.get("started_at")),
              _fmt("t", a.get("fired_at")), _fmt("t", a.get("resolved_at"))] for a in rows]
    return _table(["rule", "version", "state", "value", "threshold", "started", "fired", "resolved"], cells,
                  [str(a.get("state", "")) for a in rows])


def render(report: dict) -> str:
    """The monitoring report (`ops/monitor.report`'s dict) as one self-contained HTML page."""
    head = (f"window {_e(_duration(report.get('window_s')))} ({_e(report.get('since', '?'))} to {_e(report.get('until', '?'))}), "
            f"buckets of {_e(_duration(report.get('bucket_s')))}; generated at {_e(report.get('generated_at', '?'))}")
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "lmwright"}):
        versions = "".join(_version(v) for v in report.get("versions") or [])
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'><title>lmwright monitoring report</title>"
            f"<style>{_CSS}\n{_EXTRA_CSS}</style></head><body><h1>Monitoring report</h1><p>{head}</p>"
            f"<h2>Alerts</h2>{_alerts(report.get('alerts') or [])}"
            f"{versions or '<p>no model versions served in the window</p>'}</body></html>")
