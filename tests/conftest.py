"""Shared fixtures: a tiny project (a few stdlib modules, a model of a few thousand parameters) that runs the
whole pipeline in seconds."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

import lmwright
from lmwright.core.progress import Reporter

TINY = {
    "project": {"name": "tiny", "seed": 7},
    # a tiny model's bits per byte are far from a real one's: criteria it meets, so its runs move aliases
    "requirements": {"acceptance": ["test.bits_per_byte <= 6.0", "risk.pii_rate <= 0.05"]},
    "data": {"sources": [{"kind": "pydocs", "modules": ["json", "textwrap", "string", "functools", "csv",
                                                        "base64", "shlex", "difflib"], "topics": False}]},
    "split": {"val": 0.15, "test": 0.15},
    "tokenizer": {"vocab_size": 400},
    "model": {"n_layers": 2, "d_model": 32, "n_heads": 4, "n_kv_heads": 2, "max_seq_len": 64},
    "train": {"max_steps": 24, "batch_size": 4, "seq_len": 32, "lr": 0.01, "warmup_steps": 2, "eval_every": 8,
              "eval_batches": 2, "checkpoint_every": 8, "threads": 1,
              # fp32, not auto's bf16 on CPUs with bf16 units: tests compare runs with fp32 references (transformers,
              # one process against two) to 1e-4, and a 32-wide model gains nothing from bf16
              "precision": "fp32"},
    "eval": {"prompts": ["The json module"], "max_new_tokens": 8, "bootstrap": 100,
             "continuation": {"docs": 16, "prompt_tokens": 8, "new_tokens": 4}},
    "risk": {"canaries": {"repeats": [1, 8], "candidates": 50}, "verbatim": {"docs": 8, "prompt_tokens": 8,
                                                                            "new_tokens": 4}, "samples": 4},
    "serve": {"compile": False},  # the eager engine: the same maths without a compile per test server
    "finetune": {"steps": 6, "batch_size": 4, "seq_len": 48, "eval_every": 3, "checkpoint_every": 3, "precision": "fp32",
                 "lora": {"r": 2}, "sft": {"eval_examples": 4, "max_new_tokens": 4},
                 "classify": {"min_examples": 3}},
}


def make_project(root: Path, spec: dict | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "lmwright.yaml").write_text(yaml.safe_dump(spec or TINY, sort_keys=False))
    return root


def quiet() -> Reporter:
    return Reporter(quiet=True)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The tiny project run once through every stage: (project dir, outcomes)."""
    root = make_project(tmp_path_factory.mktemp("tiny"))
    outcomes = lmwright.run(root, reporter=quiet())
    return root, outcomes


@pytest.fixture(scope="session")
def two_versions(tiny_run, tmp_path_factory):
    """The tiny project with two versions of its base model: tiny@1 from the full run (the champion: the tiny spec's
    criteria pass) and tiny@2, trained for 3 steps only (worse), registered and tested but with no alias."""
    root = tmp_path_factory.mktemp("versions") / "proj"
    shutil.copytree(tiny_run[0], root)
    lmwright.run(root, ["train.max_steps=3"], until="test", reporter=quiet())
    return root


@pytest.fixture
def tiny_copy(tiny_run, tmp_path):
    """A private copy of the finished tiny project, for tests that change it."""
    root, _ = tiny_run
    dest = tmp_path / "proj"
    shutil.copytree(root, dest)
    return dest


def live(app):
    """The app served on a free loopback port for the duration of a `with` block (yields its URL)."""
    from lmwright.serve.api import serve_in_thread

    return serve_in_thread(app)


@pytest.fixture(scope="session")
def postgres_admin():
    """A PostgreSQL server on loopback for this test session (see tests/postgres.py)."""
    from tests.postgres import postgres_server

    with postgres_server() as url:
        yield url


@pytest.fixture
def pg_url(postgres_admin):
    """A fresh database on that server."""
    from tests.postgres import new_database

    return new_database(postgres_admin)
