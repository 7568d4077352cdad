"""The project at a glance (`lmwright status`): each stage's state, the datasets, recent runs and the models with
their aliases and first test evaluation, as one dict the CLI prints as tables or JSON."""

from __future__ import annotations

from typing import Any

from lmwright.core.audit_chain import verify
from lmwright.core.pipeline import Stages, stage_status
from lmwright.core.registry import aliases
from lmwright.core.store import Store
from lmwright.core.workspace import Workspace


def project_status(ws: Workspace, stages: Stages) -> dict[str, Any]:
    """Stages (cached / stale / new), datasets, the last 30 runs, every registered model version and the latest
    alert events (pending, firing, resolved; `ops/alerts.py`), the audit chain's state and the takedowns."""
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
                       "created_at": m.created_at.isoformat(), "weights": m.weights,
                       "retired": m.retired_at is not None})
    alerts = [{"rule": a.rule, "model": a.model, "version": a.version, "state": a.state, "metric": a.metric,
               "value": a.value, "threshold": a.threshold, "severity": a.detail.get("severity"),
               "summary": a.detail.get("summary"), "started_at": a.started_at.isoformat(),
               "resolved_at": a.resolved_at.isoformat() if a.resolved_at else None}
              for a in store.alerts() if a.state != "inactive"][:20]
    log = store.audit_log()
    problems = verify(log)
    governance = {"audit_rows": len(log), "audit_chain": "holds" if not problems else
                  f"broken at row {problems[0]['id']} (lmwright audit --verify)",
                  "takedowns": [{"id": t.id, "at": t.at.isoformat(), "kind": t.kind, "value": t.value,
                                 "documents": len(t.doc_ids)} for t in store.takedowns()]}
    return {"project": ws.spec.project.name, "root": str(ws.root), "stages": stage_status(ws, stages),
            "datasets": datasets, "runs": runs, "models": models, "alerts": alerts, "governance": governance}
