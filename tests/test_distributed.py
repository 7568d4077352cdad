"""Training across processes with torchrun on CPU (gloo): DDP and FSDP2 give the loss of one process with the
same global batch, a distributed run killed with SIGKILL resumes to the weights of an uninterrupted one, and so
does a run across two "nodes" on loopback when one of them is killed."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import lmwright
from lmwright.core.store import Store
from lmwright.core.workspace import Workspace
from lmwright.errors import LmwrightError
from lmwright.train.distributed import Nodes, check_world
from tests.conftest import TINY, make_project, quiet

pytestmark = pytest.mark.slow


def _history(outcome) -> dict:
    return json.loads((outcome.path / "history.json").read_text())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _process_tree(pid: int) -> list[int]:
    """`pid` and its descendants: torchrun starts each worker in a session of its own, so killing a process
    group would leave the workers training."""
    children: dict[int, list[int]] = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                parent = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(p.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(q := todo.pop())
        todo += children.get(q, [])
    return tree


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
    for pid in _process_tree(proc.pid):  # the command, torchrun and both workers (in sessions of their own)
        os.kill(pid, signal.SIGKILL)
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


def test_two_nodes_match_one_process_and_resume_after_a_node_is_killed(tiny_copy):
    """Two "nodes" on loopback, one process each, sharing the project directory: node 1 is killed (the whole
    machine: its command, torchrun and worker) after a checkpoint, node 0 fails with the way out, both rerun and
    resume; node 0 alone records, under the cache key of a one-node run, the losses and weights of one process."""
    with pytest.raises(LmwrightError, match="HOST:PORT"):
        Nodes(2, 1, "")
    with pytest.raises(LmwrightError, match="set train.batch_size to a multiple of 8"):
        check_world(Workspace.open(tiny_copy).spec.train, 8, 4)  # batch 4 over 4 nodes x 2
    # TINY's training (tiny_run's one-process pretrain is the reference), checkpointed more often and without the
    # MFU peak's timing: the same weights under another cache key
    sets = ["train.checkpoint_every=4", "train.peak_tflops=1"]

    def node(rank: int, port: int) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "lmwright", "train", "-C", str(tiny_copy),
                                 *[a for s in sets for a in ("--set", s)], "--nproc", "1", "--nnodes", "2",
                                 "--node-rank", str(rank), "--rdzv-endpoint", f"127.0.0.1:{port}"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    port = _free_port()
    first, second = node(0, port), node(1, port)
    work = tiny_copy / ".lmwright" / "work"
    deadline = time.time() + 180
    while time.time() < deadline and not list(work.glob("pretrain-*/step-000004")):
        assert first.poll() is None and second.poll() is None, "a node ended before the first checkpoint"
        time.sleep(0.02)
    assert first.poll() is None, "training finished before node 1 could be killed; raise max_steps"
    for pid in _process_tree(second.pid):
        os.kill(pid, signal.SIGKILL)
    second.communicate()
    port = _free_port()  # the rerun meets elsewhere: node 0 may hold the old port while it fails
    second = node(1, port)  # and its node 1 starts meanwhile: it waits for node 0
    out0 = first.communicate(timeout=120)[0]
    assert first.returncode != 0 and "rerun the same command on all 2 nodes" in out0, out0[-3000:]

    first = node(0, port)
    (out0, _), (out1, _) = first.communicate(timeout=300), second.communicate(timeout=300)
    assert first.returncode == 0 and second.returncode == 0, out0[-3000:] + out1[-3000:]
    line = next(x for x in out0.splitlines() if "resumed from checkpoint at step" in x)
    assert 4 <= int(line.split("step")[1].split()[0]) < TINY["train"]["max_steps"]
    assert "node 1 of 2 done; node 0 records the outcome" in out1

    two = lmwright.run(tiny_copy, sets, until="pretrain", reporter=quiet())["pretrain"]
    assert two.status == "cached" and two.summary["nodes"] == 2  # one node's cache key: nnodes is not in it
    runs = [r for r in Store(Workspace.open(tiny_copy).store_url).runs() if r.stage == "pretrain"]
    fp = next(r.fingerprint for r in runs if r.output_digest == two.digest)
    assert sorted(r.status for r in runs if r.fingerprint == fp) == ["done", "failed"]  # node 0's two attempts only

    one = lmwright.run(tiny_copy, until="pretrain", reporter=quiet())["pretrain"]
    assert one.status == "cached" and one.summary["nodes"] == 1
    h1, h2 = _history(one), _history(two)
    assert len(h2["loss"]) == TINY["train"]["max_steps"]
    assert max(abs(a - b) for a, b in zip(h1["loss"], h2["loss"], strict=True)) < 1e-4
    assert max(abs(a - b) for a, b in zip(h1["val_loss"], h2["val_loss"], strict=True)) < 1e-4
    a, b = load_file(str(one.path / "model.safetensors")), load_file(str(two.path / "model.safetensors"))
    assert all(torch.allclose(a[k], b[k], atol=1e-4) for k in a), "two nodes, killed and resumed, differ from one"
