"""Promotion gates and the commands that move aliases: promote, rollback, and what `lmwright run` does.

A version's gate has two parts. Acceptance: `requirements.acceptance` checked on the figures recorded for that
version (its recorded test evaluation for `test.*`; the validation and risk figures of the run that made it, or of
its base model for a fine-tuned version, said as such). Comparison, for `--to champion` when there is a champion:
the paired difference in bits per byte on the same frozen test documents (the challenger's minus the champion's),
with a bootstrap interval over documents; the challenger passes when the interval's upper end is at most
`registry.gate.tolerance` (a non-inferiority test). `--force --reason` overrides a failing gate, and the transition
history and audit log keep both the override and what failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lmwright.core import registry
from lmwright.core.schema import Model, StageRun
from lmwright.core.store import Store
from lmwright.core.workspace import Workspace
from lmwright.errors import LmwrightError


@dataclass
class Gate:
    """A gate's verdict: each acceptance criterion with its value and verdict, and the comparison (if any)."""

    ref: str
    checks: list[dict] = field(default_factory=list)
    comparison: dict | None = None

    @property
    def failures(self) -> list[str]:
        out = [f"{c['criterion']}: {_value(c)}" for c in self.checks if c["verdict"] not in ("pass", "not applicable")]
        if self.comparison and not self.comparison["passed"]:
            c = self.comparison
            out.append(f"worse than the champion {c['champion']}: {c['challenger_bpb']:.4f} vs "
                       f"{c['champion_bpb']:.4f} bits/byte on {c['documents']} test documents, difference "
                       f"{c['difference']:+.4f} [{c['ci'][0]:+.4f}, {c['ci'][1]:+.4f}] above the tolerance "
                       f"{c['tolerance']:g}" if "difference" in c else c["why"])
        return out

    @property
    def passed(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict:
        return {"ref": self.ref, "passed": self.passed, "checks": self.checks, "comparison": self.comparison,
                "failures": self.failures}


def _value(c: dict) -> str:
    if c["value"] is None:
        return c.get("why", "not measured for this version")
    return f"{c['value']:.4g} ({c['verdict']})"


def _run(store: Store, run_id: int) -> StageRun:
    with store.session() as s:
        return s.get(StageRun, run_id)


def _inputs(store: Store, run_id: int) -> dict[str, str]:
    from sqlalchemy import select

    from lmwright.core.schema import Lineage

    with store.session() as s:
        rows = s.scalars(select(Lineage).where(Lineage.run_id == run_id, Lineage.direction == "input"))
        return {r.name: r.digest for r in rows}


def _stage_run(store: Store, stage: str, digest: str) -> StageRun | None:
    from sqlalchemy import select

    with store.session() as s:
        return s.scalars(select(StageRun).where(StageRun.stage == stage, StageRun.output_digest == digest,
                                                StageRun.status == "done").order_by(StageRun.id)).first()


def base_of(store: Store, m: Model) -> Model | None:
    """The model a fine-tuned version started from (None for a pretrained one, or a base from outside)."""
    save = _inputs(store, m.run_id).get("save")
    return next((x for x in store.models() if x.digest == save and x.id != m.id), None) if save else None


def recorded_figures(store: Store, m: Model) -> tuple[dict[str, float], dict[str, str]]:
    """(flat figures, where each group came from) recorded for a version: `test.*` from its first test
    evaluation; `val.*` from the evaluate stage that led to it (its base's, for a fine-tuned one); `risk.*` from the
    stage that made it (the evaluate stage of a base model; a fine-tuning stage runs the risk suite on its model), a
    fine-tuned version's missing ones from its base (memorisation, and what does not apply to it), said in `where`."""
    figures: dict[str, float] = {}
    where: dict[str, str] = {}
    tests = store.test_evaluations(m.digest)
    if tests:
        figures.update({f"test.{k}": v for k, v in tests[0].metrics.items()})
        where["test"] = f"test evaluation of {tests[0].at:%Y-%m-%d %H:%M} ({tests[0].via})"
    source, label, made = m, f"{m.name}@{m.version}", _run(store, m.run_id)
    own: dict[str, float] = {}
    if made.stage != "save":
        own = {f"risk.{k}": v for k, v in (made.summary or {}).get("risk", {}).items()}
        figures.update(own)
        if own:
            where["risk"] = f"the {made.stage} stage run {made.id} (measured on {m.name}@{m.version})"
        source = base_of(store, m)
        label = f"its base, {source.name}@{source.version}" if source else ""
    if source is not None:
        ev = _inputs(store, source.run_id).get("evaluate")
        run = _stage_run(store, "evaluate", ev) if ev else None
        if run is not None:
            from lmwright.evaluate.suite import flatten

            figures.update(flatten({"val": run.summary.get("val", {})}))
            where["val"] = f"the evaluate stage run {run.id} ({label})"
            # a check the version ran itself keeps all its figures; the others come from the base
            from lmwright.evaluate.risk_suite import not_applicable

            # never a figure that does not apply to this kind of model (a classifier's toxicity is not its base's)
            checks, kind = {k.split(".")[1] for k in own}, model_kind(store, m)
            taken = {f"risk.{k}": v for k, v in run.summary.get("risk", {}).items()
                     if k.split(".")[0] not in checks and not not_applicable(kind, k)}
            figures.update(taken)
            base_says = f"the evaluate stage run {run.id} ({label})"
            if own and taken:
                top = sorted(k for k in taken if k.count(".") == 1)
                where["risk"] += (f"; {', '.join(top[:6])}{' and more' if len(top) > 6 else ''} from {base_says}, "
                                  "not measured on this model")
            elif not own:
                where["risk"] = base_says
    return figures, where


def acceptance(ws: Workspace, m: Model) -> list[dict]:
    """`requirements.acceptance` on a version's recorded figures; a figure it has none of is a failure that says
    how to measure it."""
    from lmwright.evaluate.risk_suite import not_applicable
    from lmwright.evaluate.suite import check_requirements

    store = Store(ws.store_url)
    figures, where = recorded_figures(store, m)
    kind = model_kind(store, m)
    nested: dict[str, dict] = {}
    for k, v in figures.items():
        head, _, rest = k.partition(".")
        nested.setdefault(head, {})[rest] = v
    checks = check_requirements(ws.spec.requirements.criteria(), nested)
    for c in checks:
        group = c["metric"].partition(".")[0]
        c["source"] = where.get(group)
        n_a = not_applicable(kind, c["metric"].partition(".")[2]) if group == "risk" else None
        if n_a:  # a check that does not apply to this kind of model holds it back not
            c["verdict"], c["why"], c["value"] = "not applicable", n_a, None
        elif c["verdict"] == "missing":
            c["why"] = (f"not measured: no recorded test evaluation (run `lmwright test {m.name}@{m.version}`)"
                        if group == "test" else f"not measured for {m.name}@{m.version}")
    return checks


def model_kind(store: Store, m: Model) -> str:
    """base, assistant or classifier: which risk checks apply (evaluate/risk_suite.py NOT_APPLICABLE)."""
    stage = _run(store, m.run_id).stage
    return {"classify": "classifier", "sft": "assistant", "preference": "assistant"}.get(stage, "base")


def _per_document(store: Store, digest: str, data_digest: str | None = None):
    rows = [t for t in store.test_evaluations(digest) if t.per_document
            and (data_digest is None or t.data_digest == data_digest)]
    return rows[0] if rows else None


def compare(ws: Workspace, challenger: Model, champion: Model) -> dict:
    """The paired comparison on the frozen test documents: the challenger's bits per byte minus the champion's,
    with its bootstrap interval. The champion is scored on the challenger's test split now if it never was."""
    store, g = Store(ws.store_url), ws.spec.registry.gate
    mine = _per_document(store, challenger.digest)
    base = {"champion": f"{champion.name}@{champion.version}", "tolerance": g.tolerance}
    if mine is None:
        return {**base, "passed": False, "why": f"{challenger.name}@{challenger.version} has no recorded test "
                f"evaluation to compare (run `lmwright test {challenger.name}@{challenger.version}`)"}
    theirs = _per_document(store, champion.digest, mine.data_digest)
    if theirs is None:  # the champion was tested on another split: score it on this one (and record that)
        from lmwright.core.artifacts import ArtifactStore
        from lmwright.core.models import resolve_model
        from lmwright.core.progress import Reporter
        from lmwright.evaluate.testset import final_evaluation

        path, name, digest = resolve_model(ws, f"{champion.name}@{champion.version}")
        split_dir = ArtifactStore(ws.artifacts_dir).open(mine.data_digest)
        final_evaluation(ws, path, digest, name, split_dir, mine.data_digest, "gate", Reporter(quiet=True))
        theirs = _per_document(store, champion.digest, mine.data_digest)
    a, c = np.array(mine.per_document, dtype=float), np.array(theirs.per_document, dtype=float)
    if a.shape != c.shape:
        raise LmwrightError(f"the test evaluations of {base['champion']} and {challenger.name}@{challenger.version} "
                            f"cover {len(c)} and {len(a)} documents; they cannot be paired")
    p = paired_bpb(a, c, g, ws.spec.project.seed)
    return {**base, **p, "documents": int(len(a)), "passed": p["ci"][1] <= g.tolerance}


def paired_bpb(a: np.ndarray, c: np.ndarray, g, seed: int) -> dict:
    """Bits per byte of `a` minus `c`, rows [nats, bytes] scored by both on the same items (documents, answers),
    with a paired bootstrap interval over the items at the gate's (`g`) resamples and confidence."""
    from lmwright.evaluate.stats import bits_per_byte, paired_difference

    def bpb(x: np.ndarray, idx=slice(None)) -> float:
        return bits_per_byte(x[:, 0], x[:, 1], idx)

    diff = paired_difference(lambda i: bpb(a, i) - bpb(c, i), len(a), g.resamples, g.confidence, seed)
    return {"challenger_bpb": bpb(a), "champion_bpb": bpb(c), **diff, "confidence": g.confidence}


def gate(ws: Workspace, m: Model, to: str) -> Gate:
    """The gate for moving `to` onto version `m`: acceptance and the licence check (every source's licence against
    governance.license, `core/licenses.py`) always; the champion comparison for `champion`."""
    from lmwright.core.licenses import gate_checks

    store = Store(ws.store_url)
    result = Gate(f"{m.name}@{m.version}", acceptance(ws, m) + gate_checks(store, m.run_id, ws.spec.governance))
    if to == "champion":
        current = registry.alias_of(store, m.name, "champion")
        if current is not None and current.version != m.version:
            champion = registry.version(store, f"{m.name}@{current.version}")
            if champion.weights == "present":
                result.comparison = compare(ws, m, champion)
    return result


def _live(m: Model, ref: str) -> None:
    if m.retire_after is None and m.retired_at is not None:  # retired at once: taken down (`lmwright forget`)
        raise LmwrightError(f"{ref} was taken down (its weights are {m.weights}; `lmwright lineage {ref}` says "
                            "by which takedown): an alias cannot point at it; rebuild with `lmwright run`")
    if m.retire_after is not None:
        state = "retired" if registry.is_retired(m) else f"retiring (deprecated until {m.retire_after:%Y-%m-%d})"
        raise LmwrightError(f"{ref} is {state}" + (f"; its successor is {m.successor}" if m.successor else "")
                            + ": an alias cannot point at a retired version")


def promote(ws: Workspace, ref: str, to: str = "champion", force: bool = False, reason: str | None = None) -> dict:
    """Move `to` onto the version `ref` names if its gate passes, or with `force` and a `reason` anyway (recorded).
    Returns the gate and the transition; a failing gate without `force` is an error listing every failure."""
    store = Store(ws.store_url)
    m = registry.version(store, ref)
    if m is None:
        raise registry.unknown(store, ref)
    if force and not (reason or "").strip():
        raise LmwrightError("--force needs --reason \"...\": an override of the gate is recorded with its reason")
    _live(m, ref)
    read = registry.alias_of(store, m.name, to)
    if read is not None and read.version == m.version:
        return {"ref": f"{m.name}@{m.version}", "alias": to, "moved": False,
                "said": f"{m.name}@{to} is already version {m.version}"}
    g = gate(ws, m, to)
    if not g.passed and not force:
        lines = "\n".join(f"  - {f}" for f in g.failures)
        raise LmwrightError(f"{m.name}@{m.version} does not pass the gate for {to}:\n{lines}\n"
                            f"fix these, or override with --force --reason \"...\" (recorded in the history and "
                            "the audit log)")
    t = registry.move_alias(store, m.name, to, m.version, "promote", reason, forced=not g.passed,
                            detail={"gate": g.as_dict()},
                            expect=(read.version, read.revision) if read else (None, None))
    store.audit("promote", model=m.name, alias=to, from_version=t.from_version, to_version=m.version,
                forced=not g.passed, reason=reason, failures=g.failures)
    return {"ref": f"{m.name}@{m.version}", "alias": to, "moved": True, "from_version": t.from_version,
            "forced": not g.passed, "gate": g.as_dict(),
            "said": f"{m.name}@{to} -> version {m.version}" + (f" (was {t.from_version})" if t.from_version else "")
                    + (" (gate overridden: " + "; ".join(g.failures) + ")" if not g.passed else "")}


def rollback(ws: Workspace, name: str, alias: str = "champion", reason: str | None = None) -> dict:
    """Return `name@alias` to the version it pointed at before its last move (no gate: it held the alias before)."""
    store = Store(ws.store_url)
    if not registry.versions(store, name):
        raise registry.unknown(store, name)
    cur = registry.alias_of(store, name, alias)
    if cur is None:
        raise LmwrightError(f"{name!r} has no alias {alias!r} to roll back (`lmwright models show {name}`)")
    # the move that brought the alias to where it is (rollbacks are not moves forward: rolling back twice does not
    # return to the version rolled away from)
    moves = [t for t in registry.history(store, name)
             if t.alias == alias and t.to_version == cur.version and t.action != "rollback"]
    previous = moves[-1].from_version if moves else None
    if previous is None:
        raise LmwrightError(f"{name}@{alias} has no earlier version to return to (it came to version {cur.version} "
                            f"without one before it); to move it, `lmwright promote {name}@VERSION --to {alias}`")
    m = registry.version(store, f"{name}@{previous}")
    if m.retire_after is not None or m.retired_at is not None:
        raise LmwrightError(f"{name}@{alias} came to version {cur.version} from version {previous}, which is "
                            f"retiring, retired or taken down; to move it, `lmwright promote {name}@VERSION --to {alias}`")
    registry.move_alias(store, name, alias, previous, "rollback", reason, expect=(cur.version, cur.revision))
    store.audit("rollback", model=name, alias=alias, from_version=cur.version, to_version=previous, reason=reason)
    return {"name": name, "alias": alias, "from_version": cur.version, "to_version": previous,
            "said": f"{name}@{alias} -> version {previous} (was {cur.version})"}


def after_run(ws: Workspace, made: list[tuple[str, str]], passed: bool | dict[str, bool]) -> list[str]:
    """What `lmwright run` does with the versions it registered (name, digest), once: when the run passed its
    acceptance criteria (`passed`: for the whole run, or per name), `registry.on_pass` (the challenger, and the
    champion where there is none); never on a failure. Returns a line per move."""
    store = Store(ws.store_url)
    policy = ws.spec.registry.on_pass
    lines = []
    for name, digest in made:
        m = registry.version_of_digest(store, name, digest)
        ok = passed.get(name, False) if isinstance(passed, dict) else passed
        if m is None or not ok or policy == "none" or m.retire_after is not None or m.retired_at is not None:
            continue
        if any(t.action == "run" and t.to_version == m.version for t in registry.history(store, name)):
            continue  # already done for this version (a report rerun must not undo a later promotion)
        from lmwright.core.licenses import gate_checks

        licence = [c for c in gate_checks(store, m.run_id, ws.spec.governance) if c["verdict"] == "fail"]
        if licence:  # as the gate would refuse it: no alias moves onto a version the licences forbid publishing
            lines.append(f"{name}@{m.version} is not made the champion or challenger: {licence[0]['why']}")
            continue
        champion = registry.alias_of(store, name, "champion")
        if champion is not None and registry.is_retired(registry.version(store, f"{name}@{champion.version}")):
            champion_live = None  # retired or taken down (`lmwright forget`): the new version replaces it
        else:
            champion_live = champion
        to = "champion" if policy == "champion" or champion_live is None else "challenger"
        read = champion if to == "champion" else registry.alias_of(store, name, to)
        if read is not None and read.version == m.version:
            continue
        if champion_live is not None and champion.version != m.version:  # worth a canary only if not already worse
            held = registry.version(store, f"{name}@{champion.version}")
            c = compare(ws, m, held) if held.weights == "present" else None
            if c is not None and "difference" in c and not c["passed"]:  # measured, and worse
                why = Gate(f"{name}@{m.version}", comparison=c).failures[0]
                lines.append(f"{name}@{m.version} is not made the {to}: {why}")
                continue
        try:  # compare-and-set against what was read: a promotion meanwhile wins, and this says so
            registry.move_alias(store, name, to, m.version, "run", "passed requirements.acceptance in lmwright run",
                                expect=(read.version, read.revision) if read else (None, None))
        except registry.Conflict:
            lines.append(f"{name}@{to} was moved by someone else meanwhile; left as they set it")
            continue
        store.audit("alias", model=name, alias=to, to_version=m.version, by="lmwright run")
        lines.append(f"{name}@{to} -> version {m.version}")
    return lines


def lineage(store: Store, run_id: int) -> list[dict]:
    """Every stage run upstream of `run_id` (itself first; core/lineage.py): the stage, its output digest, its code
    version and when it finished."""
    from lmwright.core.lineage import graph

    g = graph(store)
    return [{"stage": run.stage, "run": run.id, "digest": run.output_digest, "code_version": run.code_version,
             "finished": f"{run.finished_at:%Y-%m-%d %H:%M}" if run.finished_at else None}
            for run in g.upstream(g.runs[run_id])]


def describe(ws: Workspace, ref: str) -> dict:
    """Everything the registry knows about one version: lineage (the run, the datasets and tokenizer upstream, the
    spec it ran with, code versions), its recorded figures and test evaluation, aliases, tags, retirement and its
    history."""
    store = Store(ws.store_url)
    m = registry.version(store, ref)
    if m is None:
        raise registry.unknown(store, ref)
    runs = lineage(store, m.run_id)
    digests = {r["digest"] for r in runs}
    datasets = [{"name": d.name, "rows": d.rows, "digest": d.digest[:12]} for d in store.datasets()
                if d.digest in digests]
    figures, where = recorded_figures(store, m)
    tests = store.test_evaluations(m.digest)
    run = _run(store, m.run_id)
    base = base_of(store, m)
    return {
        "name": m.name, "version": m.version, "digest": m.digest, "created": f"{m.created_at:%Y-%m-%d %H:%M}",
        "parameters": m.n_params, "tags": m.tags or {},
        "aliases": [a.alias for a in registry.aliases(store, m.name) if a.version == m.version],
        "status": status(m),
        "weights": m.weights, "successor": m.successor,
        "retire_after": m.retire_after.isoformat() if m.retire_after else None,
        "base": f"{base.name}@{base.version}" if base else None,
        "lineage": {"stage": run.stage, "run": run.id, "code_version": run.code_version,
                    "tokenizer": next((r["digest"][:12] for r in runs if r["stage"] == "tokenizer"), None),
                    "datasets": datasets, "upstream": runs[1:], "spec": _spec_of(store, runs)},
        "figures": figures, "figures_from": where,
        "test_evaluations": [{"at": f"{t.at:%Y-%m-%d %H:%M}", "via": t.via, "data": t.data_digest[:12],
                              "bits_per_byte": t.metrics.get("bits_per_byte")} for t in tests],
        "history": [transition_dict(t) for t in registry.history(store, m.name)
                    if m.version in (t.from_version, t.to_version)],
    }


def _spec_of(store: Store, runs: list[dict]) -> dict:
    """The spec keys each upstream stage ran with (its fingerprint's parameters), by stage."""
    out = {}
    for r in runs:
        params = _run(store, r["run"]).params
        if params:
            out[r["stage"]] = params
    return out


def status(m: Model) -> str:
    """live, retiring (in its deprecation period), or retired (past its date; its weights may still be there)."""
    return "retired" if registry.is_retired(m) else "retiring" if m.retire_after else "live"


def transition_dict(t) -> dict:
    return {"at": f"{t.at:%Y-%m-%d %H:%M:%S}", "actor": t.actor, "action": t.action, "alias": t.alias,
            "from": t.from_version, "to": t.to_version, "reason": t.reason, "forced": t.forced,
            "overrode": (t.detail or {}).get("gate", {}).get("failures", []) if t.forced else []}


def listing(ws: Workspace, name: str | None = None) -> list[dict]:
    """Every version (of `name`, or of every model): version, digest, created, aliases, tags, status."""
    store = Store(ws.store_url)
    held: dict[tuple[str, int], list[str]] = {}
    for a in registry.aliases(store, name):
        held.setdefault((a.name, a.version), []).append(a.alias)
    out = []
    for n in ([name] if name else registry.names(store)):
        for m in registry.versions(store, n):
            figures = store.test_evaluations(m.digest)
            out.append({"model": f"{m.name}@{m.version}", "digest": m.digest[:12],
                        "created": f"{m.created_at:%Y-%m-%d %H:%M}", "aliases": held.get((m.name, m.version), []),
                        "tags": m.tags or {}, "test_bits_per_byte": figures[0].metrics.get("bits_per_byte")
                        if figures else None,
                        "status": status(m)})
    if name and not out:
        raise registry.unknown(store, name)
    return out
