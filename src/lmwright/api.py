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
# ("report", "*", "") publishes every file of the report card (its HTML, markdown and images) at the top level
PUBLISHED = [("save", ".", "model"), ("card", ".", "dataset_card"), ("report", "*", ""),
             ("evaluate", "metrics.json", "metrics.json"), ("evaluate", "risk.json", "risk.json"),
             ("test", "metrics.json", "test_metrics.json"), ("evaluate", "samples.json", "samples.json"),
             ("sft", "model", "assistant"), ("sft", "adapter", "assistant_adapter"),
             ("classify", "model", "classifier"), ("classify", "adapter", "classifier_adapter"),
             ("preference", "model", "preferred"), ("preference", "adapter", "preferred_adapter")]


def publish(ws: Workspace, outcomes: dict[str, StageOutcome]) -> dict[str, Path]:
    """Copy the finished model, report and metrics to the output directory (only what changed)."""
    out = ws.out_dir
    out.mkdir(parents=True, exist_ok=True)
    marker = out / ".published.json"
    done = json.loads(marker.read_text()) if marker.exists() else {}
    paths = {}
    entries = []
    for stage_name, src, name in PUBLISHED:
        if stage_name not in outcomes:
            continue
        if src == "*":
            entries += [(stage_name, p.name, p.name) for p in sorted(outcomes[stage_name].path.iterdir())
                        if p.is_file() and p.name != "MANIFEST.json"]
        elif (outcomes[stage_name].path / src).exists():  # a stage that was off (fine-tuning) has nothing to publish
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


def resolve_model(ws: Workspace, ref: str) -> tuple[Path, str, str]:
    """(directory, name, content digest) of a model given as a Hugging Face directory, a registered name (the
    latest version), `name@N` (the N-th registered version), or a digest prefix from `lmwright status`."""
    from lmwright.core.artifacts import MANIFEST, ArtifactStore, file_digest, tree_digest
    from lmwright.core.store import Store

    path = Path(ref)
    if (path / "config.json").exists():
        # the same digest the save stage's artifact has, so a published copy is recognised as that model
        files = {p.relative_to(path).as_posix(): file_digest(p) for p in sorted(path.rglob("*"))
                 if p.is_file() and p.name != MANIFEST}
        digest = tree_digest(files)
        known = [m for m in Store(ws.store_url).models() if m.digest == digest]
        return path.resolve(), known[-1].name if known else path.resolve().name, digest
    models = Store(ws.store_url).models()
    name, _, version = ref.partition("@")
    named = [m for m in models if m.name == name]
    hit = None
    if named and version:
        if not version.isdigit() or not 1 <= int(version) <= len(named):
            raise LmwrightError(f"model {name!r} has versions 1 to {len(named)}; {ref!r} is not one of them")
        hit = named[int(version) - 1]
    elif named:
        hit = named[-1]
    elif len(ref) >= 6:
        by_digest = {m.digest: m for m in models if m.digest.startswith(ref)}
        if len(by_digest) > 1:
            raise LmwrightError(f"digest prefix {ref!r} matches {len(by_digest)} models; give more characters")
        hit = next(iter(by_digest.values()), None)
    if hit is None:
        known = ", ".join(sorted({m.name for m in models})) or "none yet (run `lmwright run`)"
        raise LmwrightError(f"{ref!r} is neither a model directory (with config.json) nor a registered model; "
                            f"registered names: {known}")
    path = ArtifactStore(ws.artifacts_dir).open(hit.digest)
    if not (path / "config.json").exists() and (path / "model" / "config.json").exists():
        path = path / "model"  # a fine-tuning stage's artifact: the model beside its adapter and metrics
    return path, hit.name, hit.digest


def project_model(ws: Workspace, ref: str | None = None, reporter: Reporter | None = None) -> tuple[Path, str, str]:
    """`resolve_model(ref)`, or with no ref the project's latest registered model, built first if there is none."""
    from lmwright.core.store import Store

    if ref is None:
        if any(m.name == ws.spec.project.name for m in Store(ws.store_url).models()):
            ref = ws.spec.project.name
        else:  # nothing registered yet: build it
            ref = str(run_workspace(ws, until="save", reporter=reporter)["save"].path)
    return resolve_model(ws, ref)


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
