"""The fine-tuning stages: an assistant (sft), a classifier (classify) and preference tuning (preference, off by
default), each from the saved model or `finetune.base`, registered as PROJECT-assistant/-classifier/-preferred with a
model card (`evaluate/model_card.py`) in its directory. The recipes are in `lmwright.finetune`."""

from __future__ import annotations

from lmwright.core.models import resolve_model
from lmwright.core.pipeline import StageContext, stage
from lmwright.finetune.fit import RecipeSkipped, check_files, recipe_fit, with_data_paths
from lmwright.spec import FinetuneSpec
from lmwright.train.step import pick_device, resolve_precision


def _finetune_facts(kind: str):
    """What a fine-tuning stage's result depends on beyond the spec: its data files' and base model's contents."""
    def facts(ws) -> dict:
        from lmwright.core.artifacts import file_digest
        from lmwright.evaluate.risk_suite import fingerprint

        r, base = getattr(ws.spec.finetune, kind), ws.spec.finetune.base
        files = {f: file_digest(ws.root / f) for f in (r.data, r.val_data) if f and (ws.root / f).exists()}
        if base:
            files["base"] = resolve_model(ws, base)[2]
        files["risk"] = fingerprint(ws.spec, ws.root)  # the risk suite's probe sets and facts file
        return files
    return facts


def _finetune_stage(ctx: StageContext, kind: str, registered_as: str) -> dict:
    from lmwright.evaluate.risk_suite import project_paths
    from lmwright.finetune.recipes import RECIPES

    ft = ctx.spec.finetune
    fit = recipe_fit(ctx.spec, kind)
    if not fit.runs:
        return _skipped(fit.rows)
    if ft.base:
        base_dir, base_name, _ = resolve_model(ctx.ws, ft.base)
    else:
        base_dir, base_name = ctx.inputs["save"].path, ctx.spec.project.name
    # the recipe's data files and its risk checks' facts file, by absolute path (torchrun workers read them too)
    spec = with_data_paths(project_paths(ctx.spec, ctx.ws.root), ctx.ws.root)
    if ft.nproc > 1:
        from lmwright.train.distributed import launch

        job = {"spec": spec.model_dump(mode="json"), "kind": kind, "base_dir": str(base_dir),
               "base_name": base_name, "split_dir": str(ctx.inputs["split"].path), "out": str(ctx.out),
               "work": str(ctx.work)}
        ctx.log(f"  finetune {kind}: launching {ft.nproc} processes (DDP) with torchrun")
        res = launch(job, ft.nproc, ctx.work, module="lmwright.finetune.worker")
        (ctx.out / "result.json").unlink()
        if res.get("skipped"):  # the workers found too few rows (finetune/worker.py)
            ctx.log(f"  {kind}: skipped: {res['reason']}")
            return _skipped(res["reason"])
    else:
        try:
            res = RECIPES[kind](spec, base_dir, base_name, ctx.inputs["split"].path, ctx.out, ctx.work,
                                ctx.reporter)
        except RecipeSkipped as e:  # the documents gave too few rows: known only once the data is split
            ctx.log(f"  {kind}: skipped: {e}")
            return _skipped(str(e))
    from safetensors.torch import load_file

    n_params = sum(t.numel() for t in load_file(str(ctx.out / "model" / "model.safetensors")).values())
    name = f"{ctx.spec.project.name}-{registered_as}"
    figures = {k: v for k, v in res["tuned"].items() if isinstance(v, int | float)}
    ctx.model = (name, n_params, {"finetune": {kind: figures}, "base": base_name})
    b, t = res["base"], res["tuned"]
    key = {"sft": "rouge_l", "classify": "f1_macro", "preference": "likelihood_accuracy"}[kind]
    head = f"{key} {b.get(key, float('nan')):.3f} -> {t.get(key, float('nan')):.3f} ({ft.method}, {res['seconds']:.0f} s)"
    summary = {"task": kind, "base": base_name, "registered_as": name, "method": ft.method, "seconds": res["seconds"],
               "precision": resolve_precision(ft.precision, pick_device(ft.device, "finetune.device")),  # auto's pick
               "ci": res.get("ci", {}),
               "base_figures": {k: v for k, v in b.items() if isinstance(v, int | float)}, "tuned_figures": figures,
               "data": res["data"], "headline": head}
    if isinstance(res.get("risk"), dict):  # the recipe's risk checks on the tuned model: figures, as evaluate's
        from lmwright.evaluate.suite import flatten

        summary["risk"] = flatten(res["risk"])
    return {**summary, "card": _write_card(ctx, registered_as, summary, n_params)}


def _skipped(reason: str) -> dict:
    """A recipe's summary when it did not run (the report card lists the reason)."""
    return {"skipped": True, "reason": reason, "headline": f"skipped: {reason}"}


def _write_card(ctx: StageContext, registered_as: str, summary: dict, n_params: int) -> dict:
    """The fine-tuned model's card (README.md in its directory), with the training data facts of its base (the
    save stage's card, or the card of the registered `finetune.base`); returns the card's facts."""
    from lmwright.evaluate.model_card import finetuned_facts, write_model_card

    save, ref = ctx.inputs["save"], ctx.spec.finetune.base
    base, digest = (save.summary.get("card"), save.digest) if not ref else _registered_card(ctx, ref)
    facts = finetuned_facts(ctx.spec, registered_as, summary, base, {"base": digest, "base_ref": ref,
                                                                       "split": ctx.inputs["split"].digest},
                            ctx.out / "model", n_params)
    write_model_card(ctx.out / "model", facts)
    return facts


def _registered_card(ctx: StageContext, ref: str) -> tuple[dict | None, str]:
    """(the card facts, the digest) of `finetune.base`: the facts are in the summary of the run that registered it
    when it is a model registered here (a retraining's champion, say); None for a directory from elsewhere."""
    from lmwright.core.schema import StageRun
    from lmwright.core.store import Store

    store, digest = Store(ctx.ws.store_url), resolve_model(ctx.ws, ref)[2]
    m = next((x for x in store.models() if x.digest == digest), None)
    with store.session() as s:
        run = s.get(StageRun, m.run_id) if m else None
    return ((run.summary or {}).get("card") if run else None), digest


def _precheck(kind: str):
    """Before any work: a missing data file stops the run; a recipe without rows is said to be skipped, and why."""
    def precheck(ws) -> str | None:
        check_files(ws.spec, ws.root, (kind,))
        fit = recipe_fit(ws.spec, kind)
        return None if fit.runs or not getattr(ws.spec.finetune, kind).enabled else f"finetune {fit.line()}"
    return precheck


# each recipe's fingerprint: the settings all three share and its own sub-section (changing SFT's steps does not
# retrain the classifier)
_FT_COMMON = tuple(f"finetune.{k}" for k in FinetuneSpec.model_fields if k not in ("sft", "classify", "preference"))
# and what the model card shows (its licence check; the intervals' confidence, which the recipes also read)
_FT_CARD = ("governance.license", "governance.unknown_license", "data.sources", "eval.bootstrap", "eval.confidence")
_FT_RISK = ("risk",)  # the risk suite runs on the new model in the same stage (finetune/risk.py)


@stage("sft", deps=("save", "split"),
       spec=(*_FT_COMMON, "finetune.sft", "project", "train", *_FT_CARD, *_FT_RISK),
       extra=_finetune_facts("sft"), enabled=lambda spec: recipe_fit(spec, "sft").runs, resumable=True,
       precheck=_precheck("sft"),
       publish=(("model", "assistant"), ("adapter", "assistant_adapter"), ("risk.json", "assistant_risk.json")))
def sft(ctx: StageContext) -> dict:
    """Fine-tune the model into an assistant on instructions (SFT), registered as PROJECT-assistant."""
    return _finetune_stage(ctx, "sft", "assistant")


@stage("classify", deps=("save", "split"),
       spec=(*_FT_COMMON, "finetune.classify", "project", "train", *_FT_CARD, *_FT_RISK),
       extra=_finetune_facts("classify"), enabled=lambda spec: recipe_fit(spec, "classify").runs, resumable=True,
       precheck=_precheck("classify"),
       publish=(("model", "classifier"), ("adapter", "classifier_adapter"), ("risk.json", "classifier_risk.json")))
def classify(ctx: StageContext) -> dict:
    """Fine-tune the model into a classifier with a classification head, registered as PROJECT-classifier."""
    return _finetune_stage(ctx, "classify", "classifier")


@stage("preference", deps=("save", "split"),
       spec=(*_FT_COMMON, "finetune.preference", "project", "train", *_FT_CARD, *_FT_RISK),
       extra=_finetune_facts("preference"), enabled=lambda spec: recipe_fit(spec, "preference").runs, resumable=True,
       precheck=_precheck("preference"),
       publish=(("model", "preferred"), ("adapter", "preferred_adapter"), ("risk.json", "preferred_risk.json")))
def preference(ctx: StageContext) -> dict:
    """Preference-tune the model with DPO on chosen/rejected pairs, registered as PROJECT-preferred."""
    return _finetune_stage(ctx, "preference", "preferred")
