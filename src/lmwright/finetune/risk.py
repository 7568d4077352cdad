"""The risk suite on a model a recipe has just made, while it is still in memory (`evaluate/risk_suite.py` holds
the checks): the assistant and the preference-tuned model as chat models, the classifier through its head. Each
writes `risk.json` next to the model and returns the flat figures (`injection_rate`, `robustness_drop`, ...) that
the stage keeps in its summary, where the registry and the model card read them.

Runs on the CPU after training (where the recipes hand the model back), on the first process only under DDP.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lmwright.evaluate.risk_suite import assistant_checks, classifier_checks, questions
from lmwright.evaluate.suite import flatten


def _record(out: Path, risk: dict) -> dict:
    (out / "risk.json").write_text(json.dumps(risk, indent=2, default=float))
    return flatten(risk)


def chat_model(spec, model, tok, conversations: list[list[dict]], references: list[str], split_dir: Path | None,
               out: Path) -> dict:
    """Every check that applies to a chat model; `conversations` (each ending with the user's turn) and their
    reference answers are the recipe's held-out rows."""
    model.eval()
    risk = assistant_checks(model, tok, spec.risk, spec.eval, conversations, references,
                            questions(spec, None, split_dir), spec.project.seed)
    return _record(out, risk)


def classifier(spec, predict: Callable[[list[str]], np.ndarray], texts: list[str], y: np.ndarray, n_labels: int,
               out: Path) -> dict:
    """Robustness and counterfactual label flips of a classifier (`predict`: texts -> label ids)."""
    return _record(out, classifier_checks(predict, texts, y, n_labels, spec.risk, spec.eval, spec.project.seed))
