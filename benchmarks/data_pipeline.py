"""The same data pipeline in lmwright and in datatrove, on the same corpus, in one run.

Pipeline: Gopher quality + Gopher repetition filters (published thresholds), then MinHash near-dedup
(5-gram shingles, 14 bands x 8 rows). Corpus: the default pydocs documents plus planted near-copies (one or
two words changed in a document of at least 60 words), as two JSONL files. Both tools use 2 workers.

Printed: documents/s for each and the ratio; near-duplicate recall for each = the share of planted pairs
(among those where both documents survived that tool's filters) that its dedup collapsed to one.

    pip install -e ".[bench]"          # from the repository root: datatrove, spaCy, orjson, xxhash < 4
    python benchmarks/data_pipeline.py [--planted 300] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import yaml

import lmwright
from lmwright.core.progress import Reporter


def build_corpus(root: Path, planted: int, seed: int = 0) -> tuple[list[dict], list[tuple[str, str]]]:
    proj = root / "collect"
    proj.mkdir(parents=True)
    out = lmwright.run(proj, until="collect", reporter=Reporter(quiet=True))["collect"]
    docs = [{"id": d["id"], "text": d["text"]} for d in pq.read_table(out.path / "docs.parquet").to_pylist()]
    rng = random.Random(seed)
    long_docs = [d for d in docs if len(d["text"].split()) >= 60]
    pairs = []
    for i, d in enumerate(rng.sample(long_docs, min(planted, len(long_docs)))):
        words = d["text"].split(" ")
        for k in range(rng.randint(1, 2)):
            words[rng.randrange(len(words))] = f"planted{k}"
        copy = {"id": f"planted-{i:05d}", "text": " ".join(words)}
        docs.append(copy)
        pairs.append((d["id"], copy["id"]))
    rng.shuffle(docs)
    data = root / "corpus"
    data.mkdir()
    half = len(docs) // 2
    for n, part in enumerate((docs[:half], docs[half:])):
        (data / f"part{n}.jsonl").write_text("".join(json.dumps(d) + "\n" for d in part))
    return docs, pairs


def recall(pairs, survived_filters: set[str], final: set[str]) -> tuple[float, int]:
    eligible = [(a, b) for a, b in pairs if a in survived_filters and b in survived_filters]
    caught = sum(1 for a, b in eligible if not (a in final and b in final))
    return caught / max(1, len(eligible)), len(eligible)


THRESHOLD: float | None = None  # --threshold: lmwright's near-dup threshold; None = its default


def run_lmwright(root: Path, n_docs: int) -> dict:
    proj = root / "lmwright"
    proj.mkdir()
    shutil.copytree(root / "corpus", proj / "corpus")
    off = {"enabled": False}
    spec = {"data": {
        "sources": [{"kind": "files", "paths": ["corpus/*.jsonl"], "profile": "bench"}],
        "executor": {"workers": 2},
        "clean": {"fix_unicode": False, "normalize": "none", "strip_control": False},
        "pii": off,
        "profiles": {"bench": {"basic": off, "language": off, "c4": off, "fineweb": off, "blocklist": off}},
        "dedup": {"exact": False, "near": {"shingle_size": 5, **({"threshold": THRESHOLD} if THRESHOLD else {})}},
    }}
    (proj / "lmwright.yaml").write_text(yaml.safe_dump(spec))
    t0 = time.perf_counter()
    out = lmwright.run(proj, until="dedup", reporter=Reporter(quiet=True))
    seconds = time.perf_counter() - t0
    def locs_to_ids(path: Path) -> set[str]:
        # files-source documents get new ids; map back through the JSONL line (locator = file:line)
        return set(pq.read_table(path, columns=["locator"]).column("locator").to_pylist())

    line_ids = {}
    for f in sorted((proj / "corpus").glob("*.jsonl")):
        for n, line in enumerate(f.read_text().splitlines(), start=1):
            line_ids[f"corpus/{f.name}:{n}"] = json.loads(line)["id"]
    survived = {line_ids[x] for x in locs_to_ids(out["clean"].path / "docs.parquet")}
    final = {line_ids[x] for x in locs_to_ids(out["dedup"].path / "docs.parquet")}
    return {"seconds": seconds, "docs_per_s": n_docs / seconds, "survived_filters": len(survived),
            "final": len(final), "survived_ids": survived, "final_ids": final}


def run_datatrove(root: Path, n_docs: int) -> dict:
    from datatrove.executor.local import LocalPipelineExecutor
    from datatrove.pipeline.dedup import MinhashDedupSignature
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
    )
    from datatrove.pipeline.filters import GopherQualityFilter, GopherRepetitionFilter
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    w = root / "datatrove"
    cfg = MinhashConfig(n_grams=5, num_buckets=14, hashes_per_bucket=8)
    logs = str(w / "logs")
    t0 = time.perf_counter()
    LocalPipelineExecutor([JsonlReader(str(root / "corpus")), GopherQualityFilter(), GopherRepetitionFilter(),
                           JsonlWriter(str(w / "filtered"))], tasks=2, workers=2, logging_dir=logs + "/0").run()
    LocalPipelineExecutor([JsonlReader(str(w / "filtered")), MinhashDedupSignature(str(w / "sigs"), config=cfg)],
                          tasks=2, workers=2, logging_dir=logs + "/1").run()
    LocalPipelineExecutor([MinhashDedupBuckets(str(w / "sigs"), str(w / "buckets"), config=cfg)],
                          tasks=cfg.num_buckets, workers=2, logging_dir=logs + "/2").run()
    LocalPipelineExecutor([MinhashDedupCluster(str(w / "buckets"), str(w / "remove"), config=cfg)],
                          tasks=1, logging_dir=logs + "/3").run()
    LocalPipelineExecutor([JsonlReader(str(w / "filtered")), MinhashDedupFilter(str(w / "remove")),
                           JsonlWriter(str(w / "final"))], tasks=2, workers=2, logging_dir=logs + "/4").run()
    seconds = time.perf_counter() - t0

    def ids(folder: Path) -> set[str]:
        import gzip

        out = set()
        for f in folder.rglob("*.jsonl*"):
            opener = gzip.open if f.suffix == ".gz" else open
            with opener(f, "rt") as fh:
                out.update(json.loads(line)["id"] for line in fh)
        return out

    survived, final = ids(w / "filtered"), ids(w / "final")
    return {"seconds": seconds, "docs_per_s": n_docs / seconds, "survived_filters": len(survived),
            "final": len(final), "survived_ids": survived, "final_ids": final}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--planted", type=int, default=300)
    ap.add_argument("--threshold", type=float, help="lmwright's near-duplicate threshold (default: its own)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    global THRESHOLD
    THRESHOLD = args.threshold
    root = Path(tempfile.mkdtemp(prefix="lmwright-datapipe-"))
    docs, pairs = build_corpus(root, args.planted)
    result: dict = {"documents": len(docs), "planted_pairs": len(pairs)}
    runs = {name: fn(root, len(docs)) for name, fn in (("datatrove", run_datatrove), ("lmwright", run_lmwright))}
    both = set.intersection(*(r["survived_ids"] for r in runs.values()))  # pairs both tools' filters kept
    for name, r in runs.items():
        rec, eligible = recall(pairs, r.pop("survived_ids"), r["final_ids"])
        rec_common, common = recall(pairs, both, r.pop("final_ids"))
        result[name] = {**{k: round(v, 2) if isinstance(v, float) else v for k, v in r.items()},
                        "near_dup_recall": round(rec, 3), "eligible_pairs": eligible,
                        "recall_on_common_pairs": round(rec_common, 3), "common_pairs": common}
    result["throughput_ratio"] = round(result["lmwright"]["docs_per_s"] / result["datatrove"]["docs_per_s"], 2)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for k, v in result.items():
            print(f"{k:<18} {v}")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
