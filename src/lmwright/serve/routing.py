"""Which model version answers a request: deployments, their weighted routes, shadows and retirements.

A `Deployment` is a model id clients send (`"model": "stdlib-docs"`) and the versions behind it: one `Target` per
route with its weight (a 90/10 canary is two targets), and optionally a shadow target that sees a copy of every
request. `pick` chooses a route by a stable hash of the caller (the request's `user` field, else its API key), so a
caller sees one version for as long as the weights stay. A target past its retirement date answers 410 naming its
successor; one in its deprecation period answers with `Deprecation` and `Sunset` headers.

The plan itself (which version each alias names, which are retired) is made by `ops/deploy.py` from the spec and the
registry; the server asks for it again every `deploy.refresh_s` and swaps to a new one without a restart.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import format_datetime


@dataclass(frozen=True)
class Target:
    """One version a deployment can send requests to."""

    ref: str  # as the spec or command named it: `name@champion`, `name@3`, a directory
    name: str  # the registered name (or the directory's)
    version: int | None  # None: not a registered version (a model directory)
    digest: str
    weight: float = 100.0
    deprecated_at: datetime | None = None  # when its retirement was announced
    retire_after: datetime | None = None  # then 410
    successor: str | None = None

    @property
    def label(self) -> str:
        """`name@version` (what the request log, metrics and headers say), or the name for an unregistered model."""
        return self.name if self.version is None else f"{self.name}@{self.version}"

    def retired(self, now: datetime | None = None) -> bool:
        return self.retire_after is not None and (now or datetime.now(timezone.utc)) >= self.retire_after

    def deprecation_headers(self, successor_id: str | None = None) -> dict[str, str]:
        """RFC 9745's `Deprecation` (when it was announced, as @epoch), RFC 8594's `Sunset` (when it ends) and a
        `Link` to the successor (the model id that serves it, when one does), for a target in its deprecation
        period; empty otherwise."""
        if self.retire_after is None:
            return {}
        when = self.deprecated_at or self.retire_after
        out = {"Deprecation": f"@{int(when.timestamp())}", "Sunset": format_datetime(self.retire_after, usegmt=True)}
        if self.successor:
            out["Link"] = f'<{successor_id or self.successor}>; rel="successor-version"'
        return out


@dataclass(frozen=True)
class Deployment:
    name: str  # the model id clients send
    targets: tuple[Target, ...]
    route_by: str = "user"  # user | key
    shadow: Target | None = None

    def pick(self, caller: str | None) -> Target:
        """The route for a caller: the same caller always lands on the same target while the weights stay (a
        uniform point from SHA-256 of the deployment and caller, against the cumulative weights). A request with no
        caller at all (no `user`, no key) gets a random point: the weights hold, with nobody to keep consistent."""
        live = [t for t in self.targets if t.weight > 0]
        if len(live) > 1 and any(t.retired() for t in live):  # a retired route's share goes to the others
            live = [t for t in live if not t.retired()] or live
        if len(live) == 1:
            return live[0]
        if caller is None:
            unit = random.random()
        else:
            digest = hashlib.sha256(f"{self.name}\0{caller}".encode()).digest()
            unit = int.from_bytes(digest[:8], "big") / 2**64
        point = unit * sum(t.weight for t in live)
        for t in live:
            point -= t.weight
            if point < 0:
                return t
        return live[-1]


Plan = tuple[Deployment, ...]


def caller(route_by: str, user: str | None, key_name: str | None) -> str | None:
    """Who a request is, for routing: its `user` field (route_by user), else its API key's name."""
    if route_by == "user" and user:
        return f"user:{user}"
    return f"key:{key_name}" if key_name else None


def digests(plan: Plan) -> dict[str, Target]:
    """Each version the plan needs loaded (routes and shadows, retired ones left out), by digest."""
    out: dict[str, Target] = {}
    for d in plan:
        for t in (*d.targets, *((d.shadow,) if d.shadow else ())):
            if not t.retired() and (t.weight > 0 or t is d.shadow):
                out.setdefault(t.digest, t)
    return out
