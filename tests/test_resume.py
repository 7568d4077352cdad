"""Kill pretrain with SIGKILL, rerun: it resumes from the last checkpoint, finishes, and matches an
uninterrupted run exactly (the batch for each step is drawn from the step number; optimizer and RNG state are
restored)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from safetensors.torch import load_file

import lmwright
from tests.conftest import TINY, make_project, quiet


def _spec(steps: int) -> dict:
    spec = {**TINY, "train": {**TINY["train"], "max_steps": steps, "checkpoint_every": 5, "eval_every": 20}}
    spec["model"] = {**TINY["model"], "d_model": 64, "n_layers": 3}
    return spec


@pytest.mark.slow
def test_sigkill_during_pretrain_then_resume(tmp_path):
    steps = 60  # enough to be killed at step 15 and resume; each step costs CI time
    killed = make_project(tmp_path / "killed", _spec(steps))
    lmwright.run(killed, until="tokenize", reporter=quiet())  # data first, so the kill lands in pretrain
    # up to pretrain: the stages after it start afresh from its result either way, and each costs CI time
    proc = subprocess.Popen([sys.executable, "-m", "lmwright", "run", "-C", str(killed), "--until", "pretrain"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    work = killed / ".lmwright" / "work"
    deadline = time.time() + 120
    while time.time() < deadline and not list(work.glob("pretrain-*/step-000015")):
        assert proc.poll() is None, "pretrain finished before it could be killed; raise max_steps"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert list(work.glob("pretrain-*/step-*")), "no checkpoint was written"

    r = subprocess.run([sys.executable, "-m", "lmwright", "run", "-C", str(killed), "--until", "pretrain"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stderr.splitlines() if "resumed from checkpoint at step" in x)
    step = int(line.split("step")[1].split()[0])
    assert 15 <= step < steps
    assert not list(work.glob("pretrain-*")), "the work directory is cleaned up after success"

    straight = make_project(tmp_path / "straight", _spec(steps))
    out = lmwright.run(straight, until="pretrain", reporter=quiet())
    resumed = lmwright.run(killed, until="pretrain", reporter=quiet())
    a = load_file(str(resumed["pretrain"].path / "model.safetensors"))
    b = load_file(str(out["pretrain"].path / "model.safetensors"))
    assert all((a[k] == b[k]).all() for k in a), "resumed run differs from an uninterrupted one"
    assert resumed["pretrain"].summary["resumed_from"] == step
