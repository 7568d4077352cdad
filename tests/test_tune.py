"""`lmwright tune`: samplers, pruning, parallel trials sharing the study, resume, the outputs, and that the test
split is never read."""

from __future__ import annotations

import json

import optuna
import pytest
import yaml
from typer.testing import CliRunner

from lmwright.cli import app
from lmwright.core.workspace import Workspace

SPACE = ["--set", "tune.trial_overrides=[train.max_steps=16, train.eval_every=4]"]


def _tune(root, *extra: str) -> dict:
    r = CliRunner().invoke(app, ["tune", "-C", str(root), "--json", *SPACE, *extra])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def _study(root, name):
    return optuna.load_study(study_name=name, storage=Workspace.open(root).store_url)


@pytest.mark.parametrize("sampler", ["tpe", "random", "grid"])
def test_each_sampler_runs_and_writes_the_outputs(tiny_copy, sampler):
    extra = ["--set", f"tune.sampler={sampler}", "--set", "tune.trials=4", "--set", "tune.pruner=none"]
    if sampler == "grid":
        extra += ["--set", "tune.space={train.lr: {choices: [0.003, 0.01]}, train.warmup_steps: {choices: [0, 4]}}"]
    res = _tune(tiny_copy, *extra)
    assert res["trials"] == 4 and res["complete"] == 4
    out = tiny_copy / "lmwright-out" / "tune"
    rows = (out / "trials.csv").read_text().splitlines()
    assert len(rows) == 5 and rows[0].startswith("number,state,")
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best["train"] and set(best["train"]) <= {"lr", "muon_lr", "warmup_steps"}
    assert min(float(r.split(",")[-3]) for r in rows[1:]) == pytest.approx(res["best_value"], abs=1e-5)
    for png in res["plots"]:
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if sampler == "grid":  # every combination exactly once
        study = _study(tiny_copy, res["study"])
        assert sorted(tuple(t.params.values()) for t in study.trials) == [(0.003, 0), (0.003, 4), (0.01, 0), (0.01, 4)]
    else:  # trial 0 is the spec as it is: the baseline to beat
        assert _study(tiny_copy, res["study"]).trials[0].params["train.lr"] == 0.01
        assert set(res["importances"]) == {"train.lr", "train.muon_lr", "train.warmup_steps"}


@pytest.mark.parametrize("pruner", ["median", "hyperband"])
def test_pruning_stops_poor_trials_from_their_validation_losses(tiny_copy, pruner):
    # a space with hopeless learning rates: the pruner must stop some trials before their last step
    res = _tune(tiny_copy, "--set", f"tune.pruner={pruner}", "--set", "tune.trials=8", "--set", "tune.sampler=random",
                "--set", "tune.space={train.lr: {low: 0.00001, high: 0.03, log: true}, "
                         "train.muon_lr: {low: 0.00001, high: 0.05, log: true}}")
    assert res["pruned"] >= 1 and res["complete"] >= 1 and res["trials"] == 8
    study = _study(tiny_copy, res["study"])
    for t in study.trials:
        if t.state.name == "PRUNED":
            assert t.user_attrs["steps"] < 16 and t.intermediate_values  # stopped early, after reporting


def test_parallel_processes_share_one_study(tiny_copy):
    # trials long enough (a few seconds in all) that the second process is up before the first has run them all
    res = _tune(tiny_copy, "--set", "tune.parallel=2", "--set", "tune.trials=6", "--set", "tune.pruner=none",
                "--set", "tune.trial_overrides=[train.max_steps=64, train.eval_every=32]")
    study = _study(tiny_copy, res["study"])
    counted = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(counted) >= 6
    assert len({t.user_attrs["pid"] for t in study.trials}) == 2  # both processes ran trials


def test_a_study_continues_after_a_kill_and_never_reads_test(tiny_copy, monkeypatch):
    first = _tune(tiny_copy, "--set", "tune.trials=2", "--set", "tune.pruner=none")
    study = _study(tiny_copy, first["study"])
    study.ask()  # a trial a killed process left running
    (test_shard,) = [p for p in (tiny_copy / ".lmwright" / "artifacts").rglob("test.npy")]
    import numpy as np

    real_load = np.load

    def guarded(path, *a, **k):
        assert "test.npy" not in str(path), "tuning read the test split"
        return real_load(path, *a, **k)

    monkeypatch.setattr(np, "load", guarded)
    second = _tune(tiny_copy, "--set", "tune.trials=4", "--set", "tune.pruner=none")
    assert second["study"] == first["study"] and second["resumed_trials"] == 2
    states = [t.state.name for t in _study(tiny_copy, second["study"]).trials]
    assert states.count("COMPLETE") == 4 and states.count("FAIL") == 1
    assert test_shard.exists()


def test_a_typo_in_the_space_is_named(tiny_copy):
    r = CliRunner().invoke(app, ["tune", "-C", str(tiny_copy), "--set", "tune.space={train.lrr: {low: 1, high: 2}}"])
    assert r.exit_code != 0 and "train.lrr" in str(r.exception)
