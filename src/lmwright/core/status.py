"""The project at a glance (`lmwright status`): each stage's state, the datasets, recent runs and the models with
their aliases and first test evaluation, as one dict the CLI prints as tables or JSON."""

from __future__ import annotations

from typing import Any

from lmwright.core.pipeline import Stages, stage_status
from lmwright.core.registry import aliases
from lmwright.core.store import Store
from lmwright.core.workspace import Workspace


def project_status(ws: Workspace, stages: Stages) -> dict[str, Any]:
    """Stages (cached / stale / new), datasets, the last 30 runs and every registered model version."""
    store = Store(ws.store_url)
    datasets = [{"name": d.name, "rows": d.rows, "digest": d.digest[:12], "path": d.path,
                 "created_at": d.created_at.isoformat()} for d in store.datasets()]
    runs = [{"id": r.id, "stage": r.stage, "status": r.status, "seconds": r.duration_s,
             "started_at": r.started_at.isoformat(), "summary": r.summary} for r in store.runs(limit=30)]
    tests: dict[str, list] = {}
    for t in store.test_evaluations():
        tests.setdefault(t.model_digest, []).append(t)
    held: dict[tuple[str, int], list[str]] = {}
    for a in aliases(store):
        held.setdefault((a.name, a.version), []).append(a.alias)
    models: list[dict[str, Any]] = []
    for m in store.models():
        tested = tests.get(m.digest, [])
        models.append({"name": m.name, "version": m.version, "aliases": held.get((m.name, m.version), []),
                       "digest": m.digest[:12], "params": m.n_params, "metrics": m.metrics,
                       "test": tested[0].metrics if tested else None, "test_evaluations": len(tested),
                       "created_at": m.created_at.isoformat()})
    return {"project": ws.spec.project.name, "root": str(ws.root), "stages": stage_status(ws, stages),
            "datasets": datasets, "runs": runs, "models": models}
