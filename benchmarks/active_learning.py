"""Active learning on the default corpus's chapter task: uncertainty sampling against random sampling (issue 19).

The task is the one the default project's classifier learns: a stdlib docstring (its first 400 characters) -> its
library chapter. The documents are built as the default `pydocs` source builds them (every importable stdlib
module, the `technical` filter profile, PII redaction, exact duplicates dropped), and the chapters kept are the
default's: those with enough examples (at least 90 here, the 15 of `finetune.classify.min_examples: 80` on the
train split). A fixed stratified quarter is held out for scoring; the rest is the unlabelled pool.

A simulated annotator answers with the true label. Each run starts from --seed-size random pool items, then
adds --batch items per round, chosen at random or by the quick model's uncertainty (`lmwright.annotate.active`:
least confidence, margin, entropy), until --budget labels. After each round the quick model (`QuickModel`,
refitted on the labels so far) is scored on the held-out set (macro-F1 over the 15 chapters): a learning curve.
Every strategy of a seed starts from the same seed set; --seeds seeds give each point a mean and a 95% t-interval.

Reported: the curves; how many labels each strategy needs to reach (a) the macro-F1 random sampling reaches with
the whole budget and (b) 90% and 95% of the model fitted on the whole labelled pool; and the saving ratio
(random's labels / the strategy's). Labels-to-target are read off each seed's curve (linear interpolation
between rounds) and summarised by their mean and range over seeds.

Features are the quick model's own (TF-IDF of words and character n-grams, vocabulary from the labelled texts);
to avoid re-reading the texts each round, token counts are made once and each round's TF-IDF is computed from
them, checked at the start against the model's vectorizer.

    pip install -e ".[bench]"          # from the repository root
    python benchmarks/active_learning.py [--quick] [--seeds 5] [--budget 1500] [--batch 20] [--seed-size 20]
        [--model nb|logistic] [--workers N] [--csv FILE] [--png FILE] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import time
from collections import Counter
from dataclasses import asdict

import numpy as np
import scipy.sparse as sp
from scipy import stats
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.metrics import f1_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import normalize

from lmwright.annotate.active import METHODS, WORD_PATTERN, QuickModel, uncertainty

STRATEGIES = ("random", *METHODS)
MIN_EXAMPLES = 90


def corpus() -> list[dict]:
    """Chapter-classification rows from the installed stdlib's docstrings, cleaned as the default source is."""
    from lmwright.data.filters import apply_profile
    from lmwright.data.filters.normalise import clean_text
    from lmwright.data.filters.pii import redact
    from lmwright.data.sources.pydocs import collect_pydocs
    from lmwright.finetune.pydocs_tasks import classification
    from lmwright.spec.load import load_spec

    spec = load_spec(None)
    src = spec.data.sources[0]
    profile = spec.data.profiles[src.profile]
    docs, seen = [], set()
    for d in sorted((asdict(d) for d in collect_pydocs(src)), key=lambda d: d["id"]):  # the smallest id is kept
        text, reason = apply_profile(clean_text(d["text"], spec.data.clean), profile)
        if reason:
            continue
        text, _ = redact(text, spec.data.pii.types, ip_scope=spec.data.pii.ip_scope)
        if text not in seen:
            seen.add(text)
            docs.append({**d, "text": text})
    rows, texts = [], set()
    for r in classification(docs):  # the 400-character cut can make two documents one text: keep the first
        if r["text"] not in texts:
            texts.add(r["text"])
            rows.append(r)
    counts = Counter(r["label"] for r in rows)
    return [r for r in rows if counts[r["label"]] >= MIN_EXAMPLES]


class Counts:
    """Word and character n-gram counts of every text, once; `tfidf(rows)` is what `QuickModel.vectorizer()` fitted
    on those rows' texts gives for every text (the same tokens, vocabulary order, IDF and norms)."""

    def __init__(self, texts: list[str]):
        words = CountVectorizer(ngram_range=(1, 2), token_pattern=WORD_PATTERN)
        chars = CountVectorizer(analyzer="char_wb", ngram_range=(2, 5))
        self.blocks = []
        for vec in (words, chars):
            c = vec.fit_transform(texts).astype(np.float64).tocsc()
            c.data = 1.0 + np.log(c.data)  # sublinear tf
            self.blocks.append((c, c.tocsr()))

    def tfidf(self, rows: np.ndarray) -> sp.csr_matrix:
        out = []
        for csc, csr in self.blocks:
            df = np.bincount(csr[rows].indices, minlength=csc.shape[1])
            cols = np.flatnonzero(df)
            idf = np.log((1 + len(rows)) / (1 + df[cols])) + 1.0
            out.append(normalize(csc[:, cols] @ sp.diags(idf), copy=False))
        return sp.hstack(out, format="csr")


# Set before the worker processes fork, read by them.
_STATE: dict = {}


def check_features(texts: list[str], n: int = 60) -> float:
    rng = np.random.default_rng(0)
    rows = rng.choice(len(texts), n, replace=False)
    model = QuickModel()
    model._vec = QuickModel.vectorizer().fit([texts[i] for i in rows])
    want = model.features(texts[:200]).toarray()
    got = _STATE["counts"].tfidf(rows)[:200].toarray()
    return float(np.abs(want - got).max())


def run(job: tuple[int, str]) -> dict:
    """One strategy on one seed: the learning curve [(labels, macro-F1)] and the seconds per round."""
    seed, strategy = job
    s = _STATE
    pool, test, y, labels, args = s["pool"], s["test"], s["y"], s["labels"], s["args"]
    rng = np.random.default_rng(seed)
    picked = list(rng.choice(pool, args.seed_size, replace=False))  # the same seed set for every strategy
    rng = np.random.default_rng([seed, STRATEGIES.index(strategy)])
    curve, seconds = [], []
    while True:
        t0 = time.perf_counter()
        rows = np.array(picked)
        x = s["counts"].tfidf(rows)
        model = QuickModel(seed=seed, kind=args.model).fit_features(x[rows], y[rows])
        probs, classes = model.proba_features(x[test])
        pred = np.array(classes)[probs.argmax(1)]
        curve.append((len(picked), float(f1_score(y[test], pred, labels=labels, average="macro", zero_division=0))))
        if len(picked) >= args.budget:
            seconds.append(time.perf_counter() - t0)
            break
        left = np.setdiff1d(pool, rows)
        b = min(args.batch, args.budget - len(picked))
        if strategy == "random":
            new = rng.choice(left, b, replace=False)
        else:
            u = uncertainty(model.proba_features(x[left])[0], strategy)
            new = left[np.argsort(-u, kind="stable")[:b]]
        picked.extend(int(i) for i in new)
        seconds.append(time.perf_counter() - t0)
    return {"seed": seed, "strategy": strategy, "curve": curve, "seconds": seconds}


def labels_to(curve: list[tuple[int, float]], target: float) -> float | None:
    """The labels at which a curve first reaches `target`, interpolated between rounds; None if it never does."""
    for i, (n, f) in enumerate(curve):
        if f >= target:
            if i == 0:
                return float(n)
            n0, f0 = curve[i - 1]
            return n0 + (n - n0) * (target - f0) / (f - f0)
    return None


def interval(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    m = float(values.mean())
    if len(values) < 2:
        return m, m, m
    h = float(stats.t.ppf((1 + confidence) / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values)))
    return m, m - h, m + h


def summarise(results: list[dict], ceiling: float, budget: int) -> dict:
    by = {st: [r for r in results if r["strategy"] == st] for st in STRATEGIES}
    ns = [n for n, _ in by["random"][0]["curve"]]
    curves = {st: np.array([[f for _, f in r["curve"]] for r in rs]) for st, rs in by.items()}
    mean_curve = {st: [interval(c[:, j]) for j in range(len(ns))] for st, c in curves.items()}
    targets = {"random at the full budget": float(curves["random"][:, -1].mean()),
               "90% of the full-pool model": 0.9 * ceiling, "95% of the full-pool model": 0.95 * ceiling}
    reach: dict = {}
    for name, target in targets.items():
        reach[name] = {}
        for st, rs in by.items():  # on the mean curve; per seed for the spread
            mean = labels_to(list(zip(ns, curves[st].mean(0), strict=True)), target)
            per_seed = [labels_to(r["curve"], target) for r in rs]
            got = [v for v in per_seed if v is not None]
            reach[name][st] = {"labels": mean, "per_seed": per_seed, "min": min(got) if got else None,
                               "max": max(got) if got else None, "reached": f"{len(got)}/{len(rs)}"}
        base = reach[name]["random"]["labels"]
        for st in STRATEGIES:  # random's labels over the strategy's; a lower bound when random never got there
            mine = reach[name][st]["labels"]
            reach[name][st]["ratio"] = None if mine is None else (base or budget) / mine
            reach[name][st]["ratio_is_lower_bound"] = base is None and mine is not None
    secs = [s for r in results for s in r["seconds"]]
    return {"labels": ns, "curves": mean_curve, "targets": targets, "reach": reach,
            "round_seconds_median": float(np.median(secs))}


def report(s: dict, args, ceiling: float, n_pool: int, n_test: int, n_labels: int, wall: float) -> str:
    lines = [f"chapter task: {n_pool} pool / {n_test} held-out docstrings, {n_labels} chapters; quick model "
             f"{args.model}; seed set {args.seed_size}, batch {args.batch}, budget {args.budget}, {args.seeds} seeds; "
             f"full-pool model macro-F1 {ceiling:.3f}", "",
             "macro-F1 on the held-out set, mean [95% interval] over seeds", "",
             "| labels | " + " | ".join(STRATEGIES) + " |", "|---|" + "---|" * len(STRATEGIES)]
    ns = s["labels"]
    show = sorted({len(ns) - 1, *range(0, len(ns), max(1, len(ns) // 10))})
    for j in show:
        cells = [f"{m:.3f} [{lo:.3f}, {hi:.3f}]" for m, lo, hi in (s["curves"][st][j] for st in STRATEGIES)]
        lines.append(f"| {ns[j]} | " + " | ".join(cells) + " |")
    lines += ["", "labels to reach a macro-F1: on the mean curve [range over the seeds that reach it] "
              "(saving: random's labels / the strategy's)", "",
              "| target | " + " | ".join(STRATEGIES) + " |", "|---|" + "---|" * len(STRATEGIES)]
    for name, target in s["targets"].items():
        cells = []
        for st in STRATEGIES:
            r = s["reach"][name][st]
            if r["labels"] is None:
                cells.append(f"> {args.budget} ({r['reached']} seeds reach it)")
                continue
            spread = f" [{r['min']:.0f}, {r['max']:.0f}]" if r["min"] is not None else ""
            seen = "" if r["reached"].split("/")[0] == r["reached"].split("/")[1] else f" {r['reached']} seeds"
            ratio = "" if st == "random" else f" ({'>' if r['ratio_is_lower_bound'] else ''}{r['ratio']:.2f}x)"
            cells.append(f"{r['labels']:.0f}{spread}{seen}{ratio}")
        lines.append(f"| {name} ({target:.3f}) | " + " | ".join(cells) + " |")
    name = "random at the full budget"
    best = max(METHODS, key=lambda st: s["reach"][name][st]["ratio"] or 0.0)
    r = s["reach"][name][best]
    saving = "not reached" if r["labels"] is None else f"{r['labels']:.0f} labels, {r['ratio']:.2f}x fewer"
    lines += ["", f"ratio: {best} reaches random's full-budget macro-F1 ({s['targets'][name]:.3f} at {args.budget} "
              f"labels) with {saving}; quick model refit + scoring "
              f"{s['round_seconds_median'] * 1000:.0f} ms per round (median); wall {wall:.0f} s"]
    return "\n".join(lines)


def plot(s: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=80)
    for st in STRATEGIES:
        m = np.array(s["curves"][st])
        ax.plot(s["labels"], m[:, 0], label=st)
        ax.fill_between(s["labels"], m[:, 1], m[:, 2], alpha=0.2)
    ax.set_xlabel("labels")
    ax.set_ylabel("held-out macro-F1")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 seeds, a 400-label budget in batches of 40")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--budget", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--seed-size", type=int, default=20)
    ap.add_argument("--test-share", type=float, default=0.25)
    ap.add_argument("--model", default="nb", choices=QuickModel.KINDS)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--csv")
    ap.add_argument("--png")
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.quick:
        args.seeds, args.budget, args.batch = min(args.seeds, 2), min(args.budget, 400), 40
    t0 = time.perf_counter()
    rows = corpus()
    texts, y = [r["text"] for r in rows], np.array([r["label"] for r in rows])
    labels = sorted(set(y))
    pool, test = train_test_split(np.arange(len(rows)), test_size=args.test_share, stratify=y, random_state=0)
    pool, test = np.sort(pool), np.sort(test)
    _STATE.update(counts=Counts(texts), pool=pool, test=test, y=y, labels=labels, args=args)
    diff = check_features(texts)
    assert diff < 1e-9, f"the benchmark's TF-IDF differs from QuickModel's vectorizer by {diff}"
    full = _STATE["counts"].tfidf(pool)
    model = QuickModel(kind=args.model).fit_features(full[pool], y[pool])
    probs, classes = model.proba_features(full[test])
    ceiling = float(f1_score(y[test], np.array(classes)[probs.argmax(1)], labels=labels, average="macro",
                             zero_division=0))
    seeds = list(range(args.seeds))
    jobs = [(seed, st) for seed in seeds for st in STRATEGIES]
    if args.workers > 1:
        with mp.get_context("fork").Pool(args.workers) as p:
            results = p.map(run, jobs, chunksize=1)
    else:
        results = [run(j) for j in jobs]
    s = summarise(results, ceiling, args.budget)
    wall = time.perf_counter() - t0
    print(report(s, args, ceiling, len(pool), len(test), len(labels), wall))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
    if args.csv:
        with open(args.csv, "w") as f:
            f.write("strategy,labels,f1_mean,f1_low,f1_high\n")
            for st in STRATEGIES:
                for n, (m, lo, hi) in zip(s["labels"], s["curves"][st], strict=True):
                    f.write(f"{st},{n},{m:.4f},{lo:.4f},{hi:.4f}\n")
    if args.png:
        plot(s, args.png)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "ceiling": ceiling, "wall_s": wall, **s, "runs": results}, f, indent=1)


if __name__ == "__main__":
    main()
