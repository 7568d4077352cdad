"""Third-party packages: which of them import, and the `pip install` that brings a missing one.

The requirements come from lmwright's own installed metadata (pyproject.toml's `dependencies` and extras), so the
hint names the same version range the project declares: `pip install 'peft>=0.13'`. A package that only an extra
declares (ray, onnxruntime, ...) is optional: code that uses it says so when it is missing, and `lmwright run`
asks for it only when the spec turns its feature on.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import re
from functools import lru_cache

# import names whose distribution is called something else
DISTRIBUTION_OF = {"yaml": "pyyaml", "sklearn": "scikit-learn", "mlflow": "mlflow-skinny", "lm_eval": "lm-eval"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@lru_cache(maxsize=1)
def declared() -> dict[str, tuple[str, str | None]]:
    """{normalised distribution name: (requirement, extra or None for the base install)} of lmwright."""
    try:
        reqs = importlib.metadata.requires("lmwright") or []
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return {}
    out: dict[str, tuple[str, str | None]] = {}
    for r in reqs:
        spec, _, marker = r.partition(";")
        name = re.match(r"[A-Za-z0-9._-]+", spec.strip()).group()
        extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)", marker)
        if extra and extra.group(1) == "test":
            continue  # the test extra repeats others; what users need is in the base install or a feature extra
        key = _norm(name)
        if key not in out or out[key][1] is not None:  # the base install wins over an extra
            out[key] = (spec.strip().replace(" ", ""), extra.group(1) if extra else None)
    return out


def distribution(import_name: str) -> str:
    return _norm(DISTRIBUTION_OF.get(import_name, import_name))


def is_optional(import_name: str) -> bool:
    """Declared only by an extra (so not every install has it). Without lmwright's metadata (a source tree run
    from PYTHONPATH) nothing can be told apart, so nothing is demanded up front: a stage still names a missing
    package when it fails."""
    d = declared().get(distribution(import_name))
    return not declared() or (d is not None and d[1] is not None)


def install_hint(import_name: str) -> str:
    """The pip command that installs the package behind an import name: the extra that declares it (with what
    else that feature needs), or the package with lmwright's version range."""
    d = declared().get(distribution(import_name))
    if d and d[1]:
        return extra_hint(d[1])
    return f"pip install '{d[0]}'" if d else f"pip install {DISTRIBUTION_OF.get(import_name, import_name)}"


def extra_hint(extra: str) -> str:
    """`pip install` of one of lmwright's extras, as this copy was installed: from its checkout when it was
    installed editable (`pip install -e '/path/to/lmwright[ray]'`), else from the index."""
    try:
        url = json.loads(importlib.metadata.distribution("lmwright").read_text("direct_url.json") or "{}")
    except (importlib.metadata.PackageNotFoundError, ValueError):
        url = {}
    if url.get("dir_info", {}).get("editable") and url.get("url", "").startswith("file://"):
        return f"pip install -e '{url['url'].removeprefix('file://')}[{extra}]'"
    return f"pip install 'lmwright[{extra}]'"


def import_error(import_name: str) -> str | None:
    """None when the package imports, else why not (the error's message)."""
    try:
        importlib.import_module(import_name)
    except Exception as exc:  # noqa: BLE001 - a broken install can raise anything at import; report it
        return f"{type(exc).__name__}: {exc}"
    return None
