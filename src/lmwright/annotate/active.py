"""Model-assisted labelling and active learning: suggestions with scores, and the order of the unlabelled queue.

**Uncertainty** of a row of class probabilities p (higher = more uncertain; the top class p(1), the runner-up p(2)):

| method | formula | range (K classes) |
|---|---|---|
| `least_confidence` | 1 - p(1) | 0 .. 1 - 1/K |
| `margin` | 1 - (p(1) - p(2)) | 0 .. 1 |
| `entropy` | -sum_k p_k ln p_k (0 ln 0 = 0) | 0 .. ln K |

Multilabel rows are independent yes/no probabilities per label: each label's two-way uncertainty is averaged.

**Models.** Suggestions come from a `Predictor`: anything with `name` and `predict_proba(texts) -> (probs, classes)`.
`QuickModel` (TF-IDF word and character n-grams + complement naive Bayes) refits in tens of milliseconds while the
annotators work, which retraining the project's language-model classifier cannot do on a CPU;
`ClassifierModel` loads the project's fine-tuned classifier (a `LlamaForSequenceClassification` directory, as
`lmwright finetune classify` saves it) for suggestions from the model the project actually ships.
`next_batch` orders the unlabelled pool by the quick model's uncertainty, or randomly (saying why) while too few
answers are in. benchmarks/active_learning.py measures how many labels each method saves on the default corpus.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from lmwright.annotate.tasks import AnnotationError, Task

METHODS = ("least_confidence", "margin", "entropy")
STRATEGIES = ("random", *METHODS)  # what `next_batch` accepts
WORD_PATTERN = r"(?u)\b\w+\b"  # one-letter words too: `x`, `n` and `i` say a lot in docstrings


class Predictor(Protocol):
    name: str

    def predict_proba(self, texts: Sequence[str]) -> tuple[np.ndarray, list[str]]: ...


def _check_method(method: str, allowed: tuple[str, ...] = METHODS) -> None:
    if method not in allowed:
        raise AnnotationError(f"uncertainty method {method!r} is not one of {', '.join(allowed)}")


def uncertainty(probs: np.ndarray, method: str = "least_confidence", multilabel: bool = False) -> np.ndarray:
    """One score per row of `probs` (n, K), higher = more uncertain (formulas in the module docstring).
    `multilabel`: each column is its own yes/no probability; the row's score is the mean over its labels."""
    _check_method(method)
    p = np.asarray(probs, dtype=float)
    if p.ndim != 2:
        raise AnnotationError(f"probabilities are a 2-d array (rows, classes); got shape {p.shape}")
    if p.shape[0] == 0 or p.shape[1] == 0:
        return np.zeros(p.shape[0])
    if multilabel:  # each label a two-class row [p, 1 - p]; the same formula, averaged over the labels
        pairs = np.stack([p, 1.0 - p], axis=-1).reshape(-1, 2)
        return uncertainty(pairs, method).reshape(p.shape).mean(axis=1)
    if method == "least_confidence":
        return 1.0 - p.max(axis=1)
    if method == "margin":
        if p.shape[1] == 1:
            return 1.0 - p[:, 0]
        top2 = -np.partition(-p, 1, axis=1)[:, :2]
        return 1.0 - (top2[:, 0] - top2[:, 1])
    logs = np.log(p, out=np.zeros_like(p), where=p > 0)  # 0 ln 0 = 0
    return -(p * logs).sum(axis=1)


def rank(probs: np.ndarray, method: str = "least_confidence", multilabel: bool = False) -> np.ndarray:
    """Row indices, most uncertain first; ties keep their input order (a stable sort)."""
    return np.argsort(-uncertainty(probs, method, multilabel), kind="stable")


# -- the quick model ---------------------------------------------------------------------------------------------

class QuickModel:
    """A scikit-learn text classifier that refits in tens of milliseconds on a few hundred labels.

    Features: TF-IDF of words (unigrams and bigrams, one-letter words kept) and of character 2-5-grams inside
    words, sublinear term frequency, vocabulary and IDF from the labelled texts. Classifier (`kind`): "nb",
    complement naive Bayes (alpha 0.1; one-vs-rest for multilabel), or "logistic", logistic regression trained by
    SGD (log loss, alpha 1e-4, 10 epochs, balanced class weights). Deterministic for a given `seed`.

    Why these, on the chapter task (benchmarks/active_learning.py; benchmarks/RESULTS.md): character n-grams
    add 0.02-0.06 macro-F1 over words alone at every label count (identifiers share pieces: `urlopen`, `urllib`);
    a vocabulary from the labelled texts beats one from the whole pool with few labels (n-grams no labelled text
    has only dilute each row's norm); complement NB beats logistic regression and a linear SVM at 100-1,000
    labels and is within 0.015 of them on the whole pool, margin sampling saves more labels with it (1.48x
    against 1.40x with logistic regression at a 1,000-label budget), its probabilities are no worse
    calibrated, and it fits in ~10 ms where SGD takes 0.1-1 s and lbfgs logistic regression (scipy 1.17) 3-60 s.
    Hashed features lost 0.05-0.1 macro-F1 with few labels."""

    KINDS = ("nb", "logistic")

    def __init__(self, multilabel: bool = False, seed: int = 0, kind: str = "nb"):
        if kind not in self.KINDS:
            raise AnnotationError(f"quick model: kind {kind!r} is not one of {', '.join(self.KINDS)}")
        self.multilabel, self.seed, self.kind = multilabel, seed, kind
        self.name = f"quick-tfidf-{kind}"
        self.classes: list[str] = []
        self._vec: Any = None
        self._clf: Any = None

    @staticmethod
    def vectorizer() -> Any:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.pipeline import FeatureUnion

        return FeatureUnion([
            ("words", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, token_pattern=WORD_PATTERN,
                                      dtype=np.float64)),
            ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True,
                                      dtype=np.float64)),
        ])

    def _estimator(self) -> Any:
        if self.kind == "nb":
            from sklearn.naive_bayes import ComplementNB

            return ComplementNB(alpha=0.1)
        from sklearn.linear_model import SGDClassifier

        return SGDClassifier(loss="log_loss", alpha=1e-4, class_weight="balanced", max_iter=10, tol=None,
                             random_state=self.seed)

    def fit(self, texts: Sequence[str], labels: Sequence[Any]) -> QuickModel:
        """Fit on `texts` with one label each (a list of labels each when multilabel)."""
        if len(texts) != len(labels):
            raise AnnotationError(f"quick model: {len(texts)} texts but {len(labels)} labels")
        self._vec = self.vectorizer().fit(list(texts))
        return self.fit_features(self._vec.transform(list(texts)), labels)

    def fit_features(self, x: Any, labels: Sequence[Any]) -> QuickModel:
        """Fit the classifier on features made as this model's vectorizer makes them (the benchmark reuses its
        token counts rather than re-reading the texts each round)."""
        import warnings

        if self.multilabel:
            from sklearn.multiclass import OneVsRestClassifier

            self.classes = sorted({c for ls in labels for c in ls})
            y = np.array([[c in set(ls) for c in self.classes] for ls in labels], dtype=int)
            if not self.classes or not (y.min(0) != y.max(0)).any():
                raise AnnotationError("quick model: a multilabel model needs a label that some texts have and "
                                      "others lack")
            with warnings.catch_warnings():  # a label every text has (or none has) is predicted as a constant
                warnings.simplefilter("ignore", UserWarning)
                self._clf = OneVsRestClassifier(self._estimator()).fit(x, y)
        else:
            self.classes = sorted(set(labels))
            if len(self.classes) < 2:
                raise AnnotationError(f"quick model: needs at least two classes among the labels "
                                      f"(got {self.classes})")
            self._clf = self._estimator().fit(x, np.asarray(labels))
        return self

    def features(self, texts: Sequence[str]) -> Any:
        if self._vec is None:
            raise AnnotationError("quick model: fit it before asking for predictions")
        return self._vec.transform(list(texts))

    def proba_features(self, x: Any) -> tuple[np.ndarray, list[str]]:
        if self._clf is None:
            raise AnnotationError("quick model: fit it before asking for predictions")
        # scikit-learn orders classes as sorted() does, so the columns follow self.classes
        return np.asarray(self._clf.predict_proba(x), dtype=float), list(self.classes)

    def predict_proba(self, texts: Sequence[str]) -> tuple[np.ndarray, list[str]]:
        """(probs (n, classes), classes): rows summing to 1 for one label; independent yes/no columns for
        multilabel."""
        return self.proba_features(self.features(texts))


# -- the project's fine-tuned classifier -------------------------------------------------------------------------

class ClassifierModel:
    """The project's fine-tuned language-model classifier, loaded from its saved directory (`config.json` with
    `id2label`, `model.safetensors` with the head's `score.weight`, the tokenizer). Inputs are encoded as the
    classify recipe encodes them (BOS + tokens, cut at `seq_len`, right-padded) and each text's class
    probabilities are the softmax of the head at its last token. A registered `NAME@VERSION` or `@champion`
    becomes a directory with `lmwright.core.models.resolve_model(ws, ref)[0]`."""

    def __init__(self, path: str | Path, seq_len: int = 128, batch_size: int = 32, name: str | None = None):
        import json

        import torch
        from safetensors.torch import load_file

        from lmwright.model.hf import config_from_hf
        from lmwright.model.llama import LlamaLM
        from lmwright.tokenizer import BOS, PAD, load_tokenizer

        path = Path(path)
        cfg_file, weights = path / "config.json", path / "model.safetensors"
        if not cfg_file.is_file() or not weights.is_file():
            raise AnnotationError(f"{path}: not a saved classifier (needs config.json and model.safetensors; "
                                  "`lmwright finetune classify` writes one)")
        c = json.loads(cfg_file.read_text())
        id2label = c.get("id2label") or {}
        if not any(a.endswith("ForSequenceClassification") for a in c.get("architectures", [])) or not id2label:
            raise AnnotationError(f"{cfg_file}: not a classifier (no *ForSequenceClassification architecture with "
                                  "id2label); give the project's classifier, e.g. PROJECT-classifier@champion")
        self.classes = [id2label[str(i)] for i in range(len(id2label))]
        self.name = name or f"classifier:{path.name}"
        state = load_file(str(weights))
        score = state.pop("score.weight", None)
        if score is None or score.shape[0] != len(self.classes):
            raise AnnotationError(f"{weights}: no score.weight with one row per label ({len(self.classes)})")
        lm = LlamaLM(config_from_hf(c, cfg_file))
        if not lm.cfg.tie_embeddings and "lm_head.weight" not in state:
            state["lm_head.weight"] = state["model.embed_tokens.weight"]  # unused by a classifier; saved without
        lm.load_weights(state)
        self._lm, self._score = lm.eval(), score.float()
        self._tok = load_tokenizer(path)
        self._bos = self._tok.token_to_id(BOS)
        pad = c.get("pad_token_id")
        self._pad = int(pad) if pad is not None else (self._tok.token_to_id(PAD) or 0)
        self._seq_len, self._batch = min(seq_len, lm.cfg.max_seq_len), batch_size
        self._torch = torch

    def predict_proba(self, texts: Sequence[str]) -> tuple[np.ndarray, list[str]]:
        torch = self._torch
        out = []
        for i in range(0, len(texts), self._batch):
            rows = [([self._bos] if self._bos is not None else []) + self._tok.encode(t, add_special_tokens=False).ids
                    for t in texts[i:i + self._batch]]
            rows = [r[: self._seq_len] or [self._pad] for r in rows]
            ids = torch.full((len(rows), max(len(r) for r in rows)), self._pad, dtype=torch.long)
            for j, r in enumerate(rows):
                ids[j, : len(r)] = torch.tensor(r)
            with torch.no_grad():
                h = self._lm.hidden(ids)
                last = ((ids != self._pad) * torch.arange(ids.shape[1])).argmax(-1)  # as the recipe finds it
                out.append(torch.softmax(h[torch.arange(len(rows)), last].float() @ self._score.T, -1).numpy())
        probs = np.concatenate(out) if out else np.zeros((0, len(self.classes)))
        return probs.astype(float), list(self.classes)


class _Callable:
    def __init__(self, fn: Callable[[Sequence[str]], tuple[np.ndarray, list[str]]], name: str):
        self.predict_proba, self.name = fn, name


# -- suggestions -------------------------------------------------------------------------------------------------

def suggest(texts: Sequence[str], model: Predictor, task: Task | None = None, multilabel: bool | None = None,
            threshold: float = 0.5) -> list[dict]:
    """One prediction record per text, as items carry them: `{"value", "score", "model", "probs"}`.

    Classification: the most probable label, its probability as the score. Multilabel: every label at or above
    `threshold`, scored by the least sure of the label decisions (min over labels of max(p, 1 - p)). With a
    `task`, classes the model knows but the task does not are left out (single-label rows renormalised)."""
    multilabel = (task.kind == "multilabel") if multilabel is None and task is not None else bool(multilabel)
    if task is not None and task.kind not in ("classification", "multilabel"):
        raise AnnotationError(f"task '{task.name}': suggestions are for classification and multilabel tasks, "
                              f"not {task.kind}")
    probs, classes = model.predict_proba(list(texts))
    probs, classes = np.asarray(probs, dtype=float), list(classes)
    if probs.shape != (len(texts), len(classes)):
        raise AnnotationError(f"model {model.name}: probabilities of shape {probs.shape} for {len(texts)} texts "
                              f"and {len(classes)} classes")
    if task is not None:
        keep = [i for i, c in enumerate(classes) if c in task.labels]
        if not keep:
            raise AnnotationError(f"task '{task.name}': model {model.name} predicts none of the task's labels "
                                  f"(model: {', '.join(classes)}; task: {', '.join(task.labels)})")
        probs, classes = probs[:, keep], [classes[i] for i in keep]
        if not multilabel:
            total = probs.sum(axis=1, keepdims=True)
            probs = np.divide(probs, total, out=np.full_like(probs, 1.0 / len(keep)), where=total > 0)
    out = []
    for row in probs:
        dist = {c: round(float(p), 6) for c, p in zip(classes, row, strict=True)}
        if multilabel:
            value: dict = {"labels": [c for c, p in zip(classes, row, strict=True) if p >= threshold]}
            score = float(np.maximum(row, 1.0 - row).min())
        else:
            top = int(row.argmax())
            value, score = {"label": classes[top]}, float(row[top])
        out.append({"value": value, "score": round(score, 6), "model": model.name, "probs": dist})
    return out


def from_classifier(texts: Sequence[str], classifier: str | Path | Predictor | Callable, task: Task | None = None,
                    name: str | None = None) -> list[dict]:
    """`suggest` with the project's fine-tuned classifier: its saved directory (loaded by `ClassifierModel`), a
    loaded `Predictor`, or a bare `predict_proba(texts) -> (probs, classes)` callable (named `name`)."""
    if isinstance(classifier, str | Path):
        model: Predictor = ClassifierModel(classifier, name=name)
    elif hasattr(classifier, "predict_proba"):
        model = classifier
    elif callable(classifier):
        model = _Callable(classifier, name or getattr(classifier, "__name__", "classifier"))
    else:
        raise AnnotationError(f"from_classifier: a model directory, a predictor or a predict_proba callable "
                              f"(got {type(classifier).__name__})")
    return suggest(texts, model, task)


# -- the queue's order -------------------------------------------------------------------------------------------

@dataclass
class Batch:
    """The pool indices to label next, most useful first; their uncertainty scores (None when random); why."""

    order: list[int]
    scores: list[float] | None
    method: str
    reason: str


def too_few(labels: Sequence[Any], multilabel: bool = False, min_labels: int = 10) -> str | None:
    """Why a quick model cannot be fitted yet (None when it can): too few answers or only one class."""
    if len(labels) < max(min_labels, 1):
        return f"{len(labels)} labelled so far; uncertainty sampling starts at {min_labels}"
    if multilabel:
        sets = [frozenset(ls) for ls in labels]
        every = frozenset.intersection(*sets)
        if all(s == every for s in sets):
            return "every labelled item has the same labels; uncertainty needs labels that differ"
    elif len(set(labels)) < 2:
        return f"every labelled item is {next(iter(labels))!r}; uncertainty needs at least two classes"
    return None


def next_batch(pool_texts: Sequence[str], labelled_texts: Sequence[str], labels: Sequence[Any], k: int | None = None,
               method: str = "least_confidence", seed: int = 0, multilabel: bool = False, min_labels: int = 10,
               model: QuickModel | None = None) -> Batch:
    """The next `k` unlabelled items (all of them when k is None) in the order to label them: by uncertainty under
    a quick model fitted on the answers so far, or in a seeded random order when `method` is "random" or too
    few answers are in (the reason says which)."""
    _check_method(method, STRATEGIES)
    n = len(pool_texts)
    k = n if k is None else max(0, min(k, n))
    why = "random order asked for" if method == "random" else too_few(labels, multilabel, min_labels)
    if why is None and n:
        m = (model or QuickModel(multilabel=multilabel, seed=seed)).fit(labelled_texts, labels)
        u = uncertainty(m.predict_proba(pool_texts)[0], method, multilabel)
        order = np.argsort(-u, kind="stable")[:k]
        return Batch([int(i) for i in order], [round(float(u[i]), 6) for i in order], method,
                     f"{method} uncertainty under {m.name} fitted on {len(labels)} labels")
    order = np.random.default_rng(seed).permutation(n)[:k]
    return Batch([int(i) for i in order], None, "random", why or "nothing to order")
