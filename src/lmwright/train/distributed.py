"""Data-parallel training across processes: DDP or FSDP2, launched with torchrun.

`launch` starts `torchrun --nproc-per-node N -m lmwright.train.worker JOB` and waits; each worker joins the
process group (NCCL on GPUs, gloo on CPU), runs the same training loop on its slice of every global batch,
and rank 0 writes checkpoints and the result. Every rank draws the same global batch from RNG(seed, step) and
takes rows `rank::world` of it, so N processes see exactly the batch one process would, and resume needs no
per-rank data state.

With FSDP2 (`fully_shard` on each block and the root) parameters, gradients and optimizer state are sharded;
checkpoints gather the full state on rank 0 (`torch.distributed.checkpoint.state_dict`) and are written in the
same format as single-process ones, so any run resumes any checkpoint whatever its process count.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from lmwright.errors import LmwrightError


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
    for o, osd in zip(opt, states, strict=True):
        order = [names[id(p)] for g in o.param_groups for p in g["params"]]
        named = {"state": {order[i]: s for i, s in osd["state"].items()},
                 "param_groups": [{**g, "params": [order[i] for i in g["params"]]} for g in osd["param_groups"]]}
        set_optimizer_state_dict(model, o, optim_state_dict=named,
                                 options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=False))


def launch(job: dict, nproc: int, work: Path, module: str = "lmwright.train.worker") -> dict:
    """Run the training job in `nproc` processes of `module` with torchrun; returns rank 0's result."""
    work.mkdir(parents=True, exist_ok=True)
    job_file = work / "job.json"
    job_file.write_text(json.dumps(job))
    result_file = Path(job["out"]) / "result.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", module, str(job_file)]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.run(cmd, env=env)
    if proc.returncode != 0 or not result_file.exists():
        raise LmwrightError(f"distributed training failed (torchrun exit {proc.returncode}); its output is above. "
                            "Rerunning resumes from the last checkpoint.")
    return json.loads(result_file.read_text())
