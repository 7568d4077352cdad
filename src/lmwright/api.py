"""The Python API: the same operations as the CLI, for users' scripts. Nothing inside lmwright imports this
module; it is a face over the library, like the `lmwright` command.

    import lmwright
    outcome = lmwright.run("my-project")                  # every stage, cached
    model = lmwright.load_model("lmwright-out/model")     # a torch module: forward(ids) -> logits
    tok = lmwright.load_tokenizer("lmwright-out/model")
    print(lmwright.generate(model, tok, "The json module"))
"""

from __future__ import annotations

from pathlib import Path

from lmwright.core.models import project_model as _project_model
from lmwright.core.models import resolve_model, saved_model_dir
from lmwright.core.pipeline import StageOutcome
from lmwright.core.progress import Reporter
from lmwright.core.publish import run_project
from lmwright.core.workspace import Workspace
from lmwright.stages.registry import STAGES

__all__ = ["generate", "load_model", "load_tokenizer", "project_model", "resolve_model", "run", "run_workspace"]


def run(root: str | Path = ".", overrides: list[str] | tuple[str, ...] = (), until: str | None = None,
        from_: str | None = None, force: tuple[str, ...] = (), reporter: Reporter | None = None,
        spec_path: str | Path | None = None) -> dict[str, StageOutcome]:
    """Run the project in `root` (its lmwright.yaml, or the built-in default) and publish the outputs."""
    ws = Workspace.open(root, overrides, Path(spec_path) if spec_path else None)
    return run_workspace(ws, until=until, from_=from_, force=force, reporter=reporter)


def run_workspace(ws: Workspace, until: str | None = None, from_: str | None = None, force: tuple[str, ...] = (),
                  reporter: Reporter | None = None) -> dict[str, StageOutcome]:
    """`run` for an opened workspace (a spec with overrides applied)."""
    return run_project(ws, STAGES, until=until, from_=from_, force=force, reporter=reporter)


def project_model(ws: Workspace, ref: str | None = None, reporter: Reporter | None = None) -> tuple[Path, str, str]:
    """(directory, name, digest) of the model `ref` names (see `resolve_model`), or of the project's latest model,
    built first if there is none."""
    return _project_model(ws, STAGES, ref, reporter)


def load_model(path: str | Path):
    """A saved model (a Hugging Face Llama directory, or a project whose model is published) as `LlamaLM`."""
    from lmwright.model.hf import load_hf

    return load_hf(saved_model_dir(path))


def load_tokenizer(path: str | Path):
    """The `tokenizers.Tokenizer` of a saved model (a directory, or a project whose model is published), a
    tokenizer directory or a tokenizer.json file: `lmwright.tokenizer.load_tokenizer` after finding the model."""
    from lmwright.tokenizer import load_tokenizer as load

    return load(saved_model_dir(path, "tokenizer.json"))


def generate(model, tokenizer, prompt: str, max_new_tokens: int = 64, temperature: float = 0.0,
             top_k: int | None = None, seed: int = 0) -> str:
    """The continuation of `prompt` (greedy when temperature is 0)."""
    from lmwright.model.generate import generate_text

    return generate_text(model, tokenizer, prompt, max_new_tokens, temperature, top_k, seed)
