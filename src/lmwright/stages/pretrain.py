"""The pretraining stage: the Llama decoder trained on the train shard (`lmwright.train`), from a random init
or, with `train.init_from`, from an existing model's weights (continued pretraining).

Across machines node 0 runs the stage as ever (launching its processes with the others'), and every other node
`join_pretrain`s: it trains but records nothing, so the store, the checkpoints and the artifact have one writer."""

from __future__ import annotations

import time
from pathlib import Path

from lmwright.core.models import init_facts, init_model
from lmwright.core.pipeline import StageContext, Stages, ancestors, stage, stage_status
from lmwright.core.progress import Reporter
from lmwright.core.workspace import Workspace
from lmwright.model.config import ModelConfig
from lmwright.model.sizing import DataFit, data_fit
from lmwright.train.distributed import Nodes, check_world, join, this_node
from lmwright.train.job import pretrain_job
from lmwright.train.step import pick_device, resolve_precision


@stage("pretrain", deps=("tokenize", "tokenizer"), spec=("project.seed", "model", "train"), extra=init_facts,
       needs=lambda spec: list(spec.train.log_to),  # the optional metric writers: tensorboard, mlflow
       resumable=True)
def pretrain(ctx: StageContext) -> dict:
    """Train the Llama decoder on the train shard, from scratch or from `train.init_from`; checkpoints make a
    killed run resumable.

    With `train.nproc` > 1 the loop runs in that many processes under torchrun (DDP or FSDP2), on each node of a
    multi-node run (`lmwright train --nnodes`)."""
    tr = ctx.spec.train
    init = init_model(ctx.ws)
    if init is not None:
        ctx.log(f"  pretrain: starting from {init[1]} ({init[2][:12]}), train.init_from: {tr.init_from}")
    fit = corpus_fit(ctx, init[0] if init else None)
    for line in fit.warnings:  # said before the minutes of training, not after
        ctx.log(f"  pretrain: warning: {line}")
    r, history = pretrain_job(ctx.spec, ctx.inputs["tokenize"].path, ctx.inputs["tokenizer"].path, ctx.work,
                              ctx.out, ctx.reporter, log_dir=ctx.ws.root / ".lmwright",
                              init=init[0] if init else None)
    n_params, steps, seconds = r["n_params"], r["steps"], r["seconds"]
    resumed_from, best_step = r["resumed_from"], r["best_step"]
    mfu, peak, peak_source = r["mfu"], r["peak_flops"], r["peak_source"]
    ctx.metrics.extend(("train/loss", s, v) for s, v in zip(history["step"], history["loss"], strict=True))
    ctx.metrics.extend(("train/lr", s, v) for s, v in zip(history["step"], history["lr"], strict=True))
    for key in ("val_loss", "val_bpb"):
        ctx.metrics.extend((f"val/{key[4:]}", s, v) for s, v in zip(history["val_step"], history[key], strict=True))
    tokens = steps * tr.batch_size * tr.seq_len
    # where the weights started, for lineage: None is a random init
    started = {"ref": tr.init_from, "model": init[1], "digest": init[2]} if init else None
    return {"n_params": n_params, "steps": steps, "tokens": tokens, "resumed_from": resumed_from,
            "init_from": started, "best_step": best_step, "nproc": tr.nproc, "nodes": this_node().count,
            "precision": resolve_precision(tr.precision, pick_device(tr.device)),  # what auto became here
            "train_seconds": round(seconds, 1), "tokens_per_s": round(tokens / max(seconds, 1e-9)),
            "mfu": round(mfu, 4), "peak_tflops": round(peak / 1e12, 4), "peak_source": peak_source,
            "final_loss": history["loss"][-1], "val_loss": history["val_loss"][-1],
            "val_bpb": history["val_bpb"][-1], "epochs": fit.epochs, "tokens_per_param": fit.tokens_per_param,
            "warnings": fit.warnings,
            "headline": (f"from {init[1]}, " if init else "")
                        + f"{n_params / 1e6:.2f}M params, {steps} steps, loss {history['loss'][-1]:.3f}, "
                        f"val {history['val_bpb'][-1]:.3f} bits/byte, MFU {100 * mfu:.1f}%"}


def corpus_fit(ctx: StageContext, init: Path | None) -> DataFit:
    """The model against its corpus (model/sizing.py): epochs, tokens per parameter, the vocabulary's fit, and
    warnings with their fixes. The network is the one the loop will build: the init model's own when continuing."""
    if init is not None:
        from lmwright.model.hf import read_config

        cfg = read_config(init)
    else:
        cfg = ModelConfig.from_spec(ctx.spec, ctx.inputs["tokenizer"].summary.get("vocab_size",
                                                                                  ctx.spec.tokenizer.vocab_size))
    train_tokens = ctx.inputs["tokenize"].summary["tokens"]["train"]
    return data_fit(cfg, train_tokens, ctx.spec.train, continued=init is not None)


def join_pretrain(ws: Workspace, stages: Stages, nodes: Nodes, reporter: Reporter, force: bool = False,
                  poll: float = 2.0) -> str:
    """A node other than 0 of a multi-node run: wait until node 0 has built the stages before pretraining (the
    project directory shared), then run this node's processes of node 0's job (`distributed.join`). Nothing here
    writes to the project: node 0 records the outcome, and its rank 0 writes the checkpoints and the model.
    Returns what happened: `joined`, or `cached` when the stage is already recorded (node 0 then trains nothing)."""
    tr, who = ws.spec.train, f"node {nodes.rank} of {nodes.count}"
    check_world(tr, tr.nproc * nodes.count, nodes.count)
    before, waiting = ancestors(stages, "pretrain")[:-1], False
    while True:
        state = {row["stage"]: row["state"] for row in stage_status(ws, stages)}
        if state["pretrain"] == "cached" and not force:
            reporter.log(f"pretrain: cached — already recorded for this spec; {who} has nothing to train")
            return "cached"
        if not (missing := [n for n in before if state[n] != "cached"]):
            break
        if not waiting:
            reporter.log(f"  pretrain: {who} waits for node 0 to run {', '.join(missing)} in {ws.root} (a directory "
                         "all nodes share; without one, run `lmwright run --until tokenize` on this node first)")
            waiting = True
        time.sleep(poll)
    reporter.log(f"  pretrain: {who}: {tr.nproc} process{'es' if tr.nproc > 1 else ''} joining node 0 at "
                 f"{nodes.endpoint}; node 0 writes the checkpoints and records the outcome")
    join(ws.spec.model_dump(mode="json"), tr.nproc, nodes)
    reporter.log(f"pretrain: {who} done; node 0 records the outcome")
    return "joined"
