"""What the server's routes share: the application state, each model's engine in its thread, and the API's error.

`create_app` (serve/api.py) builds one `ServerState` per app and stores it as `app.state.server`; the routes
(serve/routes.py) are module-level functions that reach it through `request.app.state.server`. A server holds one
or more models (`ServedModel`: the assistant and the base model of a project, say); requests name one by its
`model` field, and the first is the default. Each model's `EngineService` runs its engine in one background thread;
a request is admitted (`submit`: queue room, prompt length) before any response is sent, then waits on an asyncio
queue that the engine thread feeds, so the event loop never blocks on the model. `ApiError` is any failure a client
sees, in OpenAI's error shape.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from tokenizers import Tokenizer

from lmwright.model.engine import Engine, SamplingParams
from lmwright.model.engine import Request as EngineRequest
from lmwright.serve.auth import KeyChecker, RateLimiter
from lmwright.serve.metrics import ServeMetrics
from lmwright.tokenizer import chat_stop_ids

# The official OpenAI clients retry 408, 409, 429 and 5xx on their own unless the response says not to; a request
# the server already spent its time on (a timeout, an engine failure) must not be run again behind the caller's back.
NO_RETRY = {"x-should-retry": "false"}


class ApiError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


# -- a model and its engine in their thread --------------------------------------------------------------------------

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
    logged: bool = False  # its request-log row is written (a stream's is written once, whichever way it ends)


@dataclass
class Admitted:
    """A request the engine has accepted: its queue of (delta, finished) events and the engine's record."""

    req: EngineRequest
    queue: asyncio.Queue
    deadline: float
    closed: bool = False  # `EngineService.end` has run


class EngineService:
    def __init__(self, engine: Engine, metrics: ServeMetrics, model: str, max_queue: int, timeout_s: float):
        self.engine, self.metrics, self.model = engine, metrics, model
        self.max_queue, self.timeout_s = max_queue, timeout_s
        self.stop = threading.Event()
        self.thread = threading.Thread(target=engine.run_forever, args=(self.stop,), daemon=True,
                                       name=f"engine:{model}")

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout=10)

    def submit(self, rid: str, prompt_ids: list[int], params: SamplingParams) -> Admitted:
        """Hand a request to the engine, or raise the ApiError that refuses it (a full queue, a prompt over the
        context): known before any response is sent, so a stream can still answer with the real status."""
        if self.engine.n_waiting >= self.max_queue:
            raise ApiError(503, "the server is overloaded; retry shortly", "server_error", code="overloaded",
                           headers={"Retry-After": "1"})
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        def on_event(req, delta: str, finished: bool) -> None:  # in the engine thread
            loop.call_soon_threadsafe(queue.put_nowait, (delta, finished))

        try:
            req = self.engine.submit(prompt_ids, params, on_event, rid)
        except ValueError as exc:
            raise ApiError(400, str(exc), param="prompt", code="context_length_exceeded") from None
        return Admitted(req, queue, loop.time() + self.timeout_s)

    async def events(self, job: Admitted, served: Served) -> AsyncIterator[str]:
        """Text deltas as the engine makes them; `served` is filled in as it goes, and the metrics count the request
        once it ends however it ends (finished, timed out, or abandoned by its client: reason "abort")."""
        req, queue, loop = job.req, job.queue, asyncio.get_running_loop()
        try:
            while True:
                try:
                    delta, finished = await asyncio.wait_for(queue.get(), max(0.0, job.deadline - loop.time()))
                except TimeoutError:
                    served.finish_reason = "timeout"
                    raise ApiError(504, f"the request took longer than this server's limit of {self.timeout_s:g} s "
                                        "and was stopped; ask for fewer tokens", "timeout_error",
                                   code="request_timeout", headers=NO_RETRY) from None
                while not finished and not queue.empty():  # behind the engine: one chunk for what has piled up
                    more, finished = queue.get_nowait()
                    delta += more
                if delta:
                    yield delta
                if finished:
                    if req.finish_reason == "error":
                        served.finish_reason = "error"
                        raise ApiError(500, "the engine failed on this request", "server_error",
                                       code="engine_error", headers=NO_RETRY)
                    break
        finally:
            self.end(job, served)

    def end(self, job: Admitted, served: Served) -> None:
        """End a request's part in the engine, once, however it ended: a request still running (timed out, or its
        client gone) is cancelled, `served` gets its figures, and the metrics count it. Idempotent, and safe for a
        request whose events were never read (a stream cancelled before its first chunk)."""
        if job.closed:
            return
        job.closed = True
        req = job.req
        if not req.finished:
            self.engine.cancel(req)
            served.finish_reason = served.finish_reason or "abort"
        served.text, served.completion_tokens = req.text, len(req.output_ids)
        served.finish_reason = served.finish_reason or req.finish_reason
        if req.scheduled is not None:
            served.queue_s = req.scheduled - req.arrived
        if req.first_token is not None:
            served.ttft_s = req.first_token - req.arrived
            served.e2e_s = req.token_times[-1] - req.arrived
        self.metrics.finished(req, self.model, served.finish_reason)


@dataclass
class ServedModel:
    """One model a server answers for: its name and digest (the request log's model version), its engine and the
    thread that runs it. `ready` is set once its decode step is compiled and the thread runs."""

    name: str
    digest: str
    engine: Engine
    service: EngineService
    chat_stops: frozenset[int]  # a chat reply also stops at the template's end-of-turn token
    ready: threading.Event = field(default_factory=threading.Event)
    failed: str | None = None  # why it could not start, if it could not

    @property
    def tok(self) -> Tokenizer:
        return self.engine.tok

    def start(self) -> str:
        """Compile (when the engine compiles) and start the engine thread; returns what happened, in words. A
        compile that fails leaves the eager decode step, which computes the same; anything else marks the model
        failed (`/health` and its requests say why) without stopping the server's other models."""
        import traceback

        try:
            try:
                seconds = self.engine.warm_up()
                said = f"decode step compiled in {seconds:.0f} s" if self.engine.compiled is not None else "eager"
            except Exception as exc:  # noqa: BLE001 - a compiler failure: the same maths without it
                traceback.print_exc()
                self.engine.compiled = None
                said = f"compiling failed ({type(exc).__name__}); serving with the eager decode step"
            self.service.start()
        except Exception as exc:  # noqa: BLE001 - one model's failure must not take the others down
            traceback.print_exc()
            self.failed = f"{type(exc).__name__}: {exc}"
            return f"failed to start: {self.failed}"
        self.ready.set()
        return said


# -- the application state -------------------------------------------------------------------------------------------

@dataclass
class ServeConfig:
    spec: Any  # ServeSpec
    store: Any | None = None  # core.store.Store for keys, the request log and feedback


@dataclass
class ServerState:
    """Everything the routes read, built once per app by `ServerState.build`."""

    cfg: ServeConfig
    models: dict[str, ServedModel]  # in order; the first is the default
    metrics: ServeMetrics
    keys: KeyChecker
    limiter: RateLimiter
    failed_auth: RateLimiter  # wrong or missing keys, per client address
    page: str  # the chat page's HTML (read once, at start)
    started: float = field(default_factory=time.monotonic)
    created: float = field(default_factory=time.time)  # the models' `created` in /v1/models
    on_ready: Callable[[str, str], None] | None = None  # told (model, what happened) as each model starts
    load: Callable[[], list[tuple[str, str, Engine]]] | None = None  # models to load once bound (see create_app)
    load_failed: str | None = None  # why `load` failed, if it did
    load_error: BaseException | None = None  # and the error itself, for `lmwright serve` to report as any other
    closing: threading.Event = field(default_factory=threading.Event)  # the server is stopping: start nothing more
    pending: set[asyncio.Task] = field(default_factory=set)  # request-log writes that outlive a disconnected stream

    @property
    def spec(self) -> Any:
        """The serve settings (the spec's `serve` section)."""
        return self.cfg.spec

    @property
    def default(self) -> ServedModel:
        if not self.models:
            raise self.not_loaded()
        return next(iter(self.models.values()))

    @property
    def ready(self) -> bool:
        """Every model is loaded and started (or failed to: then `/health` says so rather than "starting" for
        ever)."""
        if self.load_failed:
            return True
        return bool(self.models) and all(m.ready.is_set() or m.failed for m in self.models.values())

    def not_loaded(self) -> ApiError:
        if self.load_failed:
            return ApiError(503, f"the server could not load its models: {self.load_failed}", "server_error",
                            code="model_failed")
        return ApiError(503, "the server is loading its models; retry shortly", "server_error", code="starting",
                        headers={"Retry-After": "5"})

    def add(self, name: str, digest: str, engine: Engine) -> ServedModel:
        """Serve one more model (the first added is the default)."""
        s = self.cfg.spec
        m = ServedModel(name, digest, engine, EngineService(engine, self.metrics, name, s.max_queue, s.timeout_s),
                        chat_stop_ids(engine.tok))
        self.models = {**self.models, name: m}  # a new dict: requests iterating the old one never see it change
        return m

    def model(self, name: str | None) -> ServedModel:
        """The model a request names (None: the default); an unknown name is a 404 (a 503 while loading)."""
        if not self.models:
            raise self.not_loaded()
        if name is None:
            return self.default
        if name not in self.models:
            raise ApiError(404, f"the model {name!r} does not exist; this server serves "
                                f"{', '.join(map(repr, self.models))}", "not_found_error", param="model",
                           code="model_not_found")
        return self.models[name]

    @classmethod
    def build(cls, models: list[tuple[str, str, Engine]], cfg: ServeConfig) -> ServerState:
        """The state for (name, digest, engine) models, the first the default."""
        s = cfg.spec
        store = cfg.store
        keys = KeyChecker(lambda: [(k.name, k.key_hash) for k in store.api_keys()] if store else [])
        page = (Path(__file__).parent / "web" / "chat.html").read_text(encoding="utf-8")
        state = cls(cfg, {}, ServeMetrics(), keys, RateLimiter(s.rate_limit_per_minute),
                    RateLimiter(s.failed_auth_per_minute), page)
        for name, digest, engine in models:
            state.add(name, digest, engine)
        return state


def server(request: Request) -> ServerState:
    """The state of the app serving `request`."""
    return request.app.state.server
