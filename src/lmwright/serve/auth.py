"""API keys and rate limits for `lmwright serve`.

Keys are random 32-byte tokens (`lmw-...`) made by `lmwright serve keys add NAME`; the store keeps only their
SHA-256. A request's Bearer token is hashed and compared with every stored hash in constant time
(`hmac.compare_digest`), so neither the key nor its position leaks through timing. Rate limits are a token
bucket per key (or per client address when no keys are configured): `rate_limit_per_minute` requests a
minute, refilled continuously, with bursts up to the same number.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return "lmw-" + secrets.token_urlsafe(32)


class KeyChecker:
    def __init__(self, keys: list[tuple[str, str]]):  # (name, sha256)
        self.keys = keys

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

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
            tokens, last = self.buckets.get(who, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self.buckets[who] = (tokens - 1.0, now)
                return True, 0.0
            self.buckets[who] = (tokens, now)
            return False, (1.0 - tokens) / self.rate
