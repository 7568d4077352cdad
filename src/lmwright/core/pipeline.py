"""The stage pipeline: a DAG of named stages, each cached by a fingerprint.

A stage is a plain function `fn(ctx) -> summary` registered with `@stage(...)`. Its fingerprint hashes the
stage name, its code version (the source of the modules it names), the spec slice it reads, any extra facts it
declares (e.g. the Python version for the pydocs source) and the digests of its inputs. A finished run with the
same fingerprint whose artifact is still present means the stage is cached and does no work. A stage that
declares `resumable=True` gets a work directory that survives a kill (pretrain keeps its checkpoints there).

The CLI, `lmwright.run()` and the tests all go through `run_pipeline`.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import json
import shutil
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmwright import __version__
from lmwright.core.artifacts import ArtifactStore
from lmwright.core.progress import Reporter
from lmwright.core.store import Store
from lmwright.core.workspace import Workspace
from lmwright.errors import LmwrightError
from lmwright.spec import Spec


@dataclass(frozen=True)
class Input:
    digest: str
    path: Path
    summary: dict[str, Any]


@dataclass
class StageContext:
    ws: Workspace
    spec: Spec
    inputs: dict[str, Input]
    out: Path  # write the stage's artifact here
    work: Path  # survives a kill; only for resumable stages
    reporter: Reporter
    datasets: list[tuple[str, str, int]] = field(default_factory=list)
    model: tuple[str, int, dict] | None = None
    metrics: list[tuple[str, int, float]] = field(default_factory=list)  # (key, step, value) series

    def dataset(self, name: str, relpath: str, rows: int) -> None:
        """Record a dataset (a file inside this stage's artifact) in the metadata store."""
        self.datasets.append((name, relpath, rows))

    def log(self, message: str) -> None:
        self.reporter.log(message)


@dataclass(frozen=True)
class Stage:
    name: str
    fn: Callable[[StageContext], dict[str, Any]]
    deps: tuple[str, ...]
    spec_keys: tuple[str, ...]
    modules: tuple[str, ...]
    extra: Callable[[Workspace], dict[str, Any]] | None = None
    resumable: bool = False
    help: str = ""


STAGES: dict[str, Stage] = {}  # in registration order, which is a topological order


def stage(name: str, deps: tuple[str, ...] = (), spec: tuple[str, ...] = (), modules: tuple[str, ...] = (),
          extra: Callable[[Workspace], dict[str, Any]] | None = None, resumable: bool = False):
    def register(fn):
        unknown = [d for d in deps if d not in STAGES]
        if unknown:
            raise ValueError(f"stage {name} depends on unregistered {unknown}")
        doc = inspect.getdoc(fn) or ""
        STAGES[name] = Stage(name, fn, deps, spec, modules, extra, resumable, doc.split("\n")[0])
        return fn

    return register


def load_stages() -> dict[str, Stage]:
    importlib.import_module("lmwright.stages")
    return STAGES


def code_version(st: Stage) -> str:
    """The stage function's own source plus the modules it names: editing one stage reruns only it (and what
    follows), while a change to shared code such as the tokenizer reruns every stage that uses it."""
    h = hashlib.sha256(__version__.encode())
    h.update(inspect.getsource(st.fn).encode())
    for mod in sorted(set(st.modules)):
        h.update(Path(importlib.util.find_spec(mod).origin).read_bytes())  # the file, without importing it
    return h.hexdigest()[:16]


def fingerprint(st: Stage, ws: Workspace, input_digests: dict[str, str]) -> tuple[str, dict[str, Any]]:
    params = ws.spec.slice(*st.spec_keys)
    if st.extra:
        params["extra"] = st.extra(ws)
    payload = {"stage": st.name, "code": code_version(st), "params": params, "inputs": input_digests}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest(), params


def ancestors(name: str) -> list[str]:
    seen: list[str] = []

    def visit(n: str) -> None:
        for d in STAGES[n].deps:
            visit(d)
        if n not in seen:
            seen.append(n)

    visit(name)
    return seen


def descendants(name: str) -> set[str]:
    out = {name}
    for st in STAGES.values():  # registration order is topological
        if any(d in out for d in st.deps):
            out.add(st.name)
    return out


@dataclass
class StageOutcome:
    name: str
    status: str  # cached | done
    digest: str
    path: Path
    summary: dict[str, Any]
    seconds: float


def _check_stage(name: str | None, flag: str) -> None:
    if name is not None and name not in STAGES:
        raise LmwrightError(f"{flag} {name!r}: no such stage. Stages: {', '.join(STAGES)}")


def run_pipeline(ws: Workspace, until: str | None = None, from_: str | None = None,
                 force: tuple[str, ...] | list[str] = (), reporter: Reporter | None = None) -> dict[str, StageOutcome]:
    """Run every stage needed (up to `until`), reusing cached results; returns each stage's outcome."""
    load_stages()
    for n, flag in [(until, "--until"), (from_, "--from"), *[(f, "--force") for f in force]]:
        _check_stage(n, flag)
    order = ancestors(until) if until else list(STAGES)
    forced = set(force) | (descendants(from_) if from_ else set())
    store, arts = Store(ws.store_url), ArtifactStore(ws.artifacts_dir)
    reporter = reporter or Reporter()
    store.audit("run", root=str(ws.root), spec=str(ws.spec_path or "built-in default"), until=until,
                from_=from_, force=sorted(forced))
    outcomes: dict[str, StageOutcome] = {}
    with reporter:
        for name in order:
            st = STAGES[name]
            inputs = {d: outcomes[d] for d in st.deps}
            fp, params = fingerprint(st, ws, {d: o.digest for d, o in inputs.items()})
            work = ws.work_dir / f"{name}-{fp[:16]}"
            cached = None if name in forced else store.cached_run(name, fp)
            if cached and arts.exists(cached.output_digest):
                path = arts.open(cached.output_digest, verify=False)
                outcomes[name] = StageOutcome(name, "cached", cached.output_digest, path, cached.summary, 0.0)
                reporter.log(f"[dim]· {name:<10} cached[/dim]")
                continue
            if name in forced and work.exists():
                shutil.rmtree(work)
            outcomes[name] = _execute(st, ws, store, arts, reporter, fp, params, inputs, work)
    return outcomes


def _execute(st: Stage, ws: Workspace, store: Store, arts: ArtifactStore, reporter: Reporter, fp: str,
             params: dict, inputs: dict[str, StageOutcome], work: Path) -> StageOutcome:
    run = store.start_run(st.name, fp, params, code_version(st))
    staging = arts.new_dir()
    if st.resumable:
        work.mkdir(parents=True, exist_ok=True)
    ctx = StageContext(
        ws=ws, spec=ws.spec, out=staging, work=work, reporter=reporter,
        inputs={n: Input(o.digest, arts.open(o.digest), o.summary) for n, o in inputs.items()},
    )
    t0 = time.perf_counter()
    try:
        summary = st.fn(ctx) or {}
        reporter.close_tasks()
    except BaseException as exc:
        reporter.close_tasks()
        store.fail_run(run, "".join(traceback.format_exception_only(type(exc), exc)).strip(),
                       time.perf_counter() - t0)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    digest = arts.commit(staging)
    seconds = time.perf_counter() - t0
    store.finish_run(run, digest, summary, {n: o.digest for n, o in inputs.items()}, ctx.datasets, ctx.model, seconds,
                     ctx.metrics)
    if st.resumable:  # finished: the resume state of this and older attempts is no longer needed
        for old in ws.work_dir.glob(f"{st.name}-*"):
            shutil.rmtree(old, ignore_errors=True)
    reporter.log(f"[green]✓[/green] {st.name:<10} {summary.get('headline', '')} [dim]({seconds:.1f}s)[/dim]")
    return StageOutcome(st.name, "done", digest, arts.open(digest), summary, seconds)


def stage_status(ws: Workspace) -> list[dict[str, Any]]:
    """Each stage's state without running anything: cached (up to date), stale (inputs or spec changed), or new."""
    load_stages()
    store = Store(ws.store_url)
    arts = ArtifactStore(ws.artifacts_dir)
    digests: dict[str, str | None] = {}
    rows = []
    for name, st in STAGES.items():
        last = store.last_run(name)
        state = "new" if last is None else "stale"
        digests[name] = None
        if all(digests[d] for d in st.deps):
            fp, _ = fingerprint(st, ws, {d: digests[d] for d in st.deps})
            hit = store.cached_run(name, fp)
            if hit and arts.exists(hit.output_digest):
                state, digests[name], last = "cached", hit.output_digest, hit
        rows.append({
            "stage": name, "state": state, "help": st.help,
            "last_run": last.finished_at.isoformat() if last and last.finished_at else None,
            "seconds": round(last.duration_s, 2) if last and last.duration_s is not None else None,
            "headline": (last.summary or {}).get("headline", "") if last else "",
        })
    return rows
