"""The OpenAI-compatible API server: `lmwright serve` (FastAPI + uvicorn).

Routes: `/v1/models` and `/v1/models/{id}`, `/v1/completions`, `/v1/chat/completions` (JSON, or server-sent events
with OpenAI's chunk shapes ending in `data: [DONE]`), `/v1/feedback`, `/health`, `/metrics` (Prometheus) and `/`
(the chat page). With API keys configured (`lmwright keys add NAME`, live within a second), every route but
`/health` and the pages needs a Bearer key whose role and scopes reach it (serve/auth.py; else 403). Every error is
OpenAI's error JSON, `{"error": {"message", "type", "param", "code"}}`, with its status: bad input is never a 500.

This module assembles the app: `create_app` builds the state the routes share (serve/state.py: each version's engine
in its background thread, the deployments that route to them, keys, rate limiters, metrics) and registers the
routes (serve/routes.py, module-level functions that read that state from `request.app.state.server`) behind the
guard (serve/guard.py). `ops/deploy.build_app` does it for a workspace's deployments (the registry's champions by
default); `serve_in_thread` runs an app in the background for tests, benchmarks and notebooks. A chat request's
prompt is encoded by the one chat template, `lmwright.chat_template`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

from fastapi import FastAPI

from lmwright.model.engine import Engine
from lmwright.serve import routes
from lmwright.serve.routing import Plan, Target
from lmwright.serve.state import ServeConfig, ServerState


def create_app(models: list[tuple[str, str, Engine]], cfg: ServeConfig,
               on_ready: Callable[[str, str], None] | None = None, plan: Callable[[], Plan] | None = None,
               open_engine: Callable[[Target], Engine] | None = None, refresh_s: float = 1.0) -> FastAPI:
    """The server app: its state in `app.state.server` (the metrics and key checker also as `app.state.metrics` and
    `.keys`), its routes, error handlers and guard. It serves either (name, digest, engine) `models` as they are,
    the first the default, or the deployments `plan()` returns, loading each version with `open_engine` and asking
    `plan()` again every `refresh_s` to follow alias and route changes (serve/follow.py). The app answers once bound;
    loading, compiling and starting happen in the background during the app's lifespan, and `on_ready(version,
    what happened)` is told as each one starts."""
    state = ServerState.build(models, cfg)
    state.on_ready, state.plan, state.open_engine, state.refresh_s = on_ready, plan, open_engine, refresh_s
    app = FastAPI(title="lmwright", version="1", docs_url="/docs", redoc_url=None, lifespan=routes.lifespan)
    app.state.server = state
    app.state.metrics, app.state.keys = state.metrics, state.keys
    routes.register(app, state)
    return app


@contextlib.contextmanager
def serve_in_thread(app: FastAPI, host: str = "127.0.0.1", port: int = 0, timeout_s: float = 300.0,
                    ready: bool = True) -> Iterator[str]:
    """Run `app` under uvicorn in a background thread (port 0: any free port); yields its base URL once the server
    is bound and (with `ready`) every model is compiled and running, and stops the server on exit. For tests,
    benchmarks and notebooks; `lmwright serve` runs uvicorn in the foreground."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", proxy_headers=False))
    thread = threading.Thread(target=server.run, daemon=True, name="uvicorn")
    thread.start()
    deadline = time.time() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.time() > deadline:
            raise RuntimeError(f"the server did not start on {host}:{port}")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    while ready and not app.state.server.ready:  # started, or failed to (its /health says why)
        if not thread.is_alive() or time.time() > deadline:
            raise RuntimeError(f"the server's models did not start within {timeout_s:g} s")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
