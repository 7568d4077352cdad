"""What the server's routes share: the application state, each model's engine in its thread, and the API's error.

`create_app` (serve/api.py) builds one `ServerState` per app and stores it as `app.state.server`; the routes
(serve/routes.py) are module-level functions that reach it through `request.app.state.server`. A server answers for
one or more deployments (serve/routing.py: a model id, the versions behind it with their weights, a shadow);
requests name one by their `model` field, the first is the default, and `route` picks the version. Each loaded
version is a `ServedModel`, kept by digest, and the follower (serve/follow.py) replaces the plan as aliases move. Each model's `EngineService` runs its engine in one background thread;
a request is admitted (`submit`: queue room, prompt length) before any response is sent, then waits on an asyncio
queue that the engine thread feeds, so the event loop never blocks on the model. `ApiError` is any failure a client
sees, in OpenAI's error shape. A key with a model scope (serve/auth.py) sees only the deployments in it: one outside
is a 403 whether or not this server serves it, so the answer tells nothing about models beyond the scope.
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
from lmwright.serve.auth import Identity, KeyChecker, RateLimiter
from lmwright.serve.metrics import ServeMetrics
from lmwright.serve.routing import Deployment, Plan, Target, caller
from lmwright.tokenizer import chat_stop_ids

# The official OpenAI clients retry 408, 409, 429 and 5xx on their own unless the response says not to; a request
# the server already spent its time on (a timeout, an engine failure) must not be run again behind the caller's back.
NO_RETRY = {"x-should-retry": "false"}
_LATE = object()  # queued by a request's deadline timer


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


def forbidden(message: str, param: str | None = None) -> ApiError:
    """A 403 for a valid key that may not do this: the type OpenAI's own 403s carry (`request_forbidden`), and the
    code names the reason (OpenAI words it "You have insufficient permissions for this operation")."""
    return ApiError(403, message, "request_forbidden", param=param, code="insufficient_permissions")


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
    # (the text drift features read, the tokenizer that read it, the bytes of all the prompt's contents)
    asked: tuple | None = None
    score: Callable[[], float | None] | None = None  # its NLL under the model that answered (Engine.score_prompt)
    logged: bool = False  # its request-log row is written (a stream's is written once, whichever way it ends)


@dataclass
class Admitted:
    """A request the engine has accepted: its queue of (delta, finished) events and the engine's record."""

    req: EngineRequest
    queue: asyncio.Queue
    deadline: float
    closed: bool = False  # `EngineService.end` has run


class EngineService:
    def __init__(self, engine: Engine, metrics: ServeMetrics, model: str, max_queue: int, timeout_s: float,
                 version: str = ""):
        self.engine, self.metrics, self.model, self.version = engine, metrics, model, version
        self.max_queue, self.timeout_s = max_queue, timeout_s
        self.active = 0  # admitted and not yet ended: a replaced version is closed only once this is 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=engine.run_forever, args=(self.stop,), daemon=True,
                                       name=f"engine:{model}")
        # events from the engine thread wait here per event loop, handed over in one wake-up of the loop
        self._pending: dict[asyncio.AbstractEventLoop, list] = {}
        self._pending_lock = threading.Lock()

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout=10)

    def submit(self, rid: str, prompt_ids: list[int], params: SamplingParams) -> Admitted:
        """Hand a request to the engine, or raise the ApiError that refuses it (a full queue, a prompt over the
        context): known before any response is sent, so a stream can still answer with the real status."""
        if self.stop.is_set():  # a replaced version, closed: cannot happen within the drain's grace, but never hang
            raise ApiError(503, "this model version was just replaced; retry", "server_error", code="replaced",
                           headers={"Retry-After": "0"})
        if self.engine.n_waiting >= self.max_queue:
            raise ApiError(503, "the server is overloaded; retry shortly", "server_error", code="overloaded",
                           headers={"Retry-After": "1"})
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        def on_event(req, delta: str, finished: bool) -> None:  # in the engine thread
            self._hand_over(loop, queue, (delta, finished))

        try:
            req = self.engine.submit(prompt_ids, params, on_event, rid)
        except ValueError as exc:
            raise ApiError(400, str(exc), param="prompt", code="context_length_exceeded") from None
        self.active += 1
        return Admitted(req, queue, loop.time() + self.timeout_s)

    def _hand_over(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue, event: tuple) -> None:
        """In the engine thread: queue `event` for `loop`, waking the loop only for the first event since its last
        delivery. A step of 16 streams then wakes the loop once, not 16 times (each wake-up a write to its pipe
        and a turn of the interpreter lock)."""
        with self._pending_lock:
            waiting = self._pending.setdefault(loop, [])
            waiting.append((queue, event))
            first = len(waiting) == 1
        if first:
            try:
                loop.call_soon_threadsafe(self._deliver, loop)
            except RuntimeError:  # the loop is closed (its app stopped): nobody will read these events
                with self._pending_lock:
                    self._pending.pop(loop, None)

    def _deliver(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._pending_lock:
            waiting = self._pending.pop(loop, [])
        for queue, event in waiting:
            queue.put_nowait(event)

    async def events(self, job: Admitted, served: Served) -> AsyncIterator[str]:
        """Text deltas as the engine makes them; `served` is filled in as it goes, and the metrics count the request
        once it ends however it ends (finished, timed out, or abandoned by its client: reason "abort")."""
        req, queue, loop = job.req, job.queue, asyncio.get_running_loop()
        # the deadline is one timer that queues `_LATE`, not a timeout around each wait (a task and a timer per token)
        timer = loop.call_at(job.deadline, queue.put_nowait, _LATE)
        try:
            while True:
                event = await queue.get()
                parts, finished = [], False
                while event is not _LATE:  # behind the engine: one chunk for what has piled up
                    parts.append(event[0])
                    finished = event[1]
                    if finished or queue.empty():
                        break
                    event = queue.get_nowait()
                if event is _LATE:
                    served.finish_reason = "timeout"
                    raise ApiError(504, f"the request took longer than this server's limit of {self.timeout_s:g} s "
                                        "and was stopped; ask for fewer tokens", "timeout_error",
                                   code="request_timeout", headers=NO_RETRY)
                delta = "".join(parts)
                if delta:
                    yield delta
                if finished:
                    if req.finish_reason == "error":
                        served.finish_reason = "error"
                        raise ApiError(500, "the engine failed on this request", "server_error",
                                       code="engine_error", headers=NO_RETRY)
                    break
        finally:
            timer.cancel()
            self.end(job, served)

    def end(self, job: Admitted, served: Served) -> None:
        """End a request's part in the engine, once, however it ended: a request still running (timed out, or its
        client gone) is cancelled, `served` gets its figures, and the metrics count it. Idempotent, and safe for a
        request whose events were never read (a stream cancelled before its first chunk)."""
        if job.closed:
            return
        job.closed = True
        self.active -= 1
        req = job.req
        if not req.finished:
            self.engine.cancel(req)
            served.finish_reason = served.finish_reason or "abort"
        served.text, served.completion_tokens = req.text, len(req.output_ids)
        served.score = lambda: self.engine.score_prompt(req)  # in the log's thread, after the answer
        served.finish_reason = served.finish_reason or req.finish_reason
        if req.scheduled is not None:
            served.queue_s = req.scheduled - req.arrived
        if req.first_token is not None:
            served.ttft_s = req.first_token - req.arrived
            served.e2e_s = req.token_times[-1] - req.arrived
        self.metrics.finished(req, self.model, self.version, served.finish_reason)


@dataclass
class ServedModel:
    """One loaded model version: its target (name, version, digest: what the request log and metrics say), its
    engine and the thread that runs it. `ready` is set once its decode step is compiled and the thread runs."""

    target: Target
    engine: Engine
    service: EngineService
    chat_stops: frozenset[int]  # a chat reply also stops at the template's end-of-turn token
    ready: threading.Event = field(default_factory=threading.Event)
    failed: str | None = None  # why it could not start, if it could not
    replaced_at: float | None = None  # when a new plan stopped routing to it (it is closed once idle)

    @property
    def name(self) -> str:
        return self.target.name

    @property
    def digest(self) -> str:
        return self.target.digest

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
                e = self.engine
                said = (f"decode step on onnxruntime ({e.onnx_step.kind} graph, built in {seconds:.0f} s, "
                        f"{e.onnx_step.threads} thread(s){', spinning' if e.onnx_step.spins else ''})"
                        if e.onnx_step is not None
                        else f"decode step compiled in {seconds:.0f} s" if e.compiled is not None else "eager")
            except Exception as exc:  # noqa: BLE001 - a compiler or exporter failure: the same maths without it
                traceback.print_exc()
                e = self.engine
                what = "the onnxruntime export" if e.backend == "onnxruntime" else "compiling"
                e.compiled = e.compiled_extend = None  # both graphs: eager maths alike
                e.backend, e.onnx_step, e.onnx_extend = "torch", None, None  # and no half-built session kept
                said = f"{what} failed ({type(exc).__name__}); serving with the eager PyTorch decode step"
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
    sketch_key: bytes | None = None  # the workspace's key for prompt sketches (data/sketch.py)


@dataclass
class Routed:
    """Where a request goes: the deployment it named, the version chosen, and that version's engine (None for a
    retired version: the request is refused naming its successor)."""

    deployment: Deployment
    target: Target
    model: ServedModel | None


@dataclass
class ServerState:
    """Everything the routes read, built once per app by `ServerState.build`. The deployments (model ids clients
    send, and the versions behind each) and the loaded versions are replaced whole, never changed in place, so a
    request that read them keeps a consistent view; a request runs to its end on the version it was routed to."""

    cfg: ServeConfig
    metrics: ServeMetrics
    keys: KeyChecker
    limiter: RateLimiter
    failed_auth: RateLimiter  # wrong or missing keys, per client address
    page: str  # the chat page's HTML (read once, at start)
    # (deployments by name, in order, the first the default; loaded versions by digest): one value, replaced whole,
    # so a request reads both from the same plan
    view: tuple[dict[str, Deployment], dict[str, ServedModel]] = field(default_factory=lambda: ({}, {}))
    replaced: list[ServedModel] = field(default_factory=list)  # versions no longer routed to, until idle
    started: float = field(default_factory=time.monotonic)
    created: float = field(default_factory=time.time)  # the models' `created` in /v1/models
    on_ready: Callable[[str, str], None] | None = None  # told (model, what happened) as each model starts
    plan: Callable[[], Plan] | None = None  # the deployments to serve, asked again every `refresh_s`
    open_engine: Callable[[Target], Engine] | None = None  # loads a version the plan needs
    refresh_s: float = 1.0
    load_failed: str | None = None  # why the first plan or its models failed to load, if they did
    load_error: BaseException | None = None  # and the error itself, for `lmwright serve` to report as any other
    follow_error: str | None = None  # why the latest re-plan failed (the server keeps the plan it has)
    closing: threading.Event = field(default_factory=threading.Event)  # the server is stopping: start nothing more
    pending: set[asyncio.Task] = field(default_factory=set)  # request-log writes and shadows still running
    # (name, fn(stop)) run in daemon threads for the app's lifetime, `closing` their stop event (ops/watch.py's
    # monitor loop: alerts and gauges every monitor.interval)
    background: list[tuple[str, Callable[[threading.Event], None]]] = field(default_factory=list)

    @property
    def spec(self) -> Any:
        """The serve settings (the spec's `serve` section)."""
        return self.cfg.spec

    @property
    def deployments(self) -> dict[str, Deployment]:
        return self.view[0]

    @property
    def engines(self) -> dict[str, ServedModel]:
        return self.view[1]

    @property
    def models(self) -> dict[str, ServedModel]:
        """Each deployment's first live version, by the deployment's name (what /v1/models and /health list)."""
        out = {}
        deployments, engines = self.view
        for name, d in deployments.items():
            m = next((engines[t.digest] for t in d.targets if t.digest in engines and t.weight > 0), None)
            if m is not None:
                out[name] = m
        return out

    @property
    def default(self) -> ServedModel:
        models = self.models
        if not models:
            raise self.not_loaded()
        return next(iter(models.values()))

    @property
    def ready(self) -> bool:
        """Every version the deployments route to is loaded and started (or failed to: then `/health` says so rather
        than "starting" for ever)."""
        if self.load_failed:
            return True
        return bool(self.deployments) and all(m.ready.is_set() or m.failed for m in self.engines.values())

    def not_loaded(self) -> ApiError:
        if self.load_failed:
            return ApiError(503, f"the server could not load its models: {self.load_failed}", "server_error",
                            code="model_failed")
        return ApiError(503, "the server is loading its models; retry shortly", "server_error", code="starting",
                        headers={"Retry-After": "5"})

    def served_model(self, t: Target, engine: Engine) -> ServedModel:
        s = self.cfg.spec
        version = "" if t.version is None else str(t.version)
        return ServedModel(t, engine, EngineService(engine, self.metrics, t.name, s.max_queue, s.timeout_s, version),
                           chat_stop_ids(engine.tok))

    def publish(self, deployments: Plan, engines: dict[str, ServedModel]) -> None:
        """Serve a new plan: new requests route by it from now; versions it no longer needs are closed once idle."""
        gone = [m for d, m in self.engines.items() if d not in engines]
        for m in gone:
            m.replaced_at = time.monotonic()
        self.view = ({d.name: d for d in deployments}, engines)  # a request that read the old view finishes on it
        self.replaced = [*self.replaced, *gone]

    def visible(self, key: Identity | None, deployments: dict[str, Deployment] | None = None) -> dict[str, Deployment]:
        """The deployments (of the current plan, or of `deployments`) a key may use: all of them, unless its model
        scope names some (serve/auth.py)."""
        deployments = self.deployments if deployments is None else deployments
        if key is None or not key.model_scoped:
            return deployments
        return {n: d for n, d in deployments.items() if key.may_use(_names(d))}

    def route(self, name: str | None, user: str | None, key: Identity | None) -> Routed:
        """The deployment a request names (None: the default, the first the key may use) and the version it goes
        to; an unknown name is a 404 (a 503 while loading), a name outside the key's model scope a 403."""
        deployments, engines = self.view
        if not deployments:
            raise self.not_loaded()
        allowed = self.visible(key, deployments)
        if name is None:
            d = next(iter(allowed.values()), None)
            if d is None:
                raise _out_of_scope(key, name, allowed)
        elif name in allowed:
            d = allowed[name]
        elif key is not None and key.model_scoped and not key.may_use([name]):
            raise _out_of_scope(key, name, allowed)
        else:
            raise ApiError(404, f"the model {name!r} does not exist; this server serves "
                                f"{', '.join(map(repr, allowed))}", "not_found_error", param="model",
                           code="model_not_found")
        t = d.pick(caller(d.route_by, user, key.name if key else None))
        return Routed(d, t, engines.get(t.digest))

    def model(self, name: str | None) -> ServedModel:
        """The version a request naming `name` goes to when no caller is known (tests, the page)."""
        r = self.route(name, None, None)
        if r.model is None:
            raise self.not_loaded()
        return r.model

    @classmethod
    def build(cls, models: list[tuple[str, str, Engine]], cfg: ServeConfig) -> ServerState:
        """The state for (name, digest, engine) models served as they are, the first the default (a plan is
        given later, by `create_app`, for a workspace's deployments)."""
        s = cfg.spec
        store = cfg.store
        keys = KeyChecker(lambda: [(k.name, k.key_hash, k.role, k.scopes) for k in store.api_keys()] if store else [])
        page = (Path(__file__).parent / "web" / "chat.html").read_text(encoding="utf-8")
        state = cls(cfg, ServeMetrics(), keys, RateLimiter(s.rate_limit_per_minute),
                    RateLimiter(s.failed_auth_per_minute), page)
        plan, engines = [], {}
        for name, digest, engine in models:
            t = Target(name, name, None, digest)
            plan.append(Deployment(name, (t,)))
            engines.setdefault(digest, state.served_model(t, engine))
        state.publish(tuple(plan), engines)
        return state


def _out_of_scope(key: Identity, name: str | None, allowed: dict[str, Deployment]) -> ApiError:
    """The 403 for a model outside a key's scope; it names only the models inside it."""
    mine = f"it may use {', '.join(map(repr, allowed))}" if allowed else \
        "it may use none of the models this server serves"
    asked = "a model" if name is None else f"the model {name!r}"
    return forbidden(f"the key {key.name!r} (role {key.role}) may not use {asked}: its model scope is "
                     f"{', '.join(key.scopes['models'])}; {mine}", param="model")


def _names(d: Deployment) -> set[str]:
    """What a model scope may name a deployment by: its id, or a version it routes to (its registered name,
    `name@version`, or the reference the plan was made from, `name@champion`)."""
    return {d.name, *(x for t in d.targets for x in (t.name, t.label, t.ref))}


def server(request: Request) -> ServerState:
    """The state of the app serving `request`."""
    return request.app.state.server
