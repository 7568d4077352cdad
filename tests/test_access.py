"""Access control on `lmwright serve`: each role against each route group (403 in OpenAI's error shape), model and
route scopes (the official `openai` client's PermissionDeniedError, a filtered /v1/models), the audit rows of the
dashboard and administration routes, keys made before roles existed, and `lmwright keys add|list|revoke`."""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from pathlib import Path

import httpx
import openai
import pytest
from typer.testing import CliRunner

from lmwright.cli import app as cli_app
from lmwright.core.store import Store
from lmwright.core.workspace import Workspace
from lmwright.ops.deploy import build_app
from lmwright.serve.auth import GROUPS, Identity, KeyChecker, check_scopes, hash_key, route_group
from tests.conftest import live

# what each role reaches, written out here rather than read from serve/auth.py's table
REACHES = {"user": {"serving"}, "annotator": {"serving", "annotation"}, "reviewer": {"serving", "annotation"},
           "operator": {"serving", "dashboard"},
           "admin": {"serving", "annotation", "dashboard", "administration"}}
# one route of each group (the annotation and administration probes are added to the app by the fixture)
PROBES = [("serving", "GET", "/v1/models"), ("annotation", "GET", "/v1/annotate/ping"),
          ("dashboard", "GET", "/v1/monitor"), ("dashboard", "GET", "/metrics"),
          ("administration", "POST", "/v1/admin/ping")]
KEYS = {  # name: (role, scopes)
    "u": ("user", {}), "an": ("annotator", {}), "rv": ("reviewer", {}), "op": ("operator", {}), "ad": ("admin", {}),
    "docs": ("user", {"models": ["tiny"]}),  # a registered name: the base model's deployment only
    "champ": ("user", {"models": ["tiny@champion"]}),  # the reference its deployment was planned from
    "none": ("user", {"models": ["nothing-here"]}),
    "scrape": ("operator", {"routes": ["dashboard"]}),
}
ROLE_KEY = {"user": "u", "annotator": "an", "reviewer": "rv", "operator": "op", "admin": "ad"}


def _bearer(name: str) -> dict:
    return {"Authorization": f"Bearer lmw-{name}"}


def _error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    return err


def _forbidden(r: httpx.Response) -> dict:
    err = _error(r, 403)
    assert err["type"] == "request_forbidden" and err["code"] == "insufficient_permissions"
    return err


def _accesses(store: Store) -> list[dict]:
    return [r.detail for r in store.audit_log() if r.action == "api_access"]


def _until(check, seconds: float = 5.0) -> None:
    t0 = time.monotonic()
    while not check():
        assert time.monotonic() - t0 < seconds, "did not happen in time"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def keyed(tiny_run, tmp_path_factory):
    """(url, store) of the tiny project served with one key per entry of KEYS (`lmw-NAME`) and two probe routes."""
    root = tmp_path_factory.mktemp("access") / "proj"
    shutil.copytree(tiny_run[0], root)
    ws = Workspace.open(root, ["serve.failed_auth_per_minute=0"])
    store = Store(ws.store_url)
    for name, (role, scopes) in KEYS.items():
        store.add_api_key(name, hash_key(f"lmw-{name}"), role=role, scopes=scopes)
    app = build_app(ws)

    async def ping():
        return {"ok": True}

    app.get("/v1/annotate/ping")(ping)
    app.post("/v1/admin/ping")(ping)
    with live(app) as url:
        yield url, store, app.state.server


def test_paths_fall_in_one_group_and_unnamed_ones_are_administration():
    assert [route_group(p) for p in ("/v1/chat/completions", "/v1/models/tiny", "/", "/v1/feedback")] == \
        ["serving"] * 4
    assert [route_group(p) for p in ("/dashboard", "/v1/monitor", "/metrics")] == ["dashboard"] * 3
    assert route_group("/v1/annotate/tasks/3") == route_group("/annotate") == "annotation"
    assert route_group("/v1/annotated") == route_group("/v1/keys") == route_group("/v1/admin/x") == "administration"
    scoped = Identity("s", "operator", {"routes": ["dashboard"]})
    assert scoped.groups == {"dashboard"} and Identity("x", "root").groups == frozenset()
    assert "not one of user, annotator, reviewer, operator, admin" in Identity("x", "root").refusal("/v1/models", "serving")


def test_each_role_reaches_its_groups_and_gets_403_in_openais_shape_elsewhere(keyed):
    url, store, _ = keyed
    for role, name in ROLE_KEY.items():
        for group, method, path in PROBES:
            r = httpx.request(method, f"{url}{path}", headers=_bearer(name), timeout=60)
            if group in REACHES[role]:
                assert r.status_code == 200, (role, path, r.text)
                continue
            err = _forbidden(r)
            can = " or ".join(x for x in REACHES if group in REACHES[x])
            assert err["param"] is None and err["message"] == (
                f"the key {name!r} (role {role}) may not reach {path} ({group} routes); a key with role {can} can")
    # the pages stay open (they ask for a key); a path no route serves is a 404 for every key, not a 403
    assert httpx.get(f"{url}/dashboard", headers=_bearer("u")).status_code == 200
    assert _error(httpx.get(f"{url}/v1/admin/nothing", headers=_bearer("u")), 404)
    assert _error(httpx.get(f"{url}/v1/models", headers=_bearer("nobody")), 401)["code"] == "invalid_api_key"
    # route scopes narrow a role: the scraper's operator key reaches /metrics and not the serving routes
    assert httpx.get(f"{url}/metrics", headers=_bearer("scrape")).status_code == 200
    assert "its scopes limit it to the dashboard routes" in _forbidden(
        httpx.get(f"{url}/v1/models", headers=_bearer("scrape")))["message"]


def test_key_uses_of_dashboard_and_administration_routes_are_audited_refusals_included(keyed):
    url, store, st = keyed
    _until(lambda: not st.pending)  # the rows of the requests before this test are written
    before = len(_accesses(store))
    httpx.get(f"{url}/v1/monitor", headers=_bearer("op"), timeout=60)
    httpx.get(f"{url}/v1/monitor", headers=_bearer("u"))
    httpx.post(f"{url}/v1/admin/ping", headers=_bearer("ad"))
    httpx.get(f"{url}/v1/models", headers=_bearer("ad"))  # serving: in the request log, not the audit log
    httpx.get(f"{url}/v1/admin/nothing", headers=_bearer("ad"))  # no such route: nothing was reached
    httpx.get(f"{url}/v1/monitor")  # no key: a 401, not a key's use
    _until(lambda: len(_accesses(store)) >= before + 3)
    time.sleep(0.2)
    _until(lambda: not st.pending)
    rows = [{k: d[k] for k in ("key", "role", "route", "method", "status")} for d in _accesses(store)[before:]]
    assert sorted(rows, key=json.dumps) == [
        {"key": "ad", "role": "admin", "route": "/v1/admin/ping", "method": "POST", "status": 200},
        {"key": "op", "role": "operator", "route": "/v1/monitor", "method": "GET", "status": 200},
        {"key": "u", "role": "user", "route": "/v1/monitor", "method": "GET", "status": 403}]
    assert store.verify_audit() == []


def test_a_model_outside_the_keys_scope_is_a_403_served_or_not_and_unlisted(keyed):
    url, _, _ = keyed
    everything = {m.id for m in openai.OpenAI(base_url=f"{url}/v1", api_key="lmw-u").models.list().data}
    assert {"tiny", "tiny-assistant"} <= everything
    docs = openai.OpenAI(base_url=f"{url}/v1", api_key="lmw-docs", max_retries=0)
    assert [m.id for m in docs.models.list().data] == ["tiny"]
    assert docs.completions.create(model="tiny", prompt="The json", max_tokens=2).choices
    with pytest.raises(openai.PermissionDeniedError) as e:
        docs.chat.completions.create(model="tiny-assistant", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 403 and e.value.body["code"] == "insufficient_permissions"
    assert e.value.body["message"] == ("the key 'docs' (role user) may not use the model 'tiny-assistant': its model "
                                       "scope is tiny; it may use 'tiny'")
    with pytest.raises(openai.PermissionDeniedError) as gone:  # a model nobody serves: the same answer, no 404
        docs.completions.create(model="no-such-model", prompt="x", max_tokens=2)
    assert "'no-such-model'" in gone.value.message and "tiny-assistant" not in gone.value.message
    assert _forbidden(httpx.get(f"{url}/v1/models/tiny-assistant", headers=_bearer("docs")))["param"] == "model"
    # no model named: the first the key may use, not the server's default
    r = httpx.post(f"{url}/v1/completions", json={"prompt": "The json", "max_tokens": 2}, headers=_bearer("docs"))
    assert r.status_code == 200 and r.json()["model"] == "tiny"
    # a scope may name the reference the deployment was planned from
    assert [m["id"] for m in httpx.get(f"{url}/v1/models", headers=_bearer("champ")).json()["data"]] == ["tiny"]
    assert httpx.get(f"{url}/v1/models", headers=_bearer("none")).json()["data"] == []
    assert "may use none of the models" in _forbidden(
        httpx.post(f"{url}/v1/completions", json={"prompt": "x"}, headers=_bearer("none")))["message"]


def test_keys_made_before_roles_existed_are_admin(tmp_path):
    path = tmp_path / "old.db"
    con = sqlite3.connect(path)
    con.executescript((Path(__file__).parent / "data" / "store-0.1.0.sql").read_text())
    con.close()
    store = Store(f"sqlite:///{path}")  # upgraded to the head on open
    (alice,) = store.api_keys()
    assert (alice.name, alice.role, alice.scopes) == ("alice", "admin", {})
    checker = KeyChecker(lambda: [(k.name, k.key_hash, k.role, k.scopes) for k in store.api_keys()])
    assert checker.keys[0][1].groups == set(GROUPS)
    store.add_api_key("new", hash_key("lmw-new"))
    assert store.api_keys()[1].role == "user"


def test_keys_add_list_and_revoke_with_roles_and_scopes(tiny_copy):
    d = str(tiny_copy)

    def cli(*args: str):
        return CliRunner().invoke(cli_app, ["keys", *args, "-C", d])

    r = cli("add", "ops", "--role", "operator", "--models", "tiny, tiny-assistant", "--routes", "serving,dashboard")
    assert r.exit_code == 0, r.output
    assert r.stdout.strip().startswith("lmw-")
    assert cli("add", "plain").exit_code == 0
    rows = json.loads(cli("list", "--json").stdout)
    assert [(x["name"], x["role"], x["scopes"]) for x in rows] == [
        ("ops", "operator", {"models": ["tiny", "tiny-assistant"], "routes": ["serving", "dashboard"]}),
        ("plain", "user", {})]
    assert "operator" in cli("list").stdout and "routes serving,dashboard" in cli("list").stdout
    bad = cli("add", "x", "--role", "root")
    assert bad.exit_code != 0 and "unknown role 'root'; the roles are user, annotator, reviewer, operator, admin" in \
        str(bad.exception)
    bad = cli("add", "x", "--routes", "serving,admin")
    assert "unknown route group 'admin'; the groups are serving, annotation, dashboard, administration" in \
        str(bad.exception)
    bad = cli("add", "x", "--role", "user", "--routes", "dashboard")
    assert "a user key cannot reach the dashboard routes whatever its scopes; a key with role operator or admin" \
        in str(bad.exception)
    assert cli("revoke", "ops").exit_code == 0
    audit = [(a.action, a.detail) for a in Store(Workspace.open(tiny_copy).store_url).audit_log()
             if a.action.startswith("api_key_")]
    assert audit == [
        ("api_key_add", {"name": "ops", "role": "operator", "scopes": rows[0]["scopes"]}),
        ("api_key_add", {"name": "plain", "role": "user", "scopes": {}}),
        ("api_key_revoke", {"name": "ops", "role": "operator", "scopes": rows[0]["scopes"]})]
    assert check_scopes("admin", ["*"], []) == {"models": ["*"]}
