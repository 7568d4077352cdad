"""API keys, their roles and scopes, and rate limits for `lmwright serve`.

Keys are random 32-byte tokens (`lmw-...`) made by `lmwright keys add NAME`; the store keeps only their SHA-256. A
request's Bearer token is hashed and compared with every stored hash in constant time (`hmac.compare_digest`), so
neither the key nor its position leaks through timing.

Each key has a role, and the role decides which groups of routes it reaches (`ROLE_GROUPS`, the one table; every
path belongs to one group by `route_group`, the one function): `user` keys reach the serving routes, `annotator`
keys also the annotation routes (`reviewer` keys too, and they may adjudicate), `operator` keys also the
dashboard routes (`/v1/monitor`, `/metrics`), `admin` keys everything, the administration routes included. A key's scopes narrow it further: `{"models": [...]}` the
model ids it may use (`/v1/models` lists only those), `{"routes": [...]}` the groups; an absent or empty scope is
everything the role allows. A key refused a route or a model gets 403 (serve/guard.py, serve/state.py).

The keys are read from the store again when they are more than `refresh_s` (a second) old, so `lmwright keys add`
and `lmwright keys revoke` apply to a running server within about a second, with no restart. Once a server has seen
a key it stays keyed: revoking the last key leaves a server that refuses everyone, never one open to anyone.

Rate limits are a token bucket per key (or per client address when no keys are configured): `rate_limit_per_minute`
requests a minute, refilled continuously, with bursts up to the same number. Failed authentications have a bucket
of their own per client address (`failed_auth_per_minute`), so guessing keys is slow.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

GROUPS = ("serving", "annotation", "dashboard", "administration")
ROLES = ("user", "annotator", "reviewer", "operator", "admin")
# the one table of what each role reaches
ROLE_GROUPS: dict[str, frozenset[str]] = {
    "user": frozenset({"serving"}),
    "annotator": frozenset({"serving", "annotation"}),
    "reviewer": frozenset({"serving", "annotation"}),  # and may adjudicate (serve/annotate.py)
    "operator": frozenset({"serving", "dashboard"}),
    "admin": frozenset(GROUPS),
}
AUDITED = frozenset({"dashboard", "administration"})  # each use of a key on these is a row of the audit log

_SERVING = frozenset({"/", "/health", "/v1/models", "/v1/completions", "/v1/chat/completions", "/v1/feedback",
                      "/docs", "/docs/oauth2-redirect", "/openapi.json"})
_DASHBOARD = frozenset({"/dashboard", "/v1/monitor", "/metrics"})
_ANNOTATION = ("/annotate", "/v1/annotate")  # with everything under them


def route_group(path: str) -> str:
    """The group a path belongs to. A path named nowhere is an administration route: a route added without a
    place in this function is reachable by admin keys only, never by everyone."""
    if path in _SERVING or path.startswith("/v1/models/"):
        return "serving"
    if path in _DASHBOARD:
        return "dashboard"
    if any(path == p or path.startswith(p + "/") for p in _ANNOTATION):
        return "annotation"
    return "administration"


def roles_reaching(group: str) -> list[str]:
    return [r for r in ROLES if group in ROLE_GROUPS[r]]


def check_scopes(role: str, models: Iterable[str] = (), routes: Iterable[str] = ()) -> dict[str, list[str]]:
    """The scopes of a new key, checked against its role: a ValueError names what is wrong and what is allowed."""
    if role not in ROLE_GROUPS:
        raise ValueError(f"unknown role {role!r}; the roles are {', '.join(ROLES)}")
    routes = [r.strip() for r in routes if r.strip()]
    for r in routes:
        if r not in GROUPS:
            raise ValueError(f"unknown route group {r!r}; the groups are {', '.join(GROUPS)}")
        if r not in ROLE_GROUPS[role]:
            raise ValueError(f"a {role} key cannot reach the {r} routes whatever its scopes; a key with role "
                             f"{' or '.join(roles_reaching(r))} can")
    models = [m.strip() for m in models if m.strip()]
    return {k: v for k, v in (("models", models), ("routes", routes)) if v}


@dataclass(frozen=True)
class Identity:
    """Who a valid key is: its name, role and scopes (what a route may ask of it)."""

    name: str
    role: str
    scopes: dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def groups(self) -> frozenset[str]:
        """The route groups it reaches: its role's, narrowed by its route scope (an unknown role reaches none)."""
        allowed = ROLE_GROUPS.get(self.role, frozenset())
        routes = self.scopes.get("routes") or ["*"]
        return allowed if "*" in routes else allowed & frozenset(routes)

    def refusal(self, path: str, group: str) -> str | None:
        """Why this key may not reach `path` (in `group`), or None when it may."""
        if group in self.groups:
            return None
        head = f"the key {self.name!r} (role {self.role}) may not reach {path} ({group} routes)"
        if self.role not in ROLE_GROUPS:
            return f"{head}: its role is not one of {', '.join(ROLES)}; make it again with `lmwright keys add --role`"
        if group in ROLE_GROUPS[self.role]:
            return (f"{head}: its scopes limit it to the {', '.join(self.scopes['routes'])} routes; a key whose "
                    f"scopes include {group} can")
        return f"{head}; a key with role {' or '.join(roles_reaching(group))} can"

    @property
    def model_scoped(self) -> bool:
        models = self.scopes.get("models") or ["*"]
        return "*" not in models

    def may_use(self, names: Iterable[str]) -> bool:
        """Whether the model scope names any of `names` (a model id and the versions it routes to)."""
        if not self.model_scoped:
            return True
        return not set(self.scopes["models"]).isdisjoint(names)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return "lmw-" + secrets.token_urlsafe(32)


class KeyChecker:
    def __init__(self, load: Callable[[], list[tuple[str, str, str, dict]]], refresh_s: float = 1.0):
        """`load` returns the current keys as (name, sha256, role, scopes); it is called now and whenever the keys
        are stale."""
        self.load, self.refresh_s = load, refresh_s
        self.keys: list[tuple[str, Identity]] = []  # (sha256, who)
        self.keyed = False
        self.loaded_at = 0.0
        self.refresh()

    def refresh(self) -> None:
        """Read the keys again; a store that cannot be read keeps the keys known so far (and says so)."""
        self.loaded_at = time.monotonic()
        try:
            keys = [(digest, Identity(name, role, dict(scopes or {}))) for name, digest, role, scopes in self.load()]
        except Exception as exc:  # noqa: BLE001 - a locked or moved store must not turn every request into a 500
            print(f"lmwright serve: could not re-read the API keys ({type(exc).__name__}: {exc}); keeping "
                  f"the {len(self.keys)} known", file=sys.stderr)
            return
        self.keys = keys
        self.keyed = self.keyed or bool(keys)

    def claim_refresh(self) -> bool:
        """True (once per interval) when the keys are stale and the caller should refresh them: the claim is taken
        before the read, so a burst of requests reads the store once."""
        now = time.monotonic()
        if now - self.loaded_at < self.refresh_s:
            return False
        self.loaded_at = now
        return True

    @property
    def enabled(self) -> bool:
        return self.keyed

    def check(self, token: str) -> Identity | None:
        """Who the key is, or None. Every stored hash is compared, whether or not one already matched."""
        digest = hash_key(token)
        found = None
        for stored, who in self.keys:
            if hmac.compare_digest(digest, stored):
                found = who
        return found


class RateLimiter:
    def __init__(self, per_minute: int):
        self.rate, self.capacity = per_minute / 60.0, float(per_minute)
        self.buckets: dict[str, tuple[float, float]] = {}
        self.lock = threading.Lock()

    def allow(self, who: str) -> tuple[bool, float]:
        """(allowed, seconds until the next request would be)."""
        if self.rate <= 0:
            return True, 0.0
        now = time.monotonic()
        with self.lock:
            if len(self.buckets) > 10_000:  # forget whoever has been quiet long enough to be full again
                full = self.capacity / self.rate
                self.buckets = {k: v for k, v in self.buckets.items() if now - v[1] < full}
            tokens, last = self.buckets.get(who, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self.buckets[who] = (tokens - 1.0, now)
                return True, 0.0
            self.buckets[who] = (tokens, now)
            return False, (1.0 - tokens) / self.rate
