"""Schemathesis fuzzes the server's OpenAPI schema (every route, bodies generated from the schema and beyond
it): no input may produce a 5xx."""

from __future__ import annotations

import shutil

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from lmwright.core.workspace import Workspace
from lmwright.ops.deploy import build_app
from tests.conftest import live


@pytest.fixture(scope="module")
def fuzz_url(tiny_run, tmp_path_factory):
    root, _ = tiny_run
    proj = tmp_path_factory.mktemp("fuzz") / "proj"
    shutil.copytree(root, proj)
    with live(build_app(Workspace.open(proj, ["serve.rate_limit_per_minute=0", "serve.max_tokens=16", "serve.timeout_s=10"]))) as url:
        yield url


@pytest.mark.slow
def test_no_input_makes_a_server_error(fuzz_url):
    """Each operation, with inputs from the schema (positive) and beyond it (negative). Driven through
    schemathesis' Python API and hypothesis directly, not its pytest plugin, which reaches into pytest's
    internals and broke on pytest 9.2."""
    schema = schemathesis.openapi.from_url(f"{fuzz_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/completions", "/v1/chat/completions", "/v1/feedback"}
    for op in operations:
        for mode in schemathesis.GenerationMode:

            @given(case=op.as_strategy(generation_mode=mode))
            @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            def check(case):
                response = case.call(timeout=60)
                assert response.status_code < 500, (case.path, case.body, response.text[:500])
                content_type = str(response.headers.get("content-type", ""))  # header values may be lists
                if response.status_code >= 400 and "application/json" in content_type:
                    assert set(response.json()["error"]) == {"message", "type", "param", "code"}

            try:
                check()
            except Unsatisfiable:  # nothing to break: an operation without parameters or a body (GET /health)
                assert mode is schemathesis.GenerationMode.NEGATIVE, op.path
