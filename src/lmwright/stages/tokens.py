"""The token stages: train the tokenizer on the train split (or, continuing a model with `train.init_from`,
copy that model's own), then encode every split into token shards."""

from __future__ import annotations

import json

from lmwright.core.models import init_facts, init_model
from lmwright.core.pipeline import StageContext, stage
from lmwright.data.document import read_texts
from lmwright.data.split import SPLITS
from lmwright.tokenizer import copy_tokenizer, load_tokenizer, save_tokenizer, train_tokenizer, write_shards


@stage("tokenizer", deps=("split",), spec=("tokenizer", "model.max_seq_len", "train.init_from"),
       extra=init_facts)
def tokenizer(ctx: StageContext) -> dict:
    """Train a byte-level BPE tokenizer on the train split, or copy the init model's (`train.init_from`)."""
    cfg = ctx.spec.tokenizer
    texts = read_texts(ctx.inputs["split"].path / "train.parquet")
    init = init_model(ctx.ws)
    if init is None:
        # the task is closed by the pipeline
        ctx.reporter.task("tokenizer", total=None, info=f"BPE on {len(texts):,} documents")
        tok = train_tokenizer(texts, cfg.vocab_size, cfg.min_frequency)
        save_tokenizer(tok, ctx.out, model_max_length=ctx.spec.model.max_seq_len)
    else:  # a model continues only on the token ids it was trained with
        tok = copy_tokenizer(init[0], ctx.out, "train.init_from", model_max_length=ctx.spec.model.max_seq_len)
    sample = "\n".join(texts[:200])
    ratio = len(sample.encode()) / max(1, len(tok.encode(sample, add_special_tokens=False).ids))
    source = f"{init[1]}'s, copied" if init else "trained"
    started = {"ref": ctx.spec.train.init_from, "model": init[1], "digest": init[2]} if init else None
    return {"vocab_size": tok.get_vocab_size(), "bytes_per_token": round(ratio, 3), "init_from": started,
            "headline": f"vocabulary {tok.get_vocab_size():,} ({source}), {ratio:.2f} bytes/token"}


@stage("tokenize", deps=("split", "tokenizer"), spec=("risk.canaries", "project.seed"))
def tokenize(ctx: StageContext) -> dict:
    """Encode each split into a flat token shard (numpy memmap), with the risk canaries planted in train."""
    from lmwright.data.canaries import make_canaries, plant

    tok = load_tokenizer(ctx.inputs["tokenizer"].path)
    splits = {s: read_texts(ctx.inputs["split"].path / f"{s}.parquet") for s in SPLITS}
    c = ctx.spec.risk.canaries
    canaries = make_canaries(c.repeats, ctx.spec.project.seed) if c.enabled else []
    splits["train"] = plant(splits["train"], canaries, ctx.spec.project.seed)
    # the secrets stay inside the artifact: the risk checks read them, nothing publishes them
    (ctx.out / "canaries.json").write_text(json.dumps(canaries, indent=1))
    task = ctx.reporter.task("tokenize", total=sum(len(v) for v in splits.values()))
    meta = write_shards(tok, splits, ctx.out, on_progress=lambda n: task.advance(n))
    tokens = {k: v["tokens"] for k, v in meta["splits"].items()}
    return {"tokens": tokens, "dtype": meta["dtype"], "canaries": len(canaries),
            "canary_copies": sum(x["repeats"] for x in canaries),
            "headline": " / ".join(f"{k} {v:,}" for k, v in tokens.items()) + " tokens"
                        + (f", {len(canaries)} canaries planted" if canaries else "")}
