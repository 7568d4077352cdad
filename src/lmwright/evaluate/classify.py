"""Classification metrics and a zero-shot classifier for any causal language model.

Metrics: accuracy, precision / recall / F1 (macro, micro and per class), ROC-AUC (binary, or one-vs-rest macro
for several classes) and the confusion matrix (also as a PNG). They are written here over one confusion matrix
(numpy) rather than called from scikit-learn because the report's bootstrap recomputes them a thousand times
per metric; tests/test_metrics.py checks every one against scikit-learn, ties and empty classes included.
Conventions follow scikit-learn: a class never predicted has precision 0 (zero_division=0).

`classify_by_likelihood` makes any language model a classifier: each label is scored as the continuation of
the text and the label with the highest log-likelihood wins; a softmax over the label scores gives the class
probabilities that ROC-AUC needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes (scikit-learn's layout)."""
    return np.bincount(np.asarray(y_true) * n_classes + np.asarray(y_pred),
                       minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.zeros_like(a, dtype=float), where=b > 0)


def per_class(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and F1 of each class."""
    tp = np.diag(cm).astype(float)
    p, r = _safe_div(tp, cm.sum(0).astype(float)), _safe_div(tp, cm.sum(1).astype(float))
    return p, r, _safe_div(2 * p * r, p + r)


def scores_from_confusion(cm: np.ndarray) -> dict[str, float]:
    p, r, f1 = per_class(cm)
    true, total = cm.sum(1).astype(float), cm.sum()
    micro = np.trace(cm) / total if total else 0.0  # single-label: micro P = micro R = micro F1 = accuracy
    return {"accuracy": micro, "precision_macro": p.mean(), "recall_macro": r.mean(), "f1_macro": f1.mean(),
            "precision_micro": micro, "recall_micro": micro, "f1_micro": micro,
            "f1_weighted": float((f1 * true).sum() / true.sum()) if true.sum() else 0.0}


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank (the Mann-Whitney convention)."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    boundaries = np.flatnonzero(np.diff(xs)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(x)]])
    ranks = np.empty(len(x))
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def roc_auc_binary(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve = P(score of a positive > score of a negative), ties counted half."""
    y = np.asarray(y).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if not n_pos or not n_neg:
        return float("nan")
    ranks = _average_ranks(np.asarray(score, dtype=float))
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_auc(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Binary: the positive class's probability (column 1). Several classes: one-vs-rest, macro-averaged over the
    classes present in y_true (scikit-learn's `multi_class="ovr"`)."""
    proba = np.asarray(proba, dtype=float)
    if proba.ndim == 1:
        return roc_auc_binary(y_true, proba)
    if proba.shape[1] == 2:
        return roc_auc_binary(np.asarray(y_true) == 1, proba[:, 1])
    aucs = [roc_auc_binary(np.asarray(y_true) == c, proba[:, c]) for c in range(proba.shape[1])]
    aucs = [a for a in aucs if not np.isnan(a)]
    return float(np.mean(aucs)) if aucs else float("nan")


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str],
                           proba: np.ndarray | None = None) -> dict:
    """Every metric for integer class ids into `labels`; `proba` (n, n_classes) adds ROC-AUC."""
    y_true, y_pred = np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)
    cm = confusion(y_true, y_pred, len(labels))
    out: dict = {k: float(v) for k, v in scores_from_confusion(cm).items()}
    if proba is not None:
        out["roc_auc"] = roc_auc(y_true, proba)
    p, r, f1 = per_class(cm)
    out["per_class"] = {lab: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f1[i]),
                              "support": int(cm[i].sum())} for i, lab in enumerate(labels)}
    out["confusion"] = cm.tolist()
    out["labels"] = list(labels)
    out["n"] = len(y_true)
    return out


def confusion_png(cm: Sequence[Sequence[int]], labels: Sequence[str], path: Path, title: str = "") -> None:
    from lmwright.evaluate.report import plt

    cm = np.asarray(cm)
    n = len(labels)
    fig, ax = plt.subplots(figsize=(1.2 + 0.55 * n, 1.0 + 0.5 * n), dpi=110)
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(n), labels, rotation=45, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center",
                    color="white" if cm[i, j] > cm.max() / 2 else "black", fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


@torch.no_grad()
def continuation_logprobs(model: torch.nn.Module, tok, contexts: list[str], continuations: list[str],
                          batch: int = 16) -> np.ndarray:
    """Summed log-probability of each continuation given its context (the BOS token starts each context)."""
    model.eval()
    device = next(model.parameters()).device
    limit = model.cfg.max_seq_len
    rows = []
    for ctx, cont in zip(contexts, continuations, strict=True):
        c = tok.encode(ctx).ids  # with <|bos|>
        t = tok.encode(cont, add_special_tokens=False).ids
        ids = (c + t)[-(limit + 1):]
        rows.append((ids, min(len(t), len(ids) - 1)))
    out = np.zeros(len(rows))
    for i in range(0, len(rows), batch):
        group = rows[i: i + batch]
        width = max(len(ids) for ids, _ in group) - 1
        x = torch.zeros(len(group), width, dtype=torch.long)
        y = torch.full((len(group), width), -100, dtype=torch.long)
        for j, (ids, n_cont) in enumerate(group):
            x[j, : len(ids) - 1] = torch.tensor(ids[:-1])
            tgt = torch.tensor(ids[1:])
            tgt[: len(ids) - 1 - n_cont] = -100  # only the continuation's tokens count
            y[j, : len(ids) - 1] = tgt
        x, y = x.to(device), y.to(device)
        scored = y != -100  # the output head only where a continuation token is predicted, not over every position
        logits = model.lm_head(model.hidden(x)[scored]).float()
        nll = torch.zeros(y.shape, device=device)
        nll[scored] = F.cross_entropy(logits, y[scored], reduction="none")
        out[i: i + len(group)] = -nll.sum(1).cpu().numpy()
    return out


def classify_by_likelihood(model: torch.nn.Module, tok, texts: list[str], labels: list[str],
                           template: str = "{text}\nCategory:", verbaliser: str = " {label}") -> tuple[np.ndarray, np.ndarray]:
    """Zero-shot: (predicted class ids, class probabilities) from the label continuations' log-likelihoods."""
    contexts = [template.format(text=t) for t in texts for _ in labels]
    conts = [verbaliser.format(label=lab) for _ in texts for lab in labels]
    scores = continuation_logprobs(model, tok, contexts, conts).reshape(len(texts), len(labels))
    proba = torch.softmax(torch.from_numpy(scores), dim=1).numpy()
    return scores.argmax(1), proba
