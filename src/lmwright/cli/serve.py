"""`lmwright serve`, `lmwright keys add|list|revoke` and `lmwright chat`: the server, its keys, and a terminal chat."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from lmwright.cli.common import DirOpt, JsonOpt, ModelArg, SetOpt, build_project, err, out
from lmwright.core.progress import Reporter
from lmwright.core.workspace import Workspace
from lmwright.errors import LmwrightError


def register(app: typer.Typer) -> None:
    app.command()(serve)
    keys_app = typer.Typer(help="API keys for `lmwright serve` (only their SHA-256 is stored).", no_args_is_help=True)
    keys_app.command("add")(keys_add)
    keys_app.command("list")(keys_list)
    keys_app.command("revoke")(keys_revoke)
    app.add_typer(keys_app, name="keys")
    app.command()(chat)


def serve(
    model: ModelArg = None,
    dir: DirOpt = Path("."),
    set_: SetOpt = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on (serve.host).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (serve.port; 0 = any free port).")] = None,
    backend: Annotated[str | None, typer.Option(help="Where the decode step runs: torch or onnxruntime "
                                                     "(serve.backend).")] = None,
) -> None:
    """Serve models: OpenAI-compatible API (/v1/completions, /v1/chat/completions, /v1/models), /metrics,
    /health and a chat page at /. What it serves: --model, else the spec's deploy section (routes, canaries,
    shadows), else the project's assistant and base model at their @champion; it follows alias moves and edits of
    the deploy section without a restart. Keys: `lmwright keys add NAME [--role ...]`, live within a second."""
    import uvicorn

    from lmwright.ops.deploy import build_app, live_plan

    extra = [*(set_ or []), *([f"serve.host={host}"] if host else []), *([f"serve.port={port}"] if port is not None else []),
             *([f"serve.backend={backend}"] if backend else [])]
    ws = Workspace.open(dir, extra)
    s = ws.spec.serve
    sock = _bind(s.host, s.port)  # before any work: a busy port fails now, not after a build or a compile
    bound = sock.getsockname()[1]
    reporter = Reporter(err)

    follow = live_plan(ws, model, extra)
    built = []

    def plan():  # once the server answers: the first time, build the project if it has no model yet
        if not built:
            built.append(True)
            if model is None and s.model is None and not ws.spec.deploy.models:
                build_project(ws, reporter)
        return follow()

    def ready(name: str, said: str) -> None:
        if name == "":  # nothing could be loaded: stop, rather than answer "failed" for ever, and say why below
            server.should_exit = True
            return
        if name == "*":  # the routes changed (an alias moved, the deploy section was edited, a version retired)
            err.print(f"lmwright serve: {said}")
            return
        err.print(f"{name}: {said}" if "fail" in said else f"{name} ready ({said})")

    app_ = build_app(ws, model, on_ready=ready, plan_fn=plan)
    keyed = "API keys required" if app_.state.keys.enabled else "no API keys configured: open to anyone who can reach it"
    err.print(f"serving on http://{s.host}:{bound} ({keyed}); chat page at /; /health says 'starting' until the "
              "models are loaded" + (" and their decode steps compiled" if s.compile else ""))
    # proxy_headers off: uvicorn would otherwise take X-Forwarded-For from any local client as its address, which
    # would let one dodge (or aim) the per-address limits
    server = uvicorn.Server(uvicorn.Config(app_, log_level="warning", proxy_headers=False))
    server.run(sockets=[sock])
    error = app_.state.server.load_error
    if error is not None:  # the build's or the load's own error, reported as any command's
        raise error


def _bind(host: str, port: int):
    """A listening socket on host:port, or a clear error when the address is taken or not this machine's."""
    import socket

    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        raise LmwrightError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; is another server running "
                            "there? pick another port with --port (0 = any free one)") from None
    return sock


def keys_add(name: Annotated[str, typer.Argument(help="A name for the key (who or what uses it).")],
             dir: DirOpt = Path("."),
             role: Annotated[str, typer.Option(help="user (serving), annotator (+ annotation), reviewer (annotator who "
                                                    "adjudicates), operator (+ dashboard, "
                                                    "/v1/monitor, /metrics) or admin (everything).")] = "user",
             models: Annotated[str | None, typer.Option(help="Comma-separated model ids it may use (a deployment's "
                                                              "id, NAME, NAME@VERSION, NAME@ALIAS; * = all); "
                                                              "default: all.")] = None,
             routes: Annotated[str | None, typer.Option(help="Comma-separated route groups it may reach, within "
                                                              "its role's (serving, annotation, dashboard, "
                                                              "administration); default: all its role's.")] = None,
             ) -> None:
    """Make a new key; it is printed once and only its hash is kept."""
    from lmwright.core.store import Store
    from lmwright.serve.auth import check_scopes, hash_key, new_key

    try:
        scopes = check_scopes(role, (models or "").split(","), (routes or "").split(","))
    except ValueError as exc:
        raise LmwrightError(f"lmwright keys add: {exc}") from None
    ws = Workspace.open(dir)
    key = new_key()
    store = Store(ws.store_url)
    try:
        store.add_api_key(name, hash_key(key), role=role, scopes=scopes)
    except ValueError as exc:
        raise LmwrightError(str(exc)) from None
    store.audit("api_key_add", name=name, role=role, scopes=scopes)
    out.print(key, highlight=False)
    err.print(f"key {name!r} ({role}{', ' + _scopes(scopes) if scopes else ''}) added; it is shown this once. A "
              "running `lmwright serve` accepts it within a second.")


def _scopes(scopes: dict) -> str:
    return "; ".join(f"{k} {','.join(v)}" for k, v in scopes.items()) or "-"


def keys_list(dir: DirOpt = Path("."), json_: JsonOpt = False) -> None:
    """The keys: name, role, scopes and creation time (never the keys; a revoked key is deleted)."""
    from lmwright.core.store import Store

    rows = [{"name": k.name, "role": k.role, "scopes": k.scopes or {}, "created_at": k.created_at.isoformat()}
            for k in Store(Workspace.open(dir).store_url).api_keys()]
    if json_:
        out.print_json(json.dumps(rows))
        return
    for r in rows:
        out.print(f"{r['name']:<24} {r['role']:<10} {r['created_at'][:19]}  {_scopes(r['scopes'])}", highlight=False)


def keys_revoke(name: str, dir: DirOpt = Path(".")) -> None:
    """Delete a key; a running server refuses it within a second."""
    from lmwright.core.store import Store

    store = Store(Workspace.open(dir).store_url)
    key = next((k for k in store.api_keys() if k.name == name), None)
    if key is None or not store.revoke_api_key(name):
        raise LmwrightError(f"no API key named {name!r}; `lmwright keys list` shows them")
    store.audit("api_key_revoke", name=name, role=key.role, scopes=key.scopes or {})
    err.print(f"key {name!r} revoked; a running `lmwright serve` refuses it within a second")
    if not store.api_keys():
        err.print("no keys are left: a running server now refuses every request until a key is added (a server "
                  "started without keys is open to anyone who can reach it)")


def chat(
    model: ModelArg = None,
    dir: DirOpt = Path("."),
    set_: SetOpt = None,
    temperature: Annotated[float, typer.Option(help="0 = greedy.")] = 0.8,
    top_p: Annotated[float, typer.Option()] = 0.95,
    max_tokens: Annotated[int, typer.Option()] = 128,
    seed: Annotated[int | None, typer.Option()] = None,
) -> None:
    """Chat with a model in the terminal (streamed); /reset starts over, /quit or Ctrl-D leaves."""
    from lmwright.chat_template import BadMessage, fit_conversation, prompt_budget
    from lmwright.model.engine import Engine, SamplingParams
    from lmwright.ops.deploy import load_model
    from lmwright.tokenizer import chat_stop_ids

    ws = Workspace.open(dir, set_ or [])
    if model is None and ws.spec.serve.model is None:  # the project's own model, built first when there is none
        build_project(ws, Reporter(err))
    lm, tok, target = load_model(ws, model)  # by default the assistant's champion, when the project has one
    name = target.label
    engine = Engine(lm, tok, max_batch=1)
    history: list[dict] = []
    err.print(f"chatting with [bold]{name}[/bold]; /reset starts over, /quit leaves")
    while True:
        try:
            line = input("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            break
        if line in ("/quit", "/exit"):
            break
        if line == "/reset":
            history.clear()
            continue
        if not line:
            continue
        history.append({"role": "user", "content": line})
        try:  # the latest turns that fit, leaving room for the answer (as the server does)
            ids, kept = fit_conversation(tok, history, prompt_budget(engine.max_len, max_tokens))
        except BadMessage as exc:
            err.print(f"[red]{exc}[/red]; say less, or /reset")
            history.pop()
            continue
        if len(kept) < len(history):
            err.print(f"[dim]({len(history) - len(kept)} earlier message(s) no longer fit the model's context and "
                      "were left out)[/dim]")
        params = SamplingParams(max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed,
                                stop_token_ids=chat_stop_ids(tok))
        sys.stdout.write(f"{name}> ")
        req = engine.submit(ids, params, lambda r, delta, done: (sys.stdout.write(delta), sys.stdout.flush()))
        engine.run_until_done()
        sys.stdout.write("\n")
        history.append({"role": "assistant", "content": req.text})
