"""Text augmentation's effect on the default project's classifier, measured: the same classification fine-tune
(docstring -> library chapter) with `finetune.classify.augment.copies` = 0 and = N, on the same held-out rows;
macro-F1 and accuracy of each, their difference with a paired bootstrap 95% interval, and the robustness check's
figures (the drop in accuracy on typo'd, re-cased and re-spaced inputs), whatever they show.

    pip install -e ".[bench]"          # from the repository root
    python benchmarks/augment.py [--dir DIR] [--copies 1] [--json]

DIR is a project directory (default: a fresh default project in a temporary directory, built by the first
fine-tune: about 6 minutes on 2 cores); each fine-tune takes one to two minutes more.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, f1_score


def finetune(root: Path, copies: int) -> dict:
    r = subprocess.run([sys.executable, "-m", "lmwright", "finetune", "classify", "-C", str(root), "--json",
                        "--set", f"finetune.classify.augment.copies={copies}"], check=True, capture_output=True,
                       text=True)
    res = json.loads(r.stdout)
    res["predictions"] = json.loads((Path(res["path"]) / "predictions.json").read_text())
    return res


def paired_interval(y: np.ndarray, a: np.ndarray, b: np.ndarray, metric, n: int = 2000, seed: int = 0):
    """The 95% interval of metric(b) - metric(a) over bootstrap resamples of the same rows."""
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n):
        i = rng.integers(0, len(y), len(y))
        diffs.append(metric(y[i], b[i]) - metric(y[i], a[i]))
    return float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--copies", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="lmwright-augment-")) / "proj"
    if not (root / "lmwright.yaml").exists():
        subprocess.run([sys.executable, "-m", "lmwright", "init", str(root)], check=True, capture_output=True)
    runs = {c: finetune(root, c) for c in (0, args.copies)}
    p0, p1 = runs[0]["predictions"], runs[args.copies]["predictions"]
    assert p0["true"] == p1["true"] and p0["labels"] == p1["labels"], "the held-out rows differ between runs"
    y, a, b = (np.array(p0["true"]), np.array(p0["pred"]), np.array(p1["pred"]))

    def macro(t, p):
        return f1_score(t, p, average="macro", labels=range(len(p0["labels"])), zero_division=0)

    out = {"machine": f"{platform.machine()}, {platform.processor() or 'cpu'}", "held_out_rows": len(y),
           "classes": len(p0["labels"]), "copies": args.copies,
           "train_rows": {c: r["data"]["train"] for c, r in runs.items()},
           "f1_macro": {c: macro(y, np.array(r["predictions"]["pred"])) for c, r in runs.items()},
           "accuracy": {c: accuracy_score(y, np.array(r["predictions"]["pred"])) for c, r in runs.items()},
           "f1_macro_change_ci95": paired_interval(y, a, b, macro),
           "accuracy_change_ci95": paired_interval(y, a, b, accuracy_score),
           "risk": {c: {k: v for k, v in (r.get("risk") or {}).items() if isinstance(v, (int, float))}
                    for c, r in runs.items()},
           "seconds": {c: r.get("seconds") for c, r in runs.items()}}
    if args.json:
        print(json.dumps(out, indent=1))
        return
    print(f"classifier on {len(y)} held-out rows, {out['classes']} classes; augmented copies per training row: "
          f"0 vs {args.copies} (train rows {out['train_rows'][0]} vs {out['train_rows'][args.copies]})")
    for m in ("f1_macro", "accuracy"):
        lo, hi = out[f"{m}_change_ci95"]
        print(f"  {m}: {out[m][0]:.3f} -> {out[m][args.copies]:.3f}  (change {out[m][args.copies] - out[m][0]:+.3f}, "
              f"paired bootstrap 95% interval [{lo:+.3f}, {hi:+.3f}])")
    for c, r in out["risk"].items():  # the whole set is in --json
        print(f"  with {c} copies: robustness drop (macro-F1, typos/case/spacing) {r.get('robustness_drop', 0):+.3f}, "
              f"bias flip rate {r.get('bias_flip_rate', 0):.3f}")


if __name__ == "__main__":
    main()
