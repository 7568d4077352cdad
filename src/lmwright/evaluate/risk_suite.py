"""The risk suite on every model that can be served: the base (the evaluate stage), the assistant (the sft stage,
also the preference-tuned model) and the classifier (the classify stage), each checked right after it is made and
cached with it.

| figure | base | assistant | classifier |
|---|---|---|---|
| canary_max_exposure, verbatim_rate | measured (`suite.risk_checks`) | its base's | not applicable |
| injection_rate | not applicable | measured (`injection.py`) | not applicable |
| robustness_drop | bits per byte | ROUGE-L | macro-F1 (`perturb.py`) |
| bias_max_gap | measured | measured (`risk.py`) | not applicable |
| bias_flip_rate | not applicable | not applicable | measured (`risk.py`) |
| toxicity_rate | measured | measured (`toxicity.py`) | not applicable |
| false_info_rate, facts_accuracy, facts_abstention | measured | measured (`facts.py`) | not applicable |
| pii_rate, blocklist_rate | measured | measured (`risk.py`) | not applicable |

Each model's `risk.json` holds the checks' details, the figures under the names `requirements.acceptance` and
`governance.risks` use (`risk.injection_rate`, ...), their intervals under `ci`, and `not_applicable`: each figure
that does not apply to that kind of model, with why. A figure a fine-tuned model does not measure and that is not
marked so (memorisation, for the assistant) is taken from its base by the registry (`ops/registry.py`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lmwright.evaluate import facts as facts_mod
from lmwright.evaluate import injection, risk, toxicity
from lmwright.evaluate.answers import chat_answers, text_answers
from lmwright.evaluate.perturb import paired_drops, perturb
from lmwright.evaluate.stats import bits_per_byte

_NO_TEXT = "a classifier answers with a label from a fixed set: it writes no text"
NOT_APPLICABLE = {
    "base": {
        "injection_rate": "the base model continues text: it is not trained to follow a system prompt, so there is "
                          "none to break (measured on the assistant)",
        "bias_flip_rate": "the base model writes text: its bias is the log-likelihood gap (bias_max_gap)",
    },
    "assistant": {
        "bias_flip_rate": "the assistant writes text: its bias is the log-likelihood gap (bias_max_gap)",
    },
    "classifier": {
        "injection_rate": f"{_NO_TEXT}, so no secret can be revealed and no rule broken in words",
        "toxicity_rate": _NO_TEXT, "false_info_rate": f"{_NO_TEXT}; its accuracy is the fine-tuning figure",
        "facts_accuracy": _NO_TEXT, "facts_abstention": _NO_TEXT, "pii_rate": _NO_TEXT, "blocklist_rate": _NO_TEXT,
        "bias_max_gap": "a classifier's bias is measured as label flips (bias_flip_rate), not as text likelihood",
        "canary_max_exposure": f"{_NO_TEXT}: a planted secret cannot come out of it",
        "verbatim_rate": f"{_NO_TEXT}: it cannot repeat training text", "verbatim_rate_val": _NO_TEXT,
    },
}


# the detail group each headline figure's check writes (`risk.facts.abstention` is the false-information check's)
GROUP_OF = {"facts": "false_info_rate", "toxicity": "toxicity_rate", "safety": "pii_rate", "injection": "injection_rate",
            "verbatim": "verbatim_rate", "canaries": "canary_max_exposure"}


def not_applicable(kind: str, name: str) -> str | None:
    """Why the figure `name` (without `risk.`: a headline such as `pii_rate` or a detail such as
    `facts.abstention`) does not apply to a `kind` of model, or None when it does."""
    head = name.split(".")[0]
    table = NOT_APPLICABLE.get(kind, {})
    return table.get(name) or table.get(head) or table.get(GROUP_OF.get(head, ""))


def fingerprint(spec, root) -> dict:
    """What the checks read beyond the spec and the code: the shipped probe sets and the `risk.facts.path` file,
    by content (a stage's `extra` facts, so an edit to either reruns the checks)."""
    from lmwright.core.artifacts import file_digest
    from lmwright.evaluate import probes

    path = spec.risk.facts.path
    f = (Path(path) if Path(path).is_absolute() else Path(root) / path) if path else None
    blocklist = Path(__file__).parents[1] / "data" / "filters" / "blocklist_en.txt"  # the toxicity lexicon's part
    return {"probes": probes.digest(), "facts": file_digest(f) if f is not None and f.exists() else None,
            "blocklist": file_digest(blocklist)}


def project_paths(spec, root):
    """`spec` with `risk.facts.path` made absolute against the project directory `root` (recipes, which may run in
    torchrun workers, read files by path)."""
    f = spec.risk.facts
    if not f.path or Path(f.path).is_absolute():
        return spec
    facts = f.model_copy(update={"path": str(Path(root) / f.path)})
    return spec.model_copy(update={"risk": spec.risk.model_copy(update={"facts": facts})})


def questions(spec, root, split_dir) -> tuple[list[dict], str]:
    """The false-information questions for this project (`facts.questions`), or none when the check is off."""
    f = spec.risk.facts
    if not (f.enabled and f.questions):
        return [], ""
    return facts_mod.questions(f, root, split_dir, spec.data.pydocs_sources())


def _put(out: dict, key: str, detail: dict, figures: dict[str, str]) -> None:
    """A check's details under `key`, and its headline figures (name -> detail key) at the top with intervals."""
    out[key] = detail
    for name, k in figures.items():
        out[name] = detail[k]
        ci = detail.get("ci", {}).get(k)
        if ci is not None:
            out.setdefault("ci", {})[name] = ci


def _bias(out: dict, model, tok, rs, e, seed: int) -> None:
    b = rs.bias
    axes = risk.bias_axes(b.shipped, b.axes, [t.model_dump() for t in b.templates], b.groups)
    if b.enabled and axes:
        _put(out, "bias", risk.bias_by_axis(model, tok, axes, e.bootstrap, e.confidence, seed),
             {"bias_max_gap": "max_abs_gap"})


def _toxicity(out: dict, rs, e, answer) -> None:
    t = rs.toxicity
    if t.enabled and t.prompts:
        prompts = toxicity.toxicity_prompts(t.prompts)
        _put(out, "toxicity", toxicity.toxicity(prompts, answer(prompts), e.confidence), {"toxicity_rate": "rate"})


def _facts(out: dict, rs, e, rows: list[dict], source: str, answer) -> None:
    if rs.facts.enabled and rows:
        res = facts_mod.false_information(rows, answer([r["question"] for r in rows]), rs.facts.threshold,
                                          e.confidence, source)
        _put(out, "facts", res, {"false_info_rate": "false_info_rate", "facts_accuracy": "accuracy",
                                 "facts_abstention": "abstention"})
    elif rs.facts.enabled:  # no questions for this corpus: say why in risk.json, measure nothing
        out["facts"] = {"n": 0, "source": source}


def _texts(answers) -> list[str | None]:
    return [None if a is None else a.text for a in answers]


# -- the base model --------------------------------------------------------------------------------------------

def base_checks(model, tok, rs, e, val_texts: list[str], seq_len: int, facts: tuple[list[dict], str],
                seed: int) -> dict:
    """The checks that apply to a pretrained model beyond memorisation and safety (`suite.risk_checks`)."""
    from lmwright.evaluate.lm import doc_scores

    out: dict = {}
    _bias(out, model, tok, rs, e, seed)
    r = rs.robustness
    docs = [t[: r.doc_chars].rsplit(" ", 1)[0] if len(t) > r.doc_chars else t
            for t in risk.spread([t for t in val_texts if t.strip()], r.examples)]
    if r.enabled and docs and r.perturbations:
        variants = {"clean": docs, **{k: [perturb(t, k, r.rate, seed, i) for i, t in enumerate(docs)]
                                      for k in r.perturbations}}
        scores = {k: doc_scores(model, tok, v, seq_len, separate=True) for k, v in variants.items()}

        def bpb(variant: str, idx: np.ndarray) -> float:
            return bits_per_byte(scores[variant]["text_nats"], scores[variant]["bytes"], idx)

        res = paired_drops(bpb, len(docs), r.perturbations, False, e.bootstrap, e.confidence, seed)
        _put(out, "robustness", {"metric": "bits_per_byte", "higher_is_better": False, **res},
             {"robustness_drop": "drop"})
    tf = rs.toxicity
    _toxicity(out, rs, e, lambda ps: _texts(text_answers(model, tok, ps, tf.new_tokens, rs.sample_temperature, seed)))
    _facts(out, rs, e, *facts, lambda qs: text_answers(model, tok, [f"Question: {q}\nAnswer:" for q in qs],
                                                       rs.facts.new_tokens, scored=True, stop=["\n"]))
    out["not_applicable"] = dict(NOT_APPLICABLE["base"])
    return out


# -- the assistant -------------------------------------------------------------------------------------------

def assistant_checks(model, tok, rs, e, conversations: list[list[dict]], references: list[str],
                     facts: tuple[list[dict], str], seed: int) -> dict:
    """Every check on a chat model; `conversations` (ending with a user turn) and `references` are its held-out
    rows, for robustness and the sampled answers checked for PII."""
    from lmwright.evaluate.generation import rouge

    out: dict = {}
    inj = rs.injection
    if inj.enabled and inj.attempts:
        res = injection.injection_check(lambda cs: _texts(chat_answers(model, tok, cs, inj.new_tokens)),
                                        injection.attempts(inj.attempts), e.confidence)
        _put(out, "injection", res, {"injection_rate": "rate"})
    r = rs.robustness
    pick = risk.spread(list(range(len(conversations))), r.examples)
    if r.enabled and pick and r.perturbations:
        convs, refs = [conversations[i] for i in pick], [references[i] for i in pick]
        answers = {"clean": _texts(chat_answers(model, tok, convs, r.new_tokens))}
        for k in r.perturbations:
            noisy = [[*c[:-1], {**c[-1], "content": perturb(c[-1]["content"], k, r.rate, seed, i)}]
                     for i, c in enumerate(convs)]
            answers[k] = _texts(chat_answers(model, tok, noisy, r.new_tokens))
        keep = [i for i in range(len(convs)) if all(a[i] is not None for a in answers.values())]
        if keep:
            rl = {k: rouge([a[i] for i in keep], [refs[i] for i in keep])["rougeL"] for k, a in answers.items()}
            res = paired_drops(lambda v, idx: float(rl[v][idx].mean()), len(keep), r.perturbations, True,
                               e.bootstrap, e.confidence, seed)
            _put(out, "robustness", {"metric": "rouge_l", "higher_is_better": True, "skipped": len(convs) - len(keep),
                                     **res}, {"robustness_drop": "drop"})
    _bias(out, model, tok, rs, e, seed)
    tf = rs.toxicity
    _toxicity(out, rs, e, lambda ps: _texts(chat_answers(model, tok, [[{"role": "user", "content": p}] for p in ps],
                                                          tf.new_tokens, rs.sample_temperature, seed)))
    _facts(out, rs, e, *facts, lambda qs: chat_answers(model, tok, [[{"role": "user", "content": q}] for q in qs],
                                                       rs.facts.new_tokens, scored=True))
    if rs.samples and conversations:
        convs = [conversations[i % len(conversations)] for i in range(rs.samples)]
        sampled = [t for t in _texts(chat_answers(model, tok, convs, min(48, model.cfg.max_seq_len // 4),
                                                  rs.sample_temperature, seed)) if t is not None]
        if sampled:
            _put(out, "safety", risk.generation_safety(sampled, confidence=e.confidence),
                 {"pii_rate": "pii_rate", "blocklist_rate": "blocklist_rate"})
    out["not_applicable"] = dict(NOT_APPLICABLE["assistant"])
    return out


# -- the classifier -------------------------------------------------------------------------------------------

def classifier_checks(predict, texts: list[str], y: np.ndarray, n_labels: int, rs, e, seed: int) -> dict:
    """Robustness (macro-F1 under perturbations) and counterfactual label flips; `predict(texts) -> label ids`."""
    from lmwright.evaluate.classify import confusion, scores_from_confusion

    out: dict = {}
    r = rs.robustness
    pick = risk.spread(list(range(len(texts))), r.examples)
    if r.enabled and pick and r.perturbations:
        sub, ys = [texts[i] for i in pick], np.asarray(y)[pick]
        preds = {"clean": np.asarray(predict(sub))}
        for k in r.perturbations:
            preds[k] = np.asarray(predict([perturb(t, k, r.rate, seed, i) for i, t in enumerate(sub)]))

        def f1(variant: str, idx: np.ndarray) -> float:
            return scores_from_confusion(confusion(ys[idx], preds[variant][idx], n_labels))["f1_macro"]

        res = paired_drops(f1, len(sub), r.perturbations, True, e.bootstrap, e.confidence, seed)
        res["accuracy"] = {k: float((p == ys).mean()) for k, p in preds.items()}
        _put(out, "robustness", {"metric": "f1_macro", "higher_is_better": True, **res}, {"robustness_drop": "drop"})
    b = rs.bias
    axes = risk.bias_axes(b.shipped, b.axes, [t.model_dump() for t in b.templates], b.groups)
    # each text's opening (up to 240 characters, at a word's end): the sentence in front is what varies
    bias_texts = [t if len(t) <= 240 else t[:240].rsplit(" ", 1)[0] for t in risk.spread(list(texts), b.classifier_texts)]
    if b.enabled and axes and bias_texts:
        res = risk.classifier_bias(predict, bias_texts, axes, e.confidence)
        out["bias"], out["bias_flip_rate"] = res, res["max_flip_rate"]
        if res["worst_axis"]:
            out.setdefault("ci", {})["bias_flip_rate"] = res[res["worst_axis"]]["ci"]["flip_rate"]
    out["not_applicable"] = dict(NOT_APPLICABLE["classifier"])
    return out
