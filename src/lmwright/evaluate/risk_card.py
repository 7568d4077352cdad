"""The report card's risk part, for every model the run made: the risk register (`governance.risks`) with each
model's verdict, a table of every model's risk figures, each check's details by model, and the `risk.*` rows of
the requirements.

A model's figure is its own (`risk.json` of the stage that made it: evaluate for the base, sft, classify or
preference for the others); a figure a fine-tuned model did not measure is its base's, said as such (as the
registry's `recorded_figures` does); one that does not apply to that kind of model (`not_applicable` in its
`risk.json`, e.g. prompt injection on a classifier) is reported as "not applicable" with why, never as missing.
"""

from __future__ import annotations

import json

from lmwright.evaluate.card import fmt, fmt_ci
from lmwright.evaluate.report import Section
from lmwright.evaluate.suite import check_requirements, flatten, interval

STAGES = (("base", "evaluate"), ("assistant", "sft"), ("classifier", "classify"), ("preferred", "preference"))
HEADLINES = ("injection_rate", "robustness_drop", "bias_max_gap", "bias_flip_rate", "toxicity_rate",
             "false_info_rate", "facts_accuracy", "facts_abstention", "pii_rate", "blocklist_rate", "verbatim_rate",
             "canary_max_exposure")


# a headline figure's check (its details in risk.json)
_DETAIL = {"injection_rate": "injection", "toxicity_rate": "toxicity", "false_info_rate": "facts",
           "facts_accuracy": "facts", "facts_abstention": "facts", "robustness_drop": "robustness"}


def model_risks(inp: dict, project: str) -> dict[str, dict]:
    """{kind: {name, risk}} for each model of the run with risk results; `inp` maps stages to their outputs."""
    out = {}
    for kind, stage in STAGES:
        o = inp.get(stage)
        if o is None or o.summary.get("skipped") or not (o.path / "risk.json").exists():
            continue
        name = project if kind == "base" else o.summary.get("registered_as", f"{project}-{kind}")
        out[kind] = {"name": name, "risk": json.loads((o.path / "risk.json").read_text())}
    return out


def resolve(models: dict[str, dict], kind: str, metric: str, base_results: dict | None = None) -> dict:
    """A model's figure for `metric`: {value, ci, note}; note is "" (its own), "its base's", "not applicable: why"
    or "not measured ..."."""
    if kind not in models:
        return {"value": None, "ci": None, "note": f"not measured: this run made no {kind} model"}
    risk = models[kind]["risk"]
    results = base_results if kind == "base" and base_results is not None else {"risk": risk}
    value = flatten(results).get(metric)
    if value is not None:
        return {"value": value, "ci": interval(results, metric), "note": ""}
    head, _, rest = metric.partition(".")
    why = (risk.get("not_applicable") or {}).get(rest.split(".")[0]) if head == "risk" else None
    if why:
        return {"value": None, "ci": None, "note": f"not applicable: {why}"}
    check = risk.get(_DETAIL.get(rest, ""))
    if isinstance(check, dict) and check.get("n") == 0 and check.get("skipped"):
        return {"value": None, "ci": None, "note": f"not measured: all {check['skipped']} probes are longer than "
                                                   "this model's context"}
    if kind != "base" and head == "risk" and "base" in models:
        got = resolve(models, "base", metric)
        if got["value"] is not None:
            return {**got, "note": "its base's (not measured on this model)"}
    return {"value": None, "ci": None, "note": "not measured (the check is off or did not run)"}


_OPS = {"<=": lambda a, b: a <= b, "<": lambda a, b: a < b, ">=": lambda a, b: a >= b, ">": lambda a, b: a > b,
        "==": lambda a, b: a == b}


def register_rows(entries, models: dict[str, dict], base_results: dict) -> list[dict]:
    """Each register entry on each model it names: value, interval, verdict (pass, fail, not measured, not
    applicable) and a note."""
    from lmwright.spec.evaluate import _CRITERION

    rows = []
    for entry in entries:
        metric, op, target = _CRITERION.match(entry.check).groups()
        for kind in entry.models:
            got = resolve(models, kind, metric, base_results)
            if got["value"] is not None:
                verdict = "pass" if _OPS[op](got["value"], float(target)) else "fail"
            else:
                verdict = "not applicable" if got["note"].startswith("not applicable") else "not measured"
            rows.append({"risk": entry.risk, "owner": entry.owner, "model": models.get(kind, {}).get("name", kind),
                         "kind": kind, "check": entry.check, "value": got["value"], "ci": got["ci"],
                         "verdict": verdict, "note": got["note"], "mitigation": entry.mitigation or ""})
    return rows


def register_section(rows: list[dict]) -> Section:
    if not rows:
        return Section("Risk register", text="No risks registered (governance.risks is empty).")
    table = [["risk", "owner", "model", "check", "measured", "interval", "verdict", "note", "mitigation"]]
    table += [[r["risk"], r["owner"], r["model"], r["check"], fmt(r["value"]), fmt_ci(r["ci"]),
               r["verdict"].upper() if r["verdict"] in ("pass", "fail") else r["verdict"], r["note"], r["mitigation"]]
              for r in rows]
    counts = {v: sum(r["verdict"] == v for r in rows) for v in ("pass", "fail", "not applicable", "not measured")}
    return Section("Risk register", table=table, text=(
        "The project's risks (governance.risks), each with its owner and the check that measures it, on each model "
        "it concerns. " + ", ".join(f"{n} {v}" for v, n in counts.items() if n) + ". The register informs; "
        "to gate promotion on a check, put it in requirements.acceptance."))


def requirement_rows(criteria: list[tuple[str, str, float]], base_results: dict, models: dict[str, dict]) -> list[dict]:
    """`requirements.acceptance` on the run: every criterion on the base's figures (as before), and a `risk.*`
    criterion also on each fine-tuned model that measured that figure itself, its criterion naming the model. A
    criterion the base marks not applicable is left to the models that measure it ("not applicable", which holds
    nothing back, if none does). A row naming a model (`model`) concerns that model alone."""
    rows = []
    for crit in criteria:
        metric = crit[0]
        base_row = check_requirements([crit], base_results)[0]
        extra = []
        if metric.startswith("risk."):
            for kind, m in models.items():
                if kind == "base" or flatten({"risk": m["risk"]}).get(metric) is None:
                    continue
                row = check_requirements([crit], {"risk": m["risk"]})[0]
                extra.append({**row, "criterion": f"{row['criterion']} ({m['name']})", "model": m["name"]})
        note = resolve(models, "base", metric, base_results)["note"] if models else ""
        if base_row["verdict"] == "missing" and note.startswith("not applicable"):
            if extra:  # left to the models that measure it
                rows += extra
                continue
            base_row = {**base_row, "verdict": "not applicable", "why": note}
        rows += [base_row] + extra
    return rows


# -- each check's details -----------------------------------------------------------------------------------------

def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def figures_section(models: dict[str, dict], base_results: dict) -> Section:
    kinds = list(models)
    table = [["figure", *[f"{models[k]['name']} ({k})" for k in kinds]]]
    for name in HEADLINES:
        cells = []
        for k in kinds:
            got = resolve(models, k, f"risk.{name}", base_results)
            if got["value"] is not None:
                cells.append(fmt(got["value"]) + (f" {fmt_ci(got['ci'], 3)}" if got["ci"] else "")
                             + (" (its base's)" if got["note"] else ""))
            else:
                cells.append("n/a" if got["note"].startswith("not applicable") else "not measured")
        if any(c != "not measured" for c in cells):
            table.append([f"risk.{name}", *cells])
    return Section("Risk checks by model", table=table, text=(
        "Every model the run made, checked where it applies (n/a: the check does not apply to that kind of model; "
        "the reason is in the model's risk.json and the register). Intervals: Wilson for rates, paired bootstrap "
        "for the robustness drop. Each figure can be named in requirements.acceptance or governance.risks."))


def detail_sections(models: dict[str, dict]) -> list[Section]:
    out = []
    rows = [[m["name"], a, f"{fmt(v['max_abs_gap'])} {fmt_ci(v.get('ci', {}).get('max_abs_gap'), 3)}",
             ", ".join(f"{g} {x:+.3f}" for g, x in v["gap_per_group"].items()),
             fmt(v["max_template_gap"]), str(len(v["templates"]))]
            for m in models.values() for a, v in (m["risk"].get("bias") or {}).items()
            if isinstance(v, dict) and "gap_per_group" in v]
    if rows:
        out.append(Section("Risk: counterfactual bias", table=[
            ["model", "axis", "largest mean gap (nats, interval)", "mean gap per group", "largest single template",
             "templates"],
            *rows], text="Each template's context filled with each group's terms; a group's gap is its continuation "
                         "log-likelihood minus the groups' mean, averaged over the axis's templates (0 = no "
                         "preference; the interval: bootstrap over templates). The shipped set: 60 templates over gender, age, origin, religion and "
                         "disability; 'spec' is the project's own templates."))
    rows = [[m["name"], a, fmt(v["flip_rate"], 3), fmt_ci(v["ci"]["flip_rate"], 3), fmt(v["label_shift"], 3),
             fmt(v["n"])] for m in models.values() for a, v in (m["risk"].get("bias") or {}).items()
            if isinstance(v, dict) and "flip_rate" in v]
    if rows:
        out.append(Section("Risk: classifier label flips", table=[
            ["model", "axis", "texts whose label changes", "interval", "largest label-share shift", "texts"], *rows],
            text="A sentence naming one group of the axis is put before each evaluation text, each group in turn; "
                 "a flip is a text whose predicted label depends on the group."))
    for m in models.values():
        inj = m["risk"].get("injection")
        if inj and not inj["n"]:
            out.append(Section(f"Risk: prompt injection ({m['name']})", text=(
                f"Not measured: all {inj['skipped']} shipped attempts are longer than this model's context leaves "
                "room for (a larger model.max_seq_len measures them).")))
        elif inj:
            table = [["technique", "complied", "attempts"]] + [
                [t, fmt(v["complied"]), fmt(v["n"])] for t, v in inj["by_technique"].items()]
            table.append(["all", f"{fmt(inj['complied'])} ({_pct(inj['rate'])})", fmt(inj["n"])])
            out.append(Section(f"Risk: prompt injection ({m['name']})", table=table, text=(
                f"{inj['n']} shipped attempts against a system prompt holding a secret or a rule ({inj['skipped']} "
                "too long for the context); complied = the reply contains the secret or the forbidden word "
                "(letters and digits compared, case ignored). Interval "
                f"{fmt_ci(inj['ci']['rate'], 3)}. First replies: "
                + " | ".join(f"{e['id']}: {e['answer'][:60]!r}" for e in inj["examples"][:4]))))
    rows = []
    for m in models.values():
        r = m["risk"].get("robustness")
        if r:
            rows.append([m["name"], r["metric"], fmt(r["clean"]), *[fmt(r["perturbed"].get(k)) for k in
                         ("typos", "case", "whitespace")], fmt(r["drop"]), fmt_ci(r["ci"]["drop"]), fmt(r["n"])])
    if rows:
        out.append(Section("Risk: robustness to noisy input", table=[
            ["model", "metric", "clean", "typos", "case", "whitespace", "largest drop", "interval", "examples"], *rows],
            text="Each model's own metric on the same held-out examples, clean and perturbed (seeded); the drop is "
                 "the loss in the metric (positive = worse: for bits per byte, perturbed minus clean), its interval "
                 "a paired bootstrap."))
    rows = [[m["name"], fmt(t["n"]), fmt(t["skipped"]), f"{fmt(t['rate'], 3)} {fmt_ci(t['ci']['rate'], 3)}",
             ", ".join(f"{c} {_pct(v)}" for c, v in t["by_category"].items()) or "none"]
            for m in models.values() if (t := m["risk"].get("toxicity"))]
    if rows:
        out.append(Section("Risk: toxicity of sampled answers", table=[
            ["model", "samples", "prompts too long", "toxic share (interval)", "by category"], *rows], text=(
            "One sampled answer to each shipped prompt that invites rudeness, scored by a word list (the shipped "
            "lexicon: insults, threats, identity attacks, harassment, and the blocklist's profanity), not by a "
            "classifier: it misses toxicity without listed words and flags listed words used harmlessly.")))
    # a check that had no questions (no pydocs source, no risk.facts.path) has only n and the reason (its source)
    rows = [[m["name"], f["source"], f"{fmt(f['n'])}" + (f" ({f['skipped']} too long)" if f.get("skipped") else ""),
             fmt(f.get("accuracy"), 3), fmt(f.get("false_info_rate"), 3),
             fmt_ci(f.get("ci", {}).get("false_info_rate"), 3), fmt(f.get("abstention"), 3),
             f"{f['threshold']:g}" if "threshold" in f else "–"]
            for m in models.values() if (f := m["risk"].get("facts"))]
    if rows:
        out.append(Section("Risk: false information", table=[
            ["model", "questions from", "asked", "correct", "wrong and confident", "interval", "not confident",
             "threshold"], *rows], text=(
            "Greedy answers to questions with known answers. Correct: the normalised answer contains an accepted "
            "one; confident: its least likely token's probability is at least the threshold. The false-information "
            "rate is the share answered wrongly and confidently.")))
    rows = [[m["name"], fmt(s["n"]), fmt(s["pii_rate"], 3), ", ".join(f"{k} {v}" for k, v in s["pii_types"].items())
             or "none", fmt(s["blocklist_rate"], 3)] for m in models.values() if (s := m["risk"].get("safety"))]
    if rows:
        out.append(Section("Risk: PII and blocklist in sampled generations", table=[
            ["model", "samples", "with PII", "PII types", "with blocklisted words"], *rows]))
    return out
