"""The server's routes, error handlers and request guard, as module-level functions over the app's state.

Each handler reads the `ServerState` that `create_app` stored (`state.server(request)`); `register` attaches
them all to an app. Request bodies are OpenAI's fields; unknown ones are ignored, as OpenAI's own server does.
Every error is OpenAI's error JSON with its 4xx status (bad input is never a 500); streams are server-sent events
with OpenAI's chunk shapes, ending in `data: [DONE]`.

The route handlers have no return annotations on purpose: FastAPI would take one as a response model, which
changes the OpenAPI document and re-validates every body.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from lmwright.chat_template import BadMessage, render_chat
from lmwright.model.engine import SamplingParams
from lmwright.serve.safety import Refused, screen
from lmwright.serve.state import ApiError, Served, ServerState, server

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


def render_request(messages: list[Message]) -> str:
    """A chat request's prompt text under the chat template; a message it cannot render is a 400."""
    try:
        return render_chat([m.model_dump() for m in messages])
    except BadMessage as exc:
        raise ApiError(400, str(exc), param=exc.param) from None


# -- the app's lifetime and its error handlers -----------------------------------------------------------------------

@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """The engine thread runs while the app does."""
    service = app.state.server.service
    service.start()
    yield
    service.close()


async def _api_error(request: Request, exc: ApiError) -> Response:
    return exc.response()


async def _invalid(request: Request, exc: RequestValidationError) -> Response:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"] if p != "body")
    if err["type"] == "json_invalid":
        return ApiError(400, f"the body is not valid JSON ({err.get('ctx', {}).get('error', err['msg'])})",
                        code="invalid_json").response()
    return ApiError(400, f"{loc or 'body'}: {err['msg']}", param=loc or None,
                    code="missing_field" if err["type"] == "missing" else "invalid_value").response()


async def _http(request: Request, exc: StarletteHTTPException) -> Response:
    type_ = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
    return ApiError(exc.status_code, str(exc.detail), type_).response()


async def _crash(request: Request, exc: Exception) -> Response:  # a bug: still OpenAI's shape, and logged by uvicorn
    return ApiError(500, f"internal error: {type(exc).__name__}", "server_error").response()


# -- the guard in front of every route -------------------------------------------------------------------------------

async def admit(st: ServerState, request: Request) -> bytes | None:
    """Body size, API key and rate limit, before any route runs; raises ApiError. Returns the body when it
    had to be read to learn its size (no content-length), for the route to read again."""
    s = st.spec
    body = None
    if request.method == "POST":
        size = request.headers.get("content-length")
        limit = s.max_body_kb * 1024
        if size is None:
            body = await request.body()
        if (size is not None and (not size.isdigit() or int(size) > limit)) or (body is not None and len(body) > limit):
            raise ApiError(413, f"the request body is larger than {s.max_body_kb} KB", code="body_too_large")
    who = request.client.host if request.client else "unknown"
    if request.url.path not in ("/health", "/") and st.keys.enabled:
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        name = st.keys.check(token) if token else None
        if name is None:
            raise ApiError(401, "a valid API key is required: Authorization: Bearer <key>",
                           "authentication_error", code="invalid_api_key")
        who = f"key:{name}"
    request.state.key_name = who[4:] if who.startswith("key:") else None
    if request.url.path.startswith("/v1/"):
        ok, wait = st.limiter.allow(who)
        if not ok:
            raise ApiError(429, f"rate limit of {s.rate_limit_per_minute} requests a minute reached; "
                                f"retry in {wait:.1f} s", "rate_limit_error", code="rate_limit_exceeded",
                           headers={"Retry-After": str(max(1, round(wait)))})
    return body


class _Guard:
    """Pure ASGI middleware around every request: `admit` (limits, keys, rate) first, then the HTTP status
    counted. Not Starlette's BaseHTTPMiddleware, which passes every streamed chunk through an extra task and
    memory stream (a quarter of the server's throughput at 16 streams)."""

    def __init__(self, app, admit: Callable[[Request], Awaitable[bytes | None]], count: Callable[[str, int], None]):
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


# -- what the completion routes share --------------------------------------------------------------------------------

async def log(st: ServerState, request: Request, endpoint: str, status: int, served: Served, prompt: str = "") -> None:
    """One row of the request log (when the app has a store); text only with `serve.log_prompts`."""
    cfg, s = st.cfg, st.spec
    if cfg.store is None:
        return
    row = {"request_id": served.id, "key_name": getattr(request.state, "key_name", None), "endpoint": endpoint,
           "model": cfg.model_name, "model_digest": cfg.model_digest, "status": status,
           "prompt_tokens": served.prompt_tokens, "completion_tokens": served.completion_tokens,
           "finish_reason": served.finish_reason, "queue_s": served.queue_s, "ttft_s": served.ttft_s,
           "e2e_s": served.e2e_s, "flags": served.flags,
           "prompt": prompt if s.log_prompts else None, "output": served.text if s.log_prompts else None}
    await asyncio.to_thread(cfg.store.log_requests, [row])


def sampling(st: ServerState, body: _Sampling, chat: bool) -> SamplingParams:
    """The engine's sampling parameters for a request; what this server does not support is a 4xx."""
    cfg, s = st.cfg, st.spec
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
                          stop_token_ids=st.chat_stops if chat else frozenset())


def encode(st: ServerState, text: str, flags: dict) -> tuple[str, list[int]]:
    """(screened prompt text, its ids with <|bos|>); a refused prompt is a 400. The screen's flags go to `flags`."""
    try:
        text, f = screen(text, st.spec.safety, "input")
    except Refused as exc:
        raise ApiError(400, str(exc), param="prompt", code="content_filter") from None
    flags.update(f)
    return text, st.tok.encode(text).ids  # with <|bos|>


async def respond(request: Request, endpoint: str, body: _Sampling, prompt: str, chat: bool):
    """A completion (chat or plain) for `prompt`: one JSON body, or an event stream when `body.stream`."""
    st = server(request)
    cfg, s = st.cfg, st.spec
    params = sampling(st, body, chat)
    flags: dict = {}
    prompt, ids = encode(st, prompt, flags)
    prefix = "chatcmpl" if chat else "cmpl"
    rid = f"{prefix}-{uuid.uuid4().hex[:24]}"
    served = Served(rid, len(ids), flags=flags)
    created = int(time.time())
    if body.stream:
        usage_chunk = bool((body.stream_options or {}).get("include_usage"))
        return StreamingResponse(stream(st, request, endpoint, rid, ids, params, served, prompt, created, chat,
                                        usage_chunk), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Request-Id": rid})
    try:
        async for _ in st.service.run(rid, ids, params, served):
            pass
    except ApiError as exc:
        await log(st, request, endpoint, exc.status, served, prompt)
        raise
    text, out_flags = screen(served.text, s.safety, "output")
    served.flags.update(out_flags)
    served.text = text
    await log(st, request, endpoint, 200, served, prompt)
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


async def stream(st: ServerState, request: Request, endpoint: str, rid: str, ids: list[int], params: SamplingParams,
                 served: Served, prompt: str, created: int, chat: bool, usage_chunk: bool) -> AsyncIterator[str]:
    """The server-sent events of a streamed completion; an error mid-stream is an event, then `[DONE]`."""
    cfg, s = st.cfg, st.spec
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
        async for delta in st.service.run(rid, ids, params, served):
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
        task = asyncio.ensure_future(log(st, request, endpoint, status, served, prompt))
        st.pending.add(task)
        task.add_done_callback(st.pending.discard)
        await asyncio.shield(task)
    yield "data: [DONE]\n\n"


def _finish(reason: str | None) -> Literal["stop", "length"] | str:
    return {"abort": "stop", None: "stop"}.get(reason, reason)


# -- the routes (no return annotations: see the module's docstring) -------------------------------------------------

async def health(request: Request):
    st = server(request)
    return {"status": "ok", "model": st.cfg.model_name, "running": st.engine.n_running,
            "waiting": st.engine.n_waiting}


async def prometheus(request: Request):
    st = server(request)
    st.metrics.running.labels(st.cfg.model_name).set(st.engine.n_running)
    st.metrics.waiting.labels(st.cfg.model_name).set(st.engine.n_waiting)
    return Response(generate_latest(st.metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def models(request: Request):
    st = server(request)
    return {"object": "list", "data": [{"id": st.cfg.model_name, "object": "model", "created": int(time.time()),
                                        "owned_by": "lmwright", "root": st.cfg.model_digest[:12],
                                        "max_model_len": st.engine.max_len}]}


async def completions(request: Request, body: CompletionBody):
    prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
    if len(prompts) != 1:
        raise ApiError(400, "one prompt per request is supported", param="prompt", code="unsupported_value")
    return await respond(request, "completions", body, prompts[0], chat=False)


async def chat_completions(request: Request, body: ChatBody):
    return await respond(request, "chat.completions", body, render_request(body.messages), chat=True)


async def feedback(request: Request, body: FeedbackBody):
    store = server(request).cfg.store
    if body.rating is None and not body.correction and not body.comment:
        raise ApiError(400, "give a rating, a correction or a comment", param="rating", code="missing_field")
    if store is None:
        raise ApiError(400, "this server keeps no store; feedback cannot be recorded", code="unsupported")
    if not await asyncio.to_thread(store.has_request, body.id):
        raise ApiError(404, f"no response with id {body.id!r}", "not_found_error", param="id",
                       code="unknown_response")
    await asyncio.to_thread(store.add_feedback, request_id=body.id, rating=body.rating,
                            correction=body.correction, comment=body.comment,
                            key_name=getattr(request.state, "key_name", None))
    return {"id": body.id, "object": "feedback", "recorded": True}


async def chat_page(request: Request):
    st = server(request)
    return HTMLResponse(st.page.replace("__MODEL__", st.cfg.model_name))


def register(app: FastAPI, st: ServerState) -> None:
    """The error handlers, the guard (built with the state: it runs before any route) and the routes."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(Exception, _crash)
    app.add_middleware(_Guard, admit=lambda request: admit(st, request), count=lambda path, status: st.metrics.http
                       .labels(path if path in _ROUTES else "other", str(status)).inc())
    app.get("/health")(health)
    app.get("/metrics")(prometheus)
    app.get("/v1/models")(models)
    app.post("/v1/completions")(completions)
    app.post("/v1/chat/completions")(chat_completions)
    app.post("/v1/feedback")(feedback)
    app.get("/", response_class=HTMLResponse)(chat_page)
