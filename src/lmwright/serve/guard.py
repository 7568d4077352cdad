"""The guard in front of every route: API keys, rate limits and the request body's size and pace.

It is pure ASGI middleware (not Starlette's BaseHTTPMiddleware, which passes every streamed chunk through an extra
task and memory stream: a quarter of the server's throughput at 16 streams). In order, before any route runs:

1. the API key, from the headers alone: a request without a valid key is refused before one byte of its body is
   read (with `Connection: close`, so the rest of that body is never read either); an address that keeps failing
   (`serve.failed_auth_per_minute`) gets 429 instead of 401 until its bucket refills, while its valid keys still
   pass;
2. the rate limit per key (or per client address on an open server), for `/v1/` routes;
3. the body, read here as it streams in: a declared length over `serve.max_body_kb` is refused at once, a chunked
   body at the first chunk that goes over; a body still arriving after `serve.body_timeout_s` gets 408. The body
   (at most the limit) is then handed to the route as if unread.

A client that disconnects before its body is complete gets no response and is counted under status 499 (nginx's
"client closed request"), never as a server error. Every response's status is counted by route.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lmwright.serve.state import ApiError, ServerState

OPEN_PATHS = ("/health", "/", "/dashboard")  # no key needed: a load balancer's probe and the pages (which ask for one)
CLIENT_GONE = 499


class _ClientGone(Exception):
    pass


async def authorize(st: ServerState, scope: Scope) -> str | None:
    """The key's name (None on an open server or an open path), or the ApiError that refuses the request. Also
    applies the rate limit. Reads nothing but the headers."""
    who = f"addr:{scope['client'][0]}" if scope.get("client") else "addr:unknown"
    name = None
    if st.keys.claim_refresh():
        await asyncio.to_thread(st.keys.refresh)
    if scope["path"] not in OPEN_PATHS and st.keys.enabled:
        auth = Headers(scope=scope).get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        name = st.keys.check(token) if token else None
        if name is None:  # a valid key is never refused here: only failures are limited, so nobody is locked out
            ok, wait = st.failed_auth.allow(who)
            if not ok:
                raise ApiError(429, f"too many failed authentications from this address; retry in {wait:.0f} s",
                               "rate_limit_error", code="rate_limit_exceeded",
                               headers={"Retry-After": str(max(1, round(wait)))})
            raise ApiError(401, "a valid API key is required: Authorization: Bearer <key>",
                           "authentication_error", code="invalid_api_key")
        who = f"key:{name}"
    if scope["path"].startswith("/v1/"):
        ok, wait = st.limiter.allow(who)
        if not ok:
            raise ApiError(429, f"rate limit of {st.spec.rate_limit_per_minute} requests a minute reached; "
                                f"retry in {wait:.1f} s", "rate_limit_error", code="rate_limit_exceeded",
                           headers={"Retry-After": str(max(1, round(wait)))})
    return name


async def read_body(st: ServerState, scope: Scope, receive: Receive) -> bytes:
    """The whole body, read chunk by chunk under the size limit and the time limit."""
    limit = st.spec.max_body_kb * 1024
    too_large = ApiError(413, f"the request body is larger than {st.spec.max_body_kb} KB", code="body_too_large",
                         headers={"Connection": "close"})
    declared = Headers(scope=scope).get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise too_large
    loop = asyncio.get_running_loop()
    deadline = loop.time() + st.spec.body_timeout_s
    parts, size = [], 0
    while True:
        try:
            message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
        except TimeoutError:
            raise ApiError(408, f"the request body did not arrive within {st.spec.body_timeout_s:g} s",
                           code="body_timeout", headers={"Connection": "close"}) from None
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


class Guard:
    def __init__(self, app: ASGIApp, state: ServerState, count: Callable[[str, int], None]):
        self.app, self.state, self.count = app, state, count

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        body = None
        try:
            try:
                key_name = await authorize(self.state, scope)
                body = await read_body(self.state, scope, receive) if scope["method"] in ("POST", "PUT", "PATCH") \
                    else None
            except ApiError as exc:
                if body is None and scope["method"] in ("POST", "PUT", "PATCH"):  # its body is unread: never read it
                    exc.headers.setdefault("Connection", "close")
                await exc.response()(scope, receive, send_counted)
                return
            except _ClientGone:
                status = CLIENT_GONE
                return
            scope.setdefault("state", {})["key_name"] = key_name
            if body is None:
                await self.app(scope, receive, send_counted)
                return
            replayed = False

            async def receive_again() -> Message:  # the body once, then the real channel (to see disconnects)
                nonlocal replayed
                if replayed:
                    return await receive()
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}

            await self.app(scope, receive_again, send_counted)
        finally:
            self.count(scope["path"], status)
