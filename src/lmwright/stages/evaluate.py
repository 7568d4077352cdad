"""The evaluation stages: validation figures, risk checks and samples (evaluate); the Hugging Face model directory
with its model card (save); and the one recorded evaluation on the test split (test). The test split is read only
by the test stage (see `data/split.py` and `evaluate/testset.py`)."""

from __future__ import annotations

import json

from lmwright.core.pipeline import StageContext, stage
from lmwright.data.document import read_docs, read_texts
from lmwright.tokenizer import load_tokenizer, special_ids


def _risk_inputs(ws) -> dict:
    """The risk checks' probe sets and facts file, by content (an edit reruns them)."""
    from lmwright.evaluate.risk_suite import fingerprint

    return fingerprint(ws.spec, ws.root)


@stage("evaluate", deps=("pretrain", "tokenize", "tokenizer", "split"),
       spec=("eval", "risk", "train.seq_len", "project.seed", "data.sources"), extra=_risk_inputs,
       publish=(("metrics.json", "metrics.json"), ("risk.json", "risk.json"), ("samples.json", "samples.json")))
def evaluate(ctx: StageContext) -> dict:
    """Validation metrics with confidence intervals and slices, the eval sets, risk checks and samples."""
    from lmwright.data.split import split_path
    from lmwright.evaluate.risk_suite import questions
    from lmwright.evaluate.suite import LM_FIGURES, evaluate_docs, evaluate_set, flatten, risk_checks
    from lmwright.model.generate import generate_text
    from lmwright.train.checkpoint import load_weights
    from lmwright.train.loop import set_threads

    spec, e = ctx.spec, ctx.spec.eval
    set_threads(spec.train.threads)
    model = load_weights(ctx.inputs["pretrain"].path)
    tok = load_tokenizer(ctx.inputs["tokenizer"].path)
    split_dir, seed = ctx.inputs["split"].path, spec.project.seed
    val_docs = read_docs(split_path(split_dir, "val", ".parquet"))
    task = ctx.reporter.task("eval val", total=None, info=f"{len(val_docs):,} documents")
    val = evaluate_docs(model, tok, val_docs, spec.train.seq_len, e, seed, spec.data.pydocs_sources(),
                        on_batch=lambda n: task.advance(n))
    sets = {}
    for es in e.sets:
        task.update(info=f"eval set {es.name}")
        sets[es.name] = evaluate_set(model, tok, es, ctx.ws.root, spec.train.seq_len, e, seed, ctx.out)
    task.update(info="risk checks")
    canaries = json.loads((ctx.inputs["tokenize"].path / "canaries.json").read_text())
    train_texts = read_texts(split_path(split_dir, "train", ".parquet"))
    risk = risk_checks(model, tok, spec.risk, e.prompts, train_texts, [d["text"] for d in val_docs], canaries, seed,
                       e=e, seq_len=spec.train.seq_len, facts=questions(spec, ctx.ws.root, split_dir))
    samples = [{"prompt": p, "completion": generate_text(model, tok, p, e.max_new_tokens, e.temperature, e.top_k,
                                                        seed=seed)} for p in e.prompts]
    (ctx.out / "metrics.json").write_text(json.dumps({"val": val, "sets": sets}, indent=2))
    (ctx.out / "risk.json").write_text(json.dumps(risk, indent=2))
    (ctx.out / "samples.json").write_text(json.dumps(samples, indent=2))
    summary = {"val": {k: val[k] for k in LM_FIGURES}, "risk": flatten(risk), "sets": flatten(sets)}
    if "generation" in val:
        summary["val"]["generation"] = val["generation"]
    lo, hi = val["ci"]["bits_per_byte"]
    return {**summary, "headline": f"val {val['bits_per_byte']:.3f} bits/byte [{lo:.3f}, {hi:.3f}] "
                                   f"(ppl {val['perplexity']:.1f}); risk: verbatim {risk.get('verbatim_rate', 0):.2f}, "
                                   f"canary exposure <= {risk.get('canary_max_exposure', 0):.1f} bits"}


# the data stages are inputs for the model card (training data, removals, licences); the spec keys are the ones the
# card shows that no input's digest already covers
@stage("save", deps=("pretrain", "tokenizer", "evaluate", "collect", "clean", "dedup", "split", "card"),
       spec=("project.name", "governance.license", "governance.unknown_license", "data.sources", "train",
             "eval.confidence"),
       publish=((".", "model"),))
def save(ctx: StageContext) -> dict:
    """Write the Hugging Face model directory (LlamaForCausalLM, safetensors, tokenizer, model card) and register
    it."""
    from lmwright.evaluate.model_card import pretrained_facts, write_model_card
    from lmwright.model.hf import save_hf
    from lmwright.train.checkpoint import load_weights

    model = load_weights(ctx.inputs["pretrain"].path)
    tok = load_tokenizer(ctx.inputs["tokenizer"].path)
    save_hf(model, ctx.inputs["tokenizer"].path, ctx.out, special_ids(tok))
    n_params = model.n_params()
    metrics = json.loads((ctx.inputs["evaluate"].path / "metrics.json").read_text())
    facts = pretrained_facts(ctx.spec, {k: i.summary for k, i in ctx.inputs.items()},
                             {k: i.digest for k, i in ctx.inputs.items()}, metrics, ctx.out, n_params)
    write_model_card(ctx.out, facts)
    ctx.model = (ctx.spec.project.name, n_params, {"val": ctx.inputs["evaluate"].summary["val"]})
    return {"n_params": n_params, "format": "huggingface/llama", "card": facts,
            "headline": "LlamaForCausalLM + tokenizer + model card"}


@stage("test", deps=("save", "split"), spec=("eval", "train.seq_len", "project.seed", "data.sources"),
       publish=(("metrics.json", "test_metrics.json"),))
def test(ctx: StageContext) -> dict:
    """The final evaluation of the saved model on the test split: once per model, recorded in the store."""
    from lmwright.evaluate.suite import LM_FIGURES
    from lmwright.evaluate.testset import final_evaluation

    res, warning = final_evaluation(ctx.ws, ctx.inputs["save"].path, ctx.inputs["save"].digest,
                                    ctx.spec.project.name, ctx.inputs["split"].path, ctx.inputs["split"].digest,
                                    "pipeline", ctx.reporter)
    if warning:
        ctx.log(warning)
    (ctx.out / "metrics.json").write_text(json.dumps({"test": res}, indent=2))
    lo, hi = res["ci"]["bits_per_byte"]
    return {"test": {k: res[k] for k in LM_FIGURES}, "repeated": warning is not None,
            "headline": f"test {res['bits_per_byte']:.3f} bits/byte [{lo:.3f}, {hi:.3f}], recorded"}
