"""Publishing: copy what a run made for people (the model, the report card, the metrics) to the output directory.

Each stage declares what it publishes (`@stage(..., publish=...)`); only what changed since the last publish is
copied, and each copy is atomic (a temporary name, then a rename). `run_project` is the pipeline followed by a
publish: what `lmwright run`, the stage commands and `lmwright.run()` do.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from lmwright.core.pipeline import StageOutcome, Stages, run_pipeline
from lmwright.core.progress import Reporter
from lmwright.core.workspace import Workspace


def run_project(ws: Workspace, stages: Stages, until: str | None = None, from_: str | None = None,
                force: tuple[str, ...] = (), reporter: Reporter | None = None) -> dict[str, StageOutcome]:
    """Run the stages needed (up to `until`) and publish their outputs."""
    outcomes = run_pipeline(ws, stages, until=until, from_=from_, force=force, reporter=reporter)
    publish(ws, stages, outcomes)
    return outcomes


def publish(ws: Workspace, stages: Stages, outcomes: dict[str, StageOutcome]) -> dict[str, Path]:
    """Copy the finished model, report and metrics to the output directory (only what changed)."""
    out = ws.out_dir
    out.mkdir(parents=True, exist_ok=True)
    marker = out / ".published.json"
    done = json.loads(marker.read_text()) if marker.exists() else {}
    paths = {}
    entries = []
    for stage_name, o in outcomes.items():
        for src, name in stages[stage_name].publish:
            if src == "*":
                entries += [(stage_name, p.name, p.name) for p in sorted(o.path.iterdir())
                            if p.is_file() and p.name != "MANIFEST.json"]
            elif (o.path / src).exists():  # a stage that was off (fine-tuning) has nothing to publish
                entries.append((stage_name, src, name))
    for stage_name, src, name in entries:
        o = outcomes[stage_name]
        target = out / name
        paths[name] = target
        if done.get(name) == o.digest and target.exists():
            continue
        source = o.path / src
        tmp = out / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        if source.is_dir():
            shutil.copytree(source, tmp, ignore=shutil.ignore_patterns("MANIFEST.json"))
        else:
            shutil.copyfile(source, tmp)
        if target.is_dir():
            shutil.rmtree(target)
        tmp.replace(target)
        done[name] = o.digest
    marker.write_text(json.dumps(done, indent=1))
    return paths
