"""The report stage: the report card (report.md, report.html and its plots) from every stage's outputs, written by
`evaluate/report_card.py`; with the latest tuning and cross-validation results when there are any."""

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

    checks = write_report_card(ctx.spec, ctx.inputs, ctx.ws.store_url, ctx.out, ctx.ws.out_dir / "tune",
                               ctx.ws.out_dir / "cv" / "results.json")
    passed = sum(c["verdict"] == "pass" for c in checks)
    return {"requirements": {"passed": passed, "total": len(checks)},
            "headline": f"report card: {passed}/{len(checks)} requirements pass; report.md, report.html"}
