"""One process of a distributed pretraining job (started by torchrun from `distributed.launch` on node 0, or
`distributed.join` on the others); the first process writes the result as a single-process job does
(`job.write_result`).

A joining node brings only its own spec: rank 0 hands its job to every process, and each checks that it can run
it (the same spec, and the data and checkpoints at the paths node 0 sees) before any training, so a node set up
differently stops every process with the reason instead of training on other data or waiting in a collective.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch.distributed as dist
from rich.console import Console

from lmwright.core.progress import Reporter
from lmwright.errors import LmwrightError
from lmwright.spec import Spec
from lmwright.tokenizer import load_tokenizer
from lmwright.train.checkpoint import checkpoints
from lmwright.train.distributed import Dist, check_world, init_from_env
from lmwright.train.job import write_result
from lmwright.train.loop import pretrain
from lmwright.train.step import pick_device


def _newest(work: str) -> str | None:
    found = checkpoints(Path(work))
    return found[-1].name if found else None


def _flat(d: dict, prefix: str = "") -> dict:
    return {k: v for key, value in d.items()
            for k, v in (_flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key: value}).items()}


def problem(mine: dict, job: dict) -> str | None:
    """What keeps this process from running rank 0's `job` (with `newest`, the checkpoint rank 0 sees), given
    this node's own job or spec (`mine`); None when nothing does."""
    if mine["spec"] != job["spec"]:
        a, b = _flat(mine["spec"]), _flat(job["spec"])
        keys = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
        return (f"this node's spec differs from node 0's in {', '.join(keys[:5])}: give every node the same "
                "lmwright.yaml and --set options")
    shared = "put the project directory on a filesystem all nodes share (or the same files at the same path)"
    for key in ("shards", "tokenizer", "init"):
        if job.get(key) and not Path(job[key]).exists():
            return f"{job[key]} (node 0's {key}) is not on this node: {shared}"
    if (seen := _newest(job["work"])) != job["newest"]:
        return (f"node 0 resumes from checkpoint {job['newest']} but this node sees {seen} in {job['work']}: "
                f"{shared}")
    return None


def share_job(job: dict, d: Dist) -> dict:
    """Rank 0's job on every process, once each has checked it can run it (`problem`)."""
    if d.main and job.get("join"):
        raise LmwrightError("rank 0 is on a joining node; start node 0 with --node-rank 0")
    first = d.share(None if job.get("join") else {**job, "newest": _newest(job["work"])})
    d.check_all(problem(job, first))
    return first


def main(job_file: str) -> None:
    job = json.loads(Path(job_file).read_text())
    mine = Spec.model_validate(job["spec"])  # node 0's job, or a joining node's own spec (`distributed.join`)
    d = init_from_env(mine.train.distributed, pick_device(mine.train.device))
    try:
        job = share_job(job, d)
        spec = Spec.model_validate(job["spec"])
        check_world(spec.train, d.world, int(os.environ.get("GROUP_WORLD_SIZE", 1)))
        with Reporter(Console(stderr=True, soft_wrap=True), quiet=not d.main) as reporter:
            result = pretrain(spec, Path(job["shards"]), load_tokenizer(Path(job["tokenizer"])), Path(job["work"]),
                              reporter, d, Path(job["log_dir"]) if job.get("log_dir") else None,
                              init=Path(job["init"]) if job.get("init") else None)
        if d.main:
            write_result(result, Path(job["out"]), d.world)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
