"""Deployment through `lmwright serve`, with the official `openai` client: a weighted canary by a stable hash of the
caller, shadow traffic that never changes an answer, a rollback under a 64-client load that drops nothing, and a
retirement: deprecation headers and a counted metric, then 410 naming the successor, then archived weights."""

from __future__ import annotations

import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import httpx
import openai
import pytest
import yaml

from lmwright.core import registry
from lmwright.core.models import resolve_model
from lmwright.core.store import Store
from lmwright.core.workspace import Workspace
from lmwright.errors import LmwrightError
from lmwright.ops import registry as ops
from lmwright.ops.deploy import build_app
from lmwright.ops.retire import retire
from lmwright.serve.auth import hash_key
from tests.conftest import live

VERSION = "x-lmwright-model-version"


@pytest.fixture
def proj(two_versions, tmp_path):
    dest = tmp_path / "proj"
    shutil.copytree(two_versions, dest)
    return dest


def deploy(root, models: list[dict], **serve) -> Workspace:
    """Write a `deploy` section (and serve settings) into the project file; the workspace as it is now."""
    path = root / "lmwright.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["deploy"] = {"models": models, "refresh_s": 0.2}
    spec.setdefault("serve", {}).update(serve)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return Workspace.open(root)


def client(url: str, key: str = "none") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


def version_of(c: openai.OpenAI, model: str = "tiny", **kw) -> str:
    raw = c.completions.with_raw_response.create(model=model, prompt="The json module", max_tokens=1, **kw)
    raw.parse()
    return raw.headers[VERSION]


@pytest.mark.slow
def test_a_90_10_canary_lands_within_3_points_and_a_caller_always_sees_one_version(proj):
    ws = Workspace.open(proj)
    ops.promote(ws, "tiny@2", "challenger", force=True, reason="canary test")
    ws = deploy(proj, [{"name": "tiny", "routes": [{"model": "tiny@champion", "weight": 90},
                                                   {"model": "tiny@challenger", "weight": 10}]}],
                rate_limit_per_minute=0)
    Store(ws.store_url).add_api_key("k1", hash_key("lmw-k1"), role="operator")  # it reads /metrics too
    with live(build_app(ws)) as url:
        c = client(url, "lmw-k1")
        with ThreadPoolExecutor(16) as pool:
            seen = list(pool.map(lambda i: version_of(c, user=f"user-{i}"), range(2000)))
        share = seen.count("tiny@2") / len(seen)
        assert set(seen) == {"tiny@1", "tiny@2"} and abs(share - 0.10) <= 0.03, share
        again = {version_of(c, user="user-7") for _ in range(20)}  # one user: one version, every time
        assert again == {seen[7]}
        assert len({version_of(c) for _ in range(20)}) == 1  # no user: the key decides, the same way every time
        metrics = httpx.get(f"{url}/metrics", headers={"Authorization": "Bearer lmw-k1"}).text
        assert 'lmwright_routed_requests_total{deployment="tiny",model_name="tiny",version="2"}' in metrics


@pytest.mark.slow
def test_shadow_traffic_is_logged_and_never_changes_an_answer(proj):
    ws = deploy(proj, [{"name": "tiny", "routes": [{"model": "tiny@champion"}], "shadow": "tiny@2"},
                       {"name": "plain", "routes": [{"model": "tiny@champion"}]}], log_prompts=True)
    prompts = [f"The {w} module" for w in ("json", "csv", "string", "textwrap", "shlex", "difflib", "base64", "re")]
    with live(build_app(ws)) as url:
        c = client(url)
        shadowed, plain = [], []
        for p in prompts:
            r = c.completions.with_raw_response.create(model="tiny", prompt=p, max_tokens=8, temperature=0)
            shadowed.append((r.parse().id, r.parse().choices[0].text, r.headers[VERSION]))
            plain.append(c.completions.create(model="plain", prompt=p, max_tokens=8, temperature=0).choices[0].text)
        assert [t for _, t, _ in shadowed] == plain and {v for *_, v in shadowed} == {"tiny@1"}
        store = Store(ws.store_url)
        deadline = time.monotonic() + 10
        while len([r for r in store.requests(500) if r.endpoint.startswith("shadow:")]) < len(prompts):
            assert time.monotonic() < deadline, "the shadow rows were not logged"
            time.sleep(0.1)
    rows = store.requests(500)
    for rid, text, _ in shadowed:
        mine = [r for r in rows if r.request_id == rid]
        main = next(r for r in mine if r.endpoint == "completions")
        shadow = next(r for r in mine if r.endpoint == "shadow:completions")
        assert (main.model_version, shadow.model_version, main.route, shadow.route) == (1, 2, "tiny", "tiny")
        assert main.output == text and shadow.output is not None and shadow.prompt == main.prompt
    with live(build_app(ws)) as url:  # feedback on a shadowed answer rates the answer the client got
        r = httpx.post(f"{url}/v1/feedback", json={"id": shadowed[0][0], "rating": 5})
        assert r.status_code == 200, r.text


@pytest.mark.slow
def test_a_rollback_during_a_64_client_load_drops_no_request(proj):
    ws = Workspace.open(proj, ["serve.rate_limit_per_minute=0"])
    ops.promote(ws, "tiny@2", "champion", force=True, reason="to roll back")
    ws = deploy(proj, [], rate_limit_per_minute=0)  # the default: each model at its champion
    results: list[tuple[float, str, str | None]] = []
    errors: list[BaseException] = []
    stop = threading.Event()
    told: list[tuple[str, str]] = []
    app = build_app(ws, on_ready=lambda name, said: told.append((name, said)))
    with live(app) as url:
        c = client(url)

        def user(i: int) -> None:
            while not stop.is_set():
                try:
                    sent = time.monotonic()  # by when it was sent: one sent before the swap may end after it
                    raw = c.completions.with_raw_response.create(model="tiny", prompt=f"The json module {i}",
                                                                 max_tokens=16, temperature=0)
                    results.append((sent, raw.headers[VERSION], raw.parse().choices[0].finish_reason))
                except BaseException as exc:  # noqa: BLE001 - every failure counts against the test
                    errors.append(exc)

        threads = [threading.Thread(target=user, args=(i,)) for i in range(64)]
        for t in threads:
            t.start()
        time.sleep(2.0)
        ops.rollback(ws, "tiny", reason="load test")
        rolled = time.monotonic()
        time.sleep(3.0)
        stop.set()
        for t in threads:
            t.join(60)
        health = httpx.get(f"{url}/health").json()
        replaced = app.state.server.replaced
        deadline = time.monotonic() + 10
        while replaced and time.monotonic() < deadline:  # the old version is closed once its last request ended
            time.sleep(0.1)
            replaced = app.state.server.replaced
        assert not replaced
    assert not errors, errors[:3]
    assert {f for _, _, f in results} <= {"stop", "length"}
    before = [v for at, v, _ in results if at < rolled]
    after = [v for at, v, _ in results if at > rolled + 1.5]
    assert before and set(before[:50]) == {"tiny@2"}
    assert after and set(after) == {"tiny@1"}  # new requests went to the rolled-back version
    assert "tiny@2" in [v for at, v, _ in results if at < rolled]  # and those in flight finished on theirs
    assert health["deployments"]["tiny"]["routes"] == [["tiny@1", 100.0]]
    # `lmwright serve` prints the change (name "*"); the empty name, which stops it, is for a failed start only
    assert ("*", "routes now: tiny-assistant -> tiny-assistant@1 (100); tiny -> tiny@1 (100)") in told
    assert not [n for n, _ in told if n == ""]
    assert len(results) >= 64


@pytest.mark.slow
def test_a_retired_version_is_deprecated_then_answers_410_naming_its_successor(proj):
    ws = deploy(proj, [{"name": "tiny", "routes": [{"model": "tiny@champion"}]},
                       {"name": "tiny-v2", "routes": [{"model": "tiny@2"}]}])
    with live(build_app(ws)) as url:
        c = client(url)
        assert version_of(c, "tiny-v2") == "tiny@2"
        sunset = datetime.now(timezone.utc) + timedelta(seconds=4)
        retire(ws, "tiny@2", successor="tiny@1", after=sunset, reason="replaced")
        time.sleep(0.6)  # the server follows within refresh_s
        raw = c.completions.with_raw_response.create(model="tiny-v2", prompt="x", max_tokens=1)
        assert raw.headers["deprecation"].startswith("@") and "GMT" in raw.headers["sunset"]
        assert raw.headers["link"] == '<tiny>; rel="successor-version"'  # the id that serves tiny@1
        metrics = httpx.get(f"{url}/metrics").text
        assert 'lmwright_deprecated_requests_total{model_name="tiny",version="2"} 1.0' in metrics
        cards = {m.id: m for m in c.models.list().data}
        assert cards["tiny-v2"].model_extra["successor"] == "tiny@1"
        time.sleep(max(0.0, (sunset - datetime.now(timezone.utc)).total_seconds()) + 0.3)
        with pytest.raises(openai.APIStatusError) as e:
            c.completions.create(model="tiny-v2", prompt="x", max_tokens=1)
        assert e.value.status_code == 410
        body = e.value.body
        assert body["code"] == "model_retired" and "use 'tiny' (tiny@1) instead" in body["message"]
        assert version_of(c, "tiny") == "tiny@1"  # the successor still serves
        res = retire(ws, "tiny@2")  # after the date: the weights go to the archive, with a report
        assert res["weights"] == "archived"
        with pytest.raises(openai.APIStatusError):  # still 410, with the weights gone
            c.completions.create(model="tiny-v2", prompt="x", max_tokens=1)
    m = registry.version(Store(ws.store_url), "tiny@2")
    assert m.weights == "archived" and not (ws.artifacts_dir / m.digest).exists()
    assert list((ws.internal / "archive").glob("tiny-v2-*.tar.gz"))
    report = (proj / res["report"]).read_text()
    assert "# Retirement of tiny@2" in report and "successor: tiny@1" in report and "config.json" in report
    with pytest.raises(LmwrightError, match="tiny@2 is retired and its weights were archived; use its successor"):
        resolve_model(ws, "tiny@2")
    assert [t.action for t in registry.history(Store(ws.store_url), "tiny")][-2:] == ["retire", "retired"]
