"""The model and the run against the corpus (model/sizing.py): `size_for` gives the default spec at the default
corpus's size and never shrinks as a corpus grows; `data_fit` warns, with a fix, about too many epochs, too few
tokens per parameter and a vocabulary too large; `lmwright model plan` shows the figures and the pretrain stage and
`lmwright run` say the warnings."""

from __future__ import annotations

import json
import math

from typer.testing import CliRunner

from lmwright.cli import app
from lmwright.model.sizing import (
    DEFAULT_TRAIN_TOKENS,
    GPU_FLOPS,
    LAPTOP_FLOPS,
    TOKENS_AT_VOCAB,
    data_fit,
    shape_config,
    size_for,
    tokens_from_bytes,
)
from lmwright.spec import TrainSpec, load_spec

ISSUE = 23_866  # training tokens of a README corpus like issue 21's (26,131 there), at the default vocabulary


def cli(*args: str):
    return CliRunner().invoke(app, list(args))


def _params(s: dict) -> int:
    shape = (s["model.n_layers"], s["model.d_model"], s["model.n_heads"], s["model.n_kv_heads"])
    return shape_config(shape, s["tokenizer.vocab_size"]).n_params()


def test_size_for_gives_the_default_spec_at_the_default_corpus():
    d = load_spec(None)
    default = {"tokenizer.vocab_size": d.tokenizer.vocab_size, "model.n_layers": d.model.n_layers,
               "model.d_model": d.model.d_model, "model.n_heads": d.model.n_heads,
               "model.n_kv_heads": d.model.n_kv_heads, "train.max_steps": d.train.max_steps,
               "train.eval_every": d.train.eval_every, "train.checkpoint_every": d.train.checkpoint_every,
               "train.warmup_steps": d.train.warmup_steps}
    assert size_for(DEFAULT_TRAIN_TOKENS) == default
    # the default corpus, measured in bytes instead (1.51 MB at 3.77 bytes per token), and a corpus a quarter
    # smaller or larger, get the default model: its size is not on a boundary of the ladder
    assert size_for(tokens_from_bytes(1_509_000))["model.d_model"] == 192
    for tokens in (300_000, 500_000):
        assert size_for(tokens)["model.n_layers"] == 4 and size_for(tokens)["model.d_model"] == 192


def test_size_for_grows_with_the_corpus_and_stays_in_its_budget():
    grid = [int(10 ** (3 + i / 100)) for i in range(0, 601)]  # 1k to 1G tokens
    prev = None
    for tokens in grid:
        s = size_for(tokens)
        if prev:
            assert all(s[k] >= prev[k] for k in s), (tokens, prev, s)
        prev = s
    # the laptop budget caps the model and the steps: a huge corpus gets minutes of training, not hours
    big = size_for(10**9)
    assert _params(big) < 5e6 and big["train.max_steps"] <= 2000
    # a GPU budget trains a larger model on a large corpus; its size and vocabulary never shrink either
    prev = None
    for tokens in grid:
        s = size_for(tokens, budget_flops=GPU_FLOPS)
        if prev:
            assert _params(s) >= _params(prev) and s["tokenizer.vocab_size"] >= prev["tokenizer.vocab_size"]
        prev = s
    assert _params(size_for(30_000_000, budget_flops=GPU_FLOPS)) > 3 * _params(size_for(30_000_000))
    # the smallest corpus gets the smallest model, the smallest vocabulary and enough steps to be past warmup
    tiny = size_for(1_000)
    assert tiny["model.d_model"] == 64 and tiny["tokenizer.vocab_size"] == 512 and tiny["train.max_steps"] >= 50
    # issue 21's corpus: the sizes measured best on it (model/sizing.py's notes)
    issue = size_for(ISSUE)
    assert (issue["model.d_model"], issue["tokenizer.vocab_size"], issue["train.max_steps"]) == (64, 1024, 170)
    # the sized runs draw no warning (counting the tokens their own vocabulary makes of the corpus), stay within
    # the budget and evaluate ~7 times; a small corpus gets more epochs than a large one
    for tokens in (10_000, 30_000, 300_000, 3_000_000, 30_000_000):
        s = size_for(tokens)
        cfg = shape_config((s["model.n_layers"], s["model.d_model"], s["model.n_heads"], s["model.n_kv_heads"]),
                           s["tokenizer.vocab_size"])
        real = int(tokens * TOKENS_AT_VOCAB[s["tokenizer.vocab_size"]])
        fit = data_fit(cfg, real, TrainSpec(**{k[6:]: v for k, v in s.items() if k.startswith("train.")}))
        assert fit.epochs <= (12 if tokens < 100_000 else 4) and not fit.warnings, (tokens, fit)
        from lmwright.model.plan import flops_per_token

        assert flops_per_token(cfg, 256) * fit.run_tokens <= LAPTOP_FLOPS
        assert s["train.max_steps"] // s["train.eval_every"] >= 7


def test_data_fit_warns_about_the_issues_corpus_with_fixes():
    default = shape_config((4, 192, 4, 2), 4096)
    fit = data_fit(default, ISSUE, TrainSpec(max_steps=150))
    assert math.isclose(fit.epochs, 12.87, abs_tol=0.01) and fit.tokens_per_param < 0.02
    assert fit.run_tokens == 150 * 8 * 256 and fit.chinchilla_tokens == 20 * fit.params
    epochs, params, vocab = fit.warnings
    assert "12.9 epochs" in epochs and "beyond 4 epochs for a model this large" in epochs
    assert "train.max_steps=45" in epochs and "early_stopping.enabled=true" in epochs
    assert "0.010 tokens per parameter" in params and "model.d_model=64" in params
    assert "tokenizer.vocab_size=1024" in vocab
    # a model sized to the corpus may run more epochs before it is told: 12
    small = shape_config((2, 64, 2, 1), 1024)
    assert data_fit(small, 34_357, TrainSpec(max_steps=200)).warnings == []  # 11.9 epochs: it gained to the end
    (many,) = data_fit(small, 34_357, TrainSpec(max_steps=400)).warnings
    assert "23.8 epochs" in many and "beyond 12 epochs" in many and "train.max_steps=200" in many
    # the default project: no warning
    assert data_fit(default, DEFAULT_TRAIN_TOKENS, TrainSpec()).warnings == []
    # early stopping on, but too few evaluations to stop on; then enough
    few = data_fit(default, ISSUE, TrainSpec(max_steps=150, eval_every=100, early_stopping={"enabled": True}))
    assert "evaluates only 1 times" in few.warnings[0]
    ok = data_fit(default, ISSUE, TrainSpec(max_steps=150, eval_every=10, early_stopping={"enabled": True}))
    assert "keeps the best validation weights" in ok.warnings[0]
    # continued pretraining: the model and vocabulary are the init model's; only the epochs are the run's
    assert len(data_fit(default, ISSUE, TrainSpec(max_steps=150), continued=True).warnings) == 1


def test_model_plan_shows_the_corpus_figures(tiny_run, tmp_path):
    root, outcomes = tiny_run
    train = outcomes["tokenize"].summary["tokens"]["train"]
    r = cli("model", "plan", "-C", str(root), "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)["data"]
    tr = TrainSpec(max_steps=24, batch_size=4, seq_len=32)  # the tiny spec's run
    assert data["train_tokens"] == train and data["tokens_from"].startswith("tokenize run")
    assert math.isclose(data["epochs"], round(24 * 4 * 32 / train, 2)) and data["tokens_per_param"] > 0
    assert data["run_tokens"] == tr.max_steps * tr.batch_size * tr.seq_len and data["warnings"] == []
    # --tokens sizes against an estimate instead, and the table says what is wrong
    r = cli("model", "plan", "-C", str(root), "--tokens", "500", "--set", "train.max_steps=200")
    assert r.exit_code == 0 and "tokens per parameter" in r.stdout and "epochs" in r.stdout
    assert "warning:" in r.stdout and "train.max_steps=" in r.stdout
    # a directory with no tokenized data says how to get the figures, and makes no store
    r = cli("model", "plan", "-C", str(tmp_path), "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["data"] is None
    r = cli("model", "plan", "-C", str(tmp_path))
    assert "lmwright tokenize" in r.stdout and not (tmp_path / ".lmwright").exists()


def test_pretrain_warns_before_training_and_run_repeats_it(tiny_copy):
    r = cli("model", "plan", "-C", str(tiny_copy), "--json")
    train = json.loads(r.stdout)["data"]["train_tokens"]
    steps = math.ceil(13 * train / (32 * 64))  # ~13 epochs of 32 x 64 tokens (the tiny model is not oversized)
    sets = [f"train.max_steps={steps}", "train.batch_size=32", "train.seq_len=64",
            f"train.eval_every={steps}", f"train.checkpoint_every={steps}"]
    r = cli("run", "-C", str(tiny_copy), "--until", "pretrain", "--json", *(x for s in sets for x in ("--set", s)))
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)["pretrain"]
    assert summary["status"] == "done" and summary["epochs"] > 12
    (warning,) = summary["warnings"]
    assert "epochs over" in warning and "train.max_steps=" in warning
    # logged as the stage starts (before its outcome line), then again at the end of the run under "warnings:"
    err = r.stderr
    assert "pretrain: warning:" in err and err.index("pretrain: warning:") < err.index("warnings:")
    tail = err[err.index("warnings:"):]
    assert "pretrain" in tail and "epochs over" in tail
    # a cached rerun still says it; the tiny spec's own run has nothing to say about its epochs
    r = cli("run", "-C", str(tiny_copy), "--until", "pretrain", *(x for s in sets for x in ("--set", s)))
    assert r.exit_code == 0 and "warnings:" in r.stderr and "epochs over" in r.stderr
    r = cli("run", "-C", str(tiny_copy), "--until", "pretrain")
    assert r.exit_code == 0 and "epochs over" not in r.stderr
