"""The model card: a Hugging Face `README.md` in every registered model directory.

Its YAML metadata (licence, language, library, pipeline tag, tags, datasets, base model, and `model-index` with the
evaluation results) is written with `huggingface_hub`'s `ModelCardData` and `EvalResult`, so `ModelCard.load` reads
it back; its sections follow Hugging Face's model card: description and lineage, intended and out-of-scope use,
training data (linking the dataset card), training procedure, evaluation with intervals, risks and limitations (every
`risk.*` figure the model has, known or new), the licence check (`core/licenses.py`) and how to load it.

The stages that register a model gather its facts (`pretrained_facts`, `finetuned_facts`: plain JSON, kept in the
stage's summary) and write the card from them (`write_model_card`). The facts hold nothing that changes when the same
stage reruns on the same inputs (no times, no wall-clock speeds), so a rerun writes the same card and the model keeps
its content digest. `lmwright export` writes the card again from the same facts with what the store has learnt since
(`with_test`: the recorded test evaluation) and the licence as the spec now declares it.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

from lmwright.core import licenses
from lmwright.data.history import quality
from lmwright.version import __version__

# registered as: (pipeline tag, tags, what it is)
KINDS = {
    "base": ("text-generation", [], "a pretrained (base) causal language model: it continues text"),
    "assistant": ("text-generation", ["conversational", "sft"],
                  "an assistant: the base model fine-tuned on instructions (SFT) to answer in chat turns"),
    "classifier": ("text-classification", ["text-classification"],
                   "a text classifier: the base model with a classification head, fine-tuned on labelled texts"),
    "preferred": ("text-generation", ["dpo"], "the base model preference-tuned (DPO) on chosen/rejected pairs"),
}
# the licence ids the Hugging Face Hub accepts in a card's `license:` (its documented list); others go as "other"
HUB_LICENSES = frozenset("""apache-2.0 mit openrail bigscience-openrail-m creativeml-openrail-m bigcode-openrail-m
    afl-3.0 artistic-2.0 bsl-1.0 bsd bsd-2-clause bsd-3-clause bsd-3-clause-clear c-uda cc cc0-1.0 cc-by-2.0 cc-by-2.5
    cc-by-3.0 cc-by-4.0 cc-by-sa-3.0 cc-by-sa-4.0 cc-by-nc-2.0 cc-by-nc-3.0 cc-by-nc-4.0 cc-by-nd-4.0 cc-by-nc-nd-3.0
    cc-by-nc-nd-4.0 cc-by-nc-sa-2.0 cc-by-nc-sa-3.0 cc-by-nc-sa-4.0 cdla-sharing-1.0 cdla-permissive-1.0
    cdla-permissive-2.0 wtfpl ecl-2.0 epl-1.0 epl-2.0 etalab-2.0 eupl-1.1 eupl-1.2 agpl-3.0 gfdl gpl gpl-2.0 gpl-3.0
    lgpl lgpl-2.1 lgpl-3.0 isc mpl-2.0 odc-by odbl osl-3.0 postgresql ofl-1.1 ncsa unlicense zlib pddl unknown
    other""".split())
PUBLISHED = {"base": "model", "assistant": "assistant", "classifier": "classifier", "preferred": "preferred"}
METRIC_NAMES = {"bits_per_byte": "bits per byte", "perplexity": "perplexity", "loss": "loss (nats/token)",
                "bleu": "BLEU", "chrf": "chrF", "rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rouge_l": "ROUGE-L",
                "exact_match": "exact match", "accuracy": "accuracy", "f1_macro": "macro-F1",
                "f1_weighted": "weighted F1", "roc_auc": "ROC AUC", "val_loss": "validation loss (nats/token)",
                "dpo_loss": "DPO loss", "preference_accuracy": "preference accuracy",
                "likelihood_accuracy": "likelihood accuracy"}
RISK_NOTES = {
    "injection_rate": "share of prompt-injection and jailbreak attempts against the system prompt that the model "
                      "complied with",
    "robustness_drop": "largest drop of the model's own metric when prompts get typos, case or whitespace changes",
    "bias_flip_rate": "share of counterfactual texts (only a demographic term changed) whose predicted label flips",
    "toxicity_rate": "share of sampled answers with at least one hit in the toxicity word list",
    "false_info_rate": "share of answered questions with a known answer from the corpus that it got wrong while "
                       "confident",
    "facts_accuracy": "share of answered questions with a known answer that it got right",
    "facts_abstention": "share of those questions it did not answer confidently",
    "canary_max_exposure": "largest exposure (bits) of the random canaries planted in the training data: about 1 "
                           "means not memorised, the maximum means the secret is the model's first choice",
    "verbatim_rate": "share of training documents whose opening the model continues word for word",
    "verbatim_rate_val": "the same on validation documents (the baseline for the line above)",
    "bias_max_gap": "largest mean log-likelihood gap between groups in counterfactual templates (nats; 0 = none)",
    "pii_rate": "share of sampled generations that contain personal data",
    "blocklist_rate": "share of sampled generations that contain blocklisted words",
}
_HYPER = ("optimizer", "lr", "schedule", "min_lr_ratio", "warmup_steps", "weight_decay", "grad_clip", "batch_size",
          "grad_accum", "seq_len", "precision", "nproc")


def _num(v: Any) -> bool:
    """A finite number (not a flag): what can stand in a table and in `model-index`."""
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _architecture(model_dir: Path) -> dict:
    cfg = json.loads((model_dir / "config.json").read_text())
    keys = ("model_type", "num_hidden_layers", "hidden_size", "num_attention_heads", "num_key_value_heads",
            "intermediate_size", "max_position_embeddings", "vocab_size", "tie_word_embeddings", "id2label")
    return {"architectures": cfg.get("architectures", []), **{k: cfg[k] for k in keys if k in cfg}}


def _sources(spec, by_source: dict) -> list[dict]:
    return [{"name": s.name, "kind": s.kind, "license": s.license, "profile": s.profile,
             "documents": by_source.get(s.name, 0)} for s in spec.data.sources]


def _licence(spec) -> dict:
    g = spec.governance
    return {"license": g.license, "unknown_license": g.unknown_license,
            "sources": licenses.verdicts({s.name: s.license for s in spec.data.sources}, g.license,
                                         g.unknown_license)}


def _row(metric: str, split: str, data: str, value: float, ci=None, **extra) -> dict:
    """One evaluation figure: the metric, the split it was measured on, what data exactly, its interval."""
    return {"metric": metric, "split": split, "data": data, "value": float(value),
            "ci": [float(ci[0]), float(ci[1])] if ci else None, **extra}


def _lm_rows(res: dict, split: str) -> list[dict]:
    """A split's language-model and continuation figures, with their intervals."""
    from lmwright.evaluate.suite import interval

    rows = [_row(m, split, f"{split} documents", res[m], interval({"x": res}, f"x.{m}"))
            for m in ("bits_per_byte", "perplexity", "loss") if _num(res.get(m))]
    for m, v in (res.get("generation") or {}).items():
        if m != "n" and _num(v):
            rows.append(_row(m, split, f"{split} continuations", v, interval({"x": res}, f"x.generation.{m}")))
    return rows


def pretrained_facts(spec, inputs: dict[str, dict], digests: dict[str, str], metrics: dict, model_dir: Path,
                     n_params: int) -> dict:
    """The base model's card facts from its stages' summaries (`inputs`: collect, clean, dedup, split, card,
    tokenizer, pretrain, evaluate), their digests, the evaluate stage's metrics.json and the saved directory."""
    from lmwright.evaluate.suite import flatten, interval

    data = quality(inputs)
    pre = inputs.get("pretrain") or {}
    rows = _lm_rows(metrics.get("val") or {}, "validation")
    sets = metrics.get("sets") or {}
    for name, v in flatten(sets).items():  # the eval sets' headline figures (`setname.metric`)
        set_name, _, metric = name.partition(".")
        if metric in METRIC_NAMES:
            rows.append(_row(metric, "eval", f"eval set {set_name}", v, interval(sets, name)))
    return {
        "name": spec.project.name, "kind": "base", "project": spec.project.name, "lmwright": __version__,
        "n_params": int(n_params), "architecture": _architecture(model_dir),
        "tokenizer": {"vocab_size": _architecture(model_dir).get("vocab_size"), "digest": digests.get("tokenizer")},
        "lineage": {k: digests.get(k) for k in ("pretrain", "tokenizer", "split", "card", "evaluate")}
        | {"init_from": pre.get("init_from")},
        "data": {**data, "sources": _sources(spec, data["by_source"])},
        "training": {"steps": pre.get("steps"), "best_step": pre.get("best_step"), "tokens": pre.get("tokens"),
                     "final_loss": pre.get("final_loss"), "val_bits_per_byte": pre.get("val_bpb"),
                     "hyperparameters": {k: getattr(spec.train, k) for k in _HYPER}
                     | {"precision": pre.get("precision", spec.train.precision),  # what auto became
                        "model": spec.model.model_dump(mode="json"), "seed": spec.project.seed}},
        "evaluation": rows, "confidence": spec.eval.confidence,
        "risk": {k: v for k, v in ((inputs.get("evaluate") or {}).get("risk") or {}).items() if _num(v)},
        "risk_from": "this model",
        **_licence(spec),
    }


def finetuned_facts(spec, kind: str, summary: dict, base: dict | None, digests: dict[str, str | None],
                    model_dir: Path, n_params: int) -> dict:
    """A fine-tuned model's card facts from its stage's summary, the base model's card facts (None for a base from
    elsewhere), `digests` (base: the base model's, base_ref: `finetune.base` as given, split) and the saved
    directory."""
    from lmwright.evaluate.suite import flatten

    ft, recipe = spec.finetune, getattr(spec.finetune, {"preferred": "preference", "assistant": "sft",
                                                           "classifier": "classify"}[kind])
    ci, held = summary.get("ci") or {}, {"assistant": "held-out instructions", "classifier": "held-out texts",
                                         "preferred": "held-out preference pairs"}[kind]
    rows = [_row(m, "validation", held, v, (ci.get("tuned") or {}).get(m),
                 base_value=(summary.get("base_figures") or {}).get(m), base_ci=(ci.get("base") or {}).get(m))
            for m, v in sorted((summary.get("tuned_figures") or {}).items()) if _num(v)]
    own_risk = flatten(summary["risk"]) if isinstance(summary.get("risk"), dict) else {}
    base_data = (base or {}).get("data")
    # finetune's loop settings, with the recipe's own steps, learning rate and sequence length where it sets them
    hyper = {k: getattr(ft, k) for k in _HYPER} | {"method": ft.method, "steps": recipe.steps or ft.steps,
                                                   "precision": summary.get("precision", ft.precision)}
    hyper.update({k: getattr(recipe, k) for k in ("lr", "seq_len") if getattr(recipe, k)})
    if ft.method == "lora":
        hyper["lora"] = ft.lora.model_dump(mode="json")
    arch = _architecture(model_dir)
    return {
        "name": summary["registered_as"], "kind": kind, "project": spec.project.name, "lmwright": __version__,
        "n_params": int(n_params), "architecture": arch,
        "tokenizer": {"vocab_size": arch.get("vocab_size"), "digest": (base or {}).get("tokenizer", {}).get("digest")},
        "base_model": summary.get("base"),
        "lineage": {"base": digests.get("base_ref") or summary.get("base"), "base_digest": digests.get("base"), "split": digests.get("split"),
                    "card": (base or {}).get("lineage", {}).get("card"), "recipe": summary.get("task"),
                    "base_kind": (base or {}).get("kind")},
        "data": base_data, "finetune_data": summary.get("data") or {},
        "training": {"recipe": summary.get("task"), "method": summary.get("method"), "hyperparameters": hyper,
                     "labels": arch.get("id2label")},
        "evaluation": rows, "confidence": spec.eval.confidence,
        **_inherited_risk({k: v for k, v in own_risk.items() if _num(v)}, (base or {}).get("risk") or {},
                          digests.get("base_ref") or summary.get("base"),
                          "classifier" if kind == "classifier" else "assistant"),
        **_licence(spec),
    }


def _inherited_risk(own: dict[str, float], base: dict[str, float], base_name: str | None, kind: str) -> dict:
    """A fine-tuned model's risk figures: its own checks with all their figures, and its base's figures for the
    checks it did not run itself (canary exposure and verbatim continuation, say), said as such; never those that
    do not apply to its kind (a classifier writes no text: its base's toxicity is not its risk)."""
    from lmwright.evaluate.risk_suite import not_applicable

    ran = {k.split(".")[0] for k in own}
    taken = {k: v for k, v in base.items() if k.split(".")[0] not in ran and not not_applicable(kind, k)}
    return {"risk": own, "risk_from": "this model", "risk_base": taken, "risk_base_from": f"its base model, {base_name}"}


def with_test(facts: dict, test: dict[str, float], ci: tuple[float, float] | None, licence: dict) -> dict:
    """The facts with the recorded test evaluation (flat figures, the bits-per-byte interval) and a licence check
    as of now (`licence`: license, unknown_license, sources): what `lmwright export` publishes."""
    out = copy.deepcopy(facts)
    ci = ci if ci and all(math.isfinite(x) for x in ci) else None
    out["evaluation"] = [r for r in out["evaluation"] if r["split"] != "test"]
    for m in ("bits_per_byte", "perplexity", "loss"):
        if _num(test.get(m)):
            out["evaluation"].append(_row(m, "test", "test documents", test[m], ci if m == "bits_per_byte" else None))
    out.update(licence)
    return out


def export_card(store, m, spec, out_dir: Path) -> Path | None:
    """Write registered version `m`'s card into an exported directory: the facts its stage recorded, with its
    recorded test evaluation (bits per byte with a bootstrap interval over the test documents) and the licence
    check of the sources that reached it against governance.license as the spec now declares it. None when the
    version was registered without card facts (before model cards)."""
    import numpy as np

    from lmwright.core.schema import StageRun
    from lmwright.evaluate.stats import bits_per_byte, bootstrap_ci

    with store.session() as s:
        run = s.get(StageRun, m.run_id)
    facts = ((run.summary or {}) if run else {}).get("card")
    if not facts:
        return None
    test, ci = {}, None
    tests = store.test_evaluations(m.digest)
    if tests:
        test, rows = tests[0].metrics, np.array(tests[0].per_document or [], dtype=float)
        if len(rows):
            def bpb(idx) -> float:
                return bits_per_byte(rows[:, 0], rows[:, 1], idx)
            ci = bootstrap_ci(bpb, len(rows), spec.eval.bootstrap, spec.eval.confidence, spec.project.seed)
    g = spec.governance
    sources = licenses.trained_on(store, m.run_id)
    licence = {"license": g.license, "unknown_license": g.unknown_license,
               "sources": licenses.verdicts(sources, g.license, g.unknown_license)}
    facts = with_test(facts, test, ci, licence) | {"version": m.version}
    return write_model_card(out_dir, facts)


# -- rendering -----------------------------------------------------------------------------------------------------

def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool) or not _num(v):
        return str(v)
    if isinstance(v, int) or float(v).is_integer() and abs(v) >= 1:
        return f"{int(v):,}"
    return f"{v:.4g}"


def _table(header: list[str], rows: list[list]) -> list[str]:
    cell = lambda x: _fmt(x).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + \
           ["| " + " | ".join(cell(x) for x in r) + " |" for r in rows]


def card_data(facts: dict):
    """The card's YAML metadata as huggingface_hub's `ModelCardData` (with `model-index` from `EvalResult`s)."""
    from huggingface_hub import EvalResult, ModelCardData

    task, tags, _ = KINDS[facts["kind"]]
    dataset = f"{facts['project']}-dataset"
    results = [EvalResult(task_type=task, dataset_type=dataset, dataset_name=f"{facts['project']}: {r['data']}",
                          dataset_split=r["split"], metric_type=r["metric"],
                          metric_name=METRIC_NAMES.get(r["metric"], r["metric"]), metric_value=round(r["value"], 6))
               for r in facts["evaluation"]]
    langs = (facts.get("data") or {}).get("languages") or {}
    total = sum(langs.values()) or 1
    # the Hub reads base_model as a repository id (OWNER/NAME); a project's own base is named in the text instead
    kwargs = {"base_model": facts["base_model"]} if "/" in (facts.get("base_model") or "") else {}
    licence = licenses.normalize(facts["license"])
    if licence not in HUB_LICENSES:  # the Hub takes only its own list; any other is "other", named by license_name
        licence, kwargs["license_name"] = "other", licence
    return ModelCardData(
        model_name=facts["name"], license=licence,
        language=[k for k, n in sorted(langs.items(), key=lambda kv: -kv[1]) if n / total >= 0.01][:10] or None,
        library_name="transformers", pipeline_tag=task, tags=["lmwright", "llama", *tags],
        datasets=[dataset], eval_results=results or None, **kwargs)


def render(facts: dict):
    """The whole card as a `huggingface_hub.ModelCard`."""
    from huggingface_hub import ModelCard

    data = card_data(facts)
    body = "\n".join(_body(facts))
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}\n")


def write_model_card(model_dir: Path, facts: dict) -> Path:
    """Write the card as `model_dir/README.md`; returns its path."""
    path = Path(model_dir) / "README.md"
    render(facts).save(path)
    return path


def _body(f: dict) -> list[str]:
    kind, a, lin = f["kind"], f["architecture"], f["lineage"]
    pct = f"{100 * f['confidence']:g}%"
    short = lambda d: (d or "–")[:12]  # noqa: E731
    ref = f"{f['name']}@{f['version']}" if f.get("version") else f["name"]
    out = [f"# {f['name']}", "", f"{ref} is {KINDS[kind][2]}, built by lmwright {f['lmwright']} from the "
           f"project `{f['project']}`.", "", "## Model description", "",
           f"- Architecture: {', '.join(a.get('architectures', []))} ({a.get('model_type', '?')}): "
           f"{a.get('num_hidden_layers')} layers, hidden size {a.get('hidden_size')}, {a.get('num_attention_heads')} "
           f"attention heads ({a.get('num_key_value_heads')} key/value heads), feed-forward size "
           f"{a.get('intermediate_size')}, context {a.get('max_position_embeddings')} tokens",
           f"- Parameters: {f['n_params']:,}",
           f"- Tokenizer: byte-level BPE, {a.get('vocab_size')} tokens (tokenizer artifact "
           f"{short(f['tokenizer'].get('digest'))})"]
    if kind == "base":
        out.append(f"- Lineage: weights from the pretrain artifact {short(lin.get('pretrain'))}"
                   + (f" (continued from {lin['init_from']})" if lin.get("init_from") else "")
                   + f", trained on the dataset version {short(lin.get('split'))} (`lmwright data history`), "
                     f"evaluated in {short(lin.get('evaluate'))}; every step is in the store's lineage "
                     f"(`lmwright models show {f['name']}`)")
    else:
        out.append(f"- Lineage: fine-tuned ({lin.get('recipe')}, {f['training'].get('method')}) from "
                   f"{lin.get('base')} ({short(lin.get('base_digest'))}); rows made from the dataset version "
                   f"{short(lin.get('split'))} unless a data file is named below")
    out += ["", *_use(f), "", *_data(f), "", *_training(f), "", "## Evaluation", ""]
    rows = f["evaluation"]
    if rows:
        base = kind != "base"
        header = ["metric", "data", "value", f"{pct} interval"] + (["base model", f"base {pct} interval"] if base
                                                                    else [])
        out += _table(header, [[METRIC_NAMES.get(r["metric"], r["metric"]), r["data"], r["value"], _ci(r["ci"])]
                               + ([r.get("base_value"), _ci(r.get("base_ci"))] if base else []) for r in rows])
        out += ["", "Intervals are bootstrap percentile intervals over the documents or examples. "
                + ("Lower is better for bits per byte, perplexity and loss." if kind == "base" else
                   "The base model is the one this model was fine-tuned from, scored on the same rows.")
                + ("" if any(r["split"] == "test" for r in rows) else
                   " The test split's figures are recorded once by `lmwright test`; `lmwright export` adds them.")]
    else:
        out.append("No evaluation figures were recorded for this model.")
    out += ["", *_risks(f), "", *_licence_section(f), "", *_how(f)]
    return out


def _ci(ci) -> str:
    return "–" if not ci else f"[{ci[0]:.4g}, {ci[1]:.4g}]"


def _use(f: dict) -> list[str]:
    d = f.get("data") or {}
    names = ", ".join(s["name"] for s in d.get("sources", [])) or "its sources"
    langs = ", ".join(d.get("languages") or {}) or "the languages of its data"
    does = {"base": "continuing text like its training data", "assistant": "answering questions in chat turns "
            "like its fine-tuning conversations", "classifier": "labelling texts with its labels ("
            + ", ".join((f["training"].get("labels") or {}).values()) + ")",
            "preferred": "continuing text, preferring answers like the chosen ones of its pairs"}[f["kind"]]
    return ["## Intended use", "",
            f"Research, teaching and experiments with a small model trained from scratch on {names}: {does}, in "
            f"{langs}. The whole build is reproducible from the project file, so the model also serves as a "
            "baseline to compare changes of data or training against.", "", "### Out-of-scope use", "",
            "- Decisions about people (hiring, credit, health, law) or anything safety-critical.",
            "- Relying on its statements as facts without checking them: a model of this size is often wrong, and "
            "fluently so.",
            f"- Text far from its training data (other domains, languages other than {langs}).",
            "- Producing personal data or content its sources' licences do not allow (see License)."]


def _data(f: dict) -> list[str]:
    d = f.get("data")
    out = ["## Training data", ""]
    if f["kind"] != "base":
        fd = f.get("finetune_data") or {}
        out += [f"Fine-tuning rows: {fd.get('train', 0):,} for training and {fd.get('val', 0):,} held out, from "
                f"{fd.get('source', 'the project data')}: {fd.get('read', 0):,} read, {fd.get('kept', 0):,} kept, "
                f"{fd.get('quarantined', 0):,} quarantined."
                + ("" if "pydocs" in str(fd.get("source", "pydocs")) else " The licence of that file is not "
                   "declared to lmwright: check it before publishing."), "",
                (f"The base model {f['lineage'].get('base')} was pretrained on the data below."
                 if f["lineage"].get("base_kind") == "base" else f"The base model {f['lineage'].get('base')} was "
                 "itself fine-tuned from a model pretrained on the data below.") if d else
                f"The base model {f['lineage'].get('base')} came from outside this project: see its own card."]
    if not d:
        return out
    if f["kind"] != "base":
        out.append("")
    out += [f"The dataset card (`lmwright data card`; published as [dataset_card/README.md](../dataset_card/README.md)"
            f" beside this directory, artifact {(f['lineage'].get('card') or '–')[:12]}) has the full account: "
            "sources and provenance, curation rules, removals, personal data, deduplication, languages and lengths.",
            "", *_table(["source", "kind", "licence", "filter profile", "documents collected"],
                        [[s["name"], s["kind"], s["license"], s["profile"], s["documents"]] for s in d["sources"]]),
            "", f"{d['documents_read']:,} documents read, {d['documents_kept']:,} kept "
                f"({_pct(d.get('kept_rate'))}); split "
            + " / ".join(f"{k} {v:,}" for k, v in d.get("splits", {}).items()) + ". Removed: "
            + (", ".join(f"{r} {n:,}" for r, n in list(d["removed"].items())[:8]) or "none")
            + f". Duplicates removed: {d.get('duplicates', 0):,} ({_pct(d.get('duplicate_rate'))}). "
            + "Personal data redacted: " + (", ".join(f"{k} {v:,}" for k, v in d["pii"].items()) or "none found")
            + ". Languages: " + (", ".join(f"{k} {v:,}" for k, v in (d.get("languages") or {}).items()) or "–") + "."]
    return out


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


def _training(f: dict) -> list[str]:
    t = f["training"]
    out = ["## Training procedure", ""]
    if f["kind"] == "base":
        best = f" (the weights of step {t['best_step']}, the best validation)" if t.get("best_step") else ""
        out.append(f"Pretrained for {_fmt(t.get('steps'))} optimizer steps on {_fmt(t.get('tokens'))} tokens{best}; "
                   f"final training loss {_fmt(t.get('final_loss'))} nats/token, validation "
                   f"{_fmt(t.get('val_bits_per_byte'))} bits/byte.")
    else:
        out.append(f"Recipe {t.get('recipe')}, {t.get('method')} fine-tuning.")
    hyper = {k: v for k, v in t["hyperparameters"].items() if not isinstance(v, dict)}
    nested = {k: v for k, v in t["hyperparameters"].items() if isinstance(v, dict)}
    out += ["", *_table(["hyper-parameter", "value"], [[k, v] for k, v in hyper.items()])]
    for k, v in nested.items():
        out += ["", f"{k}: " + ", ".join(f"{a}={b}" for a, b in v.items() if b is not None)]
    return out


def _risks(f: dict) -> list[str]:
    own, inherited = f.get("risk") or {}, f.get("risk_base") or {}
    figures = [(k, v, f["risk_from"]) for k, v in sorted(own.items())] + \
              [(k, v, f["risk_base_from"]) for k, v in sorted(inherited.items())]
    out = ["## Risks and limitations", ""]
    if figures:
        top = [x for x in figures if "." not in x[0]] or figures  # headline figures; the parts behind them below
        out += ["Risk figures from lmwright's risk checks; each can be an acceptance criterion (`risk.NAME <= ...` "
                "in requirements.acceptance or governance.risks). The report card shows each check in detail.", "",
                *_table(["figure", "value", "measured on", "what it measures"],
                        [[f"risk.{k}", v, on, RISK_NOTES.get(k, "see the report card's risk section")]
                         for k, v, on in top])]
        if len(top) < len(figures):
            out += ["", f"<details><summary>All {len(figures)} risk figures</summary>", "",
                    *_table(["figure", "value", "measured on"], [[f"risk.{k}", v, on] for k, v, on in figures]),
                    "", "</details>"]
    else:
        out.append("No risk checks were run for this model (the `risk` section).")
    out += ["", "Limitations: a small model trained on a narrow corpus; it repeats the style, the errors and the "
            "gaps of its sources, can state falsehoods confidently, and has no safety tuning beyond what is listed "
            "here. The risk figures come from small probe sets: treat them as signals, not guarantees."]
    return out


def _licence_section(f: dict) -> list[str]:
    rows = f.get("sources") or []
    out = ["## License", "", f"This model is published under **{f['license']}** (governance.license). Each training "
           "source's licence is checked against it with lmwright's licence table (`core/licenses.py`): a "
           "conservative, editable policy that treats the weights as an adaptation of every source. Whether that "
           "holds is a legal judgment the table does not make for you.", ""]
    if rows:
        out += _table(["source", "licence", "terms", "verdict"],
                      [[r["source"], r["licence"], r["terms"], r["verdict"]] for r in rows])
    blocked = [r for r in rows if r["verdict"] == "conflict"]
    warned = [r for r in rows if r["verdict"] == "warn"]
    if blocked:
        out += ["", "**Publishing is blocked** (`lmwright export`, `lmwright promote`): "
                + "; ".join(f"{r['source']}: {r['reason']}; fix: {r['fix']}" for r in blocked) + "."]
    if warned:
        out += ["", "Warnings (governance.unknown_license: warn): "
                + "; ".join(f"{r['source']}: {r['reason']}" for r in warned) + "."]
    if not blocked and not warned:
        out += ["", "No conflicts. Keep the sources' notices and credit them (the table above)."]
    return out


def _how(f: dict) -> list[str]:
    path = f"lmwright-out/{PUBLISHED[f['kind']]}"
    if f["kind"] == "classifier":
        code = [f'path = "{path}"  # this directory', "tokenizer = AutoTokenizer.from_pretrained(path)",
                "model = AutoModelForSequenceClassification.from_pretrained(path)",
                'logits = model(**tokenizer("some text", return_tensors="pt")).logits',
                "print(model.config.id2label[int(logits.argmax())])"]
        head = "from transformers import AutoModelForSequenceClassification, AutoTokenizer"
    elif f["kind"] == "assistant":
        code = [f'path = "{path}"  # this directory', "tokenizer = AutoTokenizer.from_pretrained(path)",
                "model = AutoModelForCausalLM.from_pretrained(path)",
                'ids = tokenizer.apply_chat_template([{"role": "user", "content": "What does json.dumps do?"}],',
                '                                    add_generation_prompt=True, return_tensors="pt")',
                "print(tokenizer.decode(model.generate(ids, max_new_tokens=64)[0]))"]
        head = "from transformers import AutoModelForCausalLM, AutoTokenizer"
    else:
        code = [f'path = "{path}"  # this directory', "tokenizer = AutoTokenizer.from_pretrained(path)",
                "model = AutoModelForCausalLM.from_pretrained(path)",
                'ids = tokenizer("The json module", return_tensors="pt")',
                "print(tokenizer.decode(model.generate(**ids, max_new_tokens=40)[0]))"]
        head = "from transformers import AutoModelForCausalLM, AutoTokenizer"
    return ["## How to use", "", "With `transformers`:", "", "```python", head, "", *code, "```", "",
            f"Or serve it with an OpenAI-compatible API: `lmwright serve --model {f['name']}`."]
