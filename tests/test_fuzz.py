"""Schemathesis fuzzes the server's OpenAPI schema (every route, bodies generated from the schema and beyond
it): no input may produce a 5xx."""

from __future__ import annotations

import shutil

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from lmwright.core.workspace import Workspace
from lmwright.serve.api import build_app
from tests.conftest import live


@pytest.fixture(scope="module")
def fuzz_url(tiny_run, tmp_path_factory):
    root, _ = tiny_run
    proj = tmp_path_factory.mktemp("fuzz") / "proj"
    shutil.copytree(root, proj)
    with live(build_app(Workspace.open(proj, ["serve.rate_limit_per_minute=0", "serve.max_tokens=16", "serve.timeout_s=10"]))) as url:
        yield url


@pytest.fixture
def api_schema(fuzz_url):
    return schemathesis.openapi.from_url(f"{fuzz_url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_makes_a_server_error(case):
    response = case.call(timeout=60)
    assert response.status_code < 500, (case.path, case.body, response.text[:500])
    content_type = str(response.headers.get("content-type", ""))  # schemathesis keeps header values as lists
    if response.status_code >= 400 and "application/json" in content_type:
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
