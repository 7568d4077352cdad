"""`lmwright forget`: take documents down from everything they reached.

1. Find the documents: a source's, one id, or those whose text a regular expression matches, in every collected
   dataset the store still has.
2. Find what they reached (ops/lineage.py): the datasets that hold them, every run downstream (tokenizer, token
   shards, checkpoints, models, evaluations, reports), the model versions, the aliases serving them, the requests
   those versions answered, the published copies.
3. Record the takedown (the `takedowns` table, whose selectors are the denylist every later collection applies:
   data/denylist.py) and audit it.
4. Put the reached artifacts out of reach as `governance.takedown` says: moved to `.lmwright/quarantine/` (kept for
   an investigation, read by nothing) or deleted; published copies, interrupted stages' work directories and the
   monitor's cached references go too. Model versions made of them are retired with their weights marked
   `quarantined` or `deleted`, so nothing serves them; they are named, to be retrained or retired for good.
5. Rebuild: `lmwright run` (or `forget --rebuild`) collects again without the documents and reruns exactly the
   stages whose artifacts are gone: every other stage is still cached.
"""

from __future__ import annotations

import json
import shutil
from typing import Any

from lmwright.core import registry
from lmwright.core.artifacts import ArtifactStore
from lmwright.core.store import Store
from lmwright.core.workspace import Workspace
from lmwright.errors import LmwrightError
from lmwright.ops.lineage import find_documents, graph, reached

KINDS = ("source", "doc", "match")


def plan(ws: Workspace, kind: str, value: str) -> dict[str, Any]:
    """What a takedown of `kind`=`value` would find and reach, without changing anything."""
    if kind not in KINDS:
        raise LmwrightError(f"a takedown names a source, a doc or a match, not {kind!r}")
    if kind == "source" and value not in {s.name for s in ws.spec.data.sources} and not _collected(ws, value):
        raise LmwrightError(f"no source named {value!r} in the spec or in any collected dataset; the sources are: "
                            + ", ".join(s.name for s in ws.spec.data.sources))
    docs = find_documents(ws, kind, value)
    out = reached(ws, set(docs))
    out["documents"] = sorted(docs.values(), key=lambda d: d["id"])
    out["selector"] = {"kind": kind, "value": value}
    return out


def _collected(ws: Workspace, source: str) -> bool:
    g = graph(Store(ws.store_url))
    return any(source in (r.summary or {}).get("by_source", {}) for r in g.runs.values() if r.stage == "collect")


def forget(ws: Workspace, kind: str, value: str, reason: str | None = None) -> dict[str, Any]:
    """Take the documents down (see the module's docstring); returns what was found, reached and done."""
    store, arts = Store(ws.store_url), ArtifactStore(ws.artifacts_dir)
    found = plan(ws, kind, value)
    mode = ws.spec.governance.takedown
    moved: list[str] = []
    quarantine = ws.internal / "quarantine"
    for digest in found["digests"]:
        src = arts.root / digest
        if not src.exists():
            continue
        if mode == "quarantine":
            quarantine.mkdir(parents=True, exist_ok=True, mode=0o700)
            target = quarantine / digest
            if target.exists():
                shutil.rmtree(target)
            shutil.move(str(src), str(target))
        else:
            shutil.rmtree(src)
        moved.append(digest)
    published = _unpublish(ws, found["published"])
    for r in found["runs"] + found["datasets"]:  # a stage that was interrupted keeps shards in a work directory
        for w in ws.work_dir.glob(f"{r['stage']}-*"):
            shutil.rmtree(w, ignore_errors=True)
    state = "quarantined" if mode == "quarantine" else "deleted"
    retired = []
    for m in found["models"]:
        version = registry.version(store, m["model"])
        for cache in (ws.internal / "monitor").glob(f"reference-{version.digest[:16]}-*"):
            cache.unlink()
        if not registry.is_retired(version) or version.weights == "present":
            registry.mark_retired(store, version.id, state)
            registry.record(store, version.name, "taken down", version.version, None, reason,
                            {"takedown": found["selector"], "weights": state})
            retired.append(m["model"])
        m.update(weights=state, retired=True)
    row = store.add_takedown(kind, value, reason, [d["id"] for d in found["documents"]],
                             {k: found[k] for k in ("datasets", "runs", "models", "deployments", "published")})
    store.audit("takedown", takedown=row.id, kind=kind, value=value, reason=reason,
                documents=len(found["documents"]), artifacts=len(moved), mode=mode, models=retired,
                deployments=found["deployments"])
    found.update(takedown=row.id, mode=mode, moved=moved, unpublished=published, retired=retired,
                 rebuild=sorted({r["stage"] for r in found["runs"] + found["datasets"]}))
    return found


def _unpublish(ws: Workspace, names: list[str]) -> list[str]:
    """Remove published copies of taken-down artifacts from the output directory (and from the publish marker, so
    the next run publishes the rebuilt ones)."""
    marker = ws.out_dir / ".published.json"
    if not names or not marker.exists():
        return []
    done = json.loads(marker.read_text())
    for name in names:
        target = ws.out_dir / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        done.pop(name, None)
    marker.write_text(json.dumps(done, indent=1))
    return names
