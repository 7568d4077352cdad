"""The annotation tool's routes: the page at `/annotate` and its JSON API under `/v1/annotate` (the "annotation"
route group of serve/auth.py: annotator, reviewer and admin keys). The work itself is annotate/project.py's, over
the server's store; who answers is the key's name (on an open server, one trusted local user, "local").

- `GET  /v1/annotate/tasks`: the tasks with the caller's progress
- `GET  /v1/annotate/{task}/next`: the caller's next item, the guideline version and progress
- `GET  /v1/annotate/{task}/guidelines`: the newest guidelines (markdown)
- `POST /v1/annotate/{task}/items/{id}`: an answer (`value`, or null to skip) made from `revision`; 409 if stale
- `POST /v1/annotate/{task}/items/{id}/comment`, `POST /v1/annotate/{task}/undo`
- `GET  /v1/annotate/{task}/history`: the caller's answers beside the final labels (reviewers' corrections)
- reviewers only (a `reviewer` or `admin` key, or a name in the task's `reviewers`): `GET .../review` (the
  disagreement queue), `POST .../review/{id}` (the final label, made from the item's `revision`; 409 if stale),
  `GET .../agreement` (Cohen's and Fleiss' kappa, Krippendorff's alpha, gold accuracy).
"""

from __future__ import annotations

import asyncio
from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import FastAPI, Path, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field

from lmwright.annotate import agreement, assist
from lmwright.annotate import project as ap
from lmwright.annotate import review as ar
from lmwright.annotate.tasks import AnnotationError, ConflictError
from lmwright.serve.state import ApiError

_PAGE = FilePath(__file__).parent / "web" / "annotate.html"
LOCAL = "local"  # who answers on a server without keys
REVIEW_ROLES = ("reviewer", "admin")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


MAX_INT = 2**31 - 1  # ids and revisions are 32-bit integers in the store (PostgreSQL's integer)
ItemId = Annotated[int, Path(ge=1, le=MAX_INT)]


class AnswerBody(_Body):
    value: dict[str, Any] | None  # None: skip
    revision: int = Field(ge=0, le=MAX_INT)  # the revision of the caller's answer this was made from (0: none yet)
    comment: str | None = Field(None, max_length=4000)
    guideline_version: int | None = Field(None, ge=1, le=MAX_INT)


class CommentBody(_Body):
    text: str = Field(min_length=1, max_length=4000)


class ReviewBody(_Body):
    value: dict[str, Any]
    revision: int = Field(ge=0, le=MAX_INT)  # the item's revision the decision was made from
    note: str | None = Field(None, max_length=4000)
    guideline_version: int | None = Field(None, ge=1, le=MAX_INT)


def _store(request: Request):
    store = request.app.state.server.cfg.store
    if store is None:
        raise ApiError(400, "this server keeps no store, so it has no annotation tasks", code="unsupported")
    return store


def _who(request: Request) -> tuple[str, str]:
    """(name, role) of the caller: the key's, or the local user's on an open server."""
    key = getattr(request.state, "key", None)
    return (key.name, key.role) if key is not None else (LOCAL, "admin")


async def _call(fn, *args, **kw):
    """Run the store work in a thread; its errors become OpenAI-shaped ones: 404 an unknown task or item, 409 a
    conflict, 400 bad input (the message names the field and the fix)."""
    try:
        return await asyncio.to_thread(fn, *args, **kw)
    except ConflictError as e:
        raise ApiError(409, str(e), "conflict_error", code="conflict") from None
    except AnnotationError as e:
        msg = str(e)
        if msg.startswith("no annotation task") or " has no item " in msg:
            raise ApiError(404, msg, "not_found_error", code="not_found") from None
        raise ApiError(400, msg, param=_field(msg), code="invalid_value") from None


def _field(msg: str) -> str | None:
    return msg.split("field '", 1)[1].split("'", 1)[0] if "field '" in msg else None


def _reviewer(request: Request, task: str, cfg: dict) -> str:
    name, role = _who(request)
    if role not in REVIEW_ROLES and name not in (cfg.get("reviewers") or []):
        raise ApiError(403, f"key '{name}' does not review task '{task}': reviewing needs a reviewer or admin key, "
                            f"or the key's name in the task's reviewers", "permission_error",
                       code="insufficient_permissions")
    return name


async def page(request: Request):
    return HTMLResponse(_PAGE.read_text(encoding="utf-8"))


async def list_tasks(request: Request):
    store, (name, role) = _store(request), _who(request)

    def work() -> list[dict]:
        out = []
        for t in ap.tasks(store):
            task, cfg, g = ap.task(store, t), ap.config(store, t), ap.guideline(store, t)
            review = role in REVIEW_ROLES or name in (cfg.get("reviewers") or [])
            out.append({"name": t, "kind": task.kind, "labels": list(task.labels), "scale": [task.low, task.high],
                        "guideline_version": g[0] if g else None, "progress": ar.progress(store, t, name, review),
                        "can_review": review})
        return out
    return {"object": "list", "annotator": name, "data": await _call(work)}


async def next_item(request: Request, task: str):
    store, (name, role) = _store(request), _who(request)
    await _call(assist.maybe_refresh, store, task)  # new labels settled: the suggestions and order follow them
    item = await _call(ap.next_item, store, task, name)
    review = role in REVIEW_ROLES or name in ((await _call(ap.config, store, task)).get("reviewers") or [])
    return {"item": item, "progress": await _call(ar.progress, store, task, name, review)}


async def guidelines(request: Request, task: str):
    g = await _call(ap.guideline, _store(request), task)
    return {"version": g[0], "text": g[1]} if g else {"version": None, "text": ""}


async def answer(request: Request, task: str, item_id: ItemId, body: AnswerBody):
    store, (name, _) = _store(request), _who(request)
    return await _call(ap.submit, store, task, item_id, name, body.value, comment=body.comment,
                       revision=body.revision, guideline_version=body.guideline_version)


async def add_comment(request: Request, task: str, item_id: ItemId, body: CommentBody):
    return await _call(ap.comment, _store(request), task, item_id, _who(request)[0], body.text)


async def undo(request: Request, task: str):
    return {"item": await _call(ap.undo, _store(request), task, _who(request)[0])}


async def history(request: Request, task: str):
    return {"object": "list", "data": await _call(ar.history, _store(request), task, _who(request)[0])}


async def review_queue(request: Request, task: str):
    store = _store(request)
    _reviewer(request, task, await _call(ap.config, store, task))
    return {"object": "list", "data": await _call(ar.review_queue, store, task)}


async def adjudicate(request: Request, task: str, item_id: ItemId, body: ReviewBody):
    store = _store(request)
    who = _reviewer(request, task, await _call(ap.config, store, task))
    return await _call(ar.adjudicate, store, task, item_id, who, body.value, body.revision, note=body.note,
                       guideline_version=body.guideline_version)


async def agreement_report(request: Request, task: str):
    store = _store(request)
    _reviewer(request, task, await _call(ap.config, store, task))

    def work() -> dict:
        answers, gold = ar.answers_by_item(store, task)
        return {"task": task, **agreement.report(ap.task(store, task), answers, gold),
                "gold_over_time": ar.gold_accuracy(store, task)}
    return await _call(work)


def register(app: FastAPI) -> None:
    app.get("/annotate", response_class=HTMLResponse)(page)
    app.get("/v1/annotate/tasks")(list_tasks)
    app.get("/v1/annotate/{task}/next")(next_item)
    app.get("/v1/annotate/{task}/guidelines")(guidelines)
    app.post("/v1/annotate/{task}/items/{item_id}")(answer)
    app.post("/v1/annotate/{task}/items/{item_id}/comment")(add_comment)
    app.post("/v1/annotate/{task}/undo")(undo)
    app.get("/v1/annotate/{task}/history")(history)
    app.get("/v1/annotate/{task}/review")(review_queue)
    app.post("/v1/annotate/{task}/review/{item_id}")(adjudicate)
    app.get("/v1/annotate/{task}/agreement")(agreement_report)
