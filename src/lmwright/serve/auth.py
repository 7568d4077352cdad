"""API keys and rate limits for `lmwright serve`.

Keys are random 32-byte tokens (`lmw-...`) made by `lmwright serve keys add NAME`; the store keeps only their
SHA-256. A request's Bearer token is hashed and compared with every stored hash in constant time
(`hmac.compare_digest`), so neither the key nor its position leaks through timing.

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
from collections.abc import Callable


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return "lmw-" + secrets.token_urlsafe(32)


class KeyChecker:
    def __init__(self, load: Callable[[], list[tuple[str, str]]], refresh_s: float = 1.0):
        """`load` returns the current (name, sha256) pairs; it is called now and whenever the keys are stale."""
        self.load, self.refresh_s = load, refresh_s
        self.keys: list[tuple[str, str]] = []
        self.keyed = False
        self.loaded_at = 0.0
        self.refresh()

    def refresh(self) -> None:
        """Read the keys again; a store that cannot be read keeps the keys known so far (and says so)."""
        self.loaded_at = time.monotonic()
        try:
            keys = list(self.load())
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

    def check(self, token: str) -> str | None:
        """The key's name, or None. Every stored hash is compared, whether or not one already matched."""
        digest = hash_key(token)
        found = None
        for name, stored in self.keys:
            if hmac.compare_digest(digest, stored):
                found = name
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
