"""Alert rules (`monitor.alerts`) evaluated on the monitoring report, with Prometheus's semantics: a rule's
condition holding for a model version opens a "pending" event; once it has held for the rule's `for`, the event
is "firing" and is delivered (the webhook, `lmwright status`, the dashboard, `lmwright monitor`'s exit code); when
the condition stops holding a firing event is "resolved" (and delivered again), a pending one "inactive".

Evaluation happens wherever `evaluate` is called: by `lmwright monitor` (cron), and every `monitor.interval` by a
running `lmwright serve`. Events live in the store, so both see the same episodes. The same rules are exported as a
Prometheus rule file (`prometheus_rules`) for teams that run Alertmanager on the server's /metrics.
"""

from __future__ import annotations

import json
import operator
import urllib.error
import urllib.request
from datetime import datetime, timezone
from typing import Any

import yaml
from sqlalchemy import select

from lmwright.core import registry
from lmwright.core.schema import AlertEvent
from lmwright.core.store import Store
from lmwright.core.workspace import Workspace
from lmwright.spec import METRICS, AlertRule

OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
COUNTS = ("requests", "tokens_per_s")  # figures that are 0, not unknown, when a version served nothing


def value_of(entry: dict[str, Any], metric: str) -> float | None:
    """A rule's metric in one version's report entry (None: not measured in the window)."""
    node: Any = entry
    if METRICS[metric][0] == "drift" and entry.get("drift", {}).get("status") not in ("ok", "drift"):
        return None  # too few prompts, or no reference: unknown, not "no drift"
    for part in METRICS[metric]:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, bool):
        return float(node)
    return float(node) if isinstance(node, int | float) else None


def _summary(rule: AlertRule, label: str, value: float | None) -> str:
    shown = "no data" if value is None else f"{value:.4g}"
    return f"{rule.name}: {label} {rule.metric} = {shown} ({rule.op} {rule.threshold:g} over {rule.window:g} s)"


def evaluate(ws: Workspace, now: datetime | None = None, reports: dict[float, dict] | None = None) -> list[dict]:
    """Evaluate every rule at `now` (default: the current time); returns the transitions made (an event's id,
    rule, version, from and to state), after delivering the ones that fired or resolved to the webhook."""
    from lmwright.ops.monitor import report

    now = registry.as_utc(now) or datetime.now(timezone.utc)
    rules = ws.spec.monitor.alerts
    reports = dict(reports or {})
    for rule in rules:
        if rule.window not in reports:
            reports[rule.window] = report(ws, rule.window, until=now, with_series=False)
    store = Store(ws.store_url)
    moves: list[dict] = []
    with store.session() as s, s.begin():
        open_events = {(e.rule, e.model, e.version): e for e in
                       s.scalars(select(AlertEvent).where(AlertEvent.state.in_(("pending", "firing"))))}
        live = {r.name for r in rules}
        for key, ev in open_events.items():  # a rule taken out of the spec: its open events end with it
            if key[0] not in live:
                before = ev.state
                ev.state = "resolved" if ev.state == "firing" else "inactive"
                ev.resolved_at = ev.updated_at = now
                ev.detail = {**ev.detail, "summary": f"{key[0]}: the rule was removed from monitor.alerts"}
                moves.append({"rule": key[0], "model": key[1], "version": key[2], "from": before, "to": ev.state,
                              "value": None})
        for rule in rules:
            seen = set()
            for entry in reports[rule.window]["versions"]:
                if rule.model and entry["model"] != rule.model:
                    continue
                key = (rule.name, entry["model"], entry["version"])
                seen.add(key)
                v = value_of(entry, rule.metric)
                held = v is not None and OPS[rule.op](v, rule.threshold)
                moves += _step(s, rule, key, open_events.get(key), held, v, entry["label"], now)
            for key, ev in open_events.items():  # a version that served nothing in the window: no figures, except
                if key[0] == rule.name and key not in seen:  # a count's, which is 0 (`requests < 5` keeps firing)
                    v = 0.0 if rule.metric in COUNTS else None
                    held = v is not None and OPS[rule.op](v, rule.threshold)
                    moves += _step(s, rule, key, ev, held, v, f"{key[1]}@{key[2]}", now)
    answers = deliver(ws, store, now)
    for m in moves:
        m["delivered"] = answers.get((m["rule"], m["model"], m["version"]))
    return moves


def _step(s, rule: AlertRule, key: tuple, ev: AlertEvent | None, held: bool, value: float | None, label: str,
          now: datetime) -> list[dict]:
    """One rule on one version: open, promote, update or close its event."""
    def moved(e: AlertEvent, before: str | None) -> list[dict]:
        e.updated_at = now
        e.detail = {**e.detail, "summary": _summary(rule, label, value)}
        return [] if before == e.state else [{"rule": rule.name, "model": key[1], "version": key[2],
                                              "from": before, "to": e.state, "value": value}]
    if held and ev is None:
        ev = AlertEvent(rule=rule.name, model=key[1], version=key[2], state="pending", metric=rule.metric,
                        value=value, threshold=rule.threshold, started_at=now, updated_at=now,
                        detail={"severity": rule.severity, "op": rule.op, "window_s": rule.window,
                                "for_s": rule.for_, "delivered": {}})
        s.add(ev)
        before = None
    elif ev is None:
        return []
    else:
        before = ev.state
    ev.value = value if value is not None else ev.value
    if held and ev.state == "pending" and (now - registry.as_utc(ev.started_at)).total_seconds() >= rule.for_:
        ev.state, ev.fired_at = "firing", now
    elif not held:
        ev.state = "resolved" if ev.state == "firing" else "inactive"
        ev.resolved_at = now
    return moved(ev, before)


def payload(e: AlertEvent, external_url: str = "") -> dict[str, Any]:
    """One event in Alertmanager's webhook format (version 4), so receivers written for it read ours."""
    at = registry.as_utc
    status = "firing" if e.state == "firing" else "resolved"
    labels = {"alertname": e.rule, "model": e.model or "", "version": str(e.version or ""),
              "severity": e.detail.get("severity", "warning"), "metric": e.metric}
    alert = {"status": status, "labels": labels, "annotations": {"summary": e.detail.get("summary", "")},
             "startsAt": at(e.fired_at or e.started_at).isoformat(),
             "endsAt": at(e.resolved_at).isoformat() if e.resolved_at else "0001-01-01T00:00:00Z",
             "value": e.value, "threshold": e.threshold, "generatorURL": external_url}
    return {"version": "4", "status": status, "receiver": "lmwright", "groupLabels": {"alertname": e.rule},
            "commonLabels": labels, "commonAnnotations": alert["annotations"], "externalURL": external_url,
            "alerts": [alert]}


def deliver(ws: Workspace, store: Store, now: datetime | None = None) -> dict[tuple, str]:
    """POST every firing or resolved event the webhook has not yet accepted (a failed delivery is retried at each
    evaluation for `webhook.retry_for`); each answer is recorded on the event. Returns the answers, by (rule,
    model, version), as a short line ("200", "connection refused", ...)."""
    hook = ws.spec.monitor.webhook
    if not hook.url:
        return {}
    now = now or datetime.now(timezone.utc)
    answers: dict[tuple, str] = {}
    with store.session() as s, s.begin():
        for e in s.scalars(select(AlertEvent).where(AlertEvent.state.in_(("firing", "resolved")))):
            done = e.detail.get("delivered", {})
            phase = "firing" if e.state == "firing" else "resolved"
            since = registry.as_utc(e.resolved_at if phase == "resolved" else e.fired_at) or now
            if done.get(phase, {}).get("ok") or (now - since).total_seconds() > hook.retry_for:
                continue
            body = json.dumps(payload(e)).encode()
            req = urllib.request.Request(hook.url, body, {"Content-Type": "application/json"}, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=hook.timeout_s) as r:  # noqa: S310 - the spec's URL
                    answer = {"ok": 200 <= r.status < 300, "status": r.status}
            except urllib.error.HTTPError as exc:
                answer = {"ok": False, "status": exc.code, "error": str(exc.reason)}
            except (urllib.error.URLError, OSError, ValueError) as exc:
                answer = {"ok": False, "error": str(getattr(exc, "reason", exc))}
            answer["at"] = now.isoformat(timespec="seconds")
            e.detail = {**e.detail, "delivered": {**done, phase: answer}}
            answers[(e.rule, e.model, e.version)] = " ".join(str(answer[k]) for k in ("status", "error")
                                                             if k in answer)
    return answers


# -- Prometheus -----------------------------------------------------------------------------------------------------

_BY = "sum by (model_name, version)"


def _histogram(name: str, q: float, w: str, sel: str = "") -> str:
    return f"histogram_quantile({q}, sum by (le, model_name, version) (rate({name}_bucket{_with(sel)}[{w}])))"


def _with(sel: str, *more: str) -> str:
    parts = [p for p in (sel, *more) if p]
    return "{" + ", ".join(parts) + "}" if parts else ""


def _duration(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms" if seconds != int(seconds) else f"{int(seconds)}s"


def _expr(rule: AlertRule) -> str:
    """The PromQL for a rule over the server's /metrics: the latency histograms and counters where they carry the
    figure, else the gauge the server's monitor sets (`lmwright_monitor_value{metric=...}`, over monitor.window).
    Prometheus's error rate is the engine's failures over finished requests; lmwright monitor's is 5xx answers
    over all requests (it sees refusals before the engine too)."""
    w = _duration(rule.window)
    m = rule.metric
    sel = f"model_name={json.dumps(rule.model)}" if rule.model else ""  # a PromQL string: JSON's escapes
    if m.startswith("latency_p"):
        q = int(m[len("latency_p"):-2]) / 100
        left = _histogram("lmwright_e2e_request_latency_seconds", q, w, sel)
    elif m == "ttft_p95_s":
        left = _histogram("lmwright_time_to_first_token_seconds", 0.95, w, sel)
    elif m == "error_rate":
        failed = _with(sel, 'finished_reason="error"')
        left = (f"{_BY} (rate(lmwright_request_success_total{failed}[{w}])) / "
                f"{_BY} (rate(lmwright_request_success_total{_with(sel)}[{w}]))")
    elif m == "tokens_per_s":
        left = f"{_BY} (rate(lmwright_generation_tokens_total{_with(sel)}[{w}]))"
    else:
        gauge = _with(sel, 'metric="' + m + '"')
        left = f"max by (model_name, version) (lmwright_monitor_value{gauge})"
    return f"{left} {rule.op} {rule.threshold!r}"


def prometheus_rules(ws: Workspace) -> str:
    """The spec's alert rules as a Prometheus rule file (YAML), for `rule_files:` in prometheus.yml."""
    rules = [{"alert": r.name, "expr": _expr(r), "for": _duration(r.for_),
              "labels": {"severity": r.severity},
              "annotations": {"summary": f"{r.name}: {{{{ $labels.model_name }}}}@{{{{ $labels.version }}}} "
                                         f"{r.metric} {r.op} {r.threshold:g} (value {{{{ $value }}}})"}}
             for r in ws.spec.monitor.alerts]
    head = ("# Prometheus alerting rules written by `lmwright monitor --prometheus-rules` from monitor.alerts in\n"
            "# lmwright.yaml; drift, feedback and safety figures come from lmwright_monitor_value, which\n"
            "# `lmwright serve` sets every monitor.interval.\n")
    return head + yaml.safe_dump({"groups": [{"name": f"lmwright-{ws.spec.project.name}", "rules": rules}]},
                                 sort_keys=False)
