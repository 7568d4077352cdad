"""Data-parallel training across processes: DDP or FSDP2, launched with torchrun.

`launch` starts `torchrun --nproc-per-node N -m lmwright.train.worker JOB` and waits; each worker joins the
process group (NCCL on GPUs, gloo on CPU), runs the same training loop on its slice of every global batch,
and rank 0 writes checkpoints and the result. Every rank draws the same global batch from RNG(seed, step) and
takes rows `rank::world` of it, so N processes see exactly the batch one process would, and resume needs no
per-rank data state.

Across machines (`Nodes`: how many, this one's rank, where they meet) node 0 runs `launch` and every other node
`join`, which brings no job of its own: rank 0 hands its job to every process (`worker.py`). The rendezvous is
torchrun's static one, the only one that honours `--node-rank` (c10d ranks nodes by host name and process id), so
rank 0, which writes the checkpoints and the result, is always on node 0, the machine that records the outcome.

With FSDP2 (`fully_shard` on each block and the root) parameters, gradients and optimizer state are sharded;
checkpoints gather the full state on rank 0 (`torch.distributed.checkpoint.state_dict`) and are written in the
same format as single-process ones, so any run resumes any checkpoint whatever its process count.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from lmwright.errors import LmwrightError
from lmwright.train.optim import with_kernels_of


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    mode: str = "single"  # single | ddp | fsdp

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        """FSDP across processes: parameters, and so weights and optimizer state, are split between ranks."""
        return self.mode == "fsdp" and self.world > 1

    def mean(self, value: float) -> float:
        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(t)
        return t.item() / self.world

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def share(self, obj):
        """Rank 0's `obj` (anything JSON-like), on every rank."""
        if self.world == 1:
            return obj
        box = [obj if self.main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def check_all(self, problem: str | None) -> None:
        """Raise on every rank if any rank has a problem (None: none), so no rank goes on alone into a
        collective that would wait for the others."""
        problems: list[str | None] = [problem]
        if self.world > 1:
            problems = [None] * self.world
            dist.all_gather_object(problems, problem)
        ranks: dict[str, list[str]] = {}
        for r, p in enumerate(problems):
            if p:
                ranks.setdefault(p, []).append(str(r))
        if ranks:
            raise LmwrightError("; ".join(f"process{'es' if len(rs) > 1 else ''} {', '.join(rs)}: {p}"
                                          for p, rs in ranks.items()))


def init_from_env(mode: str, device: torch.device) -> Dist:
    """Join the process group torchrun set up (RANK, WORLD_SIZE, MASTER_ADDR in the environment)."""
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend)
    return Dist(rank=dist.get_rank(), world=dist.get_world_size(), mode=mode)


def wrap(model: torch.nn.Module, d: Dist, device: torch.device) -> torch.nn.Module:
    """The module the training step calls: DDP around the model, or the model sharded in place by FSDP2."""
    if d.mode == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if d.mode == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for block in model.model.layers:
            fully_shard(block)
        fully_shard(model)  # the root: embedding, final norm and (tied) output head
    return model


def full_state(model: torch.nn.Module, opt, d: Dist) -> tuple[dict, list[dict]]:
    """FSDP: the unsharded model and optimizer state, gathered on rank 0 (a collective: every rank calls it;
    the others get empty dicts), in the single-process format — optimizer state keyed by parameter index, as
    `torch.optim.Optimizer.state_dict` does."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    weights = get_model_state_dict(model, options=options)
    if model.cfg.tie_embeddings:
        weights.pop("lm_head.weight", None)
    weights = {k: v.contiguous() for k, v in weights.items()}
    states = []
    for o in opt:
        osd = get_optimizer_state_dict(model, o, options=options)
        if "param_groups" not in osd:  # with cpu_offload only rank 0 receives the gathered state
            states.append({})
            continue
        index = {name: i for i, name in enumerate(n for g in osd["param_groups"] for n in g["params"])}
        states.append({"state": {index[n]: s for n, s in osd["state"].items()},
                       "param_groups": [{**g, "params": [index[n] for n in g["params"]]}
                                        for g in osd["param_groups"]]})
    return weights, states


def load_full_optimizer_state(model: torch.nn.Module, opt, states: list[dict]) -> None:
    """FSDP: shard index-keyed full optimizer states (from a checkpoint) into the sharded optimizers."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    names = {id(p): n for n, p in model.named_parameters()}
    for o, saved in zip(opt, states, strict=True):
        osd = with_kernels_of(o, saved)
        order = [names[id(p)] for g in o.param_groups for p in g["params"]]
        named = {"state": {order[i]: s for i, s in osd["state"].items()},
                 "param_groups": [{**g, "params": [order[i] for i in g["params"]]} for g in osd["param_groups"]]}
        set_optimizer_state_dict(model, o, optim_state_dict=named,
                                 options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=False))


@dataclass(frozen=True)
class Nodes:
    """This machine's place in a multi-node run: facts about the machines, not the model, so they stay out of the
    spec and the stage's cache key (`lmwright train --nnodes N --node-rank R --rdzv-endpoint HOST:PORT`)."""

    count: int = 1
    rank: int = 0
    endpoint: str = ""  # HOST:PORT on node 0, where the nodes meet

    def __post_init__(self) -> None:
        if self.count < 1:
            raise LmwrightError(f"--nnodes {self.count}: the number of machines is at least 1")
        if not 0 <= self.rank < self.count:
            raise LmwrightError(f"--node-rank {self.rank}: with --nnodes {self.count} it is 0 to {self.count - 1}")
        if self.count > 1 and not re.fullmatch(r"\[?[\w.:-]+\]?:\d+", self.endpoint):
            raise LmwrightError(f"--rdzv-endpoint {self.endpoint!r}: with --nnodes {self.count} give node 0's "
                                "address and a free port, HOST:PORT, the same on every node")

    def torchrun_args(self) -> list[str]:
        if self.count == 1:
            return ["--standalone", "--nnodes=1"]
        return [f"--nnodes={self.count}", f"--node-rank={self.rank}", "--rdzv-backend=static",
                f"--rdzv-endpoint={self.endpoint}"]


_NODES: ContextVar[Nodes | None] = ContextVar("lmwright_nodes", default=None)


@contextmanager
def on_nodes(nodes: Nodes) -> Iterator[None]:
    """Distributed jobs launched inside the block span `nodes` (the `train` command sets this on node 0)."""
    token = _NODES.set(nodes)
    try:
        yield
    finally:
        _NODES.reset(token)


def this_node() -> Nodes:
    return _NODES.get() or Nodes()


def check_world(tr, world: int, nodes: int = 1) -> None:
    """Every process takes an equal share of each global batch, split into `grad_accum` micro-batches."""
    if tr.batch_size % (tr.grad_accum * world):
        across = f"{nodes} nodes x {world // nodes} processes" if nodes > 1 else f"{world} processes"
        raise LmwrightError(f"train.batch_size ({tr.batch_size}) must be divisible by train.grad_accum x the "
                            f"processes of the run ({tr.grad_accum} x {across}): set train.batch_size to a "
                            f"multiple of {tr.grad_accum * world}, or change train.grad_accum, --nproc or --nnodes")


def _torchrun(job_file: Path, nproc: int, nodes: Nodes, module: str) -> int:
    cmd = [sys.executable, "-m", "torch.distributed.run", *nodes.torchrun_args(), f"--nproc-per-node={nproc}",
           "-m", module, str(job_file)]
    # torchrun takes PET_* variables as defaults for its flags: only the flags above may count
    env = {k: v for k, v in os.environ.items() if not k.startswith("PET_")}
    env["OMP_NUM_THREADS"] = os.environ.get("OMP_NUM_THREADS", "1")
    return subprocess.run(cmd, env=env).returncode


def launch(job: dict, nproc: int, work: Path, module: str = "lmwright.train.worker",
           nodes: Nodes = Nodes()) -> dict:
    """Run the training job in `nproc` processes of `module` with torchrun (on each of `nodes`, the others
    `join`ing); returns rank 0's result."""
    if nodes.rank != 0:
        raise LmwrightError(f"node {nodes.rank} joins node 0's run (distributed.join); only node 0 launches it")
    work.mkdir(parents=True, exist_ok=True)
    job_file = work / "job.json"
    job_file.write_text(json.dumps(job))
    result_file = Path(job["out"]) / "result.json"
    code = _torchrun(job_file, nproc, nodes, module)
    if code != 0 or not result_file.exists():
        again = ("Rerunning resumes from the last checkpoint." if nodes.count == 1 else
                 f"If another node stopped, its output says why; rerun the same command on all {nodes.count} "
                 "nodes to resume from the last checkpoint.")
        raise LmwrightError(f"distributed training failed (torchrun exit {code}); its output is above. {again}")
    return json.loads(result_file.read_text())


def join(spec: dict, nproc: int, nodes: Nodes, module: str = "lmwright.train.worker") -> None:
    """Node `nodes.rank` > 0: run `nproc` processes of node 0's job. They get the job from rank 0 and write
    nothing (rank 0 writes checkpoints and the result), so this node needs the project's files at the same paths
    but never writes to them; `spec`, this node's own, is only compared with node 0's."""
    with tempfile.TemporaryDirectory(prefix="lmwright-join-") as tmp:
        job_file = Path(tmp) / "job.json"
        job_file.write_text(json.dumps({"join": True, "spec": spec}))
        code = _torchrun(job_file, nproc, nodes, module)
    if code != 0:
        raise LmwrightError(f"node {nodes.rank}: distributed training failed (torchrun exit {code}); its output is "
                            f"above. If node 0 stopped, its output says why; rerun the same command on all "
                            f"{nodes.count} nodes to resume from the last checkpoint.")
