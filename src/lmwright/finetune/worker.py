"""One process of a data-parallel fine-tuning job (started by torchrun from `train.distributed.launch`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch.distributed as dist
from rich.console import Console

from lmwright.core.progress import Reporter
from lmwright.finetune.fit import RecipeSkipped
from lmwright.finetune.recipes import RECIPES
from lmwright.spec import Spec
from lmwright.train.distributed import init_from_env
from lmwright.train.step import pick_device


def main(job_file: str) -> None:
    job = json.loads(Path(job_file).read_text())
    spec = Spec.model_validate(job["spec"])
    d = init_from_env("ddp", pick_device(spec.finetune.device, "finetune.device"))  # NCCL on GPUs, gloo on CPUs
    try:
        try:
            with Reporter(Console(stderr=True, soft_wrap=True), quiet=not d.main) as reporter:
                res = RECIPES[job["kind"]](spec, Path(job["base_dir"]), job["base_name"], Path(job["split_dir"]),
                                           Path(job["out"]), Path(job["work"]), reporter, d)
        except RecipeSkipped as e:  # every rank reads the same rows, so every rank skips: the stage records it
            res = {"skipped": True, "reason": str(e)}
        if d.main:
            (Path(job["out"]) / "result.json").write_text(json.dumps(res, default=float))
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
