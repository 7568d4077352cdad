"""Weight averaging and ensembles on the default project, measured against the single model with paired intervals.

For each of two seeds (`project.seed`, the default's 1337 and 1338) the default model is pretrained once, through
lmwright's own loop with `train.average` on (tail for the first seed, ema for the second: the loop's result is
checked against the same average kept beside it), while several more averages of the same trajectory are kept
from the loop's `on_step` hook (averaging never changes the weights the optimizer visits, so one run serves every
variant). Each variant and the trained (last) weights are scored on the whole validation split as the evaluate
stage scores it; the figure is bits per byte, the interval a paired bootstrap over documents of variant minus
trained weights. Then the two seeds' models as an ensemble (`evaluate/ensemble.py`, mean probabilities and mean
log-probabilities) against each; and the classify recipe fine-tuned on each seed's model, as a classifier
ensemble, and with `finetune.average: tail` against without on the first seed.

    python benchmarks/averaging.py [--dir DIR] [--quick] [--no-classify] [--ensembles-only] [--json]

DIR holds the project (default: a fresh default project in a temporary directory, an empty directory: the
embedded default spec). The full run pretrains twice (~7.5 minutes each on 2 cores) and fine-tunes three
classifiers (~1 minute each), about 20 minutes in all; the models it saves under DIR/.bench-averaging let
`--ensembles-only` redo the ensemble figures in a minute. `--quick` runs a small corpus and model in a few
minutes, to check the script. The figures go to DIR/.bench-averaging/results.json too.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

import lmwright
from lmwright.core.progress import Reporter
from lmwright.core.workspace import Workspace
from lmwright.data.document import read_docs
from lmwright.data.split import split_path
from lmwright.evaluate.ensemble import (
    COMBINE,
    classifier_probabilities,
    classify_ensemble,
    classify_figures,
    combine_logprobs,
    lm_ensemble,
)
from lmwright.evaluate.lm import doc_scores
from lmwright.evaluate.stats import bits_per_byte, paired_difference
from lmwright.model.hf import save_hf
from lmwright.spec.train import AverageSpec
from lmwright.tokenizer import load_tokenizer, special_ids
from lmwright.train.averaging import Averager
from lmwright.train.loop import pretrain

# the averages kept beside each run: name -> train.average settings
VARIANTS = {
    "ema 0.99, decay phase": {"kind": "ema", "ema_decay": 0.99},
    "ema 0.995, decay phase": {"kind": "ema", "ema_decay": 0.995},
    "ema 0.999, whole run": {"kind": "ema", "ema_decay": 0.999, "start": 0.0},
    "tail, decay phase": {"kind": "tail"},
    "tail, last 10%": {"kind": "tail", "start": 0.9},
    "tail, the decay's checkpoints": {"kind": "tail", "every": 50},
}
# what the loop itself averages in each seed's run (checked against the variant of the same settings)
IN_LOOP = [("tail", "tail, decay phase"), ("ema", "ema 0.99, decay phase")]
SEEDS = (1337, 1338)
QUICK = {  # a small corpus and model, to check the script end to end in a few minutes
    "data": {"sources": [{"kind": "pydocs", "modules": ["json", "textwrap", "string", "functools", "csv", "base64",
                                                        "shlex", "difflib", "argparse", "logging", "pathlib"],
                          "topics": False}]},
    "tokenizer": {"vocab_size": 1024},
    "model": {"n_layers": 2, "d_model": 64, "n_heads": 4, "n_kv_heads": 2, "max_seq_len": 128},
    "train": {"max_steps": 100, "seq_len": 128, "eval_every": 50, "checkpoint_every": 50},
    "finetune": {"steps": 30, "classify": {"min_examples": 10}, "sft": {"enabled": False}},
}


def bpb(s: dict, idx: np.ndarray) -> float:
    return bits_per_byte(s["text_nats"], s["bytes"], idx)


def pretrain_seed(root: Path, seed: int, loop_kind: str, reporter: Reporter, work: Path) -> dict:
    """One pretraining run from scratch (the hook must see every step) with the variants kept beside it:
    {"weights": {"trained (last step)": ..., variant: ...}, ...}."""
    shutil.rmtree(work, ignore_errors=True)
    over = [f"project.seed={seed}", f"train.average.kind={loop_kind}"]
    outs = lmwright.run(root, over, until="tokenize", reporter=reporter)
    spec = Workspace.open(root, over).spec
    tok_dir = outs["tokenizer"].path
    keepers: dict[str, Averager] = {}
    timing = {"seconds": 0.0}
    final: dict = {}

    def on_step(step, model):
        t0 = time.perf_counter()
        if not keepers:
            keepers.update({name: Averager(AverageSpec(**cfg), spec.train, model) for name, cfg in VARIANTS.items()})
        for a in keepers.values():
            a.update(step)
        if step == spec.train.max_steps:
            final.update({k: v.clone() for k, v in model.weights().items()})
        timing["seconds"] += time.perf_counter() - t0

    t0 = time.perf_counter()
    result = pretrain(spec, outs["tokenize"].path, load_tokenizer(tok_dir), work, reporter, on_step=on_step)
    wall = time.perf_counter() - t0
    weights = {"trained (last step)": final}
    for name, a in keepers.items():  # the trainable parameters averaged, anything else as trained
        weights[name] = {**final, **{k: v.detach().clone().cpu() for k, v in (a.avg or {}).items()}}
    loop_avg = result.model.weights()
    same = next(v for k, v in IN_LOOP if k == loop_kind)
    diff = max((loop_avg[k] - weights[same][k]).abs().max().item() for k in loop_avg)
    return {"weights": weights, "cfg": result.model.cfg, "tokenizer": tok_dir, "spec": spec, "split": outs["split"].path,
            "seconds": wall, "averaging_seconds": timing["seconds"], "loop_kind": loop_kind,
            "loop_vs_kept_max_abs_diff": diff, "history": result.history}


def score_variants(run: dict, texts: list[str], spec, tok) -> dict:
    from lmwright.model.llama import LlamaLM

    scores = {}
    for name, w in run["weights"].items():
        model = LlamaLM(run["cfg"])
        model.load_weights(w)
        scores[name] = doc_scores(model.eval(), tok, texts, spec.train.seq_len)
    return scores


def compare(scores: dict, e, seed: int) -> dict:
    raw = scores["trained (last step)"]
    n = len(raw["bytes"])
    out = {}
    for name, s in scores.items():
        row = {"bits_per_byte": bpb(s, np.arange(n))}
        if s is not raw:
            row["vs_trained"] = paired_difference(lambda i, s=s: bpb(s, i) - bpb(raw, i), n, e.bootstrap,
                                                  e.confidence, seed)
        out[name] = row
    return out


def model_dir(run: dict, name: str, out: Path) -> Path:
    from lmwright.model.llama import LlamaLM

    model = LlamaLM(run["cfg"])
    model.load_weights(run["weights"][name])
    tok = load_tokenizer(run["tokenizer"])
    save_hf(model, run["tokenizer"], out, special_ids(tok))
    return out


def classify(run: dict, base: Path, out: Path, reporter: Reporter, extra: dict | None = None) -> Path:
    from lmwright.finetune.recipes import RECIPES

    spec = run["spec"]
    if extra:
        spec = spec.model_copy(update={"finetune": spec.finetune.model_copy(update={"average": AverageSpec(**extra)})})
    (out / "out").mkdir(parents=True, exist_ok=True)
    RECIPES["classify"](spec, base, "base", run["split"], out / "out", out / "work", reporter)
    return out / "out" / "model"


def classify_rows(spec, split_dir: Path, labels: list[str]) -> tuple[list[str], list[int]]:
    from lmwright.finetune import pydocs_tasks
    from lmwright.finetune.recipes import load_rows

    with tempfile.TemporaryDirectory() as tmp:
        _, val, _ = load_rows("classify", spec.finetune.classify, split_dir, spec.project.seed, Path(tmp),
                              lambda docs, _s: pydocs_tasks.classification(docs))
    val = [r for r in val if r["label"] in labels]
    return [r["text"] for r in val], [labels.index(r["label"]) for r in val]


def train_part(root: Path, scratch: Path, reporter: Reporter, classify_too: bool) -> dict:
    """Pretrain each seed with the averages beside it and score them; save each seed's trained model (and
    fine-tune its classifier) under `scratch` for the ensembles."""
    runs = {seed: pretrain_seed(root, seed, kind, reporter, scratch / f"work-{seed}")
            for seed, (kind, _) in zip(SEEDS, IN_LOOP, strict=True)}
    spec = runs[SEEDS[0]]["spec"]
    tok = load_tokenizer(runs[SEEDS[0]]["tokenizer"])
    texts = [d["text"] for d in read_docs(split_path(runs[SEEDS[0]]["split"], "val", ".parquet"))]
    res: dict = {"steps": spec.train.max_steps, "seeds": {}}
    for seed, run in runs.items():
        res["seeds"][seed] = {"pretrain_seconds": round(run["seconds"], 1),
                              "averaging_seconds": round(run["averaging_seconds"], 2),
                              "in_loop": run["loop_kind"], "in_loop_vs_kept": run["loop_vs_kept_max_abs_diff"],
                              "variants": compare(score_variants(run, texts, spec, tok), spec.eval,
                                                  spec.project.seed)}
        base = model_dir(run, "trained (last step)", scratch / f"base-{seed}")
        if classify_too:
            classify(run, base, scratch / f"classify-{seed}", reporter)
    if classify_too:  # fine-tuning's own averaging, on the first seed
        classify(runs[SEEDS[0]], scratch / f"base-{SEEDS[0]}", scratch / f"classify-{SEEDS[0]}-tail", reporter,
                 {"kind": "tail"})
    return res


def ensemble_part(root: Path, scratch: Path, reporter: Reporter) -> dict:
    """The saved models of `train_part` as ensembles: each combine rule against each model, and the two rules
    against each other (logprob - prob, paired)."""
    from lmwright.evaluate.ensemble import EnsembleLM
    from lmwright.model.hf import load_hf

    spec = Workspace.open(root).spec
    e, seed = spec.eval, spec.project.seed
    split_dir = lmwright.run(root, until="split", reporter=reporter)["split"].path
    texts = [d["text"] for d in read_docs(split_path(split_dir, "val", ".parquet"))]
    bases = {f"seed {s}": scratch / f"base-{s}" for s in SEEDS}
    tok = load_tokenizer(bases[f"seed {SEEDS[0]}"])
    members = {name: load_hf(path) for name, path in bases.items()}
    res: dict = {"val_documents": len(texts), "lm_ensemble": {
        c: lm_ensemble(members, tok, texts, spec.train.seq_len, c, e.bootstrap, e.confidence, seed) for c in COMBINE}}
    both = {c: doc_scores(EnsembleLM(list(members.values()), c), tok, texts, spec.train.seq_len) for c in COMBINE}
    res["lm_logprob_minus_prob"] = paired_difference(lambda i: bpb(both["logprob"], i) - bpb(both["prob"], i),
                                                     len(texts), e.bootstrap, e.confidence, seed)
    dirs = {f"seed {s}": scratch / f"classify-{s}" / "out" / "model" for s in SEEDS}
    if not all((d / "config.json").exists() for d in dirs.values()):
        return res
    labels = json.loads((dirs[f"seed {SEEDS[0]}"] / "config.json").read_text())["id2label"]
    labels = [labels[str(i)] for i in range(len(labels))]
    ctexts, y = classify_rows(spec, split_dir, labels)
    tail_dir = scratch / f"classify-{SEEDS[0]}-tail" / "out" / "model"
    probas, _ = classifier_probabilities({**dirs, "tail": tail_dir}, ctexts,
                                         min(spec.finetune.classify.seq_len or spec.finetune.seq_len, 128))
    tail = probas.pop("tail")
    res["classify_ensemble"] = {c: classify_ensemble(probas, y, labels, c, e.bootstrap, e.confidence, seed)
                                for c in COMBINE}
    ens = {c: combine_logprobs([torch.from_numpy(np.log(np.clip(p, 1e-12, None))) for p in probas.values()], c)
           .exp().double().numpy() for c in COMBINE}
    res["classify_logprob_minus_prob"] = _paired_cls(ens["logprob"], ens["prob"], y, e, seed)
    plain = probas[f"seed {SEEDS[0]}"]
    res["classify_average"] = {"plain": _cls(plain, y, np.arange(len(y))), "tail": _cls(tail, y, np.arange(len(y))),
                               "tail_minus_plain": _paired_cls(tail, plain, y, e, seed)}
    return res


def _paired_cls(a: np.ndarray, b: np.ndarray, y, e, seed: int) -> dict:
    return {k: paired_difference(lambda i, k=k: _cls(a, y, i)[k] - _cls(b, y, i)[k], len(y), e.bootstrap,
                                 e.confidence, seed) for k in ("accuracy", "f1_macro", "log_loss")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-classify", action="store_true")
    ap.add_argument("--ensembles-only", action="store_true",
                    help="reuse the models a previous run of this script saved in DIR; only the ensembles")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="lmwright-averaging-"))
    root.mkdir(parents=True, exist_ok=True)
    if args.quick and not (root / "lmwright.yaml").exists():
        import yaml

        (root / "lmwright.yaml").write_text(yaml.safe_dump(QUICK, sort_keys=False))
    reporter = Reporter(quiet=args.json)
    scratch = root / ".bench-averaging"
    saved = scratch / "results.json"
    res: dict = json.loads(saved.read_text()) if args.ensembles_only and saved.exists() else {}
    res.update({"date": date.today().isoformat(), "quick": args.quick,
                "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"})
    if not args.ensembles_only:
        res.update(train_part(root, scratch, reporter, not args.no_classify))
    res.update(ensemble_part(root, scratch, reporter))
    if args.json:
        print(json.dumps(res, indent=2, default=float))
    else:
        report(res)
    saved.write_text(json.dumps(res, indent=2, default=float))


def _cls(p: np.ndarray, y, idx: np.ndarray) -> dict:
    return classify_figures(p, np.asarray(y), idx)


def _iv(d: dict) -> str:
    return f"{d['difference']:+.4f} [{d['ci'][0]:+.4f}, {d['ci'][1]:+.4f}]"


def report(res: dict) -> None:
    print(f"{res['date']} · {res['machine']} · {res['steps']} steps · {res['val_documents']} validation documents")
    for seed, s in res["seeds"].items():
        print(f"\nseed {seed}: pretrain {s['pretrain_seconds']} s (averaging {s['averaging_seconds']} s); the loop's "
              f"own {s['in_loop']} average vs the one kept beside it: max |diff| {s['in_loop_vs_kept']:.1e}")
        for name, row in s["variants"].items():
            vs = f"  {_iv(row['vs_trained'])}" if "vs_trained" in row else ""
            print(f"  {name:32s} {row['bits_per_byte']:.4f} bits/byte{vs}")
    for c, r in res["lm_ensemble"].items():
        print(f"\nLM ensemble ({c}): {r['ensemble']['bits_per_byte']:.4f} bits/byte")
        for name, m in r["members"].items():
            print(f"  {name:12s} {m['bits_per_byte']:.4f}  ensemble - model {_iv(r['vs'][name]['bits_per_byte'])}")
    for c, r in res.get("classify_ensemble", {}).items():
        e = r["ensemble"]
        print(f"\nclassifier ensemble ({c}), {r['examples']} examples: accuracy {e['accuracy']:.4f}, macro-F1 "
              f"{e['f1_macro']:.4f}, log-loss {e['log_loss']:.4f}")
        for name, m in r["members"].items():
            print(f"  {name:12s} acc {m['accuracy']:.4f} F1 {m['f1_macro']:.4f} log-loss {m['log_loss']:.4f}; "
                  f"ensemble - model: F1 {_iv(r['vs'][name]['f1_macro'])}, log-loss {_iv(r['vs'][name]['log_loss'])}")
    print(f"\nlogprob - prob: LM bits/byte {_iv(res['lm_logprob_minus_prob'])}"
          + (f"; classifier F1 {_iv(res['classify_logprob_minus_prob']['f1_macro'])}, log-loss "
             f"{_iv(res['classify_logprob_minus_prob']['log_loss'])}" if "classify_logprob_minus_prob" in res else ""))
    if "classify_average" in res:
        a = res["classify_average"]
        print(f"\nclassifier with finetune.average tail: F1 {a['tail']['f1_macro']:.4f} against {a['plain']['f1_macro']:.4f}"
              f" ({_iv(a['tail_minus_plain']['f1_macro'])}), log-loss {_iv(a['tail_minus_plain']['log_loss'])}")


if __name__ == "__main__":
    main()
