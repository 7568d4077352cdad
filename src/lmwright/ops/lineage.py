"""Lineage queries: from a document, dataset, stage, model version or served request, what it came from and what it
reached, read from the store's stage runs (inputs and outputs by content digest) and the artifacts themselves.

Documents keep a stable id from collection on (data/document.py), and every data stage's artifact holds its
documents' ids, so "which datasets hold this document" is answered by reading id columns; from those artifacts the
runs that read them, and the runs that read their outputs, are found by following digests forward; models, the
aliases that serve them and the requests they answered follow from the models' digests. Backwards, a model's run
leads to the runs upstream of it and to the sources its collect run read.

`openlineage_events` writes the same graph as OpenLineage run events (a START and a COMPLETE or FAIL per stage run;
spec 2-0-2), for users who run a lineage server such as Marquez. The events are written by hand: the format is a few
required fields, and the client package would bring an HTTP stack the export does not need.
"""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from lmwright.core import registry
from lmwright.core.artifacts import ArtifactStore
from lmwright.core.lineage import Graph, graph
from lmwright.core.schema import Feedback, Model, RequestLog, StageRun
from lmwright.core.store import Store
from lmwright.core.workspace import Workspace
from lmwright.data.denylist import text_hash
from lmwright.errors import LmwrightError
from lmwright.version import __version__

DOC_STAGES = ("collect", "clean", "dedup", "split")  # stages whose artifacts hold documents (Parquet with an id)
OPENLINEAGE_SCHEMA = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/definitions/RunEvent"
PRODUCER = f"https://github.com/lmwright/lmwright/tree/v{__version__}"


def run_dict(r: StageRun) -> dict[str, Any]:
    return {"stage": r.stage, "run": r.id, "digest": r.output_digest,
            "finished": f"{r.finished_at:%Y-%m-%d %H:%M:%S}" if r.finished_at else None,
            "code_version": r.code_version}


def model_label(m: Model) -> str:
    return f"{m.name}@{m.version}"


# -- documents in artifacts ------------------------------------------------------------------------------------------

def doc_runs(g: Graph, arts: ArtifactStore) -> list[tuple[StageRun, list[Path]]]:
    """The data stages' runs whose artifacts are still there, with their document files."""
    out = []
    for r in g.runs.values():
        if r.stage in DOC_STAGES and r.output_digest and arts.exists(r.output_digest):
            root = arts.root / r.output_digest
            files = sorted(p for p in root.glob("*.parquet") if p.name != "removed.parquet")
            out.append((r, files))
    return out


def _read(path: Path, columns: list[str]):
    import pyarrow.parquet as pq

    have = set(pq.read_schema(path).names)
    return pq.read_table(path, columns=[c for c in columns if c in have]).to_pylist()


def _kept_dirs(ws: Workspace, g: Graph, stage: str) -> list[Path]:
    """The artifact directories of a stage's runs, wherever they are: in the store, or quarantined by an earlier
    takedown (a second takedown before the rebuild still finds its documents there)."""
    arts, quarantine = ArtifactStore(ws.artifacts_dir), ws.internal / "quarantine"
    out: list[Path] = []
    for r in g.runs.values():
        if r.stage == stage and r.output_digest:
            for root in (arts.root / r.output_digest, quarantine / r.output_digest):
                if root.is_dir() and root not in out:
                    out.append(root)
    return out


def find_documents(ws: Workspace, kind: str, value: str, g: Graph | None = None,
                   ids: set[str] | None = None) -> dict[str, dict]:
    """Documents in any collected dataset that a selector names: `source` (a source's name), `doc` (an id),
    `match` (a regular expression searched in the text), or `ids` (those in `ids`). Returns {id: what is known of
    it, with its text's SHA-256}."""
    if kind == "match":
        try:
            pattern = re.compile(value)
        except re.error as exc:
            raise LmwrightError(f"--match {value!r} is not a regular expression ({exc}); quote it for the shell "
                                "and escape special characters (re.escape)") from exc
    g = g or graph(Store(ws.store_url))
    found: dict[str, dict] = {}
    for root in _kept_dirs(ws, g, "collect"):  # collection holds every document as read; later stages, subsets
        for path in sorted(root.glob("*.parquet")):
            for d in _read(path, ["id", "source_name", "locator", "license", "collected_at", "text"]):
                hit = (d["source_name"] == value if kind == "source" else d["id"] == value if kind == "doc"
                       else d["id"] in ids if kind == "ids" else bool(pattern.search(d["text"] or "")))
                if hit and d["id"] not in found:
                    found[d["id"]] = {**{k: d.get(k) for k in ("id", "source_name", "locator", "license",
                                                                "collected_at")}, "sha256": text_hash(d["text"])}
    return found


def duplicates(ws: Workspace, doc_ids: set[str], g: Graph | None = None) -> dict[str, dict]:
    """The exact and near duplicates of `doc_ids` that deduplication grouped with them (either way: the copy it
    kept and the copies it removed), found in the dedup stage's `removed.parquet`: the same text under other ids,
    which would otherwise take a taken-down document's place. Returns {id: {id, duplicate_of, reason}}."""
    g = g or graph(Store(ws.store_url))
    edges: dict[str, set[str]] = defaultdict(set)
    why: dict[tuple[str, str], str] = {}
    for root in _kept_dirs(ws, g, "dedup"):
        if (root / "removed.parquet").exists():
            for d in _read(root / "removed.parquet", ["id", "duplicate_of", "reason"]):
                if d.get("duplicate_of"):
                    edges[d["id"]].add(d["duplicate_of"])
                    edges[d["duplicate_of"]].add(d["id"])
                    why[(d["id"], d["duplicate_of"])] = why[(d["duplicate_of"], d["id"])] = d.get("reason") or ""
    out: dict[str, dict] = {}
    todo = list(doc_ids)
    while todo:
        x = todo.pop()
        for y in edges.get(x, ()):
            if y not in doc_ids and y not in out:
                out[y] = {"id": y, "duplicate_of": x, "reason": why[(x, y)]}
                todo.append(y)
    return out


def reached(ws: Workspace, doc_ids: set[str], g: Graph | None = None) -> dict[str, Any]:
    """Everything the documents reached: the datasets that hold them (and in which split), every run downstream
    of those, the model versions among them, the aliases that serve those versions, the requests they answered
    and the published copies in the output directory."""
    store, arts = Store(ws.store_url), ArtifactStore(ws.artifacts_dir)
    g = g or graph(store)
    datasets, digests = [], set()
    for r, files in doc_runs(g, arts):
        held: dict[str, int] = {}
        for path in files:
            n = sum(d["id"] in doc_ids for d in _read(path, ["id"]))
            if n:
                held[path.stem] = n
        if held:
            datasets.append({**run_dict(r), "documents": held})
            digests.add(r.output_digest)
    runs = [r for r in g.downstream(digests) if r.output_digest not in digests]
    digests |= {r.output_digest for r in runs if r.output_digest}
    return {"datasets": datasets, "runs": [run_dict(r) for r in runs], **_served(ws, store, g, digests),
            "digests": sorted(digests)}


def _served(ws: Workspace, store: Store, g: Graph, digests: set[str]) -> dict[str, Any]:
    """The model versions made of `digests`, the aliases on them and the requests they answered; published
    copies of those artifacts."""
    import json

    models = [m for m in g.models if m.digest in digests]
    aliases = [{"model": a.name, "alias": a.alias, "version": a.version} for a in registry.aliases(store)
               if any(m.name == a.name and m.version == a.version for m in models)]
    requests = {}
    if models:
        with store.session() as s:
            rows = s.execute(select(RequestLog.model_digest, func.count()).where(
                RequestLog.model_digest.in_([m.digest for m in models])).group_by(RequestLog.model_digest)).all()
        requests = dict(rows)
    marker = ws.out_dir / ".published.json"
    published = sorted(name for name, d in (json.loads(marker.read_text()) if marker.exists() else {}).items()
                       if d in digests)
    return {"models": [{"model": model_label(m), "digest": m.digest, "weights": m.weights,
                        "retired": registry.is_retired(m), "requests": requests.get(m.digest, 0)} for m in models],
            "deployments": aliases, "published": published}


# -- one query -------------------------------------------------------------------------------------------------------

def _sources(g: Graph, runs: list[StageRun]) -> list[dict]:
    """The sources the collect runs among `runs` read, with their licences and document counts."""
    out = []
    for r in runs:
        if r.stage == "collect":
            specs = {s["name"]: s for s in (r.params or {}).get("data.sources", [])}
            for name, n in (r.summary or {}).get("by_source", {}).items():
                s = specs.get(name, {})
                out.append({"source": name, "kind": s.get("kind"), "license": s.get("license"), "documents": n,
                            "collect_run": r.id})
    return out


def _unique(rows: list[dict]) -> list[dict]:
    out: list[dict] = []
    for r in rows:
        if r not in out:
            out.append(r)
    return out


def _upstream(g: Graph, run: StageRun) -> dict:
    runs = g.upstream(run)
    split = next((r for r in runs if r.stage == "split"), None)
    return {"runs": [run_dict(r) for r in runs], "sources": _sources(g, runs),
            "splits": (split.summary or {}).get("splits") if split else None,
            "datasets": [run_dict(r) for r in runs if r.stage in DOC_STAGES]}


def _downstream(ws: Workspace, g: Graph, digests: set[str]) -> dict:
    runs = g.downstream(digests)
    alld = digests | {r.output_digest for r in runs if r.output_digest}
    return {"runs": [run_dict(r) for r in runs], **_served(ws, Store(ws.store_url), g, alld)}


def query(ws: Workspace, ident: str) -> dict[str, Any]:
    """The lineage of `ident`, both ways: a model (`NAME@VERSION`, `NAME@ALIAS` or `NAME`), a request id, a
    document id, a stage name (its latest run) or an artifact digest (or a prefix of at least 6 characters)."""
    ident = ident.strip()
    if not ident:
        raise LmwrightError("name what to trace: `lmwright lineage ID`")
    if re.fullmatch(r"[0-9a-fA-F]{6,64}", ident):
        ident = ident.lower()
    store = Store(ws.store_url)
    g = graph(store)
    # a model
    if "@" in ident or ident in registry.names(store):
        m = registry.version(store, ident)
        if m is None:
            raise registry.unknown(store, ident)
        run = g.runs.get(m.run_id)
        return {"query": ident, "kind": "model",
                "subject": {"model": model_label(m), "digest": m.digest, "stage": run.stage if run else None,
                            "weights": m.weights, "retired": registry.is_retired(m)},
                "upstream": _upstream(g, run) if run else {}, "downstream": _downstream(ws, g, {m.digest})}
    # a served request
    req = store.request_record(ident)
    if req is not None:
        m = next((x for x in g.models if x.digest == req.model_digest), None)
        with store.session() as s:
            fb = list(s.scalars(select(Feedback).where(Feedback.request_id == ident)))
        run = g.runs.get(m.run_id) if m else None
        return {"query": ident, "kind": "request",
                "subject": {"request_id": ident, "at": f"{req.at:%Y-%m-%d %H:%M:%S}", "endpoint": req.endpoint,
                            "model": model_label(m) if m else req.model, "model_digest": req.model_digest,
                            "route": req.route, "key": req.key_name, "status": req.status},
                "upstream": _upstream(g, run) if run else {},
                "downstream": {"feedback": [{"at": f"{f.at:%Y-%m-%d %H:%M:%S}", "rating": f.rating,
                                             "correction": f.correction is not None} for f in fb]}}
    # a stage's latest run, or an artifact
    run = None
    if ident in {r.stage for r in g.runs.values()}:
        run = max((r for r in g.runs.values() if r.stage == ident), key=lambda r: r.id)
    elif re.fullmatch(r"[0-9a-f]{6,64}", ident):
        hits = {d: r for d, r in g.made_by.items() if d.startswith(ident)}
        if len(hits) > 1:
            raise LmwrightError(f"{ident!r} is the start of {len(hits)} artifacts' digests; give more characters")
        run = next(iter(hits.values()), None)
    if run is not None:
        return {"query": ident, "kind": "artifact", "subject": run_dict(run),
                "upstream": _upstream(g, run), "downstream": _downstream(ws, g, {run.output_digest})}
    # a deployment: the model id clients send (deploy.models, or the defaults)
    from lmwright.ops.deploy import plan

    try:
        served = next((d for d in plan(ws, store=store) if d.name == ident), None)
    except LmwrightError:  # nothing can be served yet (no model built): not a deployment
        served = None
    if served is not None:
        targets = [*served.targets, *([served.shadow] if served.shadow else [])]
        versions = [next((m for m in g.models if m.digest == t.digest), None) for t in targets]
        ups = [_upstream(g, g.runs[m.run_id]) for m in versions if m and m.run_id in g.runs]
        return {"query": ident, "kind": "deployment",
                "subject": {"deployment": ident, "routes": [f"{t.label} ({t.weight:g}%)" for t in served.targets],
                            "shadow": served.shadow.label if served.shadow else None},
                "upstream": {"runs": _unique([r for u in ups for r in u["runs"]]),
                             "sources": _unique([x for u in ups for x in u["sources"]])},
                "downstream": _served(ws, store, g, {t.digest for t in targets})}
    # a document
    docs = find_documents(ws, "doc", ident, g) if re.fullmatch(r"[0-9a-f]{24}", ident) else {}
    taken = [{"takedown": t.id, "at": f"{t.at:%Y-%m-%d %H:%M:%S}", "actor": t.actor, "selector": f"{t.kind} "
              f"{t.value}", "reason": t.reason} for t in store.takedowns() if ident in (t.doc_ids or [])]
    if taken and not docs:  # its datasets are quarantined or deleted: what is left is the record
        return {"query": ident, "kind": "document", "subject": {"id": ident, "taken_down": taken},
                "upstream": {}, "downstream": {}}
    if docs:
        r = reached(ws, {ident}, g)
        return {"query": ident, "kind": "document", "subject": {**docs[ident], "taken_down": taken or None},
                "upstream": {"sources": [{"source": docs[ident]["source_name"], "license": docs[ident]["license"],
                                          "locator": docs[ident]["locator"]}]},
                "downstream": {k: v for k, v in r.items() if k != "digests"}}
    raise LmwrightError(f"{ident!r} names nothing lmwright recorded: give a model (NAME@VERSION or NAME@ALIAS), a "
                        "request id (the x-request-id header of a served answer), a deployment (the model id clients send), a "
                        "document id (24 hex "
                        "characters, the `id` column of a dataset), a stage name or an artifact digest")


# -- OpenLineage -----------------------------------------------------------------------------------------------------

def _iso(t) -> str:
    from datetime import UTC

    return (t if t.tzinfo else t.replace(tzinfo=UTC)).isoformat()


def openlineage_events(ws: Workspace, ident: str | None = None) -> list[dict[str, Any]]:
    """OpenLineage RunEvents for every stage run (or those upstream and downstream of `ident`): a START and a
    COMPLETE or FAIL each. A job is a stage in the project's namespace; a dataset is an artifact, named by the
    stage that made it, with its digest as the dataset version."""
    store = Store(ws.store_url)
    g = graph(store)
    ns = f"lmwright://{ws.spec.project.name}"
    with store.session() as s:
        runs = list(s.scalars(select(StageRun).where(StageRun.status.in_(("done", "failed")))
                              .order_by(StageRun.id)))
    if ident is not None:
        q = query(ws, ident)
        keep = {r["run"] for side in ("upstream", "downstream") for key in ("runs", "datasets")
                for r in q.get(side, {}).get(key, [])}
        if q["kind"] == "artifact":
            keep.add(q["subject"]["run"])
        runs = [r for r in runs if r.id in keep]
    models = {m.digest: m for m in g.models}

    def dataset(digest: str, rows: int | None = None, output: bool = False) -> dict:
        maker = g.made_by.get(digest)
        name = maker.stage if maker else "external"
        facets: dict[str, Any] = {"version": {"_producer": PRODUCER, "_schemaURL":
                                              "https://openlineage.io/spec/facets/1-0-1/DatasetVersionDatasetFacet"
                                              ".json#/$defs/DatasetVersionDatasetFacet", "datasetVersion": digest}}
        if digest in models:
            name = f"model/{models[digest].name}"
        d = {"namespace": ns, "name": name, "facets": facets}
        if output and rows is not None:
            d["outputFacets"] = {"outputStatistics": {
                "_producer": PRODUCER, "_schemaURL": "https://openlineage.io/spec/facets/1-0-2/"
                "OutputStatisticsOutputDatasetFacet.json#/$defs/OutputStatisticsOutputDatasetFacet",
                "rowCount": rows}}
        return d

    events = []
    for r in runs:
        run_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{ns}/run/{r.id}/{_iso(r.started_at)}"))
        job = {"namespace": ns, "name": r.stage}
        inputs = [dataset(d) for d in g.inputs.get(r.id, {}).values()]
        if r.stage == "collect":  # where the documents came from: each source, by kind and name
            inputs += [{"namespace": f"lmwright-source://{src.get('kind', 'source')}", "name": src["name"],
                        "facets": {}} for src in (r.params or {}).get("data.sources", []) if "name" in src]
        base = {"producer": PRODUCER, "schemaURL": OPENLINEAGE_SCHEMA, "job": job}
        events.append({**base, "eventType": "START", "eventTime": _iso(r.started_at),
                       "run": {"runId": run_id}, "inputs": inputs, "outputs": []})
        end = {**base, "eventType": "COMPLETE" if r.status == "done" else "FAIL",
               "job": {**job, "facets": {"jobType": {
                   "_producer": PRODUCER, "_schemaURL": "https://openlineage.io/spec/facets/2-0-3/JobTypeJobFacet"
                   ".json#/$defs/JobTypeJobFacet", "processingType": "BATCH", "integration": "LMWRIGHT",
                   "jobType": "STAGE"}}},
               "eventTime": _iso(r.finished_at or r.started_at), "run": {"runId": run_id}, "inputs": inputs,
               "outputs": [dataset(r.output_digest, (r.summary or {}).get("kept"), output=True)]
               if r.output_digest else []}
        if r.status == "failed":
            end["run"]["facets"] = {"errorMessage": {
                "_producer": PRODUCER, "_schemaURL": "https://openlineage.io/spec/facets/1-0-1/"
                "ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet",
                "message": (r.error or "")[:2000], "programmingLanguage": "python"}}
        events.append(end)
    return events


def post_events(events: list[dict[str, Any]], url: str, timeout_s: float = 10.0) -> int:
    """POST each event to a lineage server's endpoint (Marquez: http://HOST:5000/api/v1/lineage), in order; the
    first refusal stops with the server's answer. Returns how many were accepted."""
    import json
    import urllib.error
    import urllib.request

    for i, e in enumerate(events):
        req = urllib.request.Request(url, data=json.dumps(e).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:
                resp.read()
        except (urllib.error.URLError, OSError) as exc:
            detail = exc.read().decode(errors="replace")[:300] if isinstance(exc, urllib.error.HTTPError) else ""
            raise LmwrightError(f"the lineage server at {url} refused event {i + 1} of {len(events)} "
                                f"({e['eventType']} {e['job']['name']}): {exc} {detail}".strip()) from exc
    return len(events)
