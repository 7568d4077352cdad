"""Pretraining as a job: in this process, or in `train.nproc` processes under torchrun (DDP or FSDP2), on this
machine or on each of several (`distributed.Nodes`; this function runs on node 0, the others `join`).

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
    from lmwright.train.distributed import check_world, launch, this_node

    tr, nodes = spec.train, this_node()
    if tr.nproc > 1 or nodes.count > 1:
        check_world(tr, tr.nproc * nodes.count, nodes.count)
        job = {"spec": spec.model_dump(mode="json"), "shards": str(shards), "tokenizer": str(tokenizer_dir),
               "work": str(work), "out": str(out), "log_dir": str(log_dir) if log_dir else None,
               "init": str(init) if init else None}  # each process loads the init weights before sharding
        where = (f" on each of {nodes.count} nodes, this one node 0, meeting at {nodes.endpoint}"
                 if nodes.count > 1 else "")
        reporter.log(f"  pretrain: launching {tr.nproc} process{'es' if tr.nproc > 1 else ''}{where} "
                     f"({tr.distributed}) with torchrun")
        figures = launch(job, tr.nproc, work, nodes=nodes)
    else:
        from lmwright.tokenizer import load_tokenizer
        from lmwright.train.loop import pretrain

        result = pretrain(spec, shards, load_tokenizer(tokenizer_dir), work, reporter, log_dir=log_dir,
                          init=init)
        figures = write_result(result, out, world=1)
    (out / "result.json").unlink()  # the artifact holds the model and its history; the figures go in the summary
    return figures, json.loads((out / "history.json").read_text())
