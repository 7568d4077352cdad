"""The report card as a whole: what a reviewer reads before promoting a model.

`write_report_card` gathers every stage's outputs (data counts, splits, the model and its training, validation and
test figures, fine-tuning, tuning and cross-validation, slices, eval sets, risk, samples, the spec) into sections,
checks the acceptance criteria (`requirements`; a `risk.*` criterion on every model that measures it), and writes
`report.md`, `report.html` and their plots. The evaluation sections come from `card.py`, the risk register and the
risk checks of every model from `risk_card.py`; rendering is `report.py`'s.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from lmwright.core.store import Store
from lmwright.data.split import SPLITS
from lmwright.evaluate import card, risk_card
from lmwright.evaluate.report import Section, lr_curve, render_html, render_markdown, training_curve
from lmwright.evaluate.suite import flatten
from lmwright.spec import Spec, dump_spec


def with_ci(value: float, summary: dict, side: str, metric: str) -> str:
    lo_hi = summary.get("ci", {}).get(side, {}).get(metric)
    return f"{value:.4f}" + (f" [{lo_hi[0]:.3f}, {lo_hi[1]:.3f}]" if lo_hi else "")


def finetune_sections(inp, out: Path) -> list:
    """The fine-tuned models against their base on held-out rows, one table; examples and the confusion matrix."""
    from lmwright.evaluate.report import Section

    rows = [["recipe", "registered as", "metric", "base", "fine-tuned", "method", "train rows", "wall time"]]
    extra, skipped = [], []
    for kind, metrics in (("sft", ("rouge_l", "val_loss")), ("classify", ("accuracy", "f1_macro", "roc_auc")),
                          ("preference", ("likelihood_accuracy", "dpo_loss"))):
        o = inp.get(kind)
        if o is not None and o.summary.get("skipped") and o.summary.get("reason"):
            skipped.append(f"{kind}: {o.summary['reason']}")
        if o is None or o.summary.get("skipped"):
            continue
        sm = o.summary
        for m in metrics:
            b, t = sm["base_figures"].get(m), sm["tuned_figures"].get(m)
            if b is not None and t is not None:
                rows.append([kind, sm["registered_as"], m, with_ci(b, sm, "base", m), with_ci(t, sm, "tuned", m),
                             sm["method"], f"{sm['data'].get('train', 0):,}", f"{sm['seconds']:.0f} s"])
        res = json.loads((o.path / "metrics.json").read_text())
        if res.get("examples"):
            extra.append(Section("Fine-tuned assistant: held-out instructions", table=[
                ["instruction", "reference", "base model", "fine-tuned"]] + [
                [e["instruction"], e["reference"], e["base"][:120], e["tuned"][:120]] for e in res["examples"]]))
        if (o.path / "confusion.png").exists():
            shutil.copyfile(o.path / "confusion.png", out / "finetune_confusion.png")
            extra.append(Section("Fine-tuned classifier: confusion matrix (held-out)", image="finetune_confusion.png"))
    not_run = ("Not run: " + "; ".join(skipped) + ".") if skipped else ""
    if len(rows) == 1:
        return [Section("Fine-tuning", text=not_run)] if skipped else []
    return [Section("Fine-tuning", table=rows, text="Each fine-tuned model against the model it started from, on "
                    "held-out rows (made from the validation split's documents unless a file was given), with "
                    "bootstrap intervals over the held-out examples where there are per-example scores. The base "
                    "classifies zero-shot (each label's likelihood); the tuned classifier uses its trained head."
                    + (" " + not_run if not_run else "")),
            *extra]


def previous_version(store_url: str, name: str, digest: str) -> dict | None:
    """The model registered under the same name before this one, with its validation and test figures."""
    store = Store(store_url)
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


def write_report_card(s: Spec, inp: dict, store_url: str, out: Path, tune_dir: Path, cv_file: Path) -> list[dict]:
    """Write the report card into `out` from the stages' outputs `inp` (each with `.path` and `.summary`); returns
    the acceptance checks."""
    history = json.loads((inp["pretrain"].path / "history.json").read_text())
    training_curve(history, out / "training_curve.png")
    lr_curve(history, out / "lr_curve.png")
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
    models = risk_card.model_risks(inp, s.project.name)  # every model's risk checks: the base's and the tuned ones'
    checks = risk_card.requirement_rows(s.requirements.criteria(), results, models)
    current = flatten({k: {m: v for m, v in r.items() if m in ("loss", "perplexity", "bits_per_byte", "generation")}
                       for k, r in splits.items()})
    previous = previous_version(store_url, s.project.name, inp["save"].digest)
    for f in val["sets"].values():
        if f.get("confusion_png"):
            shutil.copyfile(inp["evaluate"].path / f["confusion_png"], out / f["confusion_png"])
    samples = json.loads((inp["evaluate"].path / "samples.json").read_text())
    src = inp["collect"].summary["by_source"]
    passed = sum(c["verdict"] in ("pass", "not applicable") for c in checks)
    lo, hi = test["ci"]["bits_per_byte"]
    sections = [
        Section("Summary", text=f"Project '{s.project.name}': {inp['collect'].summary['read']:,} documents read from "
                f"{', '.join(f'{k} ({v:,})' for k, v in src.items())}; a {pt['n_params'] / 1e6:.2f}M-parameter "
                f"Llama model trained for {pt['steps']} steps reaches {val['val']['bits_per_byte']:.3f} bits per byte "
                f"on validation and {test['bits_per_byte']:.3f} [{lo:.3f}, {hi:.3f}] on test (evaluated once). "
                f"{passed} of {len(checks)} acceptance criteria pass."),
        card.requirements_section(checks),
        risk_card.register_section(risk_card.register_rows(s.governance.risks, models, results)),
        *card.metrics_section(splits, s.eval.confidence),
        card.comparison_section(previous, current),
        Section("Data", table=data_rows),
        Section("Splits", table=split_rows,
                text=f"Tokenizer: byte-level BPE, vocabulary {inp['tokenizer'].summary['vocab_size']:,}, "
                     f"{inp['tokenizer'].summary['bytes_per_token']} bytes per token on train text."),
        Section("Model", table=model_rows),
        Section("Training curve", image="training_curve.png"),
        Section("Learning rate", image="lr_curve.png"),
        *[x for x in (card.tuning_section(tune_dir, out),
                      card.cv_section(cv_file)) if x],
        *finetune_sections(inp, out),
        *card.slices_section(splits),
        *card.sets_sections(val["sets"]),
        risk_card.figures_section(models, results),
        *card.risk_sections(risk),
        *risk_card.detail_sections(models),
        Section("Samples", text=f"Continuations of fixed prompts (temperature {s.eval.temperature}).",
                items=[(x["prompt"], x["completion"]) for x in samples]),
        Section("Held-out continuations", text="The generation task: prompt, then the model's continuation; "
                "the reference follows in the table.",
                table=[["prompt", "model", "reference"]] + [[c["prompt"][-80:], c["prediction"], c["reference"]]
                                                            for c in val["val"].get("continuations", [])]),
        Section("Spec", code=dump_spec(s)),
    ]
    title = f"lmwright report card: {s.project.name}"
    (out / "report.md").write_text(render_markdown(title, sections), encoding="utf-8")
    (out / "report.html").write_text(render_html(title, sections), encoding="utf-8")
    (out / "requirements.json").write_text(json.dumps(checks, indent=2))
    return checks
