"""The stages of the default pipeline, in order. Each is a plain function of a `StageContext`.

collect → clean → dedup → split → card → tokenizer → tokenize → pretrain → evaluate → save → test
→ sft → classify → preference (fine-tuning; preference off by default) → report

The test split is read only by the test stage (see evaluate/testset.py).

Each data stage accounts for every record: read = kept + removed (by reason) + quarantined, and writes what it
removed next to what it kept, so a user can look at both.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections import Counter
from pathlib import Path

from lmwright.core.pipeline import StageContext, stage
from lmwright.data.dedup import exact_dedup
from lmwright.data.document import accounting, read_docs, read_texts, write_docs
from lmwright.data.sources import Quarantined, iter_source
from lmwright.data.split import SPLITS, assign_split
from lmwright.spec import FinetuneSpec, dump_spec
from lmwright.tokenizer import load_tokenizer, save_tokenizer, special_ids, train_tokenizer, write_shards


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
    return facts


@stage("collect", spec=("data.sources",), extra=_collect_facts, resumable=True)
def collect(ctx: StageContext) -> dict:
    """Read every source into documents with stable ids, source, license and collection time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lmwright.data.executors import run_shards, shard_dir

    sources = ctx.spec.data.sources
    task = ctx.reporter.task("collect", total=None)

    def one_source(i: int, out: Path) -> dict:  # a shard per source: a killed run redoes only unfinished sources
        docs, quarantined = [], []
        for rec in iter_source(sources[i], ctx.ws.root):
            if isinstance(rec, Quarantined):
                quarantined.append(rec)
            else:
                docs.append(rec)
                task.advance(1, info=sources[i].name)
        write_docs(out / "docs.parquet", docs)
        with open(out / "quarantine.jsonl", "w", encoding="utf-8") as f:
            for q in quarantined:
                f.write(json.dumps(q.__dict__) + "\n")
        return {"docs": len(docs), "quarantined": len(quarantined), "chars": sum(len(d.text) for d in docs)}

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
    ctx.dataset("raw", "docs.parquet", n_docs)
    return {**accounting(n_docs + n_quar, n_docs, {}, n_quar), "resumed_sources": resumed,
            "by_source": {s.name: r["docs"] for s, r in zip(sources, results, strict=True)}, "chars": chars,
            "headline": f"{n_docs:,} documents ({chars / 1e6:.1f}M chars), {n_quar} quarantined"}


@stage("clean", deps=("collect",), spec=("data.clean", "data.profiles", "data.pii", "data.sources",
                                       "data.executor.shard_docs"),
       needs=lambda spec: ["ray"] if spec.data.executor.kind == "ray" else [], resumable=True)
def clean(ctx: StageContext) -> dict:
    """Repair text; run each source's filter profile (quality, repetition, language, blocklist); redact PII."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lmwright.data.clean_shard import CleanShard
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
    return {**accounting(n_docs, kept, counts, 0), "pii": dict(sorted(pii.items())), "shards": n_shards,
            "resumed_shards": resumed,
            "headline": f"{kept:,} kept, {n_docs - kept:,} removed ({top}), {sum(pii.values())} PII spans redacted"}


@stage("dedup", deps=("clean",), spec=("data.dedup",))
def dedup(ctx: StageContext) -> dict:
    """Remove exact duplicates, then MinHash/LSH near-duplicates; of each group the smallest id is kept."""
    from lmwright.data.minhash import near_duplicate_clusters, signatures

    cfg = ctx.spec.data.dedup
    docs = read_docs(ctx.inputs["clean"].path / "docs.parquet")
    kept, exact = exact_dedup(docs) if cfg.exact else (docs, [])
    removed = [(d, "exact_duplicate", k, "1.0") for d, k in exact]
    clusters_out = []
    if cfg.near.enabled and kept:
        near = cfg.near
        task = ctx.reporter.task("minhash", total=None, info=f"{len(kept):,} documents")
        sigs = signatures([d["text"] for d in kept], near.shingle_size, near.num_perm, near.seed)
        task.update(info="LSH")
        clusters = near_duplicate_clusters([d["id"] for d in kept], sigs, near.bands, near.threshold)
        drop = set()
        for cluster in clusters:
            keeper = kept[cluster[0][0]]
            clusters_out.append({"kept": {"id": keeper["id"], "locator": keeper["locator"]},
                                 "removed": [{"id": kept[i]["id"], "locator": kept[i]["locator"],
                                              "similarity": round(sim, 3)} for i, sim in cluster[1:]]})
            for i, sim in cluster[1:]:
                drop.add(i)
                removed.append((kept[i], "near_duplicate", keeper["id"], f"{sim:.3f}"))
        kept = [d for i, d in enumerate(kept) if i not in drop]
    write_docs(ctx.out / "docs.parquet", kept)
    write_docs(ctx.out / "removed.parquet", [r[0] for r in removed],
               extra={"reason": [r[1] for r in removed], "duplicate_of": [r[2] for r in removed],
                      "similarity": [r[3] for r in removed]})
    with open(ctx.out / "clusters.jsonl", "w", encoding="utf-8") as f:
        for c in clusters_out:
            f.write(json.dumps(c) + "\n")
    ctx.dataset("dedup", "docs.parquet", len(kept))
    counts = Counter(r[1] for r in removed)
    return {**accounting(len(docs), len(kept), counts, 0), "near_clusters": len(clusters_out),
            "headline": f"{len(kept):,} unique, {counts['exact_duplicate']:,} exact and "
                        f"{counts['near_duplicate']:,} near duplicates removed ({len(clusters_out)} clusters)"}


@stage("split", deps=("dedup",), spec=("split",))
def split(ctx: StageContext) -> dict:
    """Assign each document to train/val/test by a stable hash of its id."""
    cfg = ctx.spec.split
    docs = read_docs(ctx.inputs["dedup"].path / "docs.parquet")
    parts: dict[str, list] = {s: [] for s in SPLITS}
    for d in docs:
        parts[assign_split(d["id"], cfg.val, cfg.test, cfg.salt)].append(d)
    for name, rows in parts.items():
        write_docs(ctx.out / f"{name}.parquet", rows)
        ctx.dataset(f"split/{name}", f"{name}.parquet", len(rows))
    counts = {k: len(v) for k, v in parts.items()}
    return {**accounting(len(docs), len(docs), {}, 0), "splits": counts,
            "headline": " / ".join(f"{k} {v:,}" for k, v in counts.items())}


@stage("card", deps=("collect", "clean", "dedup", "split"), spec=("project.name", "data", "split"))
def card(ctx: StageContext) -> dict:
    """Write the dataset card: licenses, languages, sources, size, splits, curation, removals, PII, dedup."""
    from lmwright.data.card import histograms, render_card
    from lmwright.data.filters.language import detect

    docs = read_docs(ctx.inputs["dedup"].path / "docs.parquet")
    languages = Counter(detect(d["text"])[0] for d in docs)
    lengths = [len(d["text"]) for d in docs]
    histograms(languages, lengths, ctx.out)
    stages = {n: ctx.inputs[n].summary for n in ("collect", "clean", "dedup", "split")}
    text = render_card(ctx.spec, stages, Counter(d["license"] for d in docs), languages, lengths)
    (ctx.out / "README.md").write_text(text, encoding="utf-8")
    return {"languages": dict(languages.most_common(10)), "headline": f"dataset card: {len(docs):,} documents, "
            f"{', '.join(f'{k} {v}' for k, v in languages.most_common(3))}"}


@stage("tokenizer", deps=("split",), spec=("tokenizer", "model.max_seq_len"))
def tokenizer(ctx: StageContext) -> dict:
    """Train a byte-level BPE tokenizer on the train split."""
    cfg = ctx.spec.tokenizer
    texts = read_texts(ctx.inputs["split"].path / "train.parquet")
    ctx.reporter.task("tokenizer", total=None, info=f"BPE on {len(texts):,} documents")  # closed by the pipeline
    tok = train_tokenizer(texts, cfg.vocab_size, cfg.min_frequency)
    save_tokenizer(tok, ctx.out, model_max_length=ctx.spec.model.max_seq_len)
    sample = "\n".join(texts[:200])
    ratio = len(sample.encode()) / max(1, len(tok.encode(sample, add_special_tokens=False).ids))
    return {"vocab_size": tok.get_vocab_size(), "bytes_per_token": round(ratio, 3),
            "headline": f"vocabulary {tok.get_vocab_size():,}, {ratio:.2f} bytes/token"}


@stage("tokenize", deps=("split", "tokenizer"), spec=("risk.canaries", "project.seed"))
def tokenize(ctx: StageContext) -> dict:
    """Encode each split into a flat token shard (numpy memmap), with the risk canaries planted in train."""
    from lmwright.evaluate.risk import make_canaries, plant

    tok = load_tokenizer(ctx.inputs["tokenizer"].path)
    splits = {s: read_texts(ctx.inputs["split"].path / f"{s}.parquet") for s in SPLITS}
    c = ctx.spec.risk.canaries
    canaries = make_canaries(c.repeats, ctx.spec.project.seed) if c.enabled else []
    splits["train"] = plant(splits["train"], canaries, ctx.spec.project.seed)
    # the secrets stay inside the artifact: the risk checks read them, nothing publishes them
    (ctx.out / "canaries.json").write_text(json.dumps(canaries, indent=1))
    task = ctx.reporter.task("tokenize", total=sum(len(v) for v in splits.values()))
    meta = write_shards(tok, splits, ctx.out, on_progress=lambda n: task.advance(n))
    tokens = {k: v["tokens"] for k, v in meta["splits"].items()}
    return {"tokens": tokens, "dtype": meta["dtype"], "canaries": len(canaries),
            "canary_copies": sum(x["repeats"] for x in canaries),
            "headline": " / ".join(f"{k} {v:,}" for k, v in tokens.items()) + " tokens"
                        + (f", {len(canaries)} canaries planted" if canaries else "")}


@stage("pretrain", deps=("tokenize", "tokenizer"), spec=("project.seed", "model", "train"),
       needs=lambda spec: list(spec.train.log_to),  # the optional metric writers: tensorboard, mlflow
       resumable=True)
def pretrain(ctx: StageContext) -> dict:
    """Train the Llama decoder from scratch on the train shard; checkpoints make a killed run resumable.

    With `train.nproc` > 1 the loop runs in that many processes under torchrun (DDP or FSDP2)."""
    from lmwright.train.checkpoint import load_weights, save_weights

    tr = ctx.spec.train
    log_dir = ctx.ws.root / ".lmwright"
    if tr.nproc > 1:
        from lmwright.train.distributed import launch

        job = {"spec": ctx.spec.model_dump(mode="json"), "shards": str(ctx.inputs["tokenize"].path),
               "tokenizer": str(ctx.inputs["tokenizer"].path), "work": str(ctx.work), "out": str(ctx.out),
               "log_dir": str(log_dir)}
        ctx.log(f"  pretrain: launching {tr.nproc} processes ({tr.distributed}) with torchrun")
        r = launch(job, tr.nproc, ctx.work)
        (ctx.out / "result.json").unlink()
        history = json.loads((ctx.out / "history.json").read_text())
        n_params = load_weights(ctx.out).n_params()
        steps, seconds, resumed_from, best_step = r["steps"], r["seconds"], r["resumed_from"], r["best_step"]
        mfu, peak, peak_source = r["mfu"], r["peak_flops"], r["peak_source"]
    else:
        from lmwright.train.loop import pretrain as train_loop

        tok = load_tokenizer(ctx.inputs["tokenizer"].path)
        result = train_loop(ctx.spec, ctx.inputs["tokenize"].path, tok, ctx.work, ctx.reporter, log_dir=log_dir)
        save_weights(result.model, ctx.out)
        history = result.history
        (ctx.out / "history.json").write_text(json.dumps(history))
        n_params, steps, seconds = result.model.n_params(), result.steps, result.seconds
        resumed_from, best_step = result.resumed_from, result.best_step
        mfu, peak, peak_source = result.mfu, result.peak_flops, result.peak_source
    ctx.metrics.extend(("train/loss", s, v) for s, v in zip(history["step"], history["loss"], strict=True))
    ctx.metrics.extend(("train/lr", s, v) for s, v in zip(history["step"], history["lr"], strict=True))
    for key in ("val_loss", "val_bpb"):
        ctx.metrics.extend((f"val/{key[4:]}", s, v) for s, v in zip(history["val_step"], history[key], strict=True))
    tokens = steps * tr.batch_size * tr.seq_len
    return {"n_params": n_params, "steps": steps, "tokens": tokens, "resumed_from": resumed_from,
            "best_step": best_step, "nproc": tr.nproc, "precision": tr.precision,
            "train_seconds": round(seconds, 1), "tokens_per_s": round(tokens / max(seconds, 1e-9)),
            "mfu": round(mfu, 4), "peak_tflops": round(peak / 1e12, 4), "peak_source": peak_source,
            "final_loss": history["loss"][-1], "val_loss": history["val_loss"][-1],
            "val_bpb": history["val_bpb"][-1],
            "headline": f"{n_params / 1e6:.2f}M params, {steps} steps, loss {history['loss'][-1]:.3f}, "
                        f"val {history['val_bpb'][-1]:.3f} bits/byte, MFU {100 * mfu:.1f}%"}


@stage("evaluate", deps=("pretrain", "tokenize", "tokenizer", "split"),
       spec=("eval", "risk", "train.seq_len", "project.seed", "data.sources"))
def evaluate(ctx: StageContext) -> dict:
    """Validation metrics with confidence intervals and slices, the eval sets, risk checks and samples."""
    from lmwright.data.split import split_path
    from lmwright.evaluate.suite import LM_FIGURES, evaluate_docs, evaluate_set, flatten, risk_checks
    from lmwright.model.generate import generate_text
    from lmwright.train.checkpoint import load_weights
    from lmwright.train.loop import set_threads

    spec, e = ctx.spec, ctx.spec.eval
    set_threads(spec.train.threads)
    model = load_weights(ctx.inputs["pretrain"].path)
    tok = load_tokenizer(ctx.inputs["tokenizer"].path)
    split_dir, seed = ctx.inputs["split"].path, spec.project.seed
    val_docs = read_docs(split_path(split_dir, "val", ".parquet"))
    task = ctx.reporter.task("eval val", total=None, info=f"{len(val_docs):,} documents")
    val = evaluate_docs(model, tok, val_docs, spec.train.seq_len, e, seed, spec.data.pydocs_sources(),
                        on_batch=lambda n: task.advance(n))
    sets = {}
    for es in e.sets:
        task.update(info=f"eval set {es.name}")
        sets[es.name] = evaluate_set(model, tok, es, ctx.ws.root, spec.train.seq_len, e, seed, ctx.out)
    task.update(info="risk checks")
    canaries = json.loads((ctx.inputs["tokenize"].path / "canaries.json").read_text())
    train_texts = read_texts(split_path(split_dir, "train", ".parquet"))
    risk = risk_checks(model, tok, spec.risk, e.prompts, train_texts, [d["text"] for d in val_docs], canaries, seed)
    samples = [{"prompt": p, "completion": generate_text(model, tok, p, e.max_new_tokens, e.temperature, e.top_k,
                                                        seed=seed)} for p in e.prompts]
    (ctx.out / "metrics.json").write_text(json.dumps({"val": val, "sets": sets}, indent=2))
    (ctx.out / "risk.json").write_text(json.dumps(risk, indent=2))
    (ctx.out / "samples.json").write_text(json.dumps(samples, indent=2))
    summary = {"val": {k: val[k] for k in LM_FIGURES}, "risk": flatten(risk), "sets": flatten(sets)}
    if "generation" in val:
        summary["val"]["generation"] = val["generation"]
    lo, hi = val["ci"]["bits_per_byte"]
    return {**summary, "headline": f"val {val['bits_per_byte']:.3f} bits/byte [{lo:.3f}, {hi:.3f}] "
                                   f"(ppl {val['perplexity']:.1f}); risk: verbatim {risk.get('verbatim_rate', 0):.2f}, "
                                   f"canary exposure <= {risk.get('canary_max_exposure', 0):.1f} bits"}


@stage("save", deps=("pretrain", "tokenizer", "evaluate"))
def save(ctx: StageContext) -> dict:
    """Write the Hugging Face model directory (LlamaForCausalLM, safetensors, tokenizer) and register it."""
    from lmwright.model.hf import save_hf
    from lmwright.train.checkpoint import load_weights

    model = load_weights(ctx.inputs["pretrain"].path)
    tok = load_tokenizer(ctx.inputs["tokenizer"].path)
    save_hf(model, ctx.inputs["tokenizer"].path, ctx.out, special_ids(tok))
    n_params = model.n_params()
    ctx.model = (ctx.spec.project.name, n_params, {"val": ctx.inputs["evaluate"].summary["val"]})
    return {"n_params": n_params, "format": "huggingface/llama", "headline": "LlamaForCausalLM + tokenizer"}


@stage("test", deps=("save", "split"), spec=("eval", "train.seq_len", "project.seed", "data.sources"))
def test(ctx: StageContext) -> dict:
    """The final evaluation of the saved model on the test split: once per model, recorded in the store."""
    from lmwright.evaluate.suite import LM_FIGURES
    from lmwright.evaluate.testset import final_evaluation

    res, warning = final_evaluation(ctx.ws, ctx.inputs["save"].path, ctx.inputs["save"].digest,
                                    ctx.spec.project.name, ctx.inputs["split"].path, ctx.inputs["split"].digest,
                                    "pipeline", ctx.reporter)
    if warning:
        ctx.log(warning)
    (ctx.out / "metrics.json").write_text(json.dumps({"test": res}, indent=2))
    lo, hi = res["ci"]["bits_per_byte"]
    return {"test": {k: res[k] for k in LM_FIGURES}, "repeated": warning is not None,
            "headline": f"test {res['bits_per_byte']:.3f} bits/byte [{lo:.3f}, {hi:.3f}], recorded"}


def _finetune_facts(kind: str):
    """What a fine-tuning stage's result depends on beyond the spec: its data files' and base model's contents."""
    def facts(ws) -> dict:
        from lmwright.core.artifacts import file_digest

        r, base = getattr(ws.spec.finetune, kind), ws.spec.finetune.base
        files = {f: file_digest(Path(f)) for f in (r.data, r.val_data) if f and Path(f).exists()}
        if base:
            from lmwright.api import resolve_model

            files["base"] = resolve_model(ws, base)[2]
        return files
    return facts


def _finetune_stage(ctx: StageContext, kind: str, registered_as: str) -> dict:
    from lmwright.finetune.recipes import RECIPES

    ft = ctx.spec.finetune
    recipe = getattr(ft, kind)
    if not recipe.enabled:
        return {"skipped": True, "headline": f"off (finetune.{kind}.enabled: false; `lmwright finetune {kind}` "
                                              "runs it)"}
    if ft.base:
        from lmwright.api import resolve_model

        base_dir, base_name, _ = resolve_model(ctx.ws, ft.base)
    else:
        base_dir, base_name = ctx.inputs["save"].path, ctx.spec.project.name
    if ft.nproc > 1:
        from lmwright.train.distributed import launch

        job = {"spec": ctx.spec.model_dump(mode="json"), "kind": kind, "base_dir": str(base_dir),
               "base_name": base_name, "split_dir": str(ctx.inputs["split"].path), "out": str(ctx.out),
               "work": str(ctx.work)}
        ctx.log(f"  finetune {kind}: launching {ft.nproc} processes (DDP) with torchrun")
        res = launch(job, ft.nproc, ctx.work, module="lmwright.finetune.worker")
        (ctx.out / "result.json").unlink()
    else:
        res = RECIPES[kind](ctx.spec, base_dir, base_name, ctx.inputs["split"].path, ctx.out, ctx.work,
                            ctx.reporter)
    from safetensors.torch import load_file

    n_params = sum(t.numel() for t in load_file(str(ctx.out / "model" / "model.safetensors")).values())
    name = f"{ctx.spec.project.name}-{registered_as}"
    figures = {k: v for k, v in res["tuned"].items() if isinstance(v, int | float)}
    ctx.model = (name, n_params, {"finetune": {kind: figures}, "base": base_name})
    b, t = res["base"], res["tuned"]
    key = {"sft": "rouge_l", "classify": "f1_macro", "preference": "likelihood_accuracy"}[kind]
    head = f"{key} {b.get(key, float('nan')):.3f} -> {t.get(key, float('nan')):.3f} ({ft.method}, {res['seconds']:.0f} s)"
    return {"task": kind, "base": base_name, "registered_as": name, "method": ft.method, "seconds": res["seconds"],
            "ci": res.get("ci", {}),
            "base_figures": {k: v for k, v in b.items() if isinstance(v, int | float)}, "tuned_figures": figures,
            "data": res["data"], "headline": head}


# each recipe's fingerprint: the settings all three share and its own sub-section (changing SFT's steps does not
# retrain the classifier)
_FT_COMMON = tuple(f"finetune.{k}" for k in FinetuneSpec.model_fields if k not in ("sft", "classify", "preference"))


@stage("sft", deps=("save", "split"), spec=(*_FT_COMMON, "finetune.sft", "project", "train"),
       extra=_finetune_facts("sft"), enabled=lambda spec: spec.finetune.sft.enabled, resumable=True)
def sft(ctx: StageContext) -> dict:
    """Fine-tune the model into an assistant on instructions (SFT), registered as PROJECT-assistant."""
    return _finetune_stage(ctx, "sft", "assistant")


@stage("classify", deps=("save", "split"), spec=(*_FT_COMMON, "finetune.classify", "project", "train"),
       extra=_finetune_facts("classify"), enabled=lambda spec: spec.finetune.classify.enabled, resumable=True)
def classify(ctx: StageContext) -> dict:
    """Fine-tune the model into a classifier with a classification head, registered as PROJECT-classifier."""
    return _finetune_stage(ctx, "classify", "classifier")


@stage("preference", deps=("save", "split"), spec=(*_FT_COMMON, "finetune.preference", "project", "train"),
       extra=_finetune_facts("preference"), enabled=lambda spec: spec.finetune.preference.enabled, resumable=True)
def preference(ctx: StageContext) -> dict:
    """Preference-tune the model with DPO on chosen/rejected pairs, registered as PROJECT-preferred."""
    return _finetune_stage(ctx, "preference", "preferred")


def _with_ci(value: float, summary: dict, side: str, metric: str) -> str:
    lo_hi = summary.get("ci", {}).get(side, {}).get(metric)
    return f"{value:.4f}" + (f" [{lo_hi[0]:.3f}, {lo_hi[1]:.3f}]" if lo_hi else "")


def _finetune_sections(inp, out: Path) -> list:
    """The fine-tuned models against their base on held-out rows, one table; examples and the confusion matrix."""
    from lmwright.evaluate.report import Section

    rows = [["recipe", "registered as", "metric", "base", "fine-tuned", "method", "train rows", "wall time"]]
    extra = []
    for kind, metrics in (("sft", ("rouge_l", "val_loss")), ("classify", ("accuracy", "f1_macro", "roc_auc")),
                          ("preference", ("likelihood_accuracy", "dpo_loss"))):
        o = inp.get(kind)
        if o is None or o.summary.get("skipped"):
            continue
        sm = o.summary
        for m in metrics:
            b, t = sm["base_figures"].get(m), sm["tuned_figures"].get(m)
            if b is not None and t is not None:
                rows.append([kind, sm["registered_as"], m, _with_ci(b, sm, "base", m), _with_ci(t, sm, "tuned", m),
                             sm["method"], f"{sm['data'].get('train', 0):,}", f"{sm['seconds']:.0f} s"])
        res = json.loads((o.path / "metrics.json").read_text())
        if res.get("examples"):
            extra.append(Section("Fine-tuned assistant: held-out instructions", table=[
                ["instruction", "reference", "base model", "fine-tuned"]] + [
                [e["instruction"], e["reference"], e["base"][:120], e["tuned"][:120]] for e in res["examples"]]))
        if (o.path / "confusion.png").exists():
            shutil.copyfile(o.path / "confusion.png", out / "finetune_confusion.png")
            extra.append(Section("Fine-tuned classifier: confusion matrix (held-out)", image="finetune_confusion.png"))
    if len(rows) == 1:
        return []
    return [Section("Fine-tuning", table=rows, text="Each fine-tuned model against the model it started from, on "
                    "held-out rows (made from the validation split's documents unless a file was given), with "
                    "bootstrap intervals over the held-out examples where there are per-example scores. The base "
                    "classifies zero-shot (each label's likelihood); the tuned classifier uses its trained head."),
            *extra]


def _report_facts(ws) -> dict:
    """The report also shows the latest tuning and cross-validation outputs: rerun it when they change."""
    from lmwright.core.artifacts import file_digest

    files = [ws.out_dir / "tune" / "trials.csv", ws.out_dir / "cv" / "results.json"]
    return {f.parent.name: file_digest(f) if f.exists() else None for f in files}


def _previous_version(ws, name: str, digest: str) -> dict | None:
    """The model registered under the same name before this one, with its validation and test figures."""
    from lmwright.core.store import Store
    from lmwright.evaluate.suite import flatten

    store = Store(ws.store_url)
    models = [m for m in store.models() if m.name == name]
    mine = [i for i, m in enumerate(models) if m.digest == digest]
    older = [m for m in models[: mine[0] if mine else len(models)] if m.digest != digest]
    if not older:
        return None
    prev = older[-1]
    metrics = flatten(prev.metrics)
    tests = store.test_evaluations(prev.digest)
    if tests:  # its first (the recorded) test evaluation
        keep = ("loss", "perplexity", "bits_per_byte")
        metrics.update({f"test.{k}": v for k, v in tests[0].metrics.items()
                        if k in keep or k.startswith("generation.")})
    return {"digest": prev.digest, "at": f"{prev.created_at:%Y-%m-%d %H:%M}", "metrics": metrics}


@stage("report", deps=("collect", "clean", "dedup", "split", "tokenizer", "tokenize", "pretrain", "evaluate",
                       "save", "test", "sft", "classify", "preference"), spec=("*",), extra=_report_facts)
def report(ctx: StageContext) -> dict:
    """Write the report card (report.md, report.html and its plots): requirements, metrics with intervals,
    the previous version, data, model, training and tuning, slices, risk, samples."""
    from lmwright.evaluate import card
    from lmwright.evaluate.report import Section, lr_curve, render_html, render_markdown, training_curve
    from lmwright.evaluate.suite import check_requirements, flatten

    s, inp = ctx.spec, ctx.inputs
    history = json.loads((inp["pretrain"].path / "history.json").read_text())
    training_curve(history, ctx.out / "training_curve.png")
    lr_curve(history, ctx.out / "lr_curve.png")
    data_rows = [["stage", "read", "kept", "removed (by reason)", "quarantined"]]
    for name in ("collect", "clean", "dedup", "split"):
        m = inp[name].summary
        removed = ", ".join(f"{k}: {v:,}" for k, v in m["removed"].items()) or "0"
        data_rows.append([name, f"{m['read']:,}", f"{m['kept']:,}", removed, f"{m['quarantined']:,}"])
    split_rows = [["split", "documents", "tokens"]] + [
        [k, f"{inp['split'].summary['splits'][k]:,}", f"{inp['tokenize'].summary['tokens'][k]:,}"] for k in SPLITS]
    model_cfg = json.loads((inp["pretrain"].path / "model_config.json").read_text())
    pt = inp["pretrain"].summary
    model_rows = [["field", "value"], ["architecture", "LlamaForCausalLM"], ["parameters", f"{pt['n_params']:,}"],
                  *[[k, str(v)] for k, v in model_cfg.items()],
                  ["initialisation", f"{s.model.init} (std {s.model.init_std})"
                                     + (", zero-init output projections" if s.model.zero_init_output else "")
                                     + f", seed {s.project.seed}"],
                  ["optimizer", f"{s.train.optimizer}, lr {s.train.lr}"
                                + (f" (Muon matrices {s.train.muon_lr})" if s.train.optimizer == "muon" else "")
                                + f", weight decay {s.train.weight_decay} (matrices)"],
                  ["precision", f"{pt.get('precision', 'fp32')}, {pt.get('nproc', 1)} process(es)"],
                  ["schedule", f"{s.train.warmup_steps} warmup steps, then {s.train.schedule} to "
                               f"{s.train.min_lr_ratio} x lr"],
                  ["training steps", str(pt["steps"])], ["training tokens", f"{pt['tokens']:,}"],
                  ["training time", f"{pt['train_seconds']:.0f} s ({pt['tokens_per_s']:,} tokens/s, "
                                    f"MFU {100 * pt.get('mfu', 0):.1f}% of a peak of "
                                    f"{pt.get('peak_tflops', 0):.3g} TFLOP/s per process: "
                                    f"{pt.get('peak_source', 'a measured matmul')})"]]
    val = json.loads((inp["evaluate"].path / "metrics.json").read_text())
    test = json.loads((inp["test"].path / "metrics.json").read_text())["test"]
    risk = json.loads((inp["evaluate"].path / "risk.json").read_text())
    splits = {"val": val["val"], "test": test}
    results = {**splits, "risk": risk, "sets": val["sets"]}
    checks = check_requirements(s.requirements.criteria(), results)
    current = flatten({k: {m: v for m, v in r.items() if m in ("loss", "perplexity", "bits_per_byte", "generation")}
                       for k, r in splits.items()})
    previous = _previous_version(ctx.ws, s.project.name, inp["save"].digest)
    for f in val["sets"].values():
        if f.get("confusion_png"):
            shutil.copyfile(inp["evaluate"].path / f["confusion_png"], ctx.out / f["confusion_png"])
    samples = json.loads((inp["evaluate"].path / "samples.json").read_text())
    src = inp["collect"].summary["by_source"]
    passed = sum(c["verdict"] == "pass" for c in checks)
    lo, hi = test["ci"]["bits_per_byte"]
    sections = [
        Section("Summary", text=f"Project '{s.project.name}': {inp['collect'].summary['read']:,} documents read from "
                f"{', '.join(f'{k} ({v:,})' for k, v in src.items())}; a {pt['n_params'] / 1e6:.2f}M-parameter "
                f"Llama model trained for {pt['steps']} steps reaches {val['val']['bits_per_byte']:.3f} bits per byte "
                f"on validation and {test['bits_per_byte']:.3f} [{lo:.3f}, {hi:.3f}] on test (evaluated once). "
                f"{passed} of {len(checks)} acceptance criteria pass."),
        card.requirements_section(checks),
        *card.metrics_section(splits, s.eval.confidence),
        card.comparison_section(previous, current),
        Section("Data", table=data_rows),
        Section("Splits", table=split_rows,
                text=f"Tokenizer: byte-level BPE, vocabulary {inp['tokenizer'].summary['vocab_size']:,}, "
                     f"{inp['tokenizer'].summary['bytes_per_token']} bytes per token on train text."),
        Section("Model", table=model_rows),
        Section("Training curve", image="training_curve.png"),
        Section("Learning rate", image="lr_curve.png"),
        *[x for x in (card.tuning_section(ctx.ws.out_dir / "tune", ctx.out),
                      card.cv_section(ctx.ws.out_dir / "cv" / "results.json")) if x],
        *_finetune_sections(inp, ctx.out),
        *card.slices_section(splits),
        *card.sets_sections(val["sets"]),
        *card.risk_sections(risk),
        Section("Samples", text=f"Continuations of fixed prompts (temperature {s.eval.temperature}).",
                items=[(x["prompt"], x["completion"]) for x in samples]),
        Section("Held-out continuations", text="The generation task: prompt, then the model's continuation; "
                "the reference follows in the table.",
                table=[["prompt", "model", "reference"]] + [[c["prompt"][-80:], c["prediction"], c["reference"]]
                                                            for c in val["val"].get("continuations", [])]),
        Section("Spec", code=dump_spec(s)),
    ]
    title = f"lmwright report card: {s.project.name}"
    (ctx.out / "report.md").write_text(render_markdown(title, sections), encoding="utf-8")
    (ctx.out / "report.html").write_text(render_html(title, sections), encoding="utf-8")
    (ctx.out / "requirements.json").write_text(json.dumps(checks, indent=2))
    return {"requirements": {"passed": passed, "total": len(checks)},
            "headline": f"report card: {passed}/{len(checks)} requirements pass; report.md, report.html"}
