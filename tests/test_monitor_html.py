"""The monitoring report's two faces: `ops/monitor_html.render` (the static HTML report with matplotlib plots as
inline SVG) on a hand-made report, and the live dashboard page (`serve/web/dashboard.html`) in Chromium against a
fake `/v1/monitor` (a tiny Starlette app under uvicorn on loopback; no model, no torch)."""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import lmwright
from lmwright.ops.monitor_html import render

PAGE = Path(lmwright.__file__).parent / "serve" / "web" / "dashboard.html"
EVIL = "docs<script>alert(1)</script>"  # a model name is user data


def report() -> dict:
    t0 = "2026-12-03T09:"
    series = [{"start": f"{t0}{m:02d}:00+00:00", "requests": 10 + i, "errors": i % 2, "latency_p95_s": 0.8 + i / 20,
               "ttft_p95_s": 0.04, "tokens_per_s": 2.0, "drift_score": None if i == 3 else 0.5 + i / 20}
              for i, m in enumerate(range(0, 60, 5))]
    edges = [float(i * 100) for i in range(11)]
    return {
        "generated_at": "2026-12-03T10:00:00+00:00", "window_s": 3600, "since": "2026-12-03T09:00:00+00:00",
        "until": "2026-12-03T10:00:00+00:00", "bucket_s": 300,
        "versions": [
            {"model": EVIL, "version": 1, "label": f"{EVIL}@1",
             "aliases": ["champion"],
             "performance": {"requests": 120, "errors": 1, "error_rate": 0.0083, "client_errors": 2,
                             "latency_p50_s": 0.41, "latency_p95_s": 0.9, "latency_p99_s": 1.2, "ttft_p50_s": 0.02,
                             "ttft_p95_s": 0.05, "ttft_p99_s": None, "requests_per_s": 0.033, "tokens_per_s": 1.9,
                             "safety": {"pii_rate": 0.01, "blocklist_rate": 0.0},
                             "feedback": {"rows": 12, "rate": 0.1, "mean_rating": 0.5, "corrections": 4}},
             "series": series,
             "drift": {"status": "drift", "requests": 200, "min_requests": 50,
                       "reference": {"kind": "sft prompts", "rows": 1000},
                       "features": [
                           {"feature": "prompt_bytes", "kind": "numeric", "method": "ks", "statistic": 0.12,
                            "p_value": 0.04, "threshold": 0.05, "psi": 0.08, "wasserstein": 0.2, "drifted": True,
                            "edges": edges, "reference_share": [0.1] * 10,
                            "current_share": [0.05] * 5 + [0.15] * 5},
                           {"feature": "language", "kind": "categorical", "method": "chisquare", "statistic": 3.1,
                            "p_value": 0.2, "threshold": 0.05, "psi": 0.01, "jensen_shannon": 0.03,
                            "drifted": False, "categories": ["en", "fr"], "reference_share": [0.98, 0.02],
                            "current_share": [0.97, 0.03]}],
                       "share_drifted": 0.5, "drift_share": 0.5,
                       "text": {"method": "domain_classifier", "auc": 0.93, "threshold": 0.55, "drifted": True,
                                "top_terms": None},
                       "detected": True}},
            {"model": "docs", "version": 2, "label": "docs@2", "aliases": [],
             "performance": {"requests": 3, "errors": 0, "error_rate": 0.0, "client_errors": 0,
                             "latency_p50_s": 0.3, "latency_p95_s": 0.5, "latency_p99_s": 0.5, "ttft_p50_s": None,
                             "ttft_p95_s": None, "ttft_p99_s": None, "requests_per_s": 0.001, "tokens_per_s": None,
                             "safety": {"pii_rate": None, "blocklist_rate": None},
                             "feedback": {"rows": 0, "rate": None, "mean_rating": None, "corrections": 0}},
             "series": [{**r, "requests": 1, "errors": 0, "drift_score": None} for r in series[-3:]],
             "drift": {"status": "insufficient", "requests": 3, "min_requests": 50, "reference": None,
                       "features": [], "share_drifted": None, "drift_share": 0.5, "text": None,
                       "detected": False}}],
        "alerts": [
            {"rule": "latency_p95", "model": "docs", "version": 2, "state": "resolved", "value": 0.4,
             "threshold": 2.0, "started_at": "2026-12-03T09:10:00+00:00", "fired_at": None,
             "resolved_at": "2026-12-03T09:20:00+00:00"},
            {"rule": "drift", "model": EVIL, "version": 1, "state": "firing",
             "value": 0.93, "threshold": 0.5, "started_at": "2026-12-03T09:40:00+00:00",
             "fired_at": "2026-12-03T09:45:00+00:00", "resolved_at": None}],
    }


def test_render_escapes_names_and_plots_every_section():
    page = render(report())
    assert "<script" not in page.lower()  # neither data nor the page itself
    assert html_escaped(f"{EVIL}@1") in page and "docs@2" in page
    assert page.count("data-label=") == 2
    # 3 plots over time per version, one histogram per feature of the version with drift tests
    assert page.count("<svg") == 3 + 2 + 2  # the insufficient version: no drift-per-bucket plot, a line instead
    assert "no bucket had enough prompts" in page
    assert "<?xml" not in page and not re.search(r"(src|href)=['\"]?(https?:|//)", page)  # self-contained
    assert re.findall(r"https?://[\w./]+", page) == ["http://www.w3.org/1999/xlink", "http://www.w3.org/2000/svg"] * 7
    assert "id=\"figure_1\"" not in page
    alerts = page.split("<h2>Alerts</h2>", 1)[1].split("<section", 1)[0]
    assert alerts.index("<td>firing</td>") < alerts.index("<td>resolved</td>")  # firing first
    assert "<tr class='firing'>" in alerts and "latency_p95" in alerts
    assert "drift detected" in page and "insufficient data: 3 production requests" in page and "at least 50" in page
    assert "ROC AUC 0.93 vs threshold 0.55" in page
    assert "900 ms" in page and "—" in page and "0.83%" in page  # latencies in ms, nulls as a dash
    assert page.count("class='badge drifted'") == 2 and "class='badge ok'" in page  # text test + prompt_bytes


def test_render_copes_with_an_empty_window():
    page = render({"generated_at": "now", "window_s": 900, "versions": [], "alerts": []})
    assert "window 15 min" in page and "no alerts" in page and "no model versions" in page
    bare = {"model": "x<y", "version": None, "label": "x<y", "aliases": [], "performance": {}, "series": [],
            "drift": {"status": "no reference", "why": "not a registered version", "detected": False}}
    page = render({"generated_at": "now", "window_s": 3600, "versions": [bare], "alerts": []})
    assert "x&lt;y" in page and "no requests in the window" in page and "not a registered version" in page


def html_escaped(text: str) -> str:
    import html

    return html.escape(text)


@contextlib.contextmanager
def fake_server(key: str) -> Iterator[tuple[str, list[str]]]:
    """The dashboard page and a fake `/v1/monitor` (the hand-made report; 401 without `Bearer key`) on a free
    loopback port: yields (base url, the `window` of each monitor request)."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse
    from starlette.routing import Route

    windows: list[str] = []

    async def dashboard(request: Request) -> HTMLResponse:
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    async def monitor(request: Request) -> JSONResponse:
        if request.headers.get("authorization") != f"Bearer {key}":
            return JSONResponse({"error": {"message": "a key is needed", "type": "invalid_request_error",
                                           "param": None, "code": "invalid_api_key"}}, status_code=401)
        windows.append(request.query_params.get("window", ""))
        return JSONResponse(report())

    app = Starlette(routes=[Route("/dashboard", dashboard), Route("/v1/monitor", monitor)])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 10
    while not server.started:
        assert thread.is_alive() and time.time() < deadline, "the fake server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}", windows
    finally:
        server.should_exit = True
        thread.join(timeout=5)


def test_dashboard_in_a_browser_asks_for_a_key_then_shows_the_report():
    from playwright.sync_api import sync_playwright

    with fake_server("k1") as (url, windows), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(url + "/dashboard")
        page.wait_for_selector("#error", state="visible", timeout=5_000)  # a 401: a key is needed, and its box shown
        assert "key is needed" in page.text_content("#error") and page.is_visible("#key")
        assert page.locator(".version").count() == 0
        page.fill("#key", "k1")
        page.dispatch_event("#key", "change")
        page.wait_for_selector(".version", timeout=5_000)
        assert page.is_hidden("#error") and windows == ["3600"]
        assert page.evaluate("localStorage.getItem('lmwright-key')") == "k1"
        labels = page.eval_on_selector_all(".version", "vs => vs.map(v => v.dataset.label)")
        assert labels == [f"{EVIL}@1", "docs@2"]  # as text, never as markup
        assert page.eval_on_selector_all(".version .drift-status", "s => s.map(e => e.textContent)") == [
            "drift", "insufficient"]
        first = page.locator(".version").first
        assert "prompt_bytes" in first.text_content() and "language" not in first.text_content()
        points = first.locator(".latency-chart svg polyline").get_attribute("points")
        assert len(re.findall(r"[\d.]+,[\d.]+", points)) == 12
        firing = page.locator("#alerts .alert.firing")
        assert firing.count() == 1 and "drift" in firing.text_content() and EVIL in firing.text_content()
        assert page.evaluate("document.querySelectorAll('script').length") == 1  # no script came from the data
        page.select_option("#window", "900")
        page.wait_for_function("document.getElementById('updated').textContent !== ''")
        deadline = time.time() + 5
        while windows[-1] != "900" and time.time() < deadline:
            time.sleep(0.02)
        assert windows[-1] == "900"
        browser.close()
