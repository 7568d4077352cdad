"""The OpenAI-compatible API server: `lmwright serve` (FastAPI + uvicorn).

Routes: `/v1/models`, `/v1/completions`, `/v1/chat/completions` (JSON, or server-sent events with OpenAI's chunk
shapes ending in `data: [DONE]`), `/v1/feedback`, `/health`, `/metrics` (Prometheus) and `/` (the chat page).
With API keys configured (`lmwright serve keys add NAME`), every route but `/health` and the page needs a
Bearer key. Every error is OpenAI's error JSON, `{"error": {"message", "type", "param", "code"}}`, with its
4xx status: bad input is never a 500.

The engine runs in one background thread (`EngineService`); each request waits on an asyncio queue that the
engine thread feeds, so the event loop never blocks on the model.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from lmwright.model.engine import Engine, SamplingParams
from lmwright.serve.auth import KeyChecker, RateLimiter
from lmwright.serve.metrics import ServeMetrics
from lmwright.serve.safety import Refused, screen
from lmwright.tokenizer import CHAT_ROLES as ROLES
from lmwright.tokenizer import END_OF_TURN, chat_stop_ids


class ApiError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        return JSONResponse({"error": {"message": self.message, "type": self.type, "param": self.param,
                                       "code": self.code}}, status_code=self.status, headers=self.headers)


# -- request bodies: OpenAI's fields; unknown ones are ignored, as OpenAI's own server does ----------------------

class _Sampling(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int | None = Field(None, ge=1)  # an extension (vLLM's)
    repetition_penalty: float = Field(1.0, gt=0)  # an extension (vLLM's)
    frequency_penalty: float = Field(0.0, ge=-2, le=2)
    presence_penalty: float = Field(0.0, ge=-2, le=2)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1)
    n: int = Field(1, ge=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    logprobs: Any = None
    user: str | None = None


class CompletionBody(_Sampling):
    prompt: str | list[str]


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatBody(_Sampling):
    messages: list[Message] = Field(min_length=1)


class FeedbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=64)  # the response id (cmpl-... / chatcmpl-...)
    rating: int | None = Field(None, ge=-1, le=5)  # -1/1 thumbs, or 1..5
    correction: str | None = Field(None, max_length=20_000)
    comment: str | None = Field(None, max_length=5_000)


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


# -- the app -----------------------------------------------------------------------------------------------------

@dataclass
class ServeConfig:
    model_name: str
    model_digest: str
    spec: Any  # ServeSpec
    store: Any | None = None  # core.store.Store for keys, the request log and feedback


def render_chat(messages: list[Message]) -> str:
    """The chat template stored with the tokenizer, without its leading <|bos|> (the tokenizer adds it)."""
    parts = []
    for i, m in enumerate(messages):
        if m.role not in ROLES:
            raise ApiError(400, f"messages[{i}].role {m.role!r} is not one of {', '.join(ROLES)}",
                           param=f"messages.{i}.role")
        content = m.content
        if isinstance(content, list):  # OpenAI's content parts: text only
            if any(p.get("type") != "text" for p in content):
                raise ApiError(400, f"messages[{i}].content: only text parts are supported",
                               param=f"messages.{i}.content")
            content = "".join(str(p.get("text", "")) for p in content)
        parts.append(f"<|{m.role}|>{content or ''}{END_OF_TURN}")
    return "".join(parts) + "<|assistant|>"


def create_app(engine: Engine, cfg: ServeConfig) -> FastAPI:
    s = cfg.spec
    metrics = ServeMetrics(cfg.model_name)
    service = EngineService(engine, metrics, s.max_queue, s.timeout_s)
    keys = KeyChecker([(k.name, k.key_hash) for k in cfg.store.api_keys()] if cfg.store else [])
    limiter = RateLimiter(s.rate_limit_per_minute)
    tok = engine.tok
    chat_stops = chat_stop_ids(tok)
    page = (Path(__file__).parent / "web" / "chat.html").read_text(encoding="utf-8")
    pending: set[asyncio.Task] = set()  # request-log writes that outlive a disconnected stream

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        service.start()
        yield
        service.close()

    app = FastAPI(title="lmwright", version="1", docs_url="/docs", redoc_url=None, lifespan=lifespan)
    app.state.service, app.state.metrics, app.state.keys = service, metrics, keys

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"] if p != "body")
        if err["type"] == "json_invalid":
            return ApiError(400, f"the body is not valid JSON ({err.get('ctx', {}).get('error', err['msg'])})",
                            code="invalid_json").response()
        return ApiError(400, f"{loc or 'body'}: {err['msg']}", param=loc or None,
                        code="missing_field" if err["type"] == "missing" else "invalid_value").response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        type_ = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return ApiError(exc.status_code, str(exc.detail), type_).response()

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception):  # a bug: still OpenAI's shape, and logged by uvicorn
        return ApiError(500, f"internal error: {type(exc).__name__}", "server_error").response()

    async def admit(request: Request) -> bytes | None:
        """Body size, API key and rate limit, before any route runs; raises ApiError. Returns the body when it
        had to be read to learn its size (no content-length), for the route to read again."""
        body = None
        if request.method == "POST":
            size = request.headers.get("content-length")
            limit = s.max_body_kb * 1024
            if size is None:
                body = await request.body()
            if (size is not None and (not size.isdigit() or int(size) > limit)) or (body is not None and len(body) > limit):
                raise ApiError(413, f"the request body is larger than {s.max_body_kb} KB", code="body_too_large")
        who = request.client.host if request.client else "unknown"
        if request.url.path not in ("/health", "/") and keys.enabled:
            auth = request.headers.get("authorization", "")
            token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
            name = keys.check(token) if token else None
            if name is None:
                raise ApiError(401, "a valid API key is required: Authorization: Bearer <key>",
                               "authentication_error", code="invalid_api_key")
            who = f"key:{name}"
        request.state.key_name = who[4:] if who.startswith("key:") else None
        if request.url.path.startswith("/v1/"):
            ok, wait = limiter.allow(who)
            if not ok:
                raise ApiError(429, f"rate limit of {s.rate_limit_per_minute} requests a minute reached; "
                                    f"retry in {wait:.1f} s", "rate_limit_error", code="rate_limit_exceeded",
                               headers={"Retry-After": str(max(1, round(wait)))})
        return body

    app.add_middleware(_Guard, admit=admit, count=lambda path, status: metrics.http.labels(
        path if path in _ROUTES else "other", str(status)).inc())

    async def log(request: Request, endpoint: str, status: int, served: Served, prompt: str = "") -> None:
        if cfg.store is None:
            return
        row = {"request_id": served.id, "key_name": getattr(request.state, "key_name", None), "endpoint": endpoint,
               "model": cfg.model_name, "model_digest": cfg.model_digest, "status": status,
               "prompt_tokens": served.prompt_tokens, "completion_tokens": served.completion_tokens,
               "finish_reason": served.finish_reason, "queue_s": served.queue_s, "ttft_s": served.ttft_s,
               "e2e_s": served.e2e_s, "flags": served.flags,
               "prompt": prompt if s.log_prompts else None, "output": served.text if s.log_prompts else None}
        await asyncio.to_thread(cfg.store.log_requests, [row])

    def sampling(body: _Sampling, chat: bool) -> SamplingParams:
        if body.model not in (None, cfg.model_name):
            raise ApiError(404, f"the model {body.model!r} does not exist; this server serves {cfg.model_name!r}",
                           "not_found_error", param="model", code="model_not_found")
        if body.n != 1:
            raise ApiError(400, "only n=1 is supported", param="n", code="unsupported_value")
        if body.logprobs not in (None, False):
            raise ApiError(400, "logprobs are not supported", param="logprobs", code="unsupported_value")
        if body.frequency_penalty or body.presence_penalty:
            raise ApiError(400, "frequency_penalty and presence_penalty are not supported; use repetition_penalty",
                           param="frequency_penalty" if body.frequency_penalty else "presence_penalty",
                           code="unsupported_value")
        max_tokens = body.max_completion_tokens or body.max_tokens or min(64, s.max_tokens)
        if max_tokens > s.max_tokens:
            raise ApiError(400, f"max_tokens {max_tokens} is above this server's limit of {s.max_tokens}",
                           param="max_tokens", code="invalid_value")
        stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
        if len(stop) > 4 or any(not x for x in stop):
            raise ApiError(400, "stop takes up to 4 non-empty strings", param="stop", code="invalid_value")
        return SamplingParams(max_tokens=max_tokens, temperature=body.temperature, top_p=body.top_p,
                              top_k=body.top_k, repetition_penalty=body.repetition_penalty, stop=stop, seed=body.seed,
                              stop_token_ids=chat_stops if chat else frozenset())

    def encode(text: str, flags: dict) -> tuple[str, list[int]]:
        try:
            text, f = screen(text, s.safety, "input")
        except Refused as exc:
            raise ApiError(400, str(exc), param="prompt", code="content_filter") from None
        flags.update(f)
        return text, tok.encode(text).ids  # with <|bos|>

    async def respond(request: Request, endpoint: str, body: _Sampling, prompt: str, chat: bool):
        params = sampling(body, chat)
        flags: dict = {}
        prompt, ids = encode(prompt, flags)
        prefix = "chatcmpl" if chat else "cmpl"
        rid = f"{prefix}-{uuid.uuid4().hex[:24]}"
        served = Served(rid, len(ids), flags=flags)
        created = int(time.time())
        if body.stream:
            usage_chunk = bool((body.stream_options or {}).get("include_usage"))
            return StreamingResponse(stream(request, endpoint, rid, ids, params, served, prompt, created, chat,
                                            usage_chunk), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Request-Id": rid})
        try:
            async for _ in service.run(rid, ids, params, served):
                pass
        except ApiError as exc:
            await log(request, endpoint, exc.status, served, prompt)
            raise
        text, out_flags = screen(served.text, s.safety, "output")
        served.flags.update(out_flags)
        served.text = text
        await log(request, endpoint, 200, served, prompt)
        usage = {"prompt_tokens": served.prompt_tokens, "completion_tokens": served.completion_tokens,
                 "total_tokens": served.prompt_tokens + served.completion_tokens}
        finish = _finish(served.finish_reason)
        if chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                      "finish_reason": finish}
            return {"id": rid, "object": "chat.completion", "created": created, "model": cfg.model_name,
                    "choices": [choice], "usage": usage}
        return {"id": rid, "object": "text_completion", "created": created, "model": cfg.model_name,
                "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}], "usage": usage}

    async def stream(request, endpoint, rid, ids, params, served, prompt, created, chat, usage_chunk):
        obj = "chat.completion.chunk" if chat else "text_completion"

        def chunk(delta: str | None, finish: str | None = None, first: bool = False) -> str:
            if chat:
                d = {"role": "assistant", "content": ""} if first else ({} if delta is None else {"content": delta})
                choice = {"index": 0, "delta": d, "logprobs": None, "finish_reason": finish}
            else:
                choice = {"index": 0, "text": delta or "", "logprobs": None, "finish_reason": finish}
            return "data: " + json.dumps({"id": rid, "object": obj, "created": created, "model": cfg.model_name,
                                          "choices": [choice]}) + "\n\n"

        status = 200
        try:
            if chat:
                yield chunk(None, first=True)
            async for delta in service.run(rid, ids, params, served):
                if s.safety.redact_pii:  # per delta: a PII span split across deltas is caught in the log's check
                    delta, _ = screen(delta, s.safety, "output")
                yield chunk(delta)
            yield chunk(None, _finish(served.finish_reason))
            if usage_chunk:
                usage = {"prompt_tokens": served.prompt_tokens, "completion_tokens": served.completion_tokens,
                         "total_tokens": served.prompt_tokens + served.completion_tokens}
                yield "data: " + json.dumps({"id": rid, "object": obj, "created": created, "model": cfg.model_name,
                                              "choices": [], "usage": usage}) + "\n\n"
        except ApiError as exc:
            status = exc.status
            yield "data: " + json.dumps({"error": {"message": exc.message, "type": exc.type, "param": exc.param,
                                                   "code": exc.code}}) + "\n\n"
        finally:
            _, out_flags = screen(served.text, s.safety, "output")
            served.flags.update(out_flags)
            # shielded: when the client disconnects this generator is cancelled, and the log must still be written
            task = asyncio.ensure_future(log(request, endpoint, status, served, prompt))
            pending.add(task)
            task.add_done_callback(pending.discard)
            await asyncio.shield(task)
        yield "data: [DONE]\n\n"

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": cfg.model_name, "running": engine.n_running, "waiting": engine.n_waiting}

    @app.get("/metrics")
    async def prometheus():
        metrics.running.labels(cfg.model_name).set(engine.n_running)
        metrics.waiting.labels(cfg.model_name).set(engine.n_waiting)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": cfg.model_name, "object": "model", "created": int(time.time()),
                                            "owned_by": "lmwright", "root": cfg.model_digest[:12],
                                            "max_model_len": engine.max_len}]}

    @app.post("/v1/completions")
    async def completions(request: Request, body: CompletionBody):
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        if len(prompts) != 1:
            raise ApiError(400, "one prompt per request is supported", param="prompt", code="unsupported_value")
        return await respond(request, "completions", body, prompts[0], chat=False)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request, body: ChatBody):
        return await respond(request, "chat.completions", body, render_chat(body.messages), chat=True)

    @app.post("/v1/feedback")
    async def feedback(request: Request, body: FeedbackBody):
        if body.rating is None and not body.correction and not body.comment:
            raise ApiError(400, "give a rating, a correction or a comment", param="rating", code="missing_field")
        if cfg.store is None:
            raise ApiError(400, "this server keeps no store; feedback cannot be recorded", code="unsupported")
        if not await asyncio.to_thread(cfg.store.has_request, body.id):
            raise ApiError(404, f"no response with id {body.id!r}", "not_found_error", param="id",
                           code="unknown_response")
        await asyncio.to_thread(cfg.store.add_feedback, request_id=body.id, rating=body.rating,
                                correction=body.correction, comment=body.comment,
                                key_name=getattr(request.state, "key_name", None))
        return {"id": body.id, "object": "feedback", "recorded": True}

    @app.get("/", response_class=HTMLResponse)
    async def chat_page():
        return HTMLResponse(page.replace("__MODEL__", cfg.model_name))

    return app


class _Guard:
    """Pure ASGI middleware around every request: `admit` (limits, keys, rate) first, then the HTTP status
    counted. Not Starlette's BaseHTTPMiddleware, which passes every streamed chunk through an extra task and
    memory stream (a quarter of the server's throughput at 16 streams)."""

    def __init__(self, app, admit, count):
        self.app, self.admit, self.count = app, admit, count

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_counted(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            try:
                body = await self.admit(Request(scope, receive))
            except ApiError as exc:
                await exc.response()(scope, receive, send_counted)
                return
            if body is not None:  # already read: hand it to the route once, then the real channel (disconnects)
                replayed = False

                async def receive_again():
                    nonlocal replayed
                    if replayed:
                        return await receive()
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}

                await self.app(scope, receive_again, send_counted)
            else:
                await self.app(scope, receive, send_counted)
        finally:
            self.count(scope["path"], status)


_ROUTES = {"/health", "/metrics", "/v1/models", "/v1/completions", "/v1/chat/completions", "/v1/feedback", "/"}


def _finish(reason: str | None) -> Literal["stop", "length"] | str:
    return {"abort": "stop", None: "stop"}.get(reason, reason)


def load_served_model(ws, ref: str | None, reporter=None):
    """(engine-ready model, tokenizer, name, digest) of `ref`, serve.model, or the project's latest model."""
    from lmwright import api

    model_dir, name, digest = api.project_model(ws, ref or ws.spec.serve.model, reporter)
    return api.load_model(model_dir), api.load_tokenizer(model_dir), name, digest


def build_app(ws, ref: str | None = None, reporter=None) -> FastAPI:
    """The app for a workspace: its model, its serve settings, its store (keys, request log, feedback)."""
    from lmwright.core.store import Store

    model, tok, name, digest = load_served_model(ws, ref, reporter)
    engine = Engine(model, tok, max_batch=ws.spec.serve.max_batch, compile=ws.spec.serve.compile)
    if engine.compiled is not None and reporter is not None:
        reporter.log("compiling the decode step (once; a minute or so on a small CPU)")
    seconds = engine.warm_up()
    if engine.compiled is not None and reporter is not None:
        reporter.log(f"compiled in {seconds:.0f} s")
    return create_app(engine, ServeConfig(name, digest, ws.spec.serve, Store(ws.store_url)))


@contextlib.contextmanager
def serve_in_thread(app: FastAPI, host: str = "127.0.0.1", port: int = 0, timeout_s: float = 30.0):
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
