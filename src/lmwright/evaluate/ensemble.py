"""Ensembles at evaluation (`lmwright ensemble MODEL MODEL ...`): several models' predictions combined into one, and
the ensemble's figure against each member's with a paired bootstrap interval of the difference.

How predictions combine (`combine`):
- `logprob` (the default): the mean of the members' log-probabilities, renormalised over the vocabulary (or the
  classes): the softmax of the mean log-softmax, a normalised geometric mean (a product of experts).
- `prob`: the mean of the members' probabilities, p(y) = (1/K) sum_k p_k(y), scored as the log of that mean (a
  mixture; the deep-ensembles rule of Lakshminarayanan et al., 2017).
Both are distributions, so bits per byte stay a code length, and neither's loss is ever above the members' mean
loss (for the mixture by Jensen's inequality; for the geometric mean because its normaliser, the sum over tokens
of prod_k p_k^(1/K), is at most the sum of the arithmetic means, 1). Measured on the default project's two-seed
ensemble (benchmarks/averaging.py, benchmarks/RESULTS.md), `logprob` was 0.004 bits per byte better than `prob`
(paired interval below zero) and better in the classifiers' log-loss, so it is the default.

Language modelling: `EnsembleLM` wraps the members as one module whose output is the combined log-probabilities
(normalised, so cross-entropy's softmax leaves them as they are), and `lm.doc_scores` scores it exactly as it
scores one model: the same windows, the same per-document sums, so member and ensemble pair up document by
document. Classification: each member's class probabilities (`ClassifierModel`, encoding texts as the classify
recipe does), combined the same way. Members must share the tokenizer: the same ids must mean the same text.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from lmwright.errors import LmwrightError
from lmwright.evaluate.classify import confusion, scores_from_confusion
from lmwright.evaluate.lm import doc_scores, metrics_from_scores
from lmwright.evaluate.stats import bits_per_byte, paired_difference

COMBINE = ("logprob", "prob")  # the first is the default


def combine_logprobs(logps: Sequence[torch.Tensor], combine: str = "logprob") -> torch.Tensor:
    """Normalised log-probabilities (..., V) of each member -> the ensemble's. Members with fewer outputs (a
    smaller embedding table) give the extra ones probability 0."""
    if combine not in COMBINE:
        raise LmwrightError(f"combine {combine!r}: use logprob (the mean of the log-probabilities, renormalised) "
                            "or prob (the mean of the probabilities)")
    width = max(t.shape[-1] for t in logps)
    stacked = torch.stack([torch.nn.functional.pad(t.float(), (0, width - t.shape[-1]), value=-math.inf)
                           for t in logps])
    if combine == "prob":
        return torch.logsumexp(stacked, 0) - math.log(len(logps))
    return torch.log_softmax(stacked.mean(0), -1)


class EnsembleLM(torch.nn.Module):
    """Language models as one: `forward(ids)` -> the combined log-probabilities of the next token."""

    def __init__(self, members: Sequence[torch.nn.Module], combine: str = "logprob"):
        super().__init__()
        self.members, self.combine = torch.nn.ModuleList(members), combine

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return combine_logprobs([torch.log_softmax(m(ids).float(), -1) for m in self.members], self.combine)


def check_tokenizers(dirs: dict[str, Path]) -> None:
    """The members' tokenizers are one: the same vocabulary, merges, special tokens and pre-tokenizer."""
    def essence(path: Path) -> dict:
        file = Path(path) / "tokenizer.json"
        if not file.exists():
            raise LmwrightError(f"{path}: no tokenizer.json; an ensemble's members are saved models with their tokenizer")
        t = json.loads(file.read_text(encoding="utf-8"))
        return {k: t.get(k) for k in ("model", "added_tokens", "pre_tokenizer", "normalizer", "decoder")}

    (first, ref), *rest = ((name, essence(path)) for name, path in dirs.items())
    for name, tok in rest:
        if tok != ref:
            raise LmwrightError(f"{name} and {first} do not share a tokenizer (their tokenizer.json vocabularies, "
                                "merges or special tokens differ), so their token probabilities cannot be combined; "
                                "ensemble models of one project, or models trained with the same train.init_from")


def is_classifier(path: Path) -> bool:
    cfg = json.loads((Path(path) / "config.json").read_text())
    return any(a.endswith("ForSequenceClassification") for a in cfg.get("architectures", []))


def lm_ensemble(members: dict[str, torch.nn.Module], tok, texts: list[str], seq_len: int, combine: str = "logprob",
                resamples: int = 1000, confidence: float = 0.95, seed: int = 0,
                on_batch: Callable[[int], None] = lambda n: None) -> dict:
    """Loss, perplexity and bits per byte of each member and of their ensemble over `texts` (scored joined, as
    the evaluate stage scores a split), and per member the ensemble's bits per byte minus the member's with a
    paired bootstrap interval over documents (below zero: the ensemble is better)."""
    if len(members) < 2:
        raise LmwrightError("an ensemble needs at least two models")
    if not texts:
        raise LmwrightError("nothing to evaluate: the split has no documents")
    seq_len = min([seq_len, *(m.cfg.max_seq_len for m in members.values() if hasattr(m, "cfg"))])
    scores = {name: doc_scores(m, tok, texts, seq_len, on_batch=on_batch) for name, m in members.items()}
    ens = doc_scores(EnsembleLM(list(members.values()), combine), tok, texts, seq_len, on_batch=on_batch)
    keep = ("loss", "perplexity", "bits_per_byte", "tokens", "bytes")
    out: dict = {"task": "lm", "combine": combine, "documents": len(texts), "seq_len": seq_len,
                 "members": {name: {k: v for k, v in metrics_from_scores(s).items() if k in keep}
                             for name, s in scores.items()},
                 "ensemble": {k: v for k, v in metrics_from_scores(ens).items() if k in keep}, "vs": {}}
    def bpb(s: dict[str, np.ndarray], i: np.ndarray) -> float:
        return bits_per_byte(s["text_nats"], s["bytes"], i)

    for name, s in scores.items():
        out["vs"][name] = {"bits_per_byte": paired_difference(lambda i, s=s: bpb(ens, i) - bpb(s, i), len(texts),
                                                              resamples, confidence, seed)}
    out["best_member"] = min(out["members"], key=lambda k: out["members"][k]["bits_per_byte"])
    return out


def classify_figures(proba: np.ndarray, y: np.ndarray, idx: np.ndarray) -> dict[str, float]:
    """Accuracy, macro-F1 and log-loss (nats) of class probabilities (n, classes) on the examples `idx`."""
    p, t = proba[idx], y[idx]
    scores = scores_from_confusion(confusion(t, p.argmax(1), proba.shape[1]))
    return {"accuracy": float(scores["accuracy"]), "f1_macro": float(scores["f1_macro"]),
            "log_loss": float(-np.log(np.clip(p[np.arange(len(t)), t], 1e-12, None)).mean())}


def classify_ensemble(probas: dict[str, np.ndarray], y_true: Sequence[int], labels: Sequence[str],
                      combine: str = "logprob", resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> dict:
    """Accuracy, macro-F1 and log-loss of each member's class probabilities (n, classes) and of their ensemble,
    with per member the ensemble's figure minus the member's and a paired bootstrap interval over examples
    (above zero is better for accuracy and F1, below zero for log-loss)."""
    if len(probas) < 2:
        raise LmwrightError("an ensemble needs at least two models")
    y = np.asarray(y_true, dtype=int)
    if not len(y):
        raise LmwrightError("nothing to evaluate: no labelled examples")
    logs = [torch.from_numpy(np.log(np.clip(p, 1e-12, None))) for p in probas.values()]
    ens = combine_logprobs(logs, combine).exp().double().numpy()
    everything = np.arange(len(y))
    out: dict = {"task": "classify", "combine": combine, "examples": len(y), "labels": list(labels),
                 "members": {name: classify_figures(p, y, everything) for name, p in probas.items()},
                 "ensemble": classify_figures(ens, y, everything), "vs": {}}
    for name, p in probas.items():
        out["vs"][name] = {k: paired_difference(lambda i, p=p, k=k: classify_figures(ens, y, i)[k]
                                                - classify_figures(p, y, i)[k], len(y), resamples, confidence, seed)
                           for k in ("accuracy", "f1_macro", "log_loss")}
    out["best_member"] = max(out["members"], key=lambda k: out["members"][k]["f1_macro"])
    return out


def classifier_probabilities(dirs: dict[str, Path], texts: list[str], seq_len: int = 128) -> tuple[dict, list[str]]:
    """Each classifier's class probabilities on `texts`, and their shared label list (the same labels in the
    same order, or an error)."""
    from lmwright.annotate.active import ClassifierModel

    probas, labels = {}, None
    for name, path in dirs.items():
        model = ClassifierModel(path, seq_len=seq_len, name=name)
        if labels is not None and model.classes != labels:
            raise LmwrightError(f"{name} predicts {model.classes}, the first model {labels}: an ensemble's "
                                "classifiers need the same labels in the same order")
        labels = model.classes
        probas[name] = model.predict_proba(texts)[0]
    return probas, labels or []
