"""What a running `lmwright serve` adds for monitoring: `GET /v1/monitor` (the report of `ops/monitor.py`, which the
/dashboard page draws; behind an operator or admin API key (serve/auth.py ROLE_GROUPS)), and a background loop that every
`monitor.interval` evaluates the alert rules (`ops/alerts.py`), sets the `lmwright_monitor_value` gauges that the
exported Prometheus rules read, and starts a retraining when the lifecycle section says a drift alert or enough new
feedback should (`ops/lifecycle.py`, in a process of its own so serving goes on)."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import traceback

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client import Gauge

from lmwright.core.workspace import Workspace
from lmwright.ops import alerts, lifecycle
from lmwright.ops.monitor import report
from lmwright.spec import METRICS

MAX_WINDOW_S = 7 * 86400  # the route reads every row in the window
FRESH_S = 3.0


def attach(app: FastAPI, ws: Workspace) -> None:
    """Add the monitor's route, gauges and loop to a server app built for `ws`."""
    from lmwright.serve.state import ApiError

    st = app.state.server
    gauge = Gauge("lmwright_monitor_value", "The monitor's latest figure per model version (drift, feedback, safety).",
                  ["metric", "model_name", "version"], registry=st.metrics.registry)

    lock, cache = threading.Lock(), {}

    def cached(window: float | None) -> dict:
        """One report at a time (the first builds a version's reference, seconds of work), and a report younger
        than FRESH_S is shared: a dashboard polling every few seconds from many tabs costs one computation."""
        with lock:
            at, rep = cache.get(window, (0.0, None))
            if rep is None or time.monotonic() - at > FRESH_S:
                rep = report(ws, window)
                if len(cache) >= 8:  # windows are the client's choice: keep a few, not one per value ever asked
                    cache.clear()
                cache[window] = (time.monotonic(), rep)
            return rep

    async def monitor(request: Request, window: float | None = None):
        if window is not None and not 0 < window <= MAX_WINDOW_S:
            raise ApiError(400, f"window is in seconds, above 0 and at most {MAX_WINDOW_S}", param="window",
                           code="invalid_value")
        return JSONResponse(await asyncio.to_thread(cached, window))

    app.get("/v1/monitor")(monitor)
    if ws.spec.monitor.interval > 0:
        st.background.append(("monitor", lambda stop: loop(ws, gauge, stop)))


def check(ws: Workspace, gauge: Gauge | None = None) -> list[dict]:
    """One round: the alert rules evaluated, the gauges set from the same reports, a retraining started if due."""
    windows = {r.window for r in ws.spec.monitor.alerts} | {ws.spec.monitor.window}
    reports = {w: report(ws, w, with_series=False) for w in windows}
    moves = alerts.evaluate(ws, reports=reports)
    if gauge is not None:
        gauge.clear()  # a version that stopped serving has no figures now, not its last ones
        for entry in reports[ws.spec.monitor.window]["versions"]:
            for metric in METRICS:
                v = alerts.value_of(entry, metric)
                if v is not None:
                    gauge.labels(metric, entry["model"], str(entry["version"] or "")).set(v)
    trigger = lifecycle.due(ws, moves)
    if trigger:
        lifecycle.start_in_background(ws, trigger)
    return moves


def loop(ws: Workspace, gauge: Gauge, stop: threading.Event) -> None:
    while not stop.wait(ws.spec.monitor.interval):
        try:
            for m in check(ws, gauge):
                print(f"lmwright monitor: alert {m['rule']} on {m['model']}@{m['version']}: {m['from'] or 'new'} "
                      f"-> {m['to']}", file=sys.stderr, flush=True)
        except Exception:  # a failed round is reported and the next one tries again; serving goes on
            print("lmwright monitor: a monitoring round failed:\n" + traceback.format_exc(), file=sys.stderr,
                  flush=True)
