"""The stage pipeline: a DAG of named stages, each cached by a fingerprint.

A stage is a plain function `fn(ctx) -> summary` made into a `Stage` with `@stage(...)`. The caller hands
`run_pipeline` the ordered stages to run (`lmwright.stages.registry.STAGES` for a project), so the core never
imports the floor above it. A stage's fingerprint hashes the stage name, its code version (the source of every lmwright module the function can run: the transitive closure of
its imports, see `closure.py`), the spec slice it reads, any extra facts it declares (e.g. the Python version for
the pydocs source) and the digests of its inputs. A finished run with the same fingerprint whose artifact is still
present means the stage is cached and does no work. A stage that declares `resumable=True` gets a work directory
that survives a kill (pretrain keeps its checkpoints there).

Before any stage starts, `run_pipeline` checks that every package the stages about to run import is importable,
so a missing dependency is one clear message up front, not a traceback after an hour of training. A stage that
fails anyway is reported with its name, the cause and what to do; its traceback goes to a log file in the
workspace (`StageFailed`).

The CLI, `lmwright.run()` and the tests all go through `run_pipeline`.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import shutil
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from lmwright.core import closure, packages
from lmwright.core.artifacts import ArtifactStore
from lmwright.core.progress import Reporter
from lmwright.core.store import Store
from lmwright.core.workspace import Workspace
from lmwright.errors import LmwrightError, StageFailed
from lmwright.spec import Spec
from lmwright.version import __version__


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
    extra: Callable[[Workspace], dict[str, Any]] | None = None
    resumable: bool = False
    help: str = ""
    # whether the spec turns the stage on (an off stage still runs, to record that it was skipped, but needs
    # no packages), and the optional packages (imported by name) that the spec's choices need, e.g. ray
    enabled: Callable[[Spec], bool] | None = None
    needs: Callable[[Spec], list[str]] | None = None
    # what `publish` copies to the output directory: (file or directory in the artifact, name there); ("*", "")
    # publishes every file of the artifact at the top level
    publish: tuple[tuple[str, str], ...] = ()
    # said before any stage starts (a line, or None), and free to refuse the run there with an LmwrightError: e.g.
    # a fine-tuning that will be skipped because the data has no rows for it, or whose data file is missing
    precheck: Callable[[Workspace], str | None] | None = None


Stages = dict[str, Stage]  # name -> stage, in a topological order


def stage(name: str, deps: tuple[str, ...] = (), spec: tuple[str, ...] = (),
          extra: Callable[[Workspace], dict[str, Any]] | None = None, resumable: bool = False,
          enabled: Callable[[Spec], bool] | None = None, needs: Callable[[Spec], list[str]] | None = None,
          publish: tuple[tuple[str, str], ...] = (),
          precheck: Callable[[Workspace], str | None] | None = None) -> Callable[[Callable[[StageContext], dict]], Stage]:
    """Make a stage of a function `fn(ctx) -> summary`; its help is the first line of the docstring."""
    def make(fn: Callable[[StageContext], dict]) -> Stage:
        doc = inspect.getdoc(fn) or ""
        return Stage(name, fn, deps, spec, extra, resumable, doc.split("\n")[0], enabled, needs, publish, precheck)

    return make


def registry(*stages: Stage) -> Stages:
    """The stages in the order given, each after the stages it depends on."""
    out: Stages = {}
    for st in stages:
        unknown = [d for d in st.deps if d not in out]
        if unknown:
            raise ValueError(f"stage {st.name} depends on {unknown}, which do not come before it")
        out[st.name] = st
    return out


@cache
def stage_code(st: Stage) -> tuple[list[str], closure.Imports]:
    """The stage's own source (with the helpers and constants of its module it uses) and the closure of the
    lmwright modules and third-party packages it imports (their bytes are read afresh by `code_version`)."""
    texts, roots = closure.function_roots(st.fn)
    reach = closure.closure(roots.internal)
    return texts, closure.Imports(reach.internal, reach.external | roots.external)


def code_version(st: Stage) -> str:
    """A hash of the code the stage can run: its source and every lmwright module in its import closure. Editing
    one stage reruns only it (and what follows); editing shared code such as the tokenizer reruns every stage
    that reaches it; editing a module no stage reaches (the HTTP routes of the server, say) reruns nothing."""
    texts, reach = stage_code(st)
    h = hashlib.sha256(__version__.encode())
    for t in texts:
        h.update(t.encode())
    for mod in sorted(reach.internal):
        h.update(mod.encode())
        h.update(closure.module_source(mod))
    return h.hexdigest()[:16]


def stage_packages(st: Stage, spec: Spec) -> list[str]:
    """The third-party packages (import names) this stage needs under this spec: every package its code imports
    that the base install declares, and the optional ones its spec turns on; none when the spec turns it off."""
    if st.enabled is not None and not st.enabled(spec):
        return []
    _, reach = stage_code(st)
    required = {p for p in reach.external if not packages.is_optional(p)}
    return sorted(required | set(st.needs(spec) if st.needs else []))


def check_packages(stages: Stages, names: list[str], spec: Spec) -> None:
    """Refuse, before any work, to run stages whose packages do not import: one message naming each stage, the
    package and the `pip install` that fixes it."""
    problems: dict[str, tuple[str, list[str]]] = {}  # package: (why it does not import, the stages needing it)
    for name in names:
        for pkg in stage_packages(stages[name], spec):
            if pkg in problems:
                problems[pkg][1].append(name)
            elif (why := packages.import_error(pkg)) is not None:
                problems[pkg] = (why, [name])
    if not problems:
        return
    lines = [f"  {'stages' if len(stages) > 1 else 'stage'} {', '.join(stages)} "
             f"{'need' if len(stages) > 1 else 'needs'} {pkg}, which does not import ({why})"
             for pkg, (why, stages) in problems.items()]
    fixes = dict.fromkeys(packages.install_hint(pkg) for pkg in problems)
    raise LmwrightError("some stages of this run need packages that are missing, so nothing was started:\n"
                        + "\n".join(lines) + "\nfix: " + " && ".join(fixes))


def fingerprint(st: Stage, ws: Workspace, input_digests: dict[str, str]) -> tuple[str, dict[str, Any]]:
    params = ws.spec.slice(*st.spec_keys)
    if st.extra:
        params["extra"] = st.extra(ws)
    payload = {"stage": st.name, "code": code_version(st), "params": params, "inputs": input_digests}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest(), params


def ancestors(stages: Stages, name: str) -> list[str]:
    seen: list[str] = []

    def visit(n: str) -> None:
        for d in stages[n].deps:
            visit(d)
        if n not in seen:
            seen.append(n)

    visit(name)
    return seen


def descendants(stages: Stages, name: str) -> set[str]:
    out = {name}
    for st in stages.values():  # the registry's order is topological
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


def _check_stage(stages: Stages, name: str | None, flag: str) -> None:
    if name is not None and name not in stages:
        raise LmwrightError(f"{flag} {name!r}: no such stage. Stages: {', '.join(stages)}")


def _cached(ws: Workspace, stages: Stages, names: list[str], forced: set[str], store: Store,
            arts: ArtifactStore) -> dict:
    """Each stage's cached run, or None where it must run: not cached, forced, or after one that must run."""
    digests: dict[str, str | None] = {}
    hits: dict[str, Any] = {}
    for name in names:
        st, hits[name], digests[name] = stages[name], None, None
        if name in forced or not all(digests.get(d) for d in st.deps):
            continue
        fp, _ = fingerprint(st, ws, {d: digests[d] for d in st.deps})
        hit = store.cached_run(name, fp)
        if hit and arts.exists(hit.output_digest):
            hits[name], digests[name] = hit, hit.output_digest
    return hits


def run_pipeline(ws: Workspace, stages: Stages, until: str | None = None, from_: str | None = None,
                 force: tuple[str, ...] | list[str] = (), reporter: Reporter | None = None) -> dict[str, StageOutcome]:
    """Run every stage of `stages` needed (up to `until`), reusing cached results; returns each stage's outcome."""
    for n, flag in [(until, "--until"), (from_, "--from"), *[(f, "--force") for f in force]]:
        _check_stage(stages, n, flag)
    order = ancestors(stages, until) if until else list(stages)
    forced = set(force) | (descendants(stages, from_) if from_ else set())
    store, arts = Store(ws.store_url), ArtifactStore(ws.artifacts_dir)
    hits = _cached(ws, stages, order, forced, store, arts)
    check_packages(stages, [n for n, hit in hits.items() if hit is None], ws.spec)
    said = [line for n, hit in hits.items() if hit is None and stages[n].precheck
            for line in [stages[n].precheck(ws)] if line]
    reporter = reporter or Reporter()
    for line in said:
        reporter.log(line)
    store.audit("run", root=str(ws.root), spec=str(ws.spec_path or "built-in default"), until=until,
                from_=from_, force=sorted(forced))
    outcomes: dict[str, StageOutcome] = {}
    with reporter:
        for name in order:
            st = stages[name]
            inputs = {d: outcomes[d] for d in st.deps}
            cached = hits[name]  # found above; a stage that reran may still leave what follows cached, so look again
            if cached is None:
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
        if isinstance(exc, Exception) and not isinstance(exc, LmwrightError):
            text = "".join(traceback.format_exception(exc))
            log = write_log(ws.internal / "logs", st.name, text)
            raise StageFailed(st.name, exc, advice(exc), log, text) from exc
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


def write_log(logs: Path, what: str, text: str) -> Path | None:
    """A traceback kept in a log directory (the workspace's `.lmwright/logs/`), so the terminal gets a message, not
    the trace; None when it cannot be written (a full disk must still get its message)."""
    try:
        logs.mkdir(parents=True, exist_ok=True)
        path = logs / f"{time.strftime('%Y%m%d-%H%M%S')}-{what}.log"
        path.write_text(text, encoding="utf-8")
    except OSError:
        return None
    return path


def advice(exc: BaseException) -> str:
    """What a user can do about an unexpected error in a stage."""
    again = "run the same command again: finished stages are cached and interrupted ones resume"
    missing = (exc.name or "").split(".")[0] if isinstance(exc, ModuleNotFoundError) else ""
    if missing and missing != "lmwright":  # a third-party package; a missing name inside lmwright is a bug
        return f"install the missing package ({packages.install_hint(missing)}), then {again}"
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return (f"lower train.batch_size (or raise train.grad_accum), the model size or the sequence length, or "
                f"set train.activation_checkpointing: true; then {again}")
    if isinstance(exc, OSError) and exc.errno == 28:
        return f"free disk space in {exc.filename or 'the workspace'}, then {again}"
    return f"{again}. If it fails the same way, it is likely a bug in lmwright: please report it with the log below"


def stage_status(ws: Workspace, stages: Stages) -> list[dict[str, Any]]:
    """Each stage's state without running anything: cached (up to date), stale (inputs or spec changed), or new."""
    store = Store(ws.store_url)
    hits = _cached(ws, stages, list(stages), set(), store, ArtifactStore(ws.artifacts_dir))
    rows = []
    for name, st in stages.items():
        last = hits[name] or store.last_run(name)
        state = "cached" if hits[name] else "new" if last is None else "stale"
        rows.append({
            "stage": name, "state": state, "help": st.help,
            "last_run": last.finished_at.isoformat() if last and last.finished_at else None,
            "seconds": round(last.duration_s, 2) if last and last.duration_s is not None else None,
            "headline": (last.summary or {}).get("headline", "") if last else "",
        })
    return rows
