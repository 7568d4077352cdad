"""Ensembles at evaluation (`evaluate/ensemble.py`, `lmwright ensemble`): how predictions combine, the figures by
hand, the command on the tiny project's language models and classifier, and its errors."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from lmwright.cli import app
from lmwright.core.models import resolve_model
from lmwright.core.workspace import Workspace
from lmwright.errors import LmwrightError
from lmwright.evaluate.ensemble import classify_ensemble, combine_logprobs


def _run(*args) -> dict:
    r = CliRunner().invoke(app, list(args))
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def _fails(*args) -> str:
    r = CliRunner().invoke(app, list(args))
    assert isinstance(r.exception, LmwrightError), r.output
    return str(r.exception)


def test_prob_is_the_log_of_the_mean_probability_and_logprob_the_renormalised_mean_log():
    g = torch.Generator().manual_seed(0)
    a, b = (torch.log_softmax(torch.randn(3, 5, generator=g), -1) for _ in range(2))
    assert torch.allclose(combine_logprobs([a, b], "prob").exp(), (a.exp() + b.exp()) / 2, atol=1e-6)
    assert torch.allclose(combine_logprobs([a, b], "logprob"), torch.log_softmax((a + b) / 2, -1), atol=1e-6)
    for combine in ("prob", "logprob"):  # one model twice is that model
        assert torch.allclose(combine_logprobs([a, a], combine), a, atol=1e-6)
    c = torch.log_softmax(torch.randn(3, 4, generator=g), -1)  # a smaller output layer: p = 0 on the fifth token
    mixed = combine_logprobs([a, c], "prob").exp()
    assert torch.allclose(mixed.sum(-1), torch.ones(3)) and torch.allclose(mixed[:, 4], a.exp()[:, 4] / 2)
    with pytest.raises(LmwrightError, match="use logprob"):
        combine_logprobs([a, b], "max")


def test_classifier_ensemble_by_hand():
    p1 = np.array([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.6, 0.4]])  # right on 2 of 4
    p2 = np.array([[0.6, 0.4], [0.8, 0.2], [0.2, 0.8], [0.3, 0.7]])  # right on all 4
    res = classify_ensemble({"a": p1, "b": p2}, [0, 0, 1, 1], ["x", "y"], "prob", resamples=200)
    ens = res["ensemble"]  # the mean: [.75 .25] [.6 .4] [.25 .75] [.45 .55], right on all 4
    assert ens["accuracy"] == 1.0 and res["members"]["a"]["accuracy"] == 0.5
    assert ens["log_loss"] == pytest.approx(-np.mean(np.log([0.75, 0.6, 0.75, 0.55])))
    vs = res["vs"]["a"]["accuracy"]
    assert vs["difference"] == 0.5 and vs["ci"][0] <= 0.5 <= vs["ci"][1]
    assert res["vs"]["b"]["accuracy"]["difference"] == 0.0 and res["best_member"] == "b"


def test_language_model_ensemble_command(tiny_copy):
    root = str(tiny_copy)
    res = _run("ensemble", "tiny@1", "tiny-assistant@1", "-C", root, "--json", "-q")  # logprob, the default
    m = {k: v["bits_per_byte"] for k, v in res["members"].items()}
    val = json.loads((tiny_copy / "lmwright-out" / "metrics.json").read_text())["val"]
    assert m["tiny@1"] == pytest.approx(val["bits_per_byte"], abs=1e-9)  # what the evaluate stage measured
    ens = res["ensemble"]["bits_per_byte"]
    assert ens <= (m["tiny@1"] + m["tiny-assistant@1"]) / 2  # never above the members' mean, either rule
    for name, figure in m.items():
        vs = res["vs"][name]["bits_per_byte"]
        assert vs["difference"] == pytest.approx(ens - figure) and vs["ci"][0] <= vs["difference"] <= vs["ci"][1]
    mix = _run("ensemble", "tiny@1", "tiny-assistant@1", "--combine", "prob", "-C", root, "--json", "-q")
    assert mix["members"] == res["members"] and mix["ensemble"]["bits_per_byte"] != ens
    assert mix["ensemble"]["bits_per_byte"] <= (m["tiny@1"] + m["tiny-assistant@1"]) / 2


def test_classifier_ensemble_command_scores_the_recipes_held_out_rows(tiny_copy):
    root = str(tiny_copy)
    path = resolve_model(Workspace.open(tiny_copy), "tiny-classifier@1")[0]
    res = _run("ensemble", "tiny-classifier@1", str(path), "-C", root, "--json", "-q")
    tuned = json.loads((path.parent / "metrics.json").read_text())["tuned"]
    member = res["members"]["tiny-classifier@1"]
    assert member["accuracy"] == pytest.approx(tuned["accuracy"]) and member["f1_macro"] == pytest.approx(
        tuned["f1_macro"])  # the rows and encoding the classify recipe evaluated
    assert res["ensemble"] == pytest.approx(member)  # a model with itself is the model
    assert not math.isnan(res["vs"]["tiny-classifier@1"]["log_loss"]["ci"][0])


def test_ensemble_errors(tiny_copy, tmp_path):
    root = str(tiny_copy)
    other = tmp_path / "other"
    shutil.copytree(resolve_model(Workspace.open(tiny_copy), "tiny@1")[0], other)
    tok = json.loads((other / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    (k1, i1), (k2, i2) = list(vocab.items())[300:302]
    vocab[k1], vocab[k2] = i2, i1  # two ids swapped: the same words, other ids
    (other / "tokenizer.json").write_text(json.dumps(tok))
    assert "do not share a tokenizer" in _fails("ensemble", "tiny@1", str(other), "-C", root)
    assert "only language models or only classifiers" in _fails("ensemble", "tiny@1", "tiny-classifier@1", "-C", root)
    assert "two or more different models" in _fails("ensemble", "tiny@1", "-C", root)
    assert "read once per model" in _fails("ensemble", "tiny@1", "tiny-assistant@1", "--split", "test", "-C", root)
