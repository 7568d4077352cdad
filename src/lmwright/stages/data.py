"""The data stages: collect → clean → dedup → split, and the dataset card.

Each accounts for every record: read = kept + removed (by reason) + quarantined, and writes what it removed next
to what it kept, so a user can look at both. The work itself is in `lmwright.data`; these functions wire it to
the pipeline (inputs, outputs, progress, the datasets recorded in the store).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from lmwright.core.pipeline import StageContext, stage
from lmwright.data.dedup import exact_dedup, near_dedup
from lmwright.data.document import accounting, read_docs, write_docs
from lmwright.data.sources import Quarantined, iter_source
from lmwright.data.split import SPLITS


def _collect_facts(ws) -> dict:
    """What a collect depends on beyond the spec: the Python whose docs it reads, the files it globs."""
    from lmwright.data.sources.files import matched_files

    facts: dict = {"python": sys.version}
    for src in ws.spec.data.sources:
        if src.kind == "files":
            try:
                files = matched_files(src, ws.root)
            except Exception:  # noqa: BLE001 - the stage itself reports a bad glob with its fix
                files = []
            # relative paths: moving or copying the project keeps its cache
            facts[src.name] = [[p.relative_to(ws.root).as_posix() if p.is_relative_to(ws.root) else str(p),
                                p.stat().st_size, p.stat().st_mtime_ns] for p in files]
        elif src.kind == "sql" and src.url.startswith("sqlite:///"):  # a database file: rerun when it changes
            db = Path(src.url.removeprefix("sqlite:///"))
            facts[src.name] = [db.stat().st_size, db.stat().st_mtime_ns] if db.exists() else None
    # other SQL databases and the web are not watched: `lmwright collect --force` takes a new snapshot
    from lmwright.data.denylist import Denylist

    if denied := Denylist.of(ws.store_url):  # a takedown collects again, without what it names
        facts["denylist"] = denied.digest()
    return facts


@stage("collect", spec=("data.sources",), extra=_collect_facts, resumable=True)
def collect(ctx: StageContext) -> dict:
    """Read every source into documents with stable ids, source, license and collection time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lmwright.data.denylist import Denylist
    from lmwright.data.executors import run_shards, shard_dir

    sources = ctx.spec.data.sources
    task = ctx.reporter.task("collect", total=None)
    denylist = Denylist.of(ctx.ws.store_url)

    def one_source(i: int, out: Path) -> dict:  # a shard per source: a killed run redoes only unfinished sources
        docs, quarantined, taken_down = [], [], 0
        for rec in iter_source(sources[i], ctx.ws.root):
            if isinstance(rec, Quarantined):
                quarantined.append(rec)
            elif denylist and denylist.denies(rec):
                taken_down += 1
            else:
                docs.append(rec)
                task.advance(1, info=sources[i].name)
        write_docs(out / "docs.parquet", docs)
        with open(out / "quarantine.jsonl", "w", encoding="utf-8") as f:
            for q in quarantined:
                f.write(json.dumps(q.__dict__) + "\n")
        return {"docs": len(docs), "quarantined": len(quarantined), "chars": sum(len(d.text) for d in docs),
                "taken_down": taken_down}

    results, resumed = run_shards(one_source, len(sources), ctx.work, workers=1)
    if resumed:
        ctx.log(f"  collect: resumed, {resumed} of {len(sources)} sources were already collected")
    pq.write_table(pa.concat_tables([pq.read_table(shard_dir(ctx.work, i) / "docs.parquet")
                                     for i in range(len(sources))]), ctx.out / "docs.parquet")
    with open(ctx.out / "quarantine.jsonl", "w", encoding="utf-8") as f:
        for i in range(len(sources)):
            f.write((shard_dir(ctx.work, i) / "quarantine.jsonl").read_text(encoding="utf-8"))
    n_docs, n_quar = sum(r["docs"] for r in results), sum(r["quarantined"] for r in results)
    chars = sum(r["chars"] for r in results)
    removed = {"takedown": n} if (n := sum(r.get("taken_down", 0) for r in results)) else {}
    ctx.dataset("raw", "docs.parquet", n_docs)
    return {**accounting(n_docs + n_quar + sum(removed.values()), n_docs, removed, n_quar), "resumed_sources": resumed,
            "by_source": {s.name: r["docs"] for s, r in zip(sources, results, strict=True)}, "chars": chars,
            "headline": f"{n_docs:,} documents ({chars / 1e6:.1f}M chars), {n_quar} quarantined"
                        + (f", {removed['takedown']} taken down (lmwright forget)" if removed else "")}


@stage("clean", deps=("collect",), spec=("data.clean", "data.profiles", "data.pii", "data.sources",
                                       "data.executor.shard_docs", "data.warn_removed_share"),
       needs=lambda spec: ["ray"] if spec.data.executor.kind == "ray" else [], resumable=True)
def clean(ctx: StageContext) -> dict:
    """Repair text; run each source's filter profile (quality, repetition, language, blocklist); redact PII."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lmwright.data.clean_shard import CleanShard, merge_by_source, removal_warnings
    from lmwright.data.executors import run_shards, shard_dir

    data = ctx.spec.data
    docs_path = ctx.inputs["collect"].path / "docs.parquet"
    n_docs = pq.ParquetFile(docs_path).metadata.num_rows
    n_shards = max(1, -(-n_docs // data.executor.shard_docs))
    task = ctx.reporter.task("clean", total=n_shards, info=f"{n_docs:,} documents")
    shard_fn = CleanShard(str(docs_path), data.executor.shard_docs, data.model_dump_json())
    ex = data.executor
    results, resumed = run_shards(shard_fn, n_shards, ctx.work, ex.workers, on_done=lambda i: task.advance(1),
                                  kind=ex.kind, ray_address=ex.ray_address)
    if resumed:
        ctx.log(f"  clean: resumed, {resumed} of {n_shards} shards were already done")
    for name in ("kept", "removed"):
        tables = [pq.read_table(shard_dir(ctx.work, i) / f"{name}.parquet") for i in range(n_shards)]
        pq.write_table(pa.concat_tables(tables), ctx.out / ("docs.parquet" if name == "kept" else "removed.parquet"))
    counts, pii = Counter(), Counter()
    for r in results:
        counts.update(r["removed"])
        pii.update(r["pii"])
    kept = sum(r["kept"] for r in results)
    ctx.dataset("clean", "docs.parquet", kept)
    top = ", ".join(f"{k} {v}" for k, v in counts.most_common(3)) or "none"
    by_source = merge_by_source(results)  # per source: read, kept, removed by reason
    warnings = removal_warnings(by_source, data)  # printed at the end of a run
    return {**accounting(n_docs, kept, counts, 0), "pii": dict(sorted(pii.items())), "shards": n_shards,
            "resumed_shards": resumed, "by_source": by_source, "warnings": warnings,
            "headline": f"{kept:,} kept, {n_docs - kept:,} removed ({top}), {sum(pii.values())} PII spans redacted"}


@stage("dedup", deps=("clean",), spec=("data.dedup",))
def dedup(ctx: StageContext) -> dict:
    """Remove exact duplicates, then MinHash/LSH near-duplicates; of each group the smallest id is kept."""
    cfg = ctx.spec.data.dedup
    docs = read_docs(ctx.inputs["clean"].path / "docs.parquet")
    kept, exact = exact_dedup(docs) if cfg.exact else (docs, [])
    removed = [(d, "exact_duplicate", k, "1.0") for d, k in exact]
    clusters = []
    if cfg.near.enabled and kept:
        task = ctx.reporter.task("minhash", total=None, info=f"{len(kept):,} documents")
        kept, near, clusters = near_dedup(kept, cfg.near, on_lsh=lambda: task.update(info="LSH"))
        removed += near
    write_docs(ctx.out / "docs.parquet", kept)
    write_docs(ctx.out / "removed.parquet", [r[0] for r in removed],
               extra={"reason": [r[1] for r in removed], "duplicate_of": [r[2] for r in removed],
                      "similarity": [r[3] for r in removed]})
    with open(ctx.out / "clusters.jsonl", "w", encoding="utf-8") as f:
        for c in clusters:
            f.write(json.dumps(c) + "\n")
    ctx.dataset("dedup", "docs.parquet", len(kept))
    counts = Counter(r[1] for r in removed)
    return {**accounting(len(docs), len(kept), counts, 0), "near_clusters": len(clusters),
            "headline": f"{len(kept):,} unique, {counts['exact_duplicate']:,} exact and "
                        f"{counts['near_duplicate']:,} near duplicates removed ({len(clusters)} clusters)"}


@stage("split", deps=("dedup",), spec=("split", "data.dedup.near"))
def split(ctx: StageContext) -> dict:
    """Assign each document to train/val/test (by hash, stratified by a label, or by date), then remove val/test
    documents that near-duplicate one in an earlier split (the leak check)."""
    import time

    from lmwright.data.split import assign_splits, cross_split_leaks, leaked, stratum_of

    cfg = ctx.spec.split
    docs = read_docs(ctx.inputs["dedup"].path / "docs.parquet")
    names, quarantined = assign_splits(docs, cfg)
    placed = [i for i, n in enumerate(names) if n is not None]
    pairs, leak_s = [], 0.0
    if cfg.leak_check and placed:
        t0 = time.perf_counter()
        pairs = [(placed[a], placed[b], sim) for a, b, sim in cross_split_leaks(
            [docs[i]["text"] for i in placed], [names[i] for i in placed], ctx.spec.data.dedup.near,
            cfg.leak_threshold)]
        leak_s = time.perf_counter() - t0
    gone = leaked(pairs)
    parts: dict[str, list] = {s: [] for s in SPLITS}
    for i in placed:
        if i not in gone:
            parts[names[i]].append(docs[i])
    for name, rows in parts.items():
        write_docs(ctx.out / f"{name}.parquet", rows)
        ctx.dataset(f"split/{name}", f"{name}.parquet", len(rows))
    removed = sorted(gone)
    write_docs(ctx.out / "removed.parquet", [docs[i] for i in removed],
               extra={"reason": ["split_leak"] * len(removed), "split": [names[i] for i in removed],
                      "duplicate_of": [docs[gone[i][0]]["id"] for i in removed],
                      "similarity": [f"{gone[i][1]:.3f}" for i in removed]})
    write_docs(ctx.out / "quarantined.parquet", [docs[i] for i, _, _ in quarantined],
               extra={"reason": [r for _, r, _ in quarantined], "detail": [d for _, _, d in quarantined]})
    with open(ctx.out / "leaks.jsonl", "w", encoding="utf-8") as f:
        for a, b, sim in pairs:
            f.write(json.dumps({"similarity": round(sim, 3),
                                "kept": {"id": docs[a]["id"], "locator": docs[a]["locator"], "split": names[a]},
                                "removed": {"id": docs[b]["id"], "locator": docs[b]["locator"], "split": names[b]}})
                    + "\n")
    counts = {k: len(v) for k, v in parts.items()}
    summary = {**accounting(len(docs), sum(counts.values()), {"split_leak": len(gone)} if gone else {},
                            len(quarantined)),
               "method": cfg.method, "splits": counts,
               "leak_check": {"enabled": cfg.leak_check, "threshold": cfg.leak_threshold, "pairs": len(pairs),
                              "removed": len(gone), "seconds": round(leak_s, 2)}}
    how = {"hash": "by hash", "stratified": f"stratified by {cfg.stratify_by}",
           "time": f"by {cfg.time_field}: train < {cfg.train_before} <= val < {cfg.val_before} <= test"}[cfg.method]
    if cfg.method == "stratified":
        strata: dict[str, Counter] = {}
        for i in placed:
            if i not in gone:
                strata.setdefault(stratum_of(docs[i], cfg.stratify_by), Counter())[names[i]] += 1
        summary["strata"] = {k: {s: v[s] for s in SPLITS} for k, v in sorted(strata.items())}
        how += f", {len(strata)} classes"
    leaks = (f"{len(gone)} leaked near-duplicates removed from val/test ({len(pairs)} pairs, Jaccard >= "
             f"{cfg.leak_threshold})" if gone else "no leaks across splits") if cfg.leak_check else "leak check off"
    summary["headline"] = (" / ".join(f"{k} {v:,}" for k, v in counts.items()) + f" ({how}); {leaks}"
                           + (f"; {len(quarantined)} quarantined (no readable date)" if quarantined else ""))
    for name in ("val", "test"):
        if docs and not counts[name]:
            ctx.log(f"  split: the {name} split is empty ({how})")
    return summary


@stage("card", deps=("collect", "clean", "dedup", "split"), spec=("project.name", "data", "split"),
       publish=((".", "dataset_card"),))
def card(ctx: StageContext) -> dict:
    """Write the dataset card: licenses, languages, sources, size, splits, labels, curation, removals, PII, dedup."""
    from lmwright.data.card import carried_stats, histograms, render_card
    from lmwright.data.filters.language import detect

    docs = read_docs(ctx.inputs["dedup"].path / "docs.parquet")
    languages = Counter(detect(d["text"])[0] for d in docs)
    lengths = [len(d["text"]) for d in docs]
    histograms(languages, lengths, ctx.out)
    stages = {n: ctx.inputs[n].summary for n in ("collect", "clean", "dedup", "split")}
    carried = carried_stats(docs)
    text = render_card(ctx.spec, stages, Counter(d["license"] for d in docs), languages, lengths, carried)
    (ctx.out / "README.md").write_text(text, encoding="utf-8")
    labels = {k: v["values"].total() for k, v in sorted(carried["labels"].items())}
    return {"languages": dict(languages.most_common(10)), "labels": labels,
            "headline": f"dataset card: {len(docs):,} documents, "
                        f"{', '.join(f'{k} {v}' for k, v in languages.most_common(3))}"
                        + (f"; labels: {', '.join(labels)}" if labels else "")}
