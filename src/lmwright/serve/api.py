"""The OpenAI-compatible API server: `lmwright serve` (FastAPI + uvicorn).

Routes: `/v1/models` and `/v1/models/{id}`, `/v1/completions`, `/v1/chat/completions` (JSON, or server-sent events
with OpenAI's chunk shapes ending in `data: [DONE]`), `/v1/feedback`, `/health`, `/metrics` (Prometheus) and `/`
(the chat page). With API keys configured (`lmwright keys add NAME`, live within a second), every route but
`/health` and the page needs a Bearer key. Every error is OpenAI's error JSON,
`{"error": {"message", "type", "param", "code"}}`, with its status: bad input is never a 500.

This module assembles the app: `create_app` builds the state the routes share (serve/state.py: each model's engine
in its background thread, keys, rate limiters, metrics) and registers the routes (serve/routes.py, module-level
functions that read that state from `request.app.state.server`) behind the guard (serve/guard.py). `build_app`
does it for a workspace's models (the project's assistant and base model by default);
`serve_in_thread` runs an app in the background for tests, benchmarks and notebooks. A chat request's prompt is
encoded by the one chat template, `lmwright.chat_template`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

from fastapi import FastAPI

from lmwright.model.engine import Engine
from lmwright.serve import routes
from lmwright.serve.state import ServeConfig, ServerState


def create_app(models: list[tuple[str, str, Engine]], cfg: ServeConfig,
               on_ready: Callable[[str, str], None] | None = None,
               load: Callable[[], list[tuple[str, str, Engine]]] | None = None) -> FastAPI:
    """The server app over (name, digest, engine) models, the first the default: its state in `app.state.server`
    (the default model's engine service, the metrics and key checker also as `app.state.service` (None when the
    models come from `load`), `.metrics` and `.keys`), its routes, error handlers and guard. The app answers once bound; each engine compiles and starts in
    the background during the app's lifespan, and `on_ready(model, what happened)` is told as each one starts.
    With `load` (and no models), the models themselves are loaded in the background too: the server answers
    "starting" from the moment it is bound."""
    state = ServerState.build(models, cfg)
    state.on_ready, state.load = on_ready, load
    app = FastAPI(title="lmwright", version="1", docs_url="/docs", redoc_url=None, lifespan=routes.lifespan)
    app.state.server = state
    app.state.service = state.default.service if models else None
    app.state.metrics, app.state.keys = state.metrics, state.keys
    routes.register(app, state)
    return app


def served_refs(ws, ref: str | None) -> list[str]:
    """The models a server answers for: `ref`, else serve.model, else the project's assistant (when fine-tuning made
    one) followed by its base model, so a chat client talks to a model that learned the chat template."""
    from lmwright.core.store import Store

    if ref or ws.spec.serve.model:
        return [ref or ws.spec.serve.model]
    project = ws.spec.project.name
    names = {m.name for m in Store(ws.store_url).models()}
    return [f"{project}-assistant", project] if f"{project}-assistant" in names else [project]


def load_served_model(ws, ref: str | None):
    """(engine-ready model, tokenizer, name, digest) of `ref`, else of the first of `served_refs`."""
    from lmwright.core.models import resolve_model
    from lmwright.model.hf import load_hf
    from lmwright.tokenizer import load_tokenizer

    model_dir, name, digest = resolve_model(ws, served_refs(ws, ref)[0])
    return load_hf(model_dir), load_tokenizer(model_dir), name, digest


def load_models(ws, ref: str | None = None) -> list[tuple[str, str, Engine]]:
    """(name, digest, engine) for each of `served_refs`, with the workspace's serve settings."""
    s = ws.spec.serve
    models: list[tuple[str, str, Engine]] = []
    for r in served_refs(ws, ref):
        model, tok, name, digest = load_served_model(ws, r)
        if name not in {n for n, _, _ in models}:
            models.append((name, digest, Engine(model, tok, max_batch=s.max_batch, compile=s.compile)))
    return models


def build_app(ws, ref: str | None = None, on_ready: Callable[[str, str], None] | None = None,
              load: Callable[[], list[tuple[str, str, Engine]]] | None = None) -> FastAPI:
    """The app for a workspace: its models (`served_refs`), its serve settings, its store (keys, request log,
    feedback). Nothing is compiled here: the app compiles once it is serving (see `create_app`). With `load`, not
    even the models are loaded here: `load` runs once the server is bound (`lmwright serve` passes one that builds
    the project's model first when there is none)."""
    from lmwright.core.store import Store

    models = [] if load is not None else load_models(ws, ref)
    return create_app(models, ServeConfig(ws.spec.serve, Store(ws.store_url)), on_ready, load)


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
