"""The report card's evaluation sections: requirements, metrics with intervals, comparison with the previous
version, tuning, cross-validation, slices, eval sets and risk. `report.py` renders them; the report stage
adds the data, model and training sections around them.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

from lmwright.evaluate.report import Section


def fmt(v, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, int):
        return f"{v:,}"
    return f"{v:.{digits}f}"


def fmt_ci(ci, digits: int = 4) -> str:
    return "–" if not ci else f"[{fmt(ci[0], digits)}, {fmt(ci[1], digits)}]"


def requirements_section(rows: list[dict]) -> Section:
    if not rows:
        return Section("Requirements", text="No acceptance criteria (requirements.acceptance is empty).")
    passed = sum(r["verdict"] in ("pass", "not applicable") for r in rows)
    table = [["criterion", "value", "interval", "verdict", "whole interval passes"]]
    for r in rows:
        table.append([r["criterion"], fmt(r["value"]), fmt_ci(r["ci"]), r["verdict"].upper(),
                      {True: "yes", False: "no", None: "–"}[r["whole_interval_passes"]]])
    return Section("Requirements", table=table,
                   text=f"{passed} of {len(rows)} acceptance criteria pass (from requirements.acceptance; one that "
                        "does not apply to the kind of model holds nothing back). The "
                        "interval is the bootstrap interval of the metric; 'whole interval passes' says whether "
                        "the verdict holds across it.")


def metrics_section(results: dict[str, dict], confidence: float) -> list[Section]:
    pct = f"{100 * confidence:g}%"
    lm = [["split", "documents", "loss (nats/token)", "perplexity", "bits per byte", f"bits per byte {pct} CI",
           "tokens"]]
    gen = [["split", "examples", "BLEU", "chrF", "ROUGE-1", "ROUGE-2", "ROUGE-L", f"ROUGE-L {pct} CI",
            "exact match", f"BLEU {pct} CI"]]
    for split, r in results.items():
        lm.append([split, fmt(r["documents"]), fmt(r["loss"]), fmt(r["perplexity"], 2), fmt(r["bits_per_byte"]),
                   fmt_ci(r["ci"]["bits_per_byte"]), fmt(r["tokens"])])
        if "generation" in r:
            g, ci = r["generation"], r["ci"]["generation"]
            gen.append([split, fmt(g["n"]), fmt(g["bleu"], 2), fmt(g["chrf"], 2), fmt(g["rouge1"]), fmt(g["rouge2"]),
                        fmt(g["rouge_l"]), fmt_ci(ci["rouge_l"]), fmt(g["exact_match"], 3), fmt_ci(ci["bleu"], 2)])
    out = [Section("Metrics", table=lm, text="Every document of each split scored once. Intervals: bootstrap over "
                                             "documents (percentile).")]
    if len(gen) > 1:
        out.append(Section("Generation", table=gen,
                           text="Continuation of held-out documents: the first tokens are the prompt, the next "
                                "tokens the reference; greedy decoding. BLEU and chrF from sacrebleu (0-100), "
                                "ROUGE from rouge-score (F-measure), exact match after SQuAD normalisation."))
    return out


def comparison_section(previous: dict | None, current: dict) -> Section:
    if not previous:
        return Section("Comparison with the previous version",
                       text="This is the first version of this model in the store: nothing to compare with.")
    table = [["metric", f"previous ({previous['digest'][:12]}, {previous['at']})", "this version", "change"]]
    for name in sorted(set(previous["metrics"]) & set(current)):
        a, b = previous["metrics"][name], current[name]
        table.append([name, fmt(a), fmt(b), f"{b - a:+.4f}"])
    return Section("Comparison with the previous version", table=table,
                   text="Lower is better for loss, perplexity, bits per byte; higher for BLEU, chrF, ROUGE, "
                        "exact match.")


def tuning_section(tune_dir: Path, out: Path) -> Section | None:
    """The latest `lmwright tune` outputs, with its plots copied next to the report."""
    if not (tune_dir / "trials.csv").exists():
        return None
    rows = [line.split(",") for line in (tune_dir / "trials.csv").read_text().strip().splitlines()]
    best = (tune_dir / "best.yaml").read_text() if (tune_dir / "best.yaml").exists() else ""
    imp = json.loads((tune_dir / "importances.json").read_text()) if (tune_dir / "importances.json").exists() else {}
    images = []
    for name in ("optimization_history.png", "parallel_coordinate.png", "slice.png"):
        if (tune_dir / name).exists():
            shutil.copyfile(tune_dir / name, out / f"tune_{name}")
            images.append(f"tune_{name}")
    text = (f"{len(rows) - 1} trials from `lmwright tune`. Parameter importances: "
            + (", ".join(f"{k} {v:.2f}" for k, v in imp.items()) or "not computed") + ".")
    return Section("Hyper-parameter search", text=text, table=rows[:26], code=best, images=images)


def cv_section(cv_file: Path) -> Section | None:
    if not cv_file.exists():
        return None
    cv = json.loads(cv_file.read_text())
    table = [["fold", "train documents", "held-out documents", "bits per byte", "loss"]]
    for f in cv["folds"]:
        table.append([str(f["fold"]), fmt(f["train_docs"]), fmt(f["heldout_docs"]), fmt(f["bits_per_byte"]),
                      fmt(f["loss"])])
    table.append(["mean ± sd", "", "", f"{cv['mean_bits_per_byte']:.4f} ± {cv['sd_bits_per_byte']:.4f}", ""])
    return Section("Cross-validation", table=table,
                   text=f"{cv['k']}-fold cross-validation over the train and validation documents "
                        f"(stratified by {cv['stratify_by']}), each fold trained with {', '.join(cv['overrides'])}.")


def slices_section(results: dict[str, dict]) -> list[Section]:
    out = []
    kinds = sorted({k for r in results.values() for k in r.get("slices", {})})
    for kind in kinds:
        table = [["split", kind, "documents", "bits per byte", "perplexity", "continuation examples", "ROUGE-L",
                  "chrF"]]
        for split, r in results.items():
            for key, row in r.get("slices", {}).get(kind, {}).items():
                table.append([split, key, fmt(row["documents"]), fmt(row["bits_per_byte"]), fmt(row["perplexity"], 2),
                              fmt(row.get("examples")), fmt(row.get("generation.rouge_l")),
                              fmt(row.get("generation.chrf"), 2)])
        out.append(Section(f"Slices by {kind}", table=table))
    return out


def sets_sections(sets: dict[str, dict]) -> list[Section]:
    out = []
    for name, r in sets.items():
        if r["task"] == "classify":
            table = [["metric", "value", "interval"]] + [
                [m, fmt(r.get(m)), fmt_ci(r["ci"].get(m))] for m in
                ("accuracy", "precision_macro", "recall_macro", "f1_macro", "f1_micro", "roc_auc")]
            table += [[f"{lab}: P / R / F1 (n)", f"{v['precision']:.3f} / {v['recall']:.3f} / {v['f1']:.3f} "
                                                 f"({v['support']})", ""] for lab, v in r["per_class"].items()]
            out.append(Section(f"Eval set: {name} (classification)", table=table, image=r.get("confusion_png", ""),
                               text=f"{r['n']} examples, zero-shot: each label scored as the continuation."))
        elif r["task"] == "generate":
            out.append(Section(f"Eval set: {name} (generation)", table=[
                ["BLEU", "chrF", "ROUGE-1", "ROUGE-2", "ROUGE-L", "exact match", "examples"],
                [fmt(r["bleu"], 2), fmt(r["chrf"], 2), fmt(r["rouge1"]), fmt(r["rouge2"]), fmt(r["rouge_l"]),
                 fmt(r["exact_match"], 3), fmt(r["n"])]]))
        else:
            out.append(Section(f"Eval set: {name} (language modelling)", table=[
                ["documents", "loss", "perplexity", "bits per byte", "interval"],
                [fmt(r["documents"]), fmt(r["loss"]), fmt(r["perplexity"], 2), fmt(r["bits_per_byte"]),
                 fmt_ci(r["ci"]["bits_per_byte"])]]))
    return out


def risk_sections(risk: dict) -> list[Section]:
    """The base model's memorisation checks; every model's other risk checks are `risk_card.py`'s."""
    out = []
    if "canaries" in risk:
        table = [["canary", "planted", "exposure (bits)", "rank among sampled", "log-prob", "mean log-prob of others"]]
        for c in risk["canaries"]:
            table.append([c["name"], f"{c['repeats']}x", f"{c['exposure']:.2f} of {c['max_exposure']:.1f}",
                          f"{c['sampled_rank']:g}", f"{c['logprob']:.2f}", f"{c['candidates_mean_logprob']:.2f}"])
        out.append(Section("Risk: memorisation (canaries)", table=table,
                           text="Random secrets planted in the train split, each as often as shown. Exposure near 1 "
                                "bit: the model has not learnt the secret; the maximum means it is the model's first "
                                "choice among a million."))
    if "verbatim" in risk:
        v = risk["verbatim"]
        out.append(Section("Risk: verbatim continuation", table=[
            ["documents", "probed", "exact continuations", "tokens matched"],
            ["train", fmt(v["train"]["n"]), fmt(v["train"]["rate"], 3), fmt(v["train"]["token_match"], 3)],
            ["validation (baseline)", fmt(v["val"]["n"]), fmt(v["val"]["rate"], 3), fmt(v["val"]["token_match"], 3)]],
            text="Greedy continuation of a document's opening tokens compared with its actual next tokens. A train rate "
                 "far above the validation rate is memorisation."))
    return out
