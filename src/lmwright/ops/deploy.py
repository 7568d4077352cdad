"""Deployment: what `lmwright serve` routes each model id to, made from the spec's `deploy` section and the registry.

`plan(ws)` resolves every route and shadow to a version now (an alias to the version it names, a retired version to
its date and successor) and returns the serve floor's `Plan`; the server calls it again every `deploy.refresh_s`
(re-reading the project file, so an edited route applies without a restart) and swaps to the new plan once the
versions it needs are loaded. With no `deploy.models`, the plan is the project's assistant and base model, each at
its `@champion`: a version serves by default only once it passed its gate. `--model REF` serves one model alone.
"""

from __future__ import annotations

from pathlib import Path

from lmwright.core import registry
from lmwright.core.schema import Model
from lmwright.core.store import Store
from lmwright.core.workspace import Workspace
from lmwright.errors import LmwrightError
from lmwright.serve.routing import Deployment, Plan, Target


def target(ws: Workspace, store: Store, ref: str, weight: float = 100.0) -> Target:
    """A route's version as of now: a registered NAME[@VERSION|@ALIAS], or a model directory."""
    if (Path(ref) / "config.json").exists():
        from lmwright.core.models import resolve_model

        _, name, digest = resolve_model(ws, ref)
        return Target(ref, name, None, digest, weight)
    m: Model | None = registry.version(store, ref)
    if m is None:  # a digest prefix, or nothing: resolve_model says which, and what there is
        from lmwright.core.models import resolve_model

        _, name, digest = resolve_model(ws, ref)
        m = registry.version_of_digest(store, name, digest)
    announced = next((t.at for t in reversed(registry.history(store, m.name))
                      if t.action == "retire" and t.from_version == m.version), None)
    retire_after = registry.as_utc(m.retired_at if m.retired_at and not m.retire_after else m.retire_after)
    return Target(ref, m.name, m.version, m.digest, weight, registry.as_utc(announced), retire_after, m.successor)


def default_refs(ws: Workspace, store: Store) -> list[str]:
    """The project's assistant (when fine-tuning made one) and base model, each at its champion; an error that says
    what to do when neither has one."""
    project = ws.spec.project.name
    names = [n for n in (f"{project}-assistant", project) if registry.versions(store, n)]
    champions = [n for n in names if registry.alias_of(store, n, "champion")]
    if not champions:
        if not names:
            raise LmwrightError(f"there is no model to serve: {project!r} has no registered version yet "
                                "(run `lmwright run`)")
        latest = registry.versions(store, names[-1])[-1]
        raise LmwrightError(
            f"{project!r} has no champion, so nothing is served by default: a version becomes the champion when "
            f"`lmwright run` sees it pass requirements.acceptance, or by `lmwright promote` (see `lmwright models "
            f"list`). Promote one (`lmwright promote {project}@{latest.version}`; --force --reason \"...\" overrides "
            f"a failing gate, recorded), or serve a version directly (`lmwright serve {project}@{latest.version}`)")
    return [f"{n}@champion" for n in champions]


def plan(ws: Workspace, ref: str | None = None, store: Store | None = None,
         previous: Plan = (), errors: list[str] | None = None) -> Plan:
    """The deployments `lmwright serve` answers for now: `ref` alone, else serve.model, else `deploy.models`, else
    the project's champions. With `previous` (a running server's plan) and `errors`, a deployment that cannot be
    resolved now (an alias deleted, a version unknown) keeps its previous routes and says why in `errors`, so one
    bad route does not hold back a rollback of another; without them it is an error."""
    store = store or Store(ws.store_url)
    ref = ref or ws.spec.serve.model
    if ref:
        t = target(ws, store, ref)
        return (Deployment(t.name, (t,)),)
    if ws.spec.deploy.models:
        before = {d.name: d for d in previous}
        out = []
        for d in ws.spec.deploy.models:
            try:
                out.append(Deployment(d.name, tuple(target(ws, store, r.model, r.weight) for r in d.routes),
                                      d.route_by, target(ws, store, d.shadow) if d.shadow else None))
            except LmwrightError as exc:
                if errors is None or d.name not in before:
                    raise
                errors.append(f"{d.name}: {exc}")
                out.append(before[d.name])
        return tuple(out)
    out = []
    for r in default_refs(ws, store):
        t = target(ws, store, r)
        out.append(Deployment(t.name, (t,)))
    return tuple(out)


def follow(root: Path, overrides: list[str], ref: str | None = None):
    """A function that makes the plan anew each time it is called, re-reading the project file (so an edited
    `deploy` section applies to a running server)."""
    def again() -> Plan:
        return plan(Workspace.open(root, overrides), ref)
    return again


def describe(p: Plan) -> list[dict]:
    """The plan as data, for `lmwright deploy` and `/health`."""
    def one(t: Target) -> dict:
        return {"ref": t.ref, "version": t.label, "digest": t.digest[:12], "weight": t.weight,
                **({"retire_after": t.retire_after.isoformat(), "successor": t.successor, "retired": t.retired()}
                   if t.retire_after else {})}
    return [{"name": d.name, "route_by": d.route_by, "routes": [one(t) for t in d.targets],
             "shadow": one(d.shadow) if d.shadow else None} for d in p]


def open_engine(ws: Workspace):
    """A function that loads a version the plan needs into an engine with the workspace's serve settings."""
    def load(t: Target):
        import torch

        from lmwright.core.models import resolve_model
        from lmwright.model.engine import Engine
        from lmwright.model.hf import load_hf
        from lmwright.tokenizer import load_tokenizer

        path, _, _ = resolve_model(ws, t.ref if t.version is None else f"{t.name}@{t.version}")
        s = ws.spec.serve
        tok, model = load_tokenizer(path), load_hf(path)
        return Engine(model, tok, max_batch=s.max_batch, compile=s.compile, score_prompts=s.features,
                      drafter=make_drafter(ws, tok, model.cfg.vocab_size), backend=s.backend,
                      threads=s.threads or max(1, torch.get_num_threads() - 1))
    return load


def make_drafter(ws: Workspace, tokenizer, vocab: int):
    """The drafter `serve.speculative` asks for (for a model of `tokenizer` and `vocab` ids), or None."""
    from lmwright.core.models import resolve_model
    from lmwright.model.engine import Engine
    from lmwright.model.hf import load_hf
    from lmwright.model.speculate import DraftModel, PromptLookup
    from lmwright.tokenizer import load_tokenizer

    s = ws.spec.serve
    sp = s.speculative
    if sp.method == "prompt_lookup":
        return PromptLookup(sp.num_tokens, sp.max_ngram, sp.min_ngram, sp.max_running)
    if sp.method == "draft":
        path, _, _ = resolve_model(ws, sp.draft_model)
        draft_tok, draft = load_tokenizer(path), load_hf(path)
        DraftModel.check_compatible(tokenizer, draft_tok, vocab, draft.cfg.vocab_size, sp.draft_model)
        return DraftModel(Engine(draft, draft_tok, max_batch=s.max_batch), sp.num_tokens, sp.max_running)
    return None


def live_plan(ws: Workspace, ref: str | None = None, overrides: list[str] | tuple[str, ...] = ()):
    """`plan` as a function for the server to call again and again: the project file is read anew when it changed
    (with `overrides` applied again), so an edited `deploy` section applies to a running server; `ref` (or the
    serve.model the server started with) stays."""
    ref = ref or ws.spec.serve.model
    state = {"ws": ws, "mtime": _mtime(ws), "plan": (), "store": Store(ws.store_url)}

    def again() -> Plan:
        mtime = _mtime(state["ws"])
        if mtime != state["mtime"]:  # an invalid edit raises here, every time, until it is fixed
            state["ws"] = Workspace.open(ws.root, overrides, ws.spec_path)
            state["mtime"] = mtime
        errors: list[str] = []
        state["plan"] = plan(state["ws"], ref, state["store"], state["plan"], errors)
        now = describe(state["plan"])
        if now != state.get("audited"):  # what serves changed (an alias moved, the spec was edited): audited
            state["store"].audit("deploy", deployments=now, errors=errors, by="lmwright serve")
            state["audited"] = now
        if errors:
            raise PartialPlan(state["plan"], errors)
        return state["plan"]
    return again


class PartialPlan(LmwrightError):
    """Some deployments kept their previous routes (`plan`): the server applies the rest and says why."""

    def __init__(self, plan: Plan, errors: list[str]):
        super().__init__("; ".join(errors))
        self.plan = plan


def _mtime(ws: Workspace) -> float | None:
    return ws.spec_path.stat().st_mtime if ws.spec_path and ws.spec_path.exists() else None


def build_app(ws: Workspace, ref: str | None = None, on_ready=None, overrides: list[str] | tuple[str, ...] = (),
              plan_fn=None):
    """The server app for a workspace: its deployments (`plan`, followed as aliases move and the project file
    changes), its serve settings, its store (keys, request log, feedback). The versions of the first plan are
    loaded here (not compiled: the server compiles once it is bound, see `serve.api.create_app`); with `plan_fn`
    (`lmwright serve`, which may build the project first) even that happens once the server is bound."""
    from lmwright.serve.api import create_app
    from lmwright.serve.routing import digests
    from lmwright.serve.state import ServeConfig

    opener = open_engine(ws)
    follow = live_plan(ws, ref, overrides)
    app = create_app([], ServeConfig(ws.spec.serve, Store(ws.store_url), ws.sketch_key()), on_ready, plan=plan_fn or follow,
                     open_engine=opener, refresh_s=ws.spec.deploy.refresh_s)
    from lmwright.ops import watch

    watch.attach(app, ws)
    if plan_fn is None:
        st, first = app.state.server, follow()
        st.publish(first, {d: st.served_model(t, opener(t)) for d, t in digests(first).items()})
    return app


def load_model(ws: Workspace, ref: str | None = None):
    """(model, tokenizer, target) of the first deployment's first version: what `lmwright chat` talks to."""
    from lmwright.core.models import resolve_model
    from lmwright.model.hf import load_hf
    from lmwright.tokenizer import load_tokenizer

    t = plan(ws, ref)[0].targets[0]
    path, _, _ = resolve_model(ws, t.ref if t.version is None else f"{t.name}@{t.version}")
    return load_hf(path), load_tokenizer(path), t
