"""Finding a model: a Hugging Face directory, a registered name with a version or alias, a digest prefix, or the
project's own.

Every command that takes a model (evaluate, test, export, serve, chat, fine-tuning's base) resolves it here, to a
directory, the name it is registered under and its content digest (the same digest the save stage's artifact has,
so a published copy is recognised as that model).
"""

from __future__ import annotations

import time
from pathlib import Path

from lmwright.core.artifacts import MANIFEST, ArtifactStore, file_digest, tree_digest
from lmwright.core.pipeline import Stages
from lmwright.core.progress import Reporter
from lmwright.core.store import Store
from lmwright.core.workspace import Workspace
from lmwright.errors import LmwrightError

# a directory's digest by its files' sizes and change times: a server re-resolves its model every second to follow
# aliases, and hashing a directory of weights each time took 3-4% of a core while it served
_digests: dict[Path, tuple[tuple, str]] = {}


def _directory_digest(path: Path) -> str:
    files = [p for p in sorted(path.rglob("*")) if p.is_file() and p.name != MANIFEST]
    stats = tuple((p.as_posix(), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
                  for p in files for st in [p.stat()])
    seen = _digests.get(path.resolve())
    if seen is not None and seen[0] == stats:
        return seen[1]
    digest = tree_digest({p.relative_to(path).as_posix(): file_digest(p) for p in files})
    # as git does with racy files: a file changed in the last seconds may change again within the same time stamp
    # while it was being hashed, so its digest is not kept until it has been still for a while
    if time.time_ns() - max((s[5] for s in stats), default=0) > 2_000_000_000:
        _digests[path.resolve()] = (stats, digest)
    return digest


def resolve_model(ws: Workspace, ref: str) -> tuple[Path, str, str]:
    """(directory, name, content digest) of a model given as a Hugging Face directory, a registered name (the
    latest version), `name@N` (version N), `name@ALIAS` (`name@champion`), `name@latest`, or a digest prefix from
    `lmwright status`. A retired version whose weights are gone is an error that names its successor."""
    from lmwright.core import registry

    path = Path(ref)
    store = Store(ws.store_url)
    if (path / "config.json").exists():
        digest = _directory_digest(path)
        known = [m for m in store.models() if m.digest == digest]
        return path.resolve(), known[-1].name if known else path.resolve().name, digest
    hit = registry.version(store, ref)
    if hit is None and len(ref) >= 6 and "@" not in ref:
        by_digest = {m.digest: m for m in store.models() if m.digest.startswith(ref)}
        if len(by_digest) > 1:
            raise LmwrightError(f"digest prefix {ref!r} matches {len(by_digest)} models; give more characters")
        hit = next(iter(by_digest.values()), None)
    if hit is None:
        known = ", ".join(registry.names(store)) or "none yet (run `lmwright run`)"
        raise LmwrightError(f"{ref!r} is neither a model directory (with config.json) nor a registered model; "
                            f"registered names: {known}")
    if hit.weights != "present":
        then = f"; use its successor, {hit.successor}" if hit.successor else ""
        raise LmwrightError(f"{hit.name}@{hit.version} is retired and its weights were {hit.weights}{then} "
                            f"(`lmwright models show {hit.name}@{hit.version}`)")
    path = ArtifactStore(ws.artifacts_dir).open(hit.digest)
    if not (path / "config.json").exists() and (path / "model" / "config.json").exists():
        path = path / "model"  # a fine-tuning stage's artifact: the model beside its adapter and metrics
    return path, hit.name, hit.digest


def init_model(ws: Workspace) -> tuple[Path, str, str] | None:
    """`train.init_from` resolved as `resolve_model` does (a directory relative to the project also works), or
    None when pretraining starts from a random init; an unknown reference is an error that names the field."""
    ref = ws.spec.train.init_from
    if not ref:
        return None
    if not Path(ref).is_absolute() and (ws.root / ref / "config.json").exists():
        ref = str(ws.root / ref)  # the project's own directory, wherever the command runs from
    try:
        return resolve_model(ws, ref)
    except LmwrightError as exc:
        raise LmwrightError(f"train.init_from: {exc}") from None


def init_facts(ws: Workspace) -> dict:
    """What the stages reading `train.init_from` (tokenizer, pretrain) depend on beyond the spec: the content
    of the model it names, so a moved alias or a new latest version reruns them (fingerprint `extra`)."""
    init = init_model(ws)
    return {"init_from": init[2]} if init else {}


def project_model(ws: Workspace, stages: Stages, ref: str | None = None,
                  reporter: Reporter | None = None) -> tuple[Path, str, str]:
    """`resolve_model(ref)`, or with no ref the project's latest registered model, built first (by running
    `stages` up to save) if there is none."""
    if ref is None:
        if any(m.name == ws.spec.project.name for m in Store(ws.store_url).models()):
            ref = ws.spec.project.name
        else:  # nothing registered yet: build it
            from lmwright.core.publish import run_project

            ref = str(run_project(ws, stages, until="save", reporter=reporter)["save"].path)
    return resolve_model(ws, ref)


def saved_model_dir(path: str | Path, needs: str = "config.json") -> Path:
    """A model directory holding `needs` as given (for a tokenizer, also a tokenizer.json file), or else the model
    a project directory has published."""
    path = Path(path)
    if (path / needs).exists() or (needs == "tokenizer.json" and path.is_file()):
        return path
    published = Workspace.open(path).out_dir / "model" if path.is_dir() or needs == "config.json" else path
    if (published / needs).exists():
        return published
    if needs == "config.json":
        raise LmwrightError(f"{path}: no model here; run `lmwright run` first or pass a model directory")
    raise LmwrightError(f"{published}: no {needs} here; run `lmwright run` first or pass a model directory")
