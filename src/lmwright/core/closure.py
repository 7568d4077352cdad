"""What a stage's code reaches, read from the source without importing it.

A stage's code version hashes every lmwright module its function can run: the modules it imports (at the top
of its file or inside the function), the modules those import, and so on — the transitive closure, so an edit to
any of them makes the stage stale, and an edit anywhere else does not. Third-party packages imported along the
way are collected too: `lmwright run` checks they import before any stage starts work (see `missing_packages`).

Reading is static (`ast`): an import inside a function counts even if that branch never runs (a cautious over-
approximation: at worst a stage reruns when a module it might use changed). A string constant naming an
lmwright module counts as an import, because that is how a module launched with `python -m` (the torchrun
workers) is named.
"""

from __future__ import annotations

import ast
import inspect
import re
import sys
import textwrap
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

PACKAGE = "lmwright"
# the package's front door (it re-exports the Python API; `__version__` is hashed on its own) and the runner that
# calls the stages: neither is a stage's own code, and through them every module would reach every other
FRAMEWORK = frozenset({"lmwright", "lmwright.core.pipeline"})
_MODULE_STRING = re.compile(r"^lmwright(?:\.\w+)+$")


@dataclass(frozen=True)
class Imports:
    internal: frozenset[str]  # lmwright modules
    external: frozenset[str]  # third-party top-level packages (not the standard library)


_ROOT = Path(__file__).resolve().parent.parent  # the lmwright package directory


def module_file(name: str) -> Path | None:
    """The source file of an lmwright module, found on disk (never by importing: `find_spec` of `a.b.c` would
    import `a.b`, and with it torch)."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = _ROOT.joinpath(*parts[1:])
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def module_source(name: str) -> bytes:
    """The bytes of a module's file (what a stage's code version hashes)."""
    path = module_file(name)
    return path.read_bytes() if path else b""


def _is_module(name: str) -> bool:
    return module_file(name) is not None


def imports_in(tree: ast.AST) -> Imports:
    """The lmwright modules and third-party packages that the import statements under `tree` name."""
    internal, external = set(), set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from pkg import sub` imports the module pkg.sub when there is one, else a name from pkg
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names
                                     if node.module.startswith(PACKAGE) and _is_module(f"{node.module}.{a.name}")]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _MODULE_STRING.match(node.value):
            names = [node.value] if _is_module(node.value) else []
        for name in names:
            top = name.split(".")[0]
            if name in FRAMEWORK:
                continue
            if top == PACKAGE:
                internal.add(name)
            elif top not in sys.stdlib_module_names and top != "__future__":
                external.add(top)
    return Imports(frozenset(internal), frozenset(external))


@cache
def _module_imports(name: str) -> Imports:
    path = module_file(name)
    if path is None:
        return Imports(frozenset(), frozenset())
    return imports_in(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))


def closure(roots: Iterable[str]) -> Imports:
    """Every lmwright module reachable from `roots` by imports (the roots included), and the third-party
    packages any of them imports. Importing `a.b.c` runs the `__init__` of `a.b` first, so parent packages
    count too (`data/filters/__init__.py` imports every filter, and ftfy, for whoever imports the PII one)."""
    seen: set[str] = set()
    external: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        imp = _module_imports(name)
        external |= imp.external
        parts = name.split(".")
        parents = {".".join(parts[:i]) for i in range(2, len(parts))} - FRAMEWORK
        todo.extend((imp.internal | parents) - seen)
    return Imports(frozenset(seen), frozenset(external))


@cache
def _top_level_imports(module_name: str) -> dict[str, str]:
    """The names a module's top-level imports bind, each to the module it comes from."""
    path = module_file(module_name)
    names: dict[str, str] = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body if path else []:
        if isinstance(node, ast.Import):
            for a in node.names:
                names[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                names[a.asname or a.name] = sub if sub.startswith(PACKAGE) and _is_module(sub) else node.module
    return names


@cache
def function_roots(fn: Callable) -> tuple[list[str], Imports]:
    """(texts, imports) of a function: its own source, that of every function of its module it calls
    (transitively) and the values of the module's constants it reads; and the modules those sources import,
    inside the functions or by using a name the module imported at its top."""
    module = sys.modules[fn.__module__]
    top = _top_level_imports(module.__name__)
    texts: list[str] = []
    internal, external = set(), set()
    done: set[str] = set()
    todo = [fn]
    while todo:
        f = todo.pop()
        if f.__name__ in done:
            continue
        done.add(f.__name__)
        src = textwrap.dedent(inspect.getsource(f))
        texts.append(src)
        tree = _without_annotations(ast.parse(src))
        imp = imports_in(tree)
        internal |= imp.internal
        external |= imp.external
        for name in sorted({n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}):
            if name in top:
                owner = top[name].split(".")[0]
                if top[name] in FRAMEWORK:
                    continue
                if owner == PACKAGE:
                    internal.add(top[name])
                elif owner not in sys.stdlib_module_names and owner != "__future__":
                    external.add(owner)
            elif name in vars(module) and name not in done:
                value = vars(module)[name]
                if inspect.isfunction(value) and value.__module__ == module.__name__:
                    todo.append(value)  # a helper beside the stage: its source and its imports count too
                elif isinstance(value, str | int | float | bool | tuple | frozenset | dict | list):
                    texts.append(f"{name} = {value!r}")  # a constant of the module that the code reads
    return texts, Imports(frozenset(internal), frozenset(external))


def _without_annotations(tree: ast.AST) -> ast.AST:
    """Type annotations are not run (`from __future__ import annotations`): a name used only there is no import."""
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            node.returns = None
            for a in [*node.args.args, *node.args.posonlyargs, *node.args.kwonlyargs, node.args.vararg,
                      node.args.kwarg]:
                if a is not None:
                    a.annotation = None
        elif isinstance(node, ast.AnnAssign):
            node.annotation = ast.Constant(None)
    return tree
