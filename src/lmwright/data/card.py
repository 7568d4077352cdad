"""The dataset card (datasheet): a Hugging Face dataset-card README with YAML metadata, plus histograms.

Records what a reviewer needs to trust a dataset: license(s) and what each asks of a model trained on it
(`core/licenses.py`), languages, sources and their provenance, size and splits, how it was curated (profiles and
their rules), removals by reason at every stage, PII found and redacted by type, the deduplication rate, and
language and length histograms (PNG).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402

from lmwright.core.licenses import terms  # noqa: E402


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


def render_card(spec, stages: dict[str, dict], licenses: Counter, languages: Counter, lengths: list[int]) -> str:
    split = stages["split"]["splits"]
    total = sum(split.values())
    meta = {
        "pretty_name": spec.project.name,
        "license": sorted(licenses) if len(licenses) > 1 else next(iter(licenses), "unknown"),
        "language": [k for k, _ in languages.most_common() if k in ("en",) or languages[k] >= 0.01 * total][:10],
        "size_categories": [size_category(total)],
        "task_categories": ["text-generation"],
        "source_datasets": ["original"],
        "annotations_creators": ["no-annotation"],
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
    lines += ["", f"Splits are assigned by a hash of the document id (salt `{spec.split.salt}`): a document never "
              "changes split when the corpus grows.", "", "## Curation", "",
              "| stage | read | kept | removed | quarantined |", "|---|---|---|---|---|"]
    for name in ("collect", "clean", "dedup"):
        st = stages[name]
        lines.append(f"| {name} | {st['read']:,} | {st['kept']:,} | {sum(st['removed'].values()):,} | {st['quarantined']:,} |")
    lines += ["", "### Removals by reason", "", "| stage | reason | documents |", "|---|---|---|"]
    for name in ("clean", "dedup"):
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
