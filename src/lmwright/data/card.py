"""The dataset card (datasheet): a Hugging Face dataset-card README with YAML metadata, plus histograms.

Records what a reviewer needs to trust a dataset: license(s) and what each asks of a model trained on it
(`core/licenses.py`), languages, sources and their provenance, size and splits (the method and the leak check),
the labels documents carry and who made them, how it was curated (profiles and their rules), removals by reason
at every stage, PII found and redacted by type, the deduplication rate, and language and length histograms (PNG).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402

from lmwright.core.licenses import terms  # noqa: E402
from lmwright.data.document import doc_json  # noqa: E402


def size_category(n: int) -> str:
    for bound, label in [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                         (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")]:
        if n < bound:
            return label
    return "n>10M"


def histograms(languages: Counter, lengths: list[int], out: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=110)
    top = languages.most_common(12)
    ax.bar([k for k, _ in top], [v for _, v in top], color="#4c72b0")
    ax.set_ylabel("documents")
    ax.set_title("Detected language (kept documents)")
    fig.tight_layout()
    fig.savefig(out / "languages.png")
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=110)
    lo, hi = max(1, min(lengths or [1])), max(lengths or [10]) + 1
    ax.hist(lengths or [1], bins=np.logspace(np.log10(lo), np.log10(hi), 40), color="#55a868")
    ax.set_xscale("log")
    ax.set_xlabel("characters per document")
    ax.set_ylabel("documents")
    ax.set_title("Document length (kept documents)")
    fig.tight_layout()
    fig.savefig(out / "lengths.png")
    plt.close(fig)


def carried_stats(docs: list[dict]) -> dict[str, Any]:
    """What documents carry beyond their text: per label name, the documents with it, its values and the sources
    it came from; per meta field, the documents with it."""
    labels: dict[str, dict[str, Counter]] = {}
    meta: Counter = Counter()
    for d in docs:
        for name, value in doc_json(d, "labels").items():
            entry = labels.setdefault(name, {"values": Counter(), "sources": Counter()})
            entry["values"][str(value)] += 1
            entry["sources"][d.get("source_name") or "unknown"] += 1
        meta.update(doc_json(d, "meta").keys())
    return {"documents": len(docs), "labels": labels, "meta": meta}


def _label_origin(spec, source: str, name: str) -> tuple[str, str]:
    """(annotations_creators value, how the label was made) for label `name` of `source`'s documents."""
    src = next((s for s in spec.data.sources if s.name == source), None)
    if src is not None and src.kind == "pydocs":
        return "machine-generated", f"derived by code: the library chapter of the module (source {source})"
    if src is not None and src.kind == "sql":
        return "found", f"copied from the query's column `{name}` (source {source})"
    return "found", f"copied from the records' field `{name}` (source {source})"


def _split_lines(spec, st: dict) -> list[str]:
    """How the splits were drawn, and what the leak check removed."""
    cfg, method = spec.split, st.get("method", "hash")
    if method == "stratified":
        strata = st.get("strata", {})
        lines = [f"Splits are stratified by `{cfg.stratify_by}` (salt `{cfg.salt}`): within each of its "
                 f"{len(strata)} classes the documents are ordered by a hash of their id and cut so that each split "
                 f"holds its share (validation {cfg.val:g}, test {cfg.test:g}) to within one document; documents "
                 "without the label form the class `(missing)`. As the corpus grows, only documents next to a cut "
                 "can change split.", "", "| class | train | val | test |", "|---|---|---|---|"]
        top = sorted(strata.items(), key=lambda kv: -sum(kv[1].values()))
        lines += [f"| {k} | {v.get('train', 0):,} | {v.get('val', 0):,} | {v.get('test', 0):,} |" for k, v in top[:20]]
        if len(top) > 20:
            lines.append(f"| ({len(top) - 20} more classes) | | | |")
    elif method == "time":
        lines = [f"Splits are cut by the date in `{cfg.time_field}`: train before {cfg.train_before}, validation "
                 f"from {cfg.train_before} until {cfg.val_before}, test from {cfg.val_before} on; a document's split "
                 f"depends on its own date only. {st.get('quarantined', 0):,} documents without a readable date "
                 "were quarantined."]
    else:
        lines = [f"Splits are assigned by a hash of the document id (salt `{cfg.salt}`): a document never changes "
                 "split when the corpus grows."]
    leak = st.get("leak_check")
    if leak and leak.get("enabled"):
        lines += ["", f"Leak check: {leak['removed']:,} validation/test documents removed (`split_leak`) as near "
                      f"duplicates of a document in an earlier split ({leak['pairs']:,} pairs with MinHash estimated "
                      f"Jaccard ≥ {leak['threshold']}; listed in the split stage's `leaks.jsonl`)."]
    elif leak:
        lines += ["", "Leak check off (`split.leak_check: false`): validation and test may hold near duplicates "
                      "of training documents."]
    return lines


def _label_lines(spec, carried: dict[str, Any]) -> list[str]:
    labels, meta, total = carried["labels"], carried["meta"], carried["documents"]
    if not labels:
        lines = ["Documents carry no labels (`annotations_creators: no-annotation`)."]
    else:
        lines = ["| label | documents | share | top values | how it was made |", "|---|---|---|---|---|"]
        for name, e in sorted(labels.items(), key=lambda kv: (-kv[1]["values"].total(), kv[0])):
            n = e["values"].total()
            top = ", ".join(f"{v} ({c:,})" for v, c in e["values"].most_common(5))
            more = f" and {len(e['values']) - 5} more" if len(e["values"]) > 5 else ""
            how = "; ".join(_label_origin(spec, src, name)[1] for src in sorted(e["sources"]))
            lines.append(f"| {name} | {n:,} | {100 * n / max(1, total):.1f} % | {top}{more} | {how} |")
    if meta:
        lines += ["", "Documents also carry these record fields (`meta`): "
                  + ", ".join(f"{k} ({v:,} documents)" for k, v in sorted(meta.items())) + "."]
    return lines


def render_card(spec, stages: dict[str, dict], licenses: Counter, languages: Counter, lengths: list[int],
                carried: dict[str, Any] | None = None) -> str:
    split = stages["split"]["splits"]
    total = sum(split.values())
    carried = carried or {"documents": 0, "labels": {}, "meta": Counter()}
    creators = sorted({_label_origin(spec, src, name)[0] for name, e in carried["labels"].items()
                       for src in e["sources"]})
    meta = {
        "pretty_name": spec.project.name,
        "license": sorted(licenses) if len(licenses) > 1 else next(iter(licenses), "unknown"),
        "language": [k for k, _ in languages.most_common() if k in ("en",) or languages[k] >= 0.01 * total][:10],
        "size_categories": [size_category(total)],
        "task_categories": ["text-generation"] + (["text-classification"] if creators else []),
        "source_datasets": ["original"],
        "annotations_creators": creators or ["no-annotation"],
        "multilinguality": "monolingual" if len(languages) <= 1 or languages.most_common(1)[0][1] > 0.9 * total
        else "multilingual",
    }
    col, cl, dd = stages["collect"], stages["clean"], stages["dedup"]
    dedup_removed = sum(dd["removed"].values())
    lines = ["---", yaml.safe_dump(meta, sort_keys=False).strip(), "---", "", f"# Dataset card: {spec.project.name}", "",
             "## Sources", "", "| source | kind | license | filter profile | documents collected | what the license "
             "asks of a model trained on it (`core/licenses.py`) |", "|---|---|---|---|---|---|"]
    for s in spec.data.sources:
        t = terms(s.license)
        lines.append(f"| {s.name} | {s.kind} | {s.license} | {s.profile} | {col['by_source'].get(s.name, 0):,} | "
                     f"{t.why if t else 'unknown to the licence table: check it before publishing'} |")
    lines += ["", "Every document keeps a stable id (hash of source name and locator) and its `collected_at` time.", "",
              "## Size and splits", "", "| split | documents |", "|---|---|"]
    lines += [f"| {k} | {v:,} |" for k, v in split.items()]
    lines += ["", *_split_lines(spec, stages["split"]), "", "## Labels", "",
              *_label_lines(spec, carried),
              "", "## Curation", "", "| stage | read | kept | removed | quarantined |", "|---|---|---|---|---|"]
    for name in ("collect", "clean", "dedup", "split"):
        st = stages[name]
        lines.append(f"| {name} | {st['read']:,} | {st['kept']:,} | {sum(st['removed'].values()):,} | {st['quarantined']:,} |")
    lines += ["", "### Removals by reason", "", "| stage | reason | documents |", "|---|---|---|"]
    for name in ("clean", "dedup", "split"):
        for reason, n in sorted(stages[name]["removed"].items(), key=lambda kv: -kv[1]):
            lines.append(f"| {name} | {reason} | {n:,} |")
    pii = cl.get("pii", {})
    lines += ["", "### Personal data", "",
              f"PII detection {'on' if spec.data.pii.enabled else 'OFF'}; spans redacted with typed placeholders: "
              + (", ".join(f"{k} {v:,}" for k, v in sorted(pii.items())) or "none found") + ".", "",
              "### Deduplication", "",
              f"{dedup_removed:,} of {dd['read']:,} documents removed ({100 * dedup_removed / max(1, dd['read']):.1f} %): "
              f"{dd['removed'].get('exact_duplicate', 0):,} exact, {dd['removed'].get('near_duplicate', 0):,} near "
              f"(MinHash, {spec.data.dedup.near.num_perm} permutations, {spec.data.dedup.near.bands} bands, "
              f"Jaccard ≥ {spec.data.dedup.near.threshold}); of each group the smallest document id is kept.", "",
              "## Languages and lengths", "", "![languages](languages.png)", "", "![lengths](lengths.png)", "",
              f"Median length {int(np.median(lengths)) if lengths else 0:,} characters; "
              f"languages: {', '.join(f'{k} {v:,}' for k, v in languages.most_common(6))}.", ""]
    return "\n".join(lines)
