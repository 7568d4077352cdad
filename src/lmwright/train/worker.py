"""One process of a distributed training job (started by torchrun from `distributed.launch`)."""

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
from lmwright.train.loop import pick_device, pretrain


def main(job_file: str) -> None:
    job = json.loads(Path(job_file).read_text())
    spec = Spec.model_validate(job["spec"])
    d = init_from_env(spec.train.distributed, pick_device(spec.train.device))
    try:
        with Reporter(Console(stderr=True, soft_wrap=True), quiet=not d.main) as reporter:
            result = pretrain(spec, Path(job["shards"]), load_tokenizer(Path(job["tokenizer"])), Path(job["work"]),
                              reporter, d, Path(job["log_dir"]) if job.get("log_dir") else None)
        if d.main:
            from lmwright.train.checkpoint import save_weights

            out = Path(job["out"])
            save_weights(result.model, out)
            (out / "history.json").write_text(json.dumps(result.history))
            (out / "result.json").write_text(json.dumps({
                "steps": result.steps, "resumed_from": result.resumed_from, "seconds": result.seconds,
                "best_step": result.best_step, "flops_per_token": result.flops_per_token,
                "peak_flops": result.peak_flops, "peak_source": result.peak_source, "mfu": result.mfu,
                "world": d.world}))
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
