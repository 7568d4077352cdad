"""The Python API: the same operations as the CLI.

    import lmwright
    outcome = lmwright.run("my-project")                  # every stage, cached
    model = lmwright.load_model("lmwright-out/model")     # a torch module: forward(ids) -> logits
    tok = lmwright.load_tokenizer("lmwright-out/model")
    print(lmwright.generate(model, tok, "The json module"))
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from lmwright.core.pipeline import StageOutcome, run_pipeline
from lmwright.core.progress import Reporter
from lmwright.core.workspace import Workspace
from lmwright.errors import LmwrightError


def run(root: str | Path = ".", overrides: list[str] | tuple[str, ...] = (), until: str | None = None,
        from_: str | None = None, force: tuple[str, ...] = (), reporter: Reporter | None = None,
        spec_path: str | Path | None = None) -> dict[str, StageOutcome]:
    """Run the project in `root` (its lmwright.yaml, or the built-in default) and publish the outputs."""
    ws = Workspace.open(root, overrides, Path(spec_path) if spec_path else None)
    return run_workspace(ws, until=until, from_=from_, force=force, reporter=reporter)


def run_workspace(ws: Workspace, until: str | None = None, from_: str | None = None, force: tuple[str, ...] = (),
                  reporter: Reporter | None = None) -> dict[str, StageOutcome]:
    outcomes = run_pipeline(ws, until=until, from_=from_, force=force, reporter=reporter)
    publish(ws, outcomes)
    return outcomes


# what is copied to the output directory: (stage, file or directory in its artifact, name in the output dir)
PUBLISHED = [("save", ".", "model"), ("card", ".", "dataset_card"), ("report", "report.md", "report.md"), ("report", "report.html", "report.html"),
             ("report", "training_curve.png", "training_curve.png"), ("report", "lr_curve.png", "lr_curve.png"),
             ("evaluate", "metrics.json", "metrics.json"),
             ("evaluate", "samples.json", "samples.json")]


def publish(ws: Workspace, outcomes: dict[str, StageOutcome]) -> dict[str, Path]:
    """Copy the finished model, report and metrics to the output directory (only what changed)."""
    out = ws.out_dir
    out.mkdir(parents=True, exist_ok=True)
    marker = out / ".published.json"
    done = json.loads(marker.read_text()) if marker.exists() else {}
    paths = {}
    for stage_name, src, name in PUBLISHED:
        if stage_name not in outcomes:
            continue
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


def load_model(path: str | Path):
    """A saved model (a Hugging Face Llama directory, or a workspace whose model is published) as `LlamaLM`."""
    from lmwright.model.hf import load_hf

    path = Path(path)
    if not (path / "config.json").exists():
        ws = Workspace.open(path)
        if (ws.out_dir / "model" / "config.json").exists():
            path = ws.out_dir / "model"
        else:
            raise LmwrightError(f"{path}: no model here; run `lmwright run` first or pass a model directory")
    return load_hf(path)


def load_tokenizer(path: str | Path):
    """The `tokenizers.Tokenizer` of a saved model or tokenizer directory (or a tokenizer.json file)."""
    from lmwright.tokenizer import load_tokenizer as _load

    path = Path(path)
    if path.is_dir() and not (path / "tokenizer.json").exists():
        ws = Workspace.open(path)
        path = ws.out_dir / "model"
    if not (path.is_file() or (path / "tokenizer.json").exists()):
        raise LmwrightError(f"{path}: no tokenizer.json here; run `lmwright run` first or pass a model directory")
    return _load(path)


def generate(model, tokenizer, prompt: str, max_new_tokens: int = 64, temperature: float = 0.0,
             top_k: int | None = None, seed: int = 0) -> str:
    """The continuation of `prompt` (greedy when temperature is 0)."""
    from lmwright.model.generate import generate_text

    return generate_text(model, tokenizer, prompt, max_new_tokens, temperature, top_k, seed)
