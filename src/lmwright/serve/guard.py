"""The guard in front of every route: API keys, their roles, rate limits and the request body's size and pace.

It is pure ASGI middleware (not Starlette's BaseHTTPMiddleware, which passes every streamed chunk through an extra
task and memory stream: a quarter of the server's throughput at 16 streams). In order, before any route runs:

1. the API key, from the headers alone: a request without a valid key is refused before one byte of its body is
   read (with `Connection: close`, so the rest of that body is never read either); an address that keeps failing
   (`serve.failed_auth_per_minute`) gets 429 instead of 401 until its bucket refills, while its valid keys still
   pass;
2. the rate limit per key (or per client address on an open server), for `/v1/` routes and for a key's every
   request to the dashboard and administration routes (so no key can write audit rows faster than its limit);
3. the key's role and route scopes (serve/auth.py): a key that may not reach the route's group gets 403 in
   OpenAI's error shape, naming the roles that can (a path no route serves gets its 404 as before);
4. the body, read here as it streams in: a declared length over `serve.max_body_kb` is refused at once, a chunked
   body at the first chunk that goes over; a body still arriving after `serve.body_timeout_s` gets 408. The body
   (at most the limit) is then handed to the route as if unread.

A client that disconnects before its body is complete gets no response and is counted under status 499 (nginx's
"client closed request"), never as a server error. Every response's status is counted by route. Each request a key
makes to a dashboard or administration route, refused or not, is a row of the audit log (`api_access`: the key, its
role, the route, method and status), written once the response is sent, so it never delays one; the server waits
for it when it stops. The serving routes are in the request log instead.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lmwright.serve.auth import AUDITED, Identity, route_group
from lmwright.serve.state import ApiError, ServerState, forbidden

OPEN_PATHS = ("/health", "/", "/dashboard", "/annotate")  # no key needed: a load balancer's probe and the pages (which ask for one)
CLIENT_GONE = 499


class _ClientGone(Exception):
    pass


async def authorize(st: ServerState, scope: Scope) -> Identity | None:
    """Who the key is (None on an open server or an open path), or the ApiError that refuses the request. Also
    applies the rate limit and the key's role; marks the request for the audit log (`scope["state"]["audit"]`) once
    it is past the limit. Reads nothing but the headers."""
    who = f"addr:{scope['client'][0]}" if scope.get("client") else "addr:unknown"
    path, key = scope["path"], None
    if st.keys.claim_refresh():
        await asyncio.to_thread(st.keys.refresh)
    if path not in OPEN_PATHS and st.keys.enabled:
        auth = Headers(scope=scope).get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        key = st.keys.check(token) if token else None
        if key is None:  # a valid key is never refused here: only failures are limited, so nobody is locked out
            ok, wait = st.failed_auth.allow(who)
            if not ok:
                raise ApiError(429, f"too many failed authentications from this address; retry in {wait:.0f} s",
                               "rate_limit_error", code="rate_limit_exceeded",
                               headers={"Retry-After": str(max(1, round(wait)))})
            raise ApiError(401, "a valid API key is required: Authorization: Bearer <key>",
                           "authentication_error", code="invalid_api_key")
        who = f"key:{key.name}"
    group = route_group(path)
    known = key is not None and (group != "administration" or _served(scope))
    audited = known and group in AUDITED
    if path.startswith("/v1/") or audited:
        ok, wait = st.limiter.allow(who)
        if not ok:
            raise ApiError(429, f"rate limit of {st.spec.rate_limit_per_minute} requests a minute reached; "
                                f"retry in {wait:.1f} s", "rate_limit_error", code="rate_limit_exceeded",
                           headers={"Retry-After": str(max(1, round(wait)))})
    if key is not None:
        scope.setdefault("state", {}).update(key=key, audit=audited)
        why = key.refusal(path, group) if known else None
        if why:
            raise forbidden(why)
    return key


def _served(scope: Scope) -> bool:
    """Whether a route of the app serves this path (any method): an administration path that none serves is a 404
    for every key, as it was, and is not audited."""
    routes = getattr(getattr(scope.get("app"), "router", None), "routes", None)
    if routes is None:
        return True  # cannot tell: treat it as a route, so it is refused and audited rather than let through
    return any(r.matches(scope)[0] is not Match.NONE for r in routes)


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
                key = await authorize(self.state, scope)
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
            scope.setdefault("state", {})["key_name"] = key.name if key else None
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
            state = scope.get("state") or {}
            if state.get("audit"):
                await self.audit(state["key"], scope, status)

    async def audit(self, key: Identity, scope: Scope, status: int) -> None:
        """The audit row of a key's request to a dashboard or administration route, written in a thread once the
        response is sent; shielded, so a cancelled request still writes it, and kept in `pending` until written."""
        store = self.state.cfg.store
        if store is None:
            return
        detail = {"key": key.name, "role": key.role, "route": scope["path"], "method": scope["method"],
                  "status": status, "client": scope["client"][0] if scope.get("client") else None}

        def write() -> None:
            try:
                store.audit("api_access", **detail)
            except Exception as exc:  # noqa: BLE001 - said where an operator sees it, with the row itself
                print(f"lmwright serve: could not write the audit row api_access {detail} ({type(exc).__name__}: "
                      f"{exc})", file=sys.stderr, flush=True)

        task = asyncio.ensure_future(asyncio.to_thread(write))
        self.state.pending.add(task)
        task.add_done_callback(self.state.pending.discard)
        await asyncio.shield(task)
