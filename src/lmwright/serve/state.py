"""What the server's routes share: the application state, the engine in its thread, and the API's error.

`create_app` (serve/api.py) builds one `ServerState` per app and stores it as `app.state.server`; the routes
(serve/routes.py) are module-level functions that reach it through `request.app.state.server`. `EngineService`
runs the engine in one background thread; each request waits on an asyncio queue that the engine thread feeds, so
the event loop never blocks on the model. `ApiError` is any failure a client sees, in OpenAI's error shape.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from tokenizers import Tokenizer

from lmwright.model.engine import Engine, SamplingParams
from lmwright.serve.auth import KeyChecker, RateLimiter
from lmwright.serve.metrics import ServeMetrics
from lmwright.tokenizer import chat_stop_ids


class ApiError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        return JSONResponse({"error": {"message": self.message, "type": self.type, "param": self.param,
                                       "code": self.code}}, status_code=self.status, headers=self.headers)


# -- the engine in its thread ----------------------------------------------------------------------------------------

@dataclass
class Served:
    """What a request produced, for the response and the request log."""

    id: str
    prompt_tokens: int
    text: str = ""
    completion_tokens: int = 0
    finish_reason: str | None = None
    queue_s: float | None = None
    ttft_s: float | None = None
    e2e_s: float | None = None
    flags: dict = field(default_factory=dict)


class EngineService:
    def __init__(self, engine: Engine, metrics: ServeMetrics, max_queue: int, timeout_s: float):
        self.engine, self.metrics, self.max_queue, self.timeout_s = engine, metrics, max_queue, timeout_s
        self.stop = threading.Event()
        self.thread = threading.Thread(target=engine.run_forever, args=(self.stop,), daemon=True, name="engine")

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)

    async def run(self, rid: str, prompt_ids: list[int], params: SamplingParams, served: Served) -> AsyncIterator[str]:
        """Text deltas as the engine makes them; `served` is filled in as it goes."""
        if self.engine.n_waiting >= self.max_queue:
            raise ApiError(503, "the server is overloaded; retry shortly", "server_error", code="overloaded")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        def on_event(req, delta: str, finished: bool) -> None:  # in the engine thread
            loop.call_soon_threadsafe(queue.put_nowait, (delta, finished))

        try:
            req = self.engine.submit(prompt_ids, params, on_event, rid)
        except ValueError as exc:
            raise ApiError(400, str(exc), param="prompt", code="context_length_exceeded") from None
        deadline = loop.time() + self.timeout_s
        try:
            while True:
                try:
                    delta, finished = await asyncio.wait_for(queue.get(), max(0.0, deadline - loop.time()))
                except TimeoutError:
                    served.finish_reason = "timeout"
                    raise ApiError(408, f"the request took longer than {self.timeout_s:g} s and was stopped",
                                   "timeout_error", code="request_timeout") from None
                while not finished and not queue.empty():  # behind the engine: one chunk for what has piled up
                    more, finished = queue.get_nowait()
                    delta += more
                if delta:
                    yield delta
                if finished:
                    if req.finish_reason == "error":
                        raise ApiError(500, "the engine failed on this request", "server_error", code="engine_error")
                    break
        finally:
            if not req.finished:  # timed out, or the client went away: free the slot at the next step
                self.engine.cancel(req)
                served.finish_reason = served.finish_reason or "abort"
            served.text, served.completion_tokens = req.text, len(req.output_ids)
            served.finish_reason = served.finish_reason or req.finish_reason
            if req.scheduled is not None:
                served.queue_s = req.scheduled - req.arrived
            if req.first_token is not None:
                served.ttft_s = req.first_token - req.arrived
                served.e2e_s = req.token_times[-1] - req.arrived
            if req.finished:
                self.metrics.finished(req)


# -- the application state -------------------------------------------------------------------------------------------

@dataclass
class ServeConfig:
    model_name: str
    model_digest: str
    spec: Any  # ServeSpec
    store: Any | None = None  # core.store.Store for keys, the request log and feedback


@dataclass
class ServerState:
    """Everything the routes read, built once per app by `ServerState.build`."""

    cfg: ServeConfig
    engine: Engine
    metrics: ServeMetrics
    service: EngineService
    keys: KeyChecker
    limiter: RateLimiter
    tok: Tokenizer
    chat_stops: frozenset[int]  # a chat reply also stops at the template's end-of-turn token
    page: str  # the chat page's HTML (read once, at start)
    pending: set[asyncio.Task] = field(default_factory=set)  # request-log writes that outlive a disconnected stream

    @property
    def spec(self) -> Any:
        """The serve settings (the spec's `serve` section)."""
        return self.cfg.spec

    @classmethod
    def build(cls, engine: Engine, cfg: ServeConfig) -> ServerState:
        s = cfg.spec
        metrics = ServeMetrics(cfg.model_name)
        service = EngineService(engine, metrics, s.max_queue, s.timeout_s)
        keys = KeyChecker([(k.name, k.key_hash) for k in cfg.store.api_keys()] if cfg.store else [])
        limiter = RateLimiter(s.rate_limit_per_minute)
        tok = engine.tok
        chat_stops = chat_stop_ids(tok)
        page = (Path(__file__).parent / "web" / "chat.html").read_text(encoding="utf-8")
        return cls(cfg, engine, metrics, service, keys, limiter, tok, chat_stops, page)


def server(request: Request) -> ServerState:
    """The state of the app serving `request`."""
    return request.app.state.server
