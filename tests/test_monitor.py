"""Monitoring, alerts and continuous learning: figures from the request log checked against numpy, alert rules that
fire, hold and resolve with a webhook receiver on loopback, Prometheus rules, privacy (drift features kept, no prompt
text stored), the dashboard in Chromium on a real server, and a retraining from corrections through the gate.
The drift tests themselves are in tests/test_drift.py."""

from __future__ import annotations

import json
import shutil
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
import numpy as np
import openai
import pytest
import yaml
from typer.testing import CliRunner

from lmwright.cli import app as cli
from lmwright.core import registry
from lmwright.core.store import Store
from lmwright.core.workspace import Workspace
from lmwright.errors import LmwrightError
from lmwright.ops import alerts, lifecycle
from lmwright.ops.monitor import report
from tests.conftest import live, make_project

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


def _row(i: int, at: datetime, status: int = 200, e2e: float = 0.1, model: str = "m", version: int = 1, **kw):
    return {"request_id": f"r{i}", "at": at, "endpoint": "chat.completions", "model": model, "model_version": version,
            "model_digest": "d" * 64, "status": status, "prompt_tokens": 5, "completion_tokens": 10,
            "e2e_s": e2e, "ttft_s": None if e2e is None else e2e / 4, "flags": kw.pop("flags", {}), **kw}


@pytest.fixture
def receiver():
    """A webhook receiver on loopback: the JSON bodies POSTed to it."""
    got: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the http.server API
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook", got
    server.shutdown()


def test_performance_figures_match_the_request_log(tmp_path):
    ws = Workspace.open(make_project(tmp_path / "p", {"project": {"name": "m"}}))
    store = Store(ws.store_url)
    lat = np.random.default_rng(0).gamma(2.0, 0.2, 200)
    rows = [_row(i, T0 - timedelta(seconds=10 * i), e2e=float(x)) for i, x in enumerate(lat)]
    rows += [_row(900, T0 - timedelta(seconds=5), status=500, e2e=None), _row(901, T0, status=400, e2e=None),
             _row(902, T0 - timedelta(seconds=6), flags={"input_pii": {"email": 1}}, e2e=None, status=200)]
    rows.append(_row(903, T0 - timedelta(hours=3)))  # outside the window
    store.log_requests(rows)
    store.add_feedback(request_id="r1", rating=5, correction=None, comment=None, at=T0)
    store.add_feedback(request_id="r2", rating=1, correction="better", comment=None, at=T0)
    rep = report(ws, 3600, until=T0 + timedelta(seconds=1))
    (v,) = rep["versions"]
    p = v["performance"]
    assert p["requests"] == 203 and p["errors"] == 1 and p["client_errors"] == 1
    assert p["error_rate"] == pytest.approx(1 / 203)
    for q in (50, 95, 99):
        assert p[f"latency_p{q}_s"] == pytest.approx(np.quantile(lat, q / 100))
    assert p["ttft_p95_s"] == pytest.approx(np.quantile(lat / 4, 0.95))
    assert p["tokens_per_s"] == pytest.approx(203 * 10 / 3600)
    assert p["safety"]["pii_rate"] == pytest.approx(1 / 203)
    assert p["feedback"] == {"rows": 2, "rate": pytest.approx(2 / 203), "mean_rating": 3.0, "corrections": 1}
    assert sum(b["requests"] for b in v["series"]) == 203 and len(v["series"]) == 12
    assert v["drift"]["status"] in ("insufficient", "no reference")


def test_an_alert_rule_fires_after_holding_then_resolves_and_the_webhook_hears_both(tmp_path, receiver):
    url, got = receiver
    spec = {"project": {"name": "m"}, "monitor": {
        "alerts": [{"name": "slow", "metric": "latency_p95_s", "op": ">", "threshold": 1.0, "window": "10m",
                    "for": "2m"}],
        "webhook": {"url": url}}}
    ws = Workspace.open(make_project(tmp_path / "p", spec))

    def at(t: datetime, latency: float) -> list[dict]:
        rep = {"versions": [{"model": "m", "version": 1, "label": "m@1",
                             "performance": {"latency_p95_s": latency}, "drift": {}}]}
        return alerts.evaluate(ws, now=t, reports={600.0: rep})

    assert [m["to"] for m in at(T0, 2.0)] == ["pending"]  # holds, not yet for 2 minutes
    assert at(T0 + timedelta(seconds=60), 2.5) == [] and not got
    assert [m["to"] for m in at(T0 + timedelta(seconds=121), 3.0)] == ["firing"]
    assert got[-1]["status"] == "firing" and got[-1]["alerts"][0]["labels"]["alertname"] == "slow"
    assert got[-1]["alerts"][0]["labels"]["model"] == "m" and got[-1]["alerts"][0]["value"] == 3.0
    (ev,) = Store(ws.store_url).alerts(open_only=True)
    assert ev.state == "firing" and ev.detail["delivered"]["firing"]["ok"]
    r = CliRunner().invoke(cli, ["status", "-C", str(ws.root), "--json"])
    assert json.loads(r.stdout)["alerts"][0]["state"] == "firing"
    assert [m["to"] for m in at(T0 + timedelta(seconds=180), 0.2)] == ["resolved"]
    assert got[-1]["status"] == "resolved" and len(got) == 2
    # a blip shorter than `for` never fires: pending, then inactive
    assert [m["to"] for m in at(T0 + timedelta(seconds=200), 5.0)] == ["pending"]
    assert [m["to"] for m in at(T0 + timedelta(seconds=230), 0.1)] == ["inactive"] and len(got) == 2


def test_alert_rules_export_as_prometheus_rules(tmp_path):
    ws = Workspace.open(make_project(tmp_path / "p", {"project": {"name": "m"}}))
    out = tmp_path / "rules.yml"
    r = CliRunner().invoke(cli, ["monitor", "-C", str(ws.root), "--prometheus-rules", str(out)])
    assert r.exit_code == 0, r.output
    (group,) = yaml.safe_load(out.read_text())["groups"]
    rules = {x["alert"]: x for x in group["rules"]}
    assert set(rules) == {"prompt-drift", "error-rate", "slow-responses"}
    assert rules["slow-responses"]["expr"].startswith("histogram_quantile(0.95, sum by (le, model_name, version) "
                                                      "(rate(lmwright_e2e_request_latency_seconds_bucket[900s])))")
    assert rules["error-rate"]["for"] == "300s" and 'finished_reason="error"' in rules["error-rate"]["expr"]
    assert rules["prompt-drift"]["expr"] == 'max by (model_name, version) (lmwright_monitor_value{metric="drift"}) >= 1.0'


@pytest.fixture
def served(tiny_run, tmp_path):
    """A copy of the tiny project whose drift tests need only 12 prompts, with a rule that fires on 5 requests to
    the assistant, evaluated by the server every second."""
    dest = tmp_path / "proj"
    shutil.copytree(tiny_run[0], dest)
    spec = yaml.safe_load((dest / "lmwright.yaml").read_text())
    spec["monitor"] = {"drift": {"min_requests": 12}, "interval": 1, "alerts": [
        {"name": "busy", "metric": "requests", "op": ">=", "threshold": 5, "window": "10m", "model": "tiny-assistant"},
        {"name": "drifting", "metric": "drift", "op": ">=", "threshold": 1, "window": "10m"}]}
    (dest / "lmwright.yaml").write_text(yaml.safe_dump(spec))
    return dest


@pytest.mark.slow
def test_drift_features_are_kept_without_the_text_and_the_dashboard_shows_them(served):
    from playwright.sync_api import sync_playwright

    ws = Workspace.open(served)
    assert not ws.spec.serve.log_prompts
    secret = "zanzibar quokka"
    prompts = [f"What does `{m}` do with the {secret}?" for m in ("json.dumps", "csv.reader", "shlex.split")] * 5
    with live(build_app_for(ws)) as url, sync_playwright() as pw:
        c = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
        for p in prompts:
            c.chat.completions.create(model="tiny-assistant", messages=[{"role": "user", "content": p}], max_tokens=4)
        rows = Store(ws.store_url).requests(limit=len(prompts))
        assert all(r.prompt is None and r.output is None for r in rows)
        f = rows[0].features
        assert f["bytes"] == len(prompts[-1].encode()) and f["language"] == "en" and 0 <= f["unknown_rate"] <= 1
        assert f["nats_per_byte"] > 0 and all(isinstance(b, int) and isinstance(n, int) for b, n in f["sketch"])
        from lmwright.data.sketch import sketch

        # keyed with the workspace's secret: without .lmwright/sketch.key a guessed word cannot be tested against it
        assert f["sketch"] == sketch(prompts[-1], ws.sketch_key()) != sketch(prompts[-1])
        store_bytes = b"".join(p.read_bytes() for p in (served / ".lmwright").glob("lmwright.db*"))  # + the WAL
        assert secret.encode() not in store_bytes and b"zanzibar" not in store_bytes
        rep = httpx_get(f"{url}/v1/monitor?window=600")
        (v,) = [x for x in rep["versions"] if x["model"] == "tiny-assistant"]
        assert v["performance"]["requests"] == len(prompts) and v["drift"]["status"] in ("ok", "drift")
        assert {x["feature"] for x in v["drift"]["features"]} == {"prompt_bytes", "unknown_rate", "nats_per_byte",
                                                                   "language"}
        assert 0 <= v["drift"]["text"]["auc"] <= 1
        # the server's own loop evaluated the rules meanwhile: the alert fired and the gauges are on /metrics
        for _ in range(100):
            if any(a.rule == "busy" and a.state == "firing" for a in Store(ws.store_url).alerts()):
                break
            time.sleep(0.1)
        (busy,) = [a for a in Store(ws.store_url).alerts() if a.rule == "busy"]
        assert busy.state == "firing" and busy.model == "tiny-assistant" and busy.value >= 5
        metrics = httpx.get(f"{url}/metrics").text
        assert 'lmwright_monitor_value{metric="requests",model_name="tiny-assistant"' in metrics
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(f"{url}/dashboard")
        card = page.locator(f'.version[data-label="{v["label"]}"]')
        card.wait_for(timeout=20000)
        assert card.locator(".drift-status").inner_text().strip() == v["drift"]["status"]
        assert card.locator(".latency-chart svg polyline").count() == 1
        browser.close()
    # the same figures from the command line, whose exit code says whether an alert is firing
    r = CliRunner().invoke(cli, ["monitor", "-C", str(served), "--json", "--window", "10m"])
    firing = {a["rule"] for a in json.loads(r.stdout)["alerts"] if a["state"] == "firing"}
    assert r.exit_code == 4 and "busy" in firing, r.output
    assert ("drifting" in firing) == (v["drift"]["status"] == "drift")


def build_app_for(ws):
    from lmwright.ops.deploy import build_app

    return build_app(ws)


def httpx_get(url: str) -> dict:
    r = httpx.get(url, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.slow
def test_retraining_learns_from_corrections_and_is_promoted_only_through_the_gate(tiny_copy):
    ws = Workspace.open(tiny_copy, ["lifecycle.retrain.steps=6", "lifecycle.retrain.holdout=0.3",
                                    "lifecycle.retrain.feedback_rows=10", "lifecycle.retrain.min_held_out=3"])
    store = Store(ws.store_url)
    champion = registry.alias_of(store, "tiny-assistant", "champion").version
    mods = ["json.dumps", "csv.writer", "shlex.quote", "base64.b64encode", "difflib.ndiff", "textwrap.dedent"]
    rows, fb = [], []
    for i in range(24):
        q = f"Explain `{mods[i % 6]}` briefly, case {i}."
        if i == 5:  # a content that looks like turns stays one user turn (the log keeps messages as JSON)
            q += "\nassistant: Sure.\nuser: ok"
        rows.append(_row(i, datetime.now(timezone.utc), model="tiny-assistant", version=champion,
                         prompt=json.dumps([{"role": "user", "content": q}]), request_id=f"chatcmpl-{i}"))
        fb.append({"request_id": f"chatcmpl-{i}", "correction": f"{mods[i % 6]} is part of the standard library."})
    rows.append(_row(99, datetime.now(timezone.utc), model="tiny-assistant", version=champion, prompt=None,
                     request_id="chatcmpl-99"))
    fb.append({"request_id": "chatcmpl-99", "correction": "text not kept"})
    store.log_requests(rows)
    for f in fb:
        store.add_feedback(rating=None, comment=None, **f)
    assert lifecycle.due(ws, []) == "25 new corrections (lifecycle.retrain.feedback_rows: 10)"
    from lmwright.cli.common import run_stages

    s = lifecycle.retrain(ws, "25 new corrections", lambda w, until: run_stages(w, until=until))
    assert s["data"]["read"] == 25 and s["data"]["kept"] == 24
    assert s["data"]["removed"] == {"its prompt was not kept (serve.log_prompts is off)": 1}
    assert s["challenger"] == f"tiny-assistant@{champion + 1}" and s["new_data"]["rows"] == s["data"]["held_out"]
    assert s["new_data"]["difference"] < 0  # the new answers are likelier after learning them
    (run,) = [r for r in store.runs() if r.stage == "retrain"]
    assert run.status == "done" and run.params["trigger"] == "25 new corrections"
    now = registry.alias_of(store, "tiny-assistant", "champion").version
    if s["promoted"]:
        assert now == champion + 1 and s["new_data"]["better"]
        assert registry.history(store, "tiny-assistant")[-1].reason == "retrain (25 new corrections)"
        with pytest.raises(LmwrightError, match="nothing new to learn"):  # the champion has learned them
            lifecycle.retrain(ws, "again", lambda w, until: run_stages(w, until=until))
    else:
        assert now == champion and ("not better" in s["why"] or "gate" in s["why"])
    assert lifecycle.due(ws, []) is None  # counted from the retraining's start
    assert any(d.name == "tiny-retrain" for d in store.datasets())


@pytest.mark.slow
def test_retraining_by_continued_pretraining_starts_from_the_champion(tiny_copy):
    from lmwright.cli.common import run_stages

    ws = Workspace.open(tiny_copy, ["lifecycle.retrain.method=pretrain", "lifecycle.retrain.steps=4"])
    store = Store(ws.store_url)
    champion = registry.version(store, "tiny@champion")
    s = lifecycle.retrain(ws, "new source snapshot", lambda w, until: run_stages(w, until=until))
    new = registry.version(store, s["challenger"])
    assert s["champion"] == f"tiny@{champion.version}" and new.version > champion.version
    (pretrain,) = [r for r in store.runs(limit=100) if r.stage == "pretrain" and r.status == "done"
                   and (r.summary.get("init_from") or {}).get("digest") == champion.digest]
    assert pretrain.summary["steps"] == 4
    assert store.test_evaluations(new.digest)  # judged on the frozen test split, for the gate
    assert s["promoted"] == (registry.alias_of(store, "tiny", "champion").version == new.version)


def test_drift_against_a_baseline_of_the_versions_first_prompts(tmp_path):
    """`monitor.drift.reference: first`, on features as the server logs them: the first 200 prompts are the
    reference; 100 more of the same kind are not drift, 100 of another kind are, by the features and by the text."""
    from types import SimpleNamespace

    from lmwright.data.sketch import sketch
    from lmwright.ops.monitor import drift

    spec = {"project": {"name": "m"}, "monitor": {"drift": {"reference": "first", "reference_rows": 200,
                                                            "min_requests": 50, "max_requests": 100}}}
    ws = Workspace.open(make_project(tmp_path / "p", spec))
    (ws.internal / "sketch.key").parent.mkdir(parents=True, exist_ok=True)
    (ws.internal / "sketch.key").write_bytes(bytes(32))  # a fixed key: the same buckets, the same verdicts, every run
    store = Store(ws.store_url)
    rng = np.random.default_rng(0)

    def features(kind: str) -> dict:
        words = [f"{kind}{i}" for i in range(200)]
        n = 40 if kind == "a" else 90
        return {"bytes": int(rng.normal(n, 5)), "unknown_rate": float(rng.uniform(0.3, 0.5)),
                "nats_per_byte": float(rng.normal(3.5 if kind == "a" else 4.5, 0.3)), "language": "en",
                "sketch": sketch(" ".join(rng.choice(words, 8)), ws.sketch_key())}

    def log(kind: str, n: int, start: int) -> None:
        store.log_requests([_row(start + i, datetime.now(timezone.utc), features=features(kind)) for i in range(n)])

    m = SimpleNamespace(name="m", version=1)
    log("a", 120, 0)
    early = drift(ws, m, store.requests(limit=1000)[::-1])
    assert early["status"] == "insufficient" and "has 120 so far" in early["why"]
    log("a", 180, 120)
    same = drift(ws, m, store.requests(limit=1000)[::-1])
    assert same["reference"] == {"kind": "its first 200 production prompts", "rows": 200}
    assert same["requests"] == 100 and same["status"] == "ok" and not same["text"]["drifted"]
    log("b", 100, 300)
    shifted = drift(ws, m, store.requests(limit=1000)[::-1])
    assert shifted["status"] == "drift" and shifted["text"]["drifted"] and shifted["text"]["auc"] > 0.9
    assert {f["feature"] for f in shifted["features"] if f["drifted"]} == {"prompt_bytes", "nats_per_byte"}
