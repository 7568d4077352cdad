"""How well and how fast the PII detector works: precision and recall per type on the labelled sets, and
`redact` throughput on the default corpus.

Scores `find_pii` (IP scope `public`, the policy the gold labels follow) on every `tests/data/pii_*.jsonl`
file: `pii_labelled.jsonl` (hand-written), `pii_hard.jsonl` (hand-written hard cases), `pii_blind.jsonl` (343
lines written by an annotator who had not seen the detector: logs, tickets, configs, commands, prose in seven
languages) and `pii_wild.jsonl`
(built by `benchmarks/pii_set.py` from real-world formats). A span counts when its type and exact text match a
gold span of its line. Then times `redact` over every document of the default corpus (the stdlib docstrings,
collected in a few seconds) and over the labelled lines, which are dense in PII. `--baseline FILE` scores and
times another version of `pii.py` in the same run (e.g. a copy of the previous one) and prints the ratios.

    pip install -e ".[bench]"          # from the repository root (the labelled sets are in tests/data/)
    python benchmarks/pii.py [--baseline OLD_PII_PY] [--misses] [--no-speed] [--json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from collections import Counter
from pathlib import Path
from types import ModuleType

DATA = Path(__file__).parent.parent / "tests" / "data"


def load(path: Path | None) -> ModuleType:
    if path is None:
        from lmwright.data.filters import pii

        return pii
    spec = importlib.util.spec_from_file_location("pii_baseline", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["pii_baseline"] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def score(pii: ModuleType, rows: list[dict]) -> tuple[dict, list[dict]]:
    """Per type and overall: tp, fp, fn, precision, recall, support (gold spans); and the lines that differ."""
    tp, fp, fn = Counter(), Counter(), Counter()
    misses = []
    for row in rows:
        gold = Counter((t, s) for t, s in row["pii"])
        got = Counter((s.type, s.text) for s in pii.find_pii(row["text"]))
        for key, n in (gold & got).items():
            tp[key[0]] += n
        for key, n in (got - gold).items():
            fp[key[0]] += n
        for key, n in (gold - got).items():
            fn[key[0]] += n
        if gold != got:
            misses.append({"text": row["text"], "missed": sorted(gold - got), "extra": sorted(got - gold)})
    out = {}
    for t in sorted(set(tp) | set(fp) | set(fn)) + ["overall"]:
        a, b, c = (sum(x.values()) for x in (tp, fp, fn)) if t == "overall" else (tp[t], fp[t], fn[t])
        out[t] = {"precision": round(a / (a + b), 4) if a + b else 1.0, "recall": round(a / (a + c), 4) if a + c
                  else 1.0, "support": a + c, "tp": a, "fp": b, "fn": c}
    return out, misses


def corpus() -> list[str]:
    from lmwright.data.sources.pydocs import collect_pydocs
    from lmwright.spec import Spec

    return [d.text for d in collect_pydocs(Spec().data.sources[0])]


def speed(pii: ModuleType, texts: list[str], repeat: int = 3) -> dict:
    """Best of `repeat` passes of `redact` over the texts (the machine may be busy)."""
    best, spans = float("inf"), 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        spans = sum(sum(pii.redact(t)[1].values()) for t in texts)
        best = min(best, time.perf_counter() - t0)
    return {"docs_per_s": round(len(texts) / best), "mb_per_s": round(sum(map(len, texts)) / best / 1e6, 3),
            "spans": spans}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", type=Path, help="another pii.py to score and time in the same run")
    ap.add_argument("--misses", action="store_true", help="print the lines where the detector and gold differ")
    ap.add_argument("--no-speed", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    files = sorted(DATA.glob("pii_*.jsonl"))
    sets = {f.stem: [json.loads(line) for line in f.read_text().splitlines() if line.strip()] for f in files}
    sets["all"] = [r for rows in list(sets.values()) for r in rows]
    detectors = {"current": load(None)} | ({"baseline": load(args.baseline)} if args.baseline else {})
    result: dict = {"lines": {k: len(v) for k, v in sets.items()}, "detectors": {}}
    misses: dict = {}
    for name, pii in detectors.items():
        r = result["detectors"][name] = {"scores": {}}
        for set_name, rows in sets.items():
            r["scores"][set_name], m = score(pii, rows)
            if set_name == "all":
                misses[name] = m
    if not args.no_speed:
        docs, lines = corpus(), [r["text"] for r in sets["all"]]
        for name, pii in detectors.items():
            result["detectors"][name]["speed"] = {"pydocs": speed(pii, docs), "labelled": speed(pii, lines)}
        result["corpus"] = {"documents": len(docs), "characters": sum(map(len, docs))}
        if args.baseline:
            cur, base = (result["detectors"][n]["speed"]["pydocs"]["docs_per_s"] for n in ("current", "baseline"))
            result["speed_ratio"] = round(cur / base, 3)
    if args.misses:
        result["misses"] = misses
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
        return
    print("lines: " + ", ".join(f"{k} {v}" for k, v in result["lines"].items()))
    for name, r in result["detectors"].items():
        for set_name, table in r["scores"].items():
            print(f"\n{name} on {set_name}")
            print(f"  {'type':<12} {'precision':>9} {'recall':>7} {'support':>8} {'fp':>4} {'fn':>4}")
            for t, s in table.items():
                print(f"  {t:<12} {s['precision']:>9.3f} {s['recall']:>7.3f} {s['support']:>8} {s['fp']:>4} "
                      f"{s['fn']:>4}")
        if "speed" in r:
            p, lab = r["speed"]["pydocs"], r["speed"]["labelled"]
            print(f"\n{name} redact: {p['docs_per_s']:,} docs/s ({p['mb_per_s']} MB/s, {p['spans']} spans) on "
                  f"{result['corpus']['documents']:,} pydocs documents; {lab['docs_per_s']:,} lines/s on the "
                  f"labelled lines")
    if "speed_ratio" in result:
        print(f"\nspeed current / baseline on pydocs: {result['speed_ratio']:.2f}x")
    for name, m in misses.items() if args.misses else ():
        print(f"\n{name}: {len(m)} lines differ")
        for x in m:
            print(f"  {x['text']!r}\n    missed {x['missed']}  extra {x['extra']}")


if __name__ == "__main__":
    main()
