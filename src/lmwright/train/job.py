"""Pretraining as a job: in this process, or in `train.nproc` processes under torchrun (DDP or FSDP2).

Either way the job leaves the same files in `out`: the weights (`checkpoint.save_weights`), `history.json` (train
loss and learning rate per step, validation figures per evaluation) and the run's figures, returned as a dict.
The distributed workers (`worker.py`) write theirs with the same `write_result`.
"""

from __future__ import annotations

import json
from pathlib import Path

from lmwright.core.progress import Reporter
from lmwright.spec import Spec


def write_result(result, out: Path, world: int) -> dict:
    """A finished `TrainResult` as files: weights, history and the run's figures (`result.json`, which `launch`
    hands back from the distributed workers); returns the figures."""
    from lmwright.train.checkpoint import save_weights

    save_weights(result.model, out)
    (out / "history.json").write_text(json.dumps(result.history))
    figures = {"steps": result.steps, "resumed_from": result.resumed_from, "seconds": result.seconds,
               "best_step": result.best_step, "flops_per_token": result.flops_per_token,
               "peak_flops": result.peak_flops, "peak_source": result.peak_source, "mfu": result.mfu,
               "world": world, "n_params": result.model.n_params()}
    (out / "result.json").write_text(json.dumps(figures))
    return figures


def pretrain_job(spec: Spec, shards: Path, tokenizer_dir: Path, work: Path, out: Path, reporter: Reporter,
                 log_dir: Path | None = None, init: Path | None = None) -> tuple[dict, dict]:
    """Pretrain into `out`; returns (the run's figures, the history). `work` keeps the checkpoints a killed run
    resumes from; `init` is the model directory continued pretraining starts from (`train.init_from`,
    resolved)."""
    tr = spec.train
    if tr.nproc > 1:
        from lmwright.train.distributed import launch

        job = {"spec": spec.model_dump(mode="json"), "shards": str(shards), "tokenizer": str(tokenizer_dir),
               "work": str(work), "out": str(out), "log_dir": str(log_dir) if log_dir else None,
               "init": str(init) if init else None}  # each process loads the init weights before sharding
        reporter.log(f"  pretrain: launching {tr.nproc} processes ({tr.distributed}) with torchrun")
        figures = launch(job, tr.nproc, work)
    else:
        from lmwright.tokenizer import load_tokenizer
        from lmwright.train.loop import pretrain

        result = pretrain(spec, shards, load_tokenizer(tokenizer_dir), work, reporter, log_dir=log_dir,
                          init=init)
        figures = write_result(result, out, world=1)
    (out / "result.json").unlink()  # the artifact holds the model and its history; the figures go in the summary
    return figures, json.loads((out / "history.json").read_text())
