"""Risk checks: memorisation (canaries and verbatim continuation), counterfactual bias, PII and blocklist rates.

Canaries (Carlini et al., "The Secret Sharer", 2019): random secrets in a fixed frame are planted in the train
split, each `repeats` times. After training the canary's log-likelihood is ranked against random secrets of
the same frame that were never seen. The exposure is log2(|space|) - log2(rank): about 1 bit when the model
has learnt nothing about the secret, up to log2(|space|) (19.9 bits for 6 digits) when the secret is the model's
first choice. The rank in a space of a million secrets is estimated as the paper does, from a distribution fitted
to the sampled candidates' log-likelihoods (a normal fit here); the rank among the sampled candidates themselves
is reported beside it.

Verbatim continuation: from training documents' first tokens, how often does greedy decoding reproduce the next
tokens exactly? The same on validation documents is the baseline a model reaches without memorising.

Counterfactual bias: each template's context is filled with each group's terms; the gap of a group is the mean,
over templates, of its continuation log-likelihood minus the mean over groups. A model without preference gives
gaps near 0. The shipped set (`probes/bias_templates.jsonl`, `probes/bias_groups.json`, written for lmwright) has
60 templates, 12 on each of 5 axes: gender (female, male, nonbinary), age (young, middle-aged, older), origin (six
countries), religion (Christian, Muslim, Jewish, Hindu, Buddhist, atheist) and disability (blind, deaf, wheelchair
user, autistic, non-disabled), each group named by two noun phrases of one shape, adjective and noun ("The Muslim
engineer", "A Muslim student"), in sentences about programming work, so a technical-documentation model reads
familiar text and groups differ in one word only. `bias_max_gap` is the largest group gap over every axis;
`bias.AXIS.max_abs_gap` that of one axis (`risk.bias.gender.max_abs_gap`). The spec's own templates
(`risk.bias.templates`, filled with `risk.bias.groups`) are one more axis, "spec"; `risk.bias.shipped: false` leaves
the shipped set out. Limits: a gap says the model finds a sentence likelier after one group's words, not that it
would act on it; a rare adjective shifts a small model's predictions whatever group it names, so part of a gap is
word frequency; the sentences are short and positive (competence, trust), so they probe those associations only.

A classifier is probed by the same sentences put in front of its evaluation texts, one template per text, each group
in turn: `bias_flip_rate` is the largest share, over the axes, of texts whose predicted label changes when only the
group's words change (0 = the label never depends on them).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable

import numpy as np
import torch

from lmwright.data.canaries import CANARY_FRAME, SECRET_DIGITS
from lmwright.evaluate import probes
from lmwright.evaluate.classify import continuation_logprobs
from lmwright.evaluate.generation import greedy_continuations
from lmwright.evaluate.stats import bootstrap_ci


def _secret_logprob(model, tok, canary: dict, secrets: list[str]) -> np.ndarray:
    prefix = CANARY_FRAME.split("{secret}")[0].format(name=canary["name"])
    suffix = CANARY_FRAME.split("{secret}")[1]
    return continuation_logprobs(model, tok, [prefix] * len(secrets), [s + suffix for s in secrets], batch=64)


def exposure(model: torch.nn.Module, tok, canary: dict, candidates: int = 1000, seed: int = 0) -> dict:
    """Exposure of one canary against `candidates` random secrets of the same frame."""
    rng = np.random.default_rng([seed, 0xE4])
    others = [" ".join(str(d) for d in rng.integers(0, 10, SECRET_DIGITS)) for _ in range(candidates)]
    others = [s for s in others if s != canary["secret"]]
    lp = _secret_logprob(model, tok, canary, [canary["secret"], *others])
    mine, rest = lp[0], lp[1:]
    rank = 1 + int((rest > mine).sum()) + 0.5 * int((rest == mine).sum())
    space = math.log2(10 ** SECRET_DIGITS)
    mu, sd = float(rest.mean()), float(rest.std()) or 1e-9
    # P(a random secret scores at least as high), from the normal fit; log-space for the far tail
    z = (mine - mu) / sd
    log2_tail = math.log2(max(0.5 * math.erfc(z / math.sqrt(2)), 1e-300))
    fitted = min(space, max(0.0, -log2_tail))
    return {"name": canary["name"], "repeats": canary["repeats"], "exposure": fitted,
            "sampled_rank": rank, "sampled_exposure": math.log2((len(rest) + 1) / rank),
            "logprob": float(mine), "candidates_mean_logprob": mu, "max_exposure": space}


def verbatim_rate(model: torch.nn.Module, tok, texts: list[str], prompt_tokens: int, new_tokens: int,
                  limit: int) -> dict:
    """Share of documents whose next `new_tokens` tokens greedy decoding reproduces exactly, and the mean share of
    matching tokens."""
    _, _, match = greedy_continuations(model, tok, texts, prompt_tokens, new_tokens, limit)
    if not match:
        return {"rate": float("nan"), "token_match": float("nan"), "n": 0}
    match = np.array(match)
    return {"rate": float((match == 1.0).mean()), "token_match": float(match.mean()), "n": len(match)}


def wilson(k: int, n: int, confidence: float) -> tuple[float, float]:
    """The Wilson score interval of a proportion k / n; (nan, nan) when n is 0. The formula, as scipy's
    `binomtest(k, n).proportion_ci(method="wilson")` computes it (a test holds them equal): importing scipy.stats
    would cost a stage seconds for five lines."""
    if n == 0:
        return (float("nan"), float("nan"))
    from statistics import NormalDist

    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p, z2 = k / n, z * z
    centre, half = (p + z2 / (2 * n)) / (1 + z2 / n), z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return (0.0 if k == 0 else centre - half, 1.0 if k == n else centre + half)


def spread(rows: list, limit: int) -> list:
    """`limit` of `rows` taken at even steps through them (all of them when there are no more)."""
    if limit >= len(rows):
        return list(rows)
    return [rows[i * len(rows) // limit] for i in range(max(limit, 0))]


def counterfactual_bias(model: torch.nn.Module, tok, templates: list[dict], groups: dict[str, list[str]],
                        batch: int = 64, resamples: int = 0, confidence: float = 0.95, seed: int = 0) -> dict:
    """templates: [{context: "... {term} ...", continuation: "..."}]; groups: {group: [terms]}. With `resamples`, a
    bootstrap interval over templates for the largest gap."""
    names = list(groups)
    ll = np.zeros((len(templates), len(names)))
    for g, name in enumerate(names):
        ctxs = [t["context"].format(term=term) for t in templates for term in groups[name]]
        conts = [t["continuation"] for t in templates for _ in groups[name]]
        lp = continuation_logprobs(model, tok, ctxs, conts, batch).reshape(len(templates), len(groups[name]))
        ll[:, g] = lp.mean(1)
    gaps = ll - ll.mean(1, keepdims=True)
    per_group = {n: float(gaps[:, g].mean()) for g, n in enumerate(names)}
    ci = {"max_abs_gap": list(bootstrap_ci(lambda i: float(np.abs(gaps[i].mean(0)).max()), len(templates),
                                           resamples, confidence, seed))} if resamples else {}
    return {"gap_per_group": per_group, "max_abs_gap": float(np.abs(gaps.mean(0)).max()),
            "max_template_gap": float(np.abs(gaps).max()), **({"ci": ci} if ci else {}),
            "templates": [{"context": t["context"], "continuation": t["continuation"],
                           **{n: float(ll[i, g]) for g, n in enumerate(names)}} for i, t in enumerate(templates)]}


def bias_axes(shipped: bool, axes: list[str] | None, templates: list[dict],
              groups: dict[str, list[str]]) -> dict[str, dict]:
    """{axis: {templates, groups}}: the shipped axes (all, or those named in `axes`) and the spec's templates as the
    axis "spec"."""
    out: dict[str, dict] = {}
    if shipped:
        known = probes.read_json("bias_groups.json")
        for t in probes.jsonl("bias_templates.jsonl"):
            if axes is None or t["axis"] in axes:
                out.setdefault(t["axis"], {"templates": [], "groups": known[t["axis"]]})["templates"].append(
                    {"context": t["context"], "continuation": t["continuation"]})
    if templates:
        out["spec"] = {"templates": list(templates), "groups": dict(groups)}
    return out


def bias_by_axis(model: torch.nn.Module, tok, axes: dict[str, dict], resamples: int = 0, confidence: float = 0.95,
                 seed: int = 0) -> dict:
    """`counterfactual_bias` on each axis; `max_abs_gap` the largest over them, with the interval of that axis."""
    out: dict = {a: counterfactual_bias(model, tok, d["templates"], d["groups"], resamples=resamples,
                                        confidence=confidence, seed=seed) for a, d in axes.items()}
    top = max(out, key=lambda a: out[a]["max_abs_gap"]) if out else None
    res = {**out, "max_abs_gap": out[top]["max_abs_gap"] if top else float("nan"), "worst_axis": top,
           "n_templates": sum(len(d["templates"]) for d in axes.values())}
    if top and "ci" in out[top]:
        res["ci"] = {"max_abs_gap": out[top]["ci"]["max_abs_gap"]}
    return res


def classifier_bias(predict: Callable[[list[str]], np.ndarray], texts: list[str], axes: dict[str, dict],
                    confidence: float) -> dict:
    """Label flips when a counterfactual sentence in front of each text names another group of an axis."""
    out: dict = {}
    for axis, d in axes.items():
        ts, groups = d["templates"], d["groups"]
        names = list(groups)
        inputs = []
        for i, text in enumerate(texts):
            t = ts[i % len(ts)]
            for g in names:
                term = groups[g][i % len(groups[g])]
                inputs.append(f"{t['context'].format(term=term)}{t['continuation']} {text}")
        pred = np.asarray(predict(inputs)).reshape(len(texts), len(names))
        flips = int((pred != pred[:, :1]).any(1).sum())
        labels = sorted(set(pred.ravel().tolist()))
        dist = np.array([[np.mean(pred[:, g] == lab) for lab in labels] for g in range(len(names))])
        shift = max((0.5 * np.abs(dist[a] - dist[b]).sum() for a in range(len(names)) for b in range(a)),
                    default=0.0)
        out[axis] = {"flip_rate": flips / len(texts) if texts else float("nan"), "n": len(texts),
                     "label_shift": float(shift), "ci": {"flip_rate": list(wilson(flips, len(texts), confidence))}}
    rates = {a: v["flip_rate"] for a, v in out.items()}
    top = max(rates, key=rates.get) if rates else None
    return {**out, "max_flip_rate": rates[top] if top else float("nan"), "worst_axis": top}


def generation_safety(texts: list[str], extra_blocklist: tuple[str, ...] = (), confidence: float = 0.95) -> dict:
    """PII and blocklist rates over sampled generations, with the PII types found and Wilson intervals."""
    from lmwright.data.filters.blocklist import blocklist_hits
    from lmwright.data.filters.pii import find_pii

    pii_types: Counter = Counter()
    pii_docs = block_docs = 0
    for t in texts:
        spans = find_pii(t)
        pii_types.update(s.type for s in spans)
        pii_docs += bool(spans)
        block_docs += blocklist_hits(t, extra_blocklist) > 0
    n = max(len(texts), 1)
    return {"pii_rate": pii_docs / n, "blocklist_rate": block_docs / n, "pii_types": dict(pii_types),
            "n": len(texts), "ci": {"pii_rate": list(wilson(pii_docs, len(texts), confidence)),
                                    "blocklist_rate": list(wilson(block_docs, len(texts), confidence))}}
