"""The server's routes and error handlers, as module-level functions over the app's state.

Each handler reads the `ServerState` that `create_app` stored (`state.server(request)`); `register` attaches
them all to an app, behind the guard (serve/guard.py: keys, rate limits, body limits). Request bodies are OpenAI's
fields, checked strictly (serve/bodies.py). Every error is OpenAI's error JSON with its status (bad input is a 4xx,
never a 500); an error known before the first token (a bad parameter, a prompt over the context, a full queue, a
model still starting) is the response's own status, while one after the stream began is an event in it. Streams are
server-sent events with OpenAI's chunk shapes, ending in `data: [DONE]`.

A request's key (`request.state.key`, set by the guard: its name, role and scopes) has already been checked for
the route's group; the model routes check its model scope (`ServerState.route` and `visible`).

The route handlers have no return annotations on purpose: FastAPI would take one as a response model, which
changes the OpenAPI document and re-validates every body.
"""

from __future__ import annotations

import asyncio
import html
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from lmwright.chat_template import BadMessage, fit_conversation, normalize, prompt_budget
from lmwright.data.features import prompt_features
from lmwright.model.engine import SamplingParams
from lmwright.serve import annotate, follow
from lmwright.serve.auth import Identity
from lmwright.serve.bodies import ChatBody, CompletionBody, FeedbackBody, refuse_unsupported
from lmwright.serve.guard import CLIENT_GONE, Guard
from lmwright.serve.routing import Target
from lmwright.serve.safety import Refused, screen
from lmwright.serve.state import NO_RETRY, ApiError, Routed, Served, ServedModel, ServerState, server

DROPPED_HEADER = "X-Lmwright-Messages-Dropped"  # how many of the oldest messages did not fit the context
VERSION_HEADER = "X-Lmwright-Model-Version"  # the registered version that answered: name@version


# -- the app's lifetime and its error handlers -----------------------------------------------------------------------

@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """The server answers as soon as it is bound: its plan is made, its models load, compile their decode steps and
    start their engine threads in the background meanwhile (`/health` says "starting", completions get 503 with
    Retry-After), and the same thread then follows the plan (serve/follow.py). It is a daemon thread, so stopping
    the server does not wait for a compile to end; a model it finishes after the server stopped is closed."""
    st: ServerState = app.state.server
    threading.Thread(target=follow.run, args=(st,), daemon=True, name="follow-plan").start()
    for name, fn in st.background:
        threading.Thread(target=fn, args=(st.closing,), daemon=True, name=name).start()
    yield
    st.closing.set()
    for m in [*st.engines.values(), *st.replaced]:
        m.service.close()


async def _api_error(request: Request, exc: ApiError) -> Response:
    return exc.response()


_TYPE_TAGS = {"str", "int", "float", "bool", "dict", "list", "none"}  # how pydantic names a union's branches in a loc


async def _invalid(request: Request, exc: RequestValidationError) -> Response:
    errors = exc.errors()
    err = next((e for e in errors if e["type"] == "value_error"), errors[0])  # our own checks say the most
    loc = ".".join(str(p) for p in err["loc"] if p != "body" and not (isinstance(p, str) and ("[" in p or p in _TYPE_TAGS)))
    if err["type"] == "json_invalid":
        return ApiError(400, f"the body is not valid JSON ({err.get('ctx', {}).get('error', err['msg'])})",
                        code="invalid_json").response()
    if err["type"] == "extra_forbidden":
        return ApiError(400, f"unrecognized request argument supplied: {loc}", param=loc,
                        code="unknown_parameter").response()
    msg = err["msg"].removeprefix("Value error, ")
    return ApiError(400, f"{loc or 'body'}: {msg}", param=loc or None,
                    code="missing_field" if err["type"] == "missing" else "invalid_value").response()


async def _http(request: Request, exc: StarletteHTTPException) -> Response:
    type_ = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
    return ApiError(exc.status_code, str(exc.detail), type_).response()


async def _crash(request: Request, exc: Exception) -> Response:  # a bug: still OpenAI's shape, and logged by uvicorn
    return ApiError(500, f"internal error: {type(exc).__name__}", "server_error").response()


_ROUTES = {"/health", "/metrics", "/v1/models", "/v1/completions", "/v1/chat/completions", "/v1/feedback", "/",
           "/dashboard", "/v1/monitor"}


# -- what the completion routes share --------------------------------------------------------------------------------

async def log(st: ServerState, request: Request, r: Routed, endpoint: str, status: int, served: Served,
              prompt: str = "", target: Target | None = None) -> None:
    """One row of the request log (when the app has a store), with the version that answered (`target`: a shadow's
    own row); text only with `serve.log_prompts`; the prompt's drift features with `serve.features`."""
    cfg, s = st.cfg, st.spec
    if cfg.store is None:
        return
    t = target or r.target
    row = {"request_id": served.id, "key_name": getattr(request.state, "key_name", None), "endpoint": endpoint,
           "model": t.name, "model_version": t.version, "route": r.deployment.name, "model_digest": t.digest,
           "status": status,
           "prompt_tokens": served.prompt_tokens, "completion_tokens": served.completion_tokens,
           "finish_reason": served.finish_reason, "queue_s": served.queue_s, "ttft_s": served.ttft_s,
           "e2e_s": served.e2e_s, "flags": served.flags,
           "prompt": prompt if s.log_prompts else None, "output": served.text if s.log_prompts else None}

    def write() -> None:
        if s.features and served.asked is not None:
            text, tok, scored = served.asked
            row["features"] = prompt_features(text, tok, s.features_sketch, cfg.sketch_key)
            nats = served.score() if served.score is not None else None
            if nats is not None and scored:
                row["features"]["nats_per_byte"] = nats / scored
        cfg.store.log_requests([row])

    await asyncio.to_thread(write)


def sampling(st: ServerState, m: ServedModel, body: ChatBody | CompletionBody, chat: bool) -> SamplingParams:
    """The engine's sampling parameters for a request; what this server does not support is a 4xx."""
    refuse_unsupported(body)
    max_tokens = body.max_completion_tokens or body.max_tokens or min(64, st.spec.max_tokens)
    if max_tokens > st.spec.max_tokens:
        raise ApiError(400, f"max_tokens {max_tokens} is above this server's limit of {st.spec.max_tokens}",
                       param="max_tokens", code="invalid_value")
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    if len(stop) > 4 or any(not x for x in stop):
        raise ApiError(400, "stop takes up to 4 non-empty strings", param="stop", code="invalid_value")
    return SamplingParams(max_tokens=max_tokens, temperature=body.temperature, top_p=body.top_p,
                          top_k=body.top_k, repetition_penalty=body.repetition_penalty, stop=stop, seed=body.seed,
                          stop_token_ids=m.chat_stops if chat else frozenset())


def _screen(st: ServerState, text: str, flags: dict) -> str:
    """The input screen (PII redaction, blocklist) on one text; a refused text is a 400. Counts add up in `flags`."""
    try:
        text, found = screen(text, st.spec.safety, "input")
    except Refused as exc:
        _merge(flags, exc.flags)  # logged with the 400: a refused prompt counts in the blocklist rate
        raise ApiError(400, str(exc), param="prompt", code="content_filter") from None
    _merge(flags, found)
    return text


def _merge(flags: dict, found: dict) -> None:
    for key, value in found.items():  # counts: PII by type (a dict), blocklist hits (a number)
        if isinstance(value, dict):
            merged = flags.setdefault(key, {})
            for k, n in value.items():
                merged[k] = merged.get(k, 0) + n
        else:
            flags[key] = flags.get(key, 0) + value


def prompt_ids(st: ServerState, m: ServedModel, body: ChatBody | CompletionBody, params: SamplingParams,
               served: Served) -> tuple[str, list[int]]:
    """(the prompt for the log: its text, or a chat's messages as JSON; its ids). `served.asked` gets what drift
    monitoring reads. A chat's markers come from the template by id and each content is
    text (a message cannot spell `<|system|>` into a turn of its own); a conversation longer than the context loses
    its oldest turns, keeping the system turns (`flags["messages_dropped"]`)."""
    flags = served.flags
    if isinstance(body, CompletionBody):
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        if len(prompts) != 1:
            raise ApiError(400, "one prompt per request is supported", param="prompt", code="unsupported_value")
        text = _screen(st, prompts[0], flags)
        served.asked = (text, m.tok, len(text.encode("utf-8")))
        return text, m.tok.encode(text).ids  # <|bos|> from the post-processor; the rest is text
    try:
        messages = normalize([msg.model_dump() for msg in body.messages])
    except BadMessage as exc:
        raise ApiError(400, str(exc), param=exc.param) from None
    messages = [{"role": x["role"], "content": _screen(st, x["content"], flags)} for x in messages]
    try:
        ids, kept = fit_conversation(m.tok, messages, prompt_budget(m.engine.max_len, params.max_tokens))
    except BadMessage as exc:
        raise ApiError(400, str(exc), param=exc.param, code="context_length_exceeded") from None
    if len(kept) < len(messages):
        flags["messages_dropped"] = len(messages) - len(kept)
    # drift reads the last user turn; the perplexity is over everything the model read, per byte of its contents
    served.asked = (next((x["content"] for x in reversed(kept) if x["role"] == "user"), ""), m.tok,
                    sum(len(x["content"].encode("utf-8")) for x in kept))
    return json.dumps(kept, ensure_ascii=False), ids  # what the model saw, as messages (a content cannot fake a turn)


def _successor_id(st: ServerState, t: Target) -> str | None:
    """The model id on this server that serves a version's successor (clients send ids, not versions)."""
    for d in st.deployments.values():
        if any(x.label == t.successor and not x.retired() for x in d.targets):
            return d.name
    return None


def _retired(st: ServerState, r: Routed) -> ApiError:
    t = r.target
    served = _successor_id(st, t)
    instead = (f"; use {served!r} ({t.successor}) instead" if served else
               f"; its successor is {t.successor}, which this server does not serve" if t.successor else "")
    return ApiError(410, f"the model {r.deployment.name!r} ({t.label}) was retired on {t.retire_after:%Y-%m-%d %H:%M} "
                         f"UTC{instead}", param="model", code="model_retired", headers=NO_RETRY)


async def respond(request: Request, endpoint: str, body: ChatBody | CompletionBody, chat: bool):
    """A completion (chat or plain): one JSON body, or an event stream when `body.stream`. Everything that can refuse
    the request (its parameters, its prompt, a full queue) does so before the response starts, with its status."""
    st = server(request)
    r = st.route(body.model, body.user, _key(request))
    m, t = r.model, r.target
    served = Served(f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}", 0)
    prompt = ""
    try:  # a refusal from here on is logged against the version, with its status
        if t.retired():
            raise _retired(st, r)
        if m is None:
            raise st.not_loaded()
        params = sampling(st, m, body, chat)
        if m.failed:
            raise ApiError(503, f"the model {t.label!r} failed to start: {m.failed}", "server_error",
                           code="model_failed")
        if not m.ready.is_set():
            raise ApiError(503, f"the model {t.label!r} is starting (compiling its decode step); retry shortly",
                           "server_error", code="starting", headers={"Retry-After": "5"})
        prompt, ids = prompt_ids(st, m, body, params, served)
        served.prompt_tokens = len(ids)
        job = m.service.submit(served.id, ids, params)
    except ApiError as exc:
        await log(st, request, r, endpoint, exc.status, served, prompt)
        raise
    st.metrics.routed.labels(r.deployment.name, t.name, str(t.version or "")).inc()
    rid, flags = served.id, served.flags
    headers = {"X-Request-Id": rid, VERSION_HEADER: t.label}
    if t.retire_after is not None:
        headers.update(t.deprecation_headers(_successor_id(st, t)))
        st.metrics.deprecated.labels(t.name, str(t.version or "")).inc()
    if flags.get("messages_dropped"):
        headers[DROPPED_HEADER] = str(flags["messages_dropped"])
    _mirror(st, request, r, endpoint, body, chat, served.id)
    created = int(time.time())
    if body.stream:
        usage_chunk = bool((body.stream_options or {}).get("include_usage"))
        return _Stream(stream(st, request, r, endpoint, job, served, prompt, created, chat, usage_chunk),
                       lambda: _end_stream(st, request, r, endpoint, job, served, prompt, CLIENT_GONE),
                       media_type="text/event-stream", headers={"Cache-Control": "no-cache", **headers})
    try:
        finished = await _unless_client_leaves(request, m.service.events(job, served))
    except ApiError as exc:
        await log(st, request, r, endpoint, exc.status, served, prompt)
        raise
    if not finished:  # nobody to answer: the engine stopped at once, and the log and metrics say "abort"
        await log(st, request, r, endpoint, CLIENT_GONE, served, prompt)
        return Response(status_code=CLIENT_GONE)
    text, out_flags = screen(served.text, st.spec.safety, "output")
    served.flags.update(out_flags)
    served.text = text
    await log(st, request, r, endpoint, 200, served, prompt)
    usage = _usage(served)
    finish = _finish(served.finish_reason)
    head = {"id": rid, "created": created, "model": r.deployment.name, "system_fingerprint": _fingerprint(t)}
    if chat:
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                  "finish_reason": finish}
        result = {**head, "object": "chat.completion", "choices": [choice], "usage": usage}
    else:
        result = {**head, "object": "text_completion",
                  "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}], "usage": usage}
    return JSONResponse(result, headers=headers)


def _fingerprint(t: Target) -> str:
    """OpenAI's `system_fingerprint`: which backend configuration answered; here the version's content digest."""
    return f"fp_{t.digest[:12]}"


def _mirror(st: ServerState, request: Request, r: Routed, endpoint: str, body: ChatBody | CompletionBody, chat: bool,
            rid: str) -> None:
    """Shadow traffic: the same request to the deployment's shadow version, in the background, encoded by the
    shadow's own tokenizer and template. Its answer is logged under the same request id (endpoint `shadow:...`) and
    never returned; a shadow that is not loaded, busy (a queue more than half full) or that refuses the request is
    skipped and counted, and never delays or changes the client's answer."""
    t = r.deployment.shadow
    if t is None or t.digest == r.target.digest:
        return
    m = st.engines.get(t.digest)
    version = str(t.version or "")
    if m is None or not m.ready.is_set() or m.engine.n_waiting * 2 >= m.service.max_queue:
        st.metrics.shadow.labels(t.name, version, "skipped").inc()
        return
    served = Served(rid, 0)
    try:
        params = sampling(st, m, body, chat)
        prompt, ids = prompt_ids(st, m, body, params, served)
        served.prompt_tokens = len(ids)
        job = m.service.submit(rid, ids, params)
    except ApiError:
        st.metrics.shadow.labels(t.name, version, "skipped").inc()
        return

    async def run() -> None:
        status = 200
        try:
            async for _ in m.service.events(job, served):
                pass
        except ApiError as exc:
            status = exc.status
        st.metrics.shadow.labels(t.name, version, "done" if status == 200 else "failed").inc()
        await log(st, request, r, f"shadow:{endpoint}", status, served, prompt, target=t)

    task = asyncio.ensure_future(run())
    st.pending.add(task)
    task.add_done_callback(st.pending.discard)


async def stream(st: ServerState, request: Request, r: Routed, endpoint: str, job, served: Served, prompt: str,
                 created: int, chat: bool, usage_chunk: bool) -> AsyncIterator[str]:
    """The server-sent events of a streamed completion; an error after the stream began is an event, then
    `[DONE]`."""
    s, m = st.spec, r.model
    obj = "chat.completion.chunk" if chat else "text_completion"
    head = {"id": served.id, "object": obj, "created": created, "model": r.deployment.name,
            "system_fingerprint": _fingerprint(r.target)}

    def chunk(delta: str | None, finish: str | None = None, first: bool = False) -> str:
        if chat:
            d = {"role": "assistant", "content": ""} if first else ({} if delta is None else {"content": delta})
            choice = {"index": 0, "delta": d, "logprobs": None, "finish_reason": finish}
        else:
            choice = {"index": 0, "text": delta or "", "logprobs": None, "finish_reason": finish}
        return "data: " + json.dumps({**head, "choices": [choice]}) + "\n\n"

    status = 200
    events = m.service.events(job, served)
    try:
        if chat:
            yield chunk(None, first=True)
        async for delta in events:
            if s.safety.redact_pii:  # per delta: a PII span split across deltas is caught in the log's check
                delta, _ = screen(delta, s.safety, "output")
            yield chunk(delta)
        yield chunk(None, _finish(served.finish_reason))
        if usage_chunk:
            yield "data: " + json.dumps({**head, "choices": [], "usage": _usage(served)}) + "\n\n"
    except ApiError as exc:
        status = exc.status
        yield "data: " + json.dumps(exc.body()) + "\n\n"
    finally:
        await events.aclose()
        await _end_stream(st, request, r, endpoint, job, served, prompt, status)
    yield "data: [DONE]\n\n"


async def _end_stream(st: ServerState, request: Request, r: Routed, endpoint: str, job, served: Served,
                      prompt: str, status: int) -> None:
    """Once per stream, however it ends (finished, failed, its client gone mid-stream or before the first chunk):
    the engine stops the request, the metrics count it, the request log gets its row."""
    r.model.service.end(job, served)
    if served.logged:
        return
    served.logged = True
    _, out_flags = screen(served.text, st.spec.safety, "output")
    served.flags.update(out_flags)
    # shielded: when the client disconnects the caller is cancelled, and the log must still be written
    task = asyncio.ensure_future(log(st, request, r, endpoint, status, served, prompt))
    st.pending.add(task)
    task.add_done_callback(st.pending.discard)
    await asyncio.shield(task)


async def _unless_client_leaves(request: Request, events: AsyncIterator[str]) -> bool:
    """Run a request's events to the end (True), or stop them when its client disconnects first (False): a client
    that gives up on a long answer frees its decode slot now, not when the answer is done."""

    async def drain() -> None:
        async for _ in events:
            pass

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    work, gone = asyncio.ensure_future(drain()), asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (work, gone):
            task.cancel()
        await asyncio.gather(work, gone, return_exceptions=True)
        await events.aclose()
    if work.done() and not work.cancelled():
        work.result()  # the ApiError of a timeout or an engine failure
        return True
    return False


class _Stream(StreamingResponse):
    """A stream whose generator is closed as soon as the response ends, then `on_end` run. Starlette stops iterating
    when the client disconnects but leaves the generator suspended until the garbage collector finds it, and with it
    the engine's request running and uncounted; a generator cancelled before its first step runs no `finally` at
    all, which `on_end` covers."""

    def __init__(self, content, on_end: Callable[[], Awaitable[None]], **kwargs) -> None:
        super().__init__(content, **kwargs)
        self.on_end = on_end

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.body_iterator.aclose()
            await self.on_end()


def _usage(served: Served) -> dict:
    return {"prompt_tokens": served.prompt_tokens, "completion_tokens": served.completion_tokens,
            "total_tokens": served.prompt_tokens + served.completion_tokens}


def _finish(reason: str | None) -> Literal["stop", "length"] | str:
    return {"abort": "stop", None: "stop"}.get(reason, reason)


# -- the routes (no return annotations: see the module's docstring) -------------------------------------------------

def _versions(st: ServerState) -> dict:
    """Each loaded version by its label: ready, its load, its decode backend, and whether it failed to start."""
    return {m.target.label: {"ready": m.ready.is_set(), "running": m.engine.n_running, "waiting": m.engine.n_waiting,
                             "backend": m.engine.backend,
                             **({"failed": m.failed} if m.failed else {})} for m in list(st.engines.values())}


def _routes(st: ServerState) -> dict:
    return {d.name: {"routes": [[t.label, t.weight] for t in d.targets], "route_by": d.route_by,
                     **({"shadow": d.shadow.label} if d.shadow else {})} for d in list(st.deployments.values())}


async def health(request: Request):
    st = server(request)
    versions = _versions(st)
    if st.load_failed:
        return JSONResponse({"status": "failed", "error": st.load_failed}, status_code=503)
    if not st.ready:
        return JSONResponse({"status": "starting", "models": versions, "loaded": bool(st.engines),
                             "seconds": round(time.monotonic() - st.started, 1)}, status_code=503,
                            headers={"Retry-After": "5"})
    engines = list(st.engines.values())
    if engines and all(m.failed for m in engines):
        return JSONResponse({"status": "failed", "models": versions}, status_code=503)
    d = next(iter(st.deployments))
    out = {"status": "degraded" if any(m.failed for m in engines) or st.follow_error else "ok", "model": d,
           "models": versions, "deployments": _routes(st)}
    if st.models:
        out.update(running=st.default.engine.n_running, waiting=st.default.engine.n_waiting)
    if st.follow_error:
        out["follow_error"] = st.follow_error
    return out


async def prometheus(request: Request):
    st = server(request)
    for m in list(st.engines.values()):
        version = "" if m.target.version is None else str(m.target.version)
        st.metrics.running.labels(m.name, version).set(m.engine.n_running)
        st.metrics.waiting.labels(m.name, version).set(m.engine.n_waiting)
    return Response(generate_latest(st.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _card(st: ServerState, name: str) -> dict:
    d = st.deployments[name]
    t = d.targets[0]
    m = st.engines.get(t.digest)
    card = {"id": name, "object": "model", "created": int(st.created), "owned_by": "lmwright", "root": t.label,
            "max_model_len": m.engine.max_len if m else None}
    if t.retire_after is not None:
        card.update(retire_after=t.retire_after.isoformat(), successor=t.successor)
    return card


def _key(request: Request) -> Identity | None:
    """The request's key (None on an open server)."""
    return getattr(request.state, "key", None)


async def models(request: Request):
    st = server(request)
    return {"object": "list", "data": [_card(st, name) for name in list(st.visible(_key(request)))]}


async def model(request: Request, model_id: str):
    st = server(request)
    st.route(model_id, None, _key(request))  # 404 for an unknown id, 403 outside the key's scope, 503 while loading
    return _card(st, model_id)


async def completions(request: Request, body: CompletionBody):
    return await respond(request, "completions", body, chat=False)


async def chat_completions(request: Request, body: ChatBody):
    return await respond(request, "chat.completions", body, chat=True)


async def feedback(request: Request, body: FeedbackBody):
    store = server(request).cfg.store
    if body.rating is None and not body.correction and not body.comment:
        raise ApiError(400, "give a rating, a correction or a comment", param="rating", code="missing_field")
    if store is None:
        raise ApiError(400, "this server keeps no store; feedback cannot be recorded", code="unsupported")
    key_name = getattr(request.state, "key_name", None)
    row = await asyncio.to_thread(store.request_record, body.id)
    if row is None or (server(request).keys.enabled and row.key_name != key_name):  # another key's: not yours
        raise ApiError(404, f"no response with id {body.id!r}", "not_found_error", param="id",
                       code="unknown_response")
    if row.status != 200:
        raise ApiError(400, f"the request {body.id!r} failed (status {row.status}); there is no response to rate",
                       param="id", code="invalid_value")
    await asyncio.to_thread(store.add_feedback, request_id=body.id, rating=body.rating,
                            correction=body.correction, comment=body.comment, key_name=key_name)
    return {"id": body.id, "object": "feedback", "recorded": True}


async def chat_page(request: Request):
    st = server(request)
    name = next(iter(st.deployments), "")  # empty while loading: the page asks /v1/models, and sends none till then
    return HTMLResponse(st.page.replace("__MODEL__", html.escape(name)))


async def dashboard_page(request: Request):
    """The monitoring dashboard: a static page that asks /v1/monitor (added by ops/watch.py) with the user's key."""
    return HTMLResponse(_DASHBOARD.read_text(encoding="utf-8"))


_DASHBOARD = Path(__file__).parent / "web" / "dashboard.html"


def register(app: FastAPI, st: ServerState) -> None:
    """The error handlers, the guard (built with the state: it runs before any route) and the routes."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(Exception, _crash)
    app.add_middleware(Guard, state=st, count=lambda path, status: st.metrics.http
                       .labels(path if path in _ROUTES else ("/v1/models/{id}" if path.startswith("/v1/models/")
                                                             else "other"), str(status)).inc())
    app.get("/health")(health)
    app.get("/metrics")(prometheus)
    app.get("/v1/models")(models)
    app.get("/v1/models/{model_id}")(model)
    app.post("/v1/completions")(completions)
    app.post("/v1/chat/completions")(chat_completions)
    app.post("/v1/feedback")(feedback)
    app.get("/", response_class=HTMLResponse)(chat_page)
    app.get("/dashboard", response_class=HTMLResponse)(dashboard_page)
    annotate.register(app)
