"""One process of a distributed pretraining job (started by torchrun from `distributed.launch`); the first
process writes the result as a single-process job does (`job.write_result`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch.distributed as dist
from rich.console import Console

from lmwright.core.progress import Reporter
from lmwright.spec import Spec
from lmwright.tokenizer import load_tokenizer
from lmwright.train.distributed import init_from_env
from lmwright.train.job import write_result
from lmwright.train.loop import pretrain
from lmwright.train.step import pick_device


def main(job_file: str) -> None:
    job = json.loads(Path(job_file).read_text())
    spec = Spec.model_validate(job["spec"])
    d = init_from_env(spec.train.distributed, pick_device(spec.train.device))
    try:
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
