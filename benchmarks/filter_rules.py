"""What each quality rule group and each profile keeps of the default corpus, and how fast each runs.

Collects the default pydocs corpus (cached in the given project directory), then applies each rule group on
its own with its published thresholds over every collected document, and each built-in profile end to end.

    pip install -e ".[bench]"          # from the repository root
    python benchmarks/filter_rules.py [--dir DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from lmwright.core.pipeline import run_pipeline
from lmwright.core.progress import Reporter
from lmwright.core.workspace import Workspace
from lmwright.data.filters import FILTERS, apply_profile
from lmwright.data.filters.normalise import clean_text
from lmwright.stages.registry import STAGES


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    ws = Workspace.open(args.dir or Path(tempfile.mkdtemp(prefix="lmwright-filters-")))
    collected = run_pipeline(ws, STAGES, until="collect", reporter=Reporter(quiet=True))["collect"]
    texts = [clean_text(t, ws.spec.data.clean)
             for t in pq.read_table(collected.path / "docs.parquet", columns=["text"]).column("text").to_pylist()]
    prose = ws.spec.data.profiles["prose"]
    result: dict = {"documents": len(texts), "rules": {}, "profiles": {}}
    for field, fn in FILTERS:
        t0 = time.perf_counter()
        reasons = Counter(fn(t, getattr(prose, field))[1] for t in texts)
        seconds = time.perf_counter() - t0
        result["rules"][field] = {"kept": reasons.pop(None, 0), "docs_per_s": round(len(texts) / seconds),
                                  "removed": dict(reasons.most_common(4))}
    for name, profile in ws.spec.data.profiles.items():
        reasons = Counter(apply_profile(t, profile)[1] for t in texts)
        result["profiles"][name] = {"kept": reasons.pop(None, 0), "removed": dict(reasons.most_common(3))}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['documents']:,} documents")
    for group in ("rules", "profiles"):
        for name, r in result[group].items():
            speed = f"{r['docs_per_s']:>7,} docs/s" if "docs_per_s" in r else ""
            print(f"{group[:-1]:<8} {name:<18} kept {r['kept']:>6,} {speed}  {r['removed']}")


if __name__ == "__main__":
    main()
