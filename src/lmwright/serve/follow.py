"""The server's background thread: load what the plan needs, start it, and follow the plan as it changes.

At start it asks for the plan (which versions each deployment routes to), loads and starts every version in it, and
publishes it; until then `/health` says "starting" and completions get 503 with Retry-After. Then, every
`refresh_s`, it asks again: when an alias moved, a route's weight changed or a version retired, the versions the new
plan needs are loaded and started first, and only then is the plan swapped in, so no request waits on a load. A
request already running stays on the version it started on; a version no longer routed to is closed once it has no
request left (and not before a grace period, for a request routed to it just before the swap). A failed re-plan
keeps the current plan and is said once on stderr and in `/health`.
"""

from __future__ import annotations

import sys
import time
import traceback

from lmwright.serve.routing import digests
from lmwright.serve.state import ServedModel, ServerState

GRACE_S = 2.0  # a replaced version stays open at least this long after the swap


RETRY_S = 30.0  # a plan whose versions failed to load is tried again after this (or as soon as it changes)
CHANGED = "*"  # the name `on_ready` is told with when the routes changed (the empty name: nothing could load)


def run(st: ServerState) -> None:
    """The thread's body: the first plan, then the follow loop until the server closes."""
    if st.plan is not None and not st.deployments and not _first(st):
        return
    for m in list(st.engines.values()):  # models loaded before the server was bound: start them
        if not m.ready.is_set() and not m.failed and not _start(st, m):
            return
    failed: tuple = (None, 0.0)  # (the plan that failed to load, when)
    told = ""  # the routes as last said
    while st.plan is not None and not st.closing.wait(st.refresh_s):
        partial = None
        try:
            plan = st.plan()
        except Exception as exc:  # noqa: BLE001 - keep serving the plan there is (or apply the part that resolved)
            said = f"{type(exc).__name__}: {exc}"
            if said != st.follow_error:
                print(f"lmwright serve: keeping the current routes{' of some models' if hasattr(exc, 'plan') else ''};"
                      f" re-reading them failed: {said}", file=sys.stderr)
            st.follow_error = said
            if not hasattr(exc, "plan"):  # a plan with some deployments kept as they were: apply the rest
                continue
            plan, partial = exc.plan, said
        if failed[0] == plan and time.monotonic() - failed[1] < RETRY_S:
            continue
        # a retired version drops out of digests() when its date passes, though the plan's fields do not change
        if plan == tuple(st.deployments.values()) and set(digests(plan)) == set(st.engines):
            st.follow_error = partial
        else:
            outcome = _apply(st, plan)
            if outcome == "closing":
                break
            if outcome == "failed":
                failed = (plan, time.monotonic())
                continue
            st.follow_error = partial
            said = "routes now: " + "; ".join(f"{d.name} -> " + ", ".join(_route(t) for t in d.targets) for d in plan)
            if st.on_ready is not None and said != told:
                st.on_ready(CHANGED, said)
                told = said
        _close_idle(st)
    _close_idle(st, everything=st.closing.is_set())


def _route(t) -> str:
    if t.retired():
        return f"{t.label} ({t.weight:g}, retired: 410)"
    if t.retire_after is not None:
        return f"{t.label} ({t.weight:g}, deprecated until {t.retire_after:%Y-%m-%d %H:%M:%S} UTC)"
    return f"{t.label} ({t.weight:g})"


def _first(st: ServerState) -> bool:
    from lmwright.errors import LmwrightError

    try:
        plan = st.plan()
        if not plan:
            raise LmwrightError("there is no model to serve")
    except BaseException as exc:  # noqa: BLE001 - said by /health, every request and `on_ready`
        if not isinstance(exc, LmwrightError):
            traceback.print_exc()
        st.load_failed, st.load_error = f"{type(exc).__name__}: {exc}", exc
        if st.on_ready is not None:
            st.on_ready("", f"failed to load: {st.load_failed}")
        return False
    return _apply(st, plan) == "published"


def _start(st: ServerState, m: ServedModel) -> bool:
    said = m.start()
    if st.closing.is_set():  # stopped while this one compiled: the lifespan's close may have come before it
        m.service.close()
        return False
    if st.on_ready is not None:
        st.on_ready(m.target.label, said)
    return True


def _apply(st: ServerState, plan) -> str:
    """Load and start what `plan` needs that is not loaded, then publish it: "published"; "failed" when a version
    could not load (what this pass started is closed again, and the current plan stays); "closing"."""
    engines = dict(st.engines)
    needed = digests(plan)
    started: list[ServedModel] = []
    for digest, t in needed.items():
        if digest in engines:
            continue
        try:
            m = st.served_model(t, st.open_engine(t))
        except Exception as exc:  # noqa: BLE001 - a version that cannot load: the others still serve
            for x in started:
                x.service.close()
            if not st.deployments:  # the first plan: the server has nothing else
                st.load_failed, st.load_error = f"{type(exc).__name__}: {exc}", exc
                if st.on_ready is not None:
                    st.on_ready("", f"failed to load: {st.load_failed}")
                return "failed"
            print(f"lmwright serve: keeping the current routes; {t.label} failed to load (tried again in "
                  f"{RETRY_S:g} s or when the routes change): {exc}", file=sys.stderr)
            st.follow_error = f"{t.label}: {type(exc).__name__}: {exc}"
            return "failed"
        if not _start(st, m):
            return "closing"
        started.append(m)
        engines[digest] = m
    st.publish(plan, {d: m for d, m in engines.items() if d in needed})
    return "published"


def _close_idle(st: ServerState, everything: bool = False) -> None:
    now, keep = time.monotonic(), []
    for m in st.replaced:
        idle = m.service.active == 0 and now - (m.replaced_at or now) >= GRACE_S
        if everything or idle:
            m.service.close()
        else:
            keep.append(m)
    st.replaced = keep
