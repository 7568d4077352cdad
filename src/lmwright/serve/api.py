"""The OpenAI-compatible API server: `lmwright serve` (FastAPI + uvicorn).

Routes: `/v1/models`, `/v1/completions`, `/v1/chat/completions` (JSON, or server-sent events with OpenAI's chunk
shapes ending in `data: [DONE]`), `/v1/feedback`, `/health`, `/metrics` (Prometheus) and `/` (the chat page).
With API keys configured (`lmwright serve keys add NAME`), every route but `/health` and the page needs a
Bearer key. Every error is OpenAI's error JSON, `{"error": {"message", "type", "param", "code"}}`, with its
4xx status: bad input is never a 500.

This module assembles the app: `create_app` builds the state the routes share (serve/state.py: the engine in its
background thread, keys, rate limiter, metrics) and registers the routes (serve/routes.py, module-level functions
that read that state from `request.app.state.server`). `build_app` does it for a workspace's model;
`serve_in_thread` runs an app in the background for tests, benchmarks and notebooks. A chat request's prompt is
rendered by the one chat template, `lmwright.chat_template`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

from fastapi import FastAPI

from lmwright.model.engine import Engine
from lmwright.serve import routes
from lmwright.serve.state import ServeConfig, ServerState


def create_app(engine: Engine, cfg: ServeConfig) -> FastAPI:
    """The server app over `engine`: its state in `app.state.server` (the engine service, metrics and key checker
    also as `app.state.service`, `.metrics` and `.keys`), its routes, error handlers and guard. The engine thread
    starts and stops with the app's lifespan."""
    state = ServerState.build(engine, cfg)
    app = FastAPI(title="lmwright", version="1", docs_url="/docs", redoc_url=None, lifespan=routes.lifespan)
    app.state.server = state
    app.state.service, app.state.metrics, app.state.keys = state.service, state.metrics, state.keys
    routes.register(app, state)
    return app


def load_served_model(ws, ref: str | None):
    """(engine-ready model, tokenizer, name, digest) of `ref`, else serve.model, else the project's latest registered
    model (`lmwright serve` builds the project's model first when there is none)."""
    from lmwright.core.models import resolve_model
    from lmwright.model.hf import load_hf
    from lmwright.tokenizer import load_tokenizer

    model_dir, name, digest = resolve_model(ws, ref or ws.spec.serve.model or ws.spec.project.name)
    return load_hf(model_dir), load_tokenizer(model_dir), name, digest


def build_app(ws, ref: str | None = None, reporter=None) -> FastAPI:
    """The app for a workspace: its model, its serve settings, its store (keys, request log, feedback)."""
    from lmwright.core.store import Store

    model, tok, name, digest = load_served_model(ws, ref)
    engine = Engine(model, tok, max_batch=ws.spec.serve.max_batch, compile=ws.spec.serve.compile)
    if engine.compiled is not None and reporter is not None:
        reporter.log("compiling the decode step (once; a minute or so on a small CPU)")
    seconds = engine.warm_up()
    if engine.compiled is not None and reporter is not None:
        reporter.log(f"compiled in {seconds:.0f} s")
    return create_app(engine, ServeConfig(name, digest, ws.spec.serve, Store(ws.store_url)))


@contextlib.contextmanager
def serve_in_thread(app: FastAPI, host: str = "127.0.0.1", port: int = 0,
                    timeout_s: float = 30.0) -> Iterator[str]:
    """Run `app` under uvicorn in a background thread (port 0: any free port); yields its base URL and stops
    the server on exit. For tests, benchmarks and notebooks; `lmwright serve` runs uvicorn in the foreground."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True, name="uvicorn")
    thread.start()
    deadline = time.time() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.time() > deadline:
            raise RuntimeError(f"the server did not start on {host}:{port}")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
