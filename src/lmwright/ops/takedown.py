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
import re
import shutil
from pathlib import Path
from typing import Any

from lmwright.annotate.review import forget_items
from lmwright.core import registry
from lmwright.core.artifacts import ArtifactStore
from lmwright.core.store import Store
from lmwright.core.workspace import Workspace
from lmwright.errors import LmwrightError
from lmwright.ops.lineage import duplicates, find_documents, graph, reached

KINDS = ("source", "doc", "match")
CONFIRM_SHARE = 0.1  # a takedown of more than this share of the collected documents needs --yes


def plan(ws: Workspace, kind: str, value: str, duplicates_too: bool = True) -> dict[str, Any]:
    """What a takedown of `kind`=`value` would find and reach, without changing anything: the documents, the
    duplicates deduplication grouped with them (their text is the same or nearly: `duplicates_too`), and
    everything those reached."""
    if kind not in KINDS:
        raise LmwrightError(f"a takedown names a source, a doc or a match, not {kind!r}")
    g = graph(Store(ws.store_url))
    if kind == "doc" and not re.fullmatch(r"[0-9a-fA-F]{24}", value):
        raise LmwrightError(f"--doc {value!r} is not a document id: ids are 24 hexadecimal characters (the `id` "
                            "column of a dataset; `lmwright lineage ID` shows one's datasets)")
    value = value.lower() if kind == "doc" else value
    collected = _collected(g)
    if kind == "source" and value not in {s.name for s in ws.spec.data.sources} and value not in collected:
        raise LmwrightError(f"no source named {value!r} in the spec or in any collected dataset; the sources are: "
                            + ", ".join(sorted({s.name for s in ws.spec.data.sources} | set(collected))))
    docs = find_documents(ws, kind, value, g)
    dups = duplicates(ws, set(docs), g) if duplicates_too else {}
    if dups:
        known = find_documents(ws, "ids", "", g, ids=set(dups))
        for i, d in dups.items():
            docs[i] = {**known.get(i, {"id": i}), "duplicate_of": d["duplicate_of"], "reason": d["reason"]}
    out = reached(ws, set(docs), g)
    out["documents"] = sorted(docs.values(), key=lambda d: d["id"])
    out["duplicates"] = len(dups)
    out["collected"] = sum(collected.values())
    out["selector"] = {"kind": kind, "value": value}
    out["exports"] = _exports(ws, set(out["digests"]))
    return out


def _collected(g) -> dict[str, int]:
    """Each source's documents in the newest collection that read it."""
    out: dict[str, int] = {}
    for r in sorted(g.runs.values(), key=lambda r: r.id):
        if r.stage == "collect":
            out.update((r.summary or {}).get("by_source", {}))
    return out


def _exports(ws: Workspace, digests: set[str]) -> list[dict]:
    """The exports made from the reached models (the audit log's `export` rows): inside the project they are put
    out of reach with the rest; elsewhere they are named, for someone to delete."""
    out = []
    for a in Store(ws.store_url).audit_log():
        if a.action == "export" and a.detail.get("digest") in digests and a.detail.get("path"):
            path = Path(a.detail["path"])
            path = path if path.is_absolute() else ws.root / path
            out.append({"model": a.detail.get("model"), "format": a.detail.get("format"), "path": str(path),
                        "exists": path.exists(), "inside_project": path.resolve().is_relative_to(ws.root.resolve())})
    return out


def forget(ws: Workspace, kind: str, value: str, reason: str | None = None, yes: bool = False,
           duplicates_too: bool = True) -> dict[str, Any]:
    """Take the documents down (see the module's docstring); returns what was found, reached and done."""
    store, arts = Store(ws.store_url), ArtifactStore(ws.artifacts_dir)
    found = plan(ws, kind, value, duplicates_too)
    n, total = len(found["documents"]), found["collected"]
    if total and n > CONFIRM_SHARE * total and not yes:
        raise LmwrightError(f"this takedown names {n:,} of the {total:,} documents collected ({n / total:.0%}); "
                            "a takedown cannot be undone: look first (--dry-run), then confirm with --yes")
    kind, value = found["selector"]["kind"], found["selector"]["value"]
    mode = ws.spec.governance.takedown
    moved: list[str] = []
    quarantine = ws.internal / "quarantine"
    for digest in found["digests"]:
        src = arts.root / digest
        if not src.exists():
            continue
        _put_away(src, quarantine / digest if mode == "quarantine" else None)
        moved.append(digest)
    published = _unpublish(ws, found["published"])
    for e in found["exports"]:
        if e["inside_project"] and e["exists"]:
            _put_away(Path(e["path"]), quarantine / "exports" / Path(e["path"]).name if mode == "quarantine" else None)
            e["exists"] = False
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
    items = forget_items(store, [d["id"] for d in found["documents"]])  # annotation items holding their text
    row = store.add_takedown(kind, value, reason, [d["id"] for d in found["documents"]],
                             sorted({d["sha256"] for d in found["documents"] if d.get("sha256")}),
                             {k: found[k] for k in ("datasets", "runs", "models", "deployments", "published",
                                                    "exports")})
    store.audit("takedown", takedown=row.id, kind=kind, value=value, reason=reason,
                documents=len(found["documents"]), duplicates=found["duplicates"], artifacts=len(moved), mode=mode,
                models=retired, deployments=found["deployments"],
                exports_elsewhere=[e["path"] for e in found["exports"] if not e["inside_project"] and e["exists"]])
    found.update(takedown=row.id, mode=mode, moved=moved, unpublished=published, retired=retired, annotation_items=items,
                 rebuild=sorted({r["stage"] for r in found["runs"] + found["datasets"]}))
    return found


def _put_away(path: Path, to: Path | None) -> None:
    """Move `path` to `to` (quarantine: only its owner can read it), or delete it when `to` is None."""
    if to is not None:
        to.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if to.is_dir():
            shutil.rmtree(to)
        elif to.exists():
            to.unlink()
        shutil.move(str(path), str(to))
    elif path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()


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
