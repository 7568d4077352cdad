"""The report stage: the report card (report.md, report.html and its plots) from every stage's outputs, written by
`evaluate/report_card.py`; with the latest tuning and cross-validation results when there are any. It is also the
run's gate: the versions the run registered get aliases (`registry.on_pass`) only when every acceptance criterion
passes (`ops/registry.after_run`)."""

from __future__ import annotations

from lmwright.core.pipeline import StageContext, stage


def _report_facts(ws) -> dict:
    """The report also shows the latest tuning and cross-validation outputs: rerun it when they change."""
    from lmwright.core.artifacts import file_digest

    files = [ws.out_dir / "tune" / "trials.csv", ws.out_dir / "cv" / "results.json"]
    return {f.parent.name: file_digest(f) if f.exists() else None for f in files}


@stage("report", deps=("collect", "clean", "dedup", "split", "tokenizer", "tokenize", "pretrain", "evaluate",
                       "save", "test", "sft", "classify", "preference"), spec=("*",), extra=_report_facts,
       publish=(("*", ""),))
def report(ctx: StageContext) -> dict:
    """Write the report card (report.md, report.html and its plots): requirements, metrics with intervals,
    the previous version, data, model, training and tuning, slices, risk, samples."""
    from lmwright.evaluate.report_card import write_report_card  # matplotlib and torch: only when it runs
    from lmwright.ops.registry import after_run

    checks = write_report_card(ctx.spec, ctx.inputs, ctx.ws.store_url, ctx.out, ctx.ws.out_dir / "tune",
                               ctx.ws.out_dir / "cv" / "results.json")
    ok = [c["verdict"] in ("pass", "not applicable") for c in checks]
    passed = sum(ok)
    made = [(ctx.spec.project.name, ctx.inputs["save"].digest)] + [
        (o.summary["registered_as"], o.digest) for k in ("sft", "classify", "preference")
        if (o := ctx.inputs.get(k)) is not None and not o.summary.get("skipped") and o.summary.get("registered_as")]
    # a criterion naming a model (its own risk figure) holds back that model alone; the others, every model
    moved = after_run(ctx.ws, made, {name: all(good for c, good in zip(checks, ok, strict=True)
                                               if c.get("model") in (None, name)) for name, _ in made})
    for line in moved:
        ctx.log(line)
    failing = [c["criterion"] + ": " + ("not measured" if c["value"] is None else f"{c['value']:.4g}")
               for c, good in zip(checks, ok, strict=True) if not good]
    return {"requirements": {"passed": passed, "total": len(checks), "failing": failing}, "aliases": moved,
            "headline": f"report card: {passed}/{len(checks)} requirements pass; report.md, report.html"}
