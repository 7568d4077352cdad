"""Training across processes with torchrun on CPU (gloo): DDP and FSDP2 give the loss of one process with the
same global batch, and a distributed run killed with SIGKILL resumes to the weights of an uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

import lmwright
from tests.conftest import TINY, make_project, quiet

pytestmark = pytest.mark.slow


def _history(outcome) -> dict:
    return json.loads((outcome.path / "history.json").read_text())


@pytest.mark.parametrize("mode,accum", [("ddp", 1), ("ddp", 2), ("fsdp", 1)])
def test_two_processes_match_one_with_the_same_global_batch(tiny_copy, mode, accum):
    one = lmwright.run(tiny_copy, until="pretrain", reporter=quiet())["pretrain"]
    two = lmwright.run(tiny_copy, ["train.nproc=2", f"train.distributed={mode}", f"train.grad_accum={accum}"],
                       until="pretrain", reporter=quiet())["pretrain"]
    assert two.summary["nproc"] == 2 and two.digest != one.digest
    h1, h2 = _history(one), _history(two)
    assert len(h2["loss"]) == TINY["train"]["max_steps"]
    assert max(abs(a - b) for a, b in zip(h1["loss"], h2["loss"], strict=True)) < 1e-4
    assert max(abs(a - b) for a, b in zip(h1["val_loss"], h2["val_loss"], strict=True)) < 1e-4
    a, b = load_file(str(one.path / "model.safetensors")), load_file(str(two.path / "model.safetensors"))
    assert all(torch.allclose(a[k], b[k], atol=1e-4) for k in a)


def _spec(mode: str) -> dict:
    return {**TINY, "model": {**TINY["model"], "d_model": 64, "n_layers": 3},
            "train": {**TINY["train"], "max_steps": 30, "checkpoint_every": 5, "eval_every": 15, "nproc": 2,
                      "distributed": mode}}


def test_killed_fsdp_run_resumes_to_the_uninterrupted_weights(tmp_path):
    killed = make_project(tmp_path / "killed", _spec("fsdp"))
    lmwright.run(killed, until="tokenize", reporter=quiet())
    proc = subprocess.Popen([sys.executable, "-m", "lmwright", "train", "-C", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    work = killed / ".lmwright" / "work"
    deadline = time.time() + 180
    while time.time() < deadline and not list(work.glob("pretrain-*/step-000010")):
        assert proc.poll() is None, "training finished before it could be killed; raise max_steps"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # torchrun and both workers
    proc.wait()

    r = subprocess.run([sys.executable, "-m", "lmwright", "train", "-C", str(killed)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    line = next(x for x in r.stderr.splitlines() if "resumed from checkpoint at step" in x)
    assert 10 <= int(line.split("step")[1].split()[0]) < 30

    straight = make_project(tmp_path / "straight", _spec("fsdp"))
    a = load_file(str(lmwright.run(straight, until="pretrain", reporter=quiet())["pretrain"].path
                      / "model.safetensors"))
    b = load_file(str(lmwright.run(killed, until="pretrain", reporter=quiet())["pretrain"].path
                      / "model.safetensors"))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a), "resumed run differs from an uninterrupted one"
