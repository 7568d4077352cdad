"""`lmwright serve`, `lmwright keys add|list|revoke` and `lmwright chat`: the server, its keys, and a terminal chat."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from lmwright.cli.common import DirOpt, JsonOpt, ModelArg, SetOpt, err, find_model, out
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
) -> None:
    """Serve a model: OpenAI-compatible API (/v1/completions, /v1/chat/completions, /v1/models), /metrics,
    /health and a chat page at /. Keys: `lmwright keys add NAME`."""
    import uvicorn

    from lmwright.serve.api import build_app

    extra = [*(set_ or []), *([f"serve.host={host}"] if host else []), *([f"serve.port={port}"] if port is not None else [])]
    ws = Workspace.open(dir, extra)
    reporter = Reporter(err)
    if model is None and ws.spec.serve.model is None:  # the project's own model, built first when there is none
        model = str(find_model(ws, None, reporter)[0])
    app_ = build_app(ws, model, reporter)
    s = ws.spec.serve
    keyed = "API keys required" if app_.state.keys.enabled else "no API keys configured: open to anyone who can reach it"
    err.print(f"serving [bold]{app_.state.metrics.model}[/bold] on http://{s.host}:{s.port} ({keyed}); chat page at /")
    uvicorn.run(app_, host=s.host, port=s.port, log_level="warning")


def keys_add(name: Annotated[str, typer.Argument(help="A name for the key (who or what uses it).")],
             dir: DirOpt = Path(".")) -> None:
    """Make a new key; it is printed once and only its hash is kept."""
    from lmwright.core.store import Store
    from lmwright.serve.auth import hash_key, new_key

    ws = Workspace.open(dir)
    key = new_key()
    try:
        Store(ws.store_url).add_api_key(name, hash_key(key))
    except ValueError as exc:
        raise LmwrightError(str(exc)) from None
    Store(ws.store_url).audit("api_key_add", name=name)
    out.print(key, highlight=False)
    err.print(f"key {name!r} added; it is shown this once. Restart `lmwright serve` to use it.")


def keys_list(dir: DirOpt = Path("."), json_: JsonOpt = False) -> None:
    """The keys' names and creation times (never the keys)."""
    from lmwright.core.store import Store

    rows = [{"name": k.name, "created_at": k.created_at.isoformat()} for k in Store(Workspace.open(dir).store_url).api_keys()]
    if json_:
        out.print_json(json.dumps(rows))
        return
    for r in rows:
        out.print(f"{r['name']:<24} {r['created_at'][:19]}")


def keys_revoke(name: str, dir: DirOpt = Path(".")) -> None:
    """Delete a key (takes effect when the server restarts)."""
    from lmwright.core.store import Store

    ws = Workspace.open(dir)
    if not Store(ws.store_url).revoke_api_key(name):
        raise LmwrightError(f"no API key named {name!r}; `lmwright keys list` shows them")
    Store(ws.store_url).audit("api_key_revoke", name=name)
    err.print(f"key {name!r} revoked")


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
    from lmwright.chat_template import render_chat
    from lmwright.model.engine import Engine, SamplingParams
    from lmwright.serve.api import load_served_model
    from lmwright.tokenizer import chat_stop_ids

    ws = Workspace.open(dir, set_ or [])
    if model is None and ws.spec.serve.model is None:  # the project's own model, built first when there is none
        model = str(find_model(ws, None, Reporter(err))[0])
    lm, tok, name, _ = load_served_model(ws, model)
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
        ids = tok.encode(render_chat(history)).ids[-(engine.max_len - max_tokens - 1):]
        params = SamplingParams(max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed,
                                stop_token_ids=chat_stop_ids(tok))
        sys.stdout.write(f"{name}> ")
        req = engine.submit(ids, params, lambda r, delta, done: (sys.stdout.write(delta), sys.stdout.flush()))
        engine.run_until_done()
        sys.stdout.write("\n")
        history.append({"role": "assistant", "content": req.text})
