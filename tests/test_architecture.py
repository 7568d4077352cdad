"""The layer order written in docs/architecture.md, held against the code's own imports.

Every module of the package sits on a floor of the page's table of layers; a module may import its own floor and
the floors below, never one above; there is no import circle; nothing imports the faces (the CLI and the Python
API) but the package's front door and `python -m lmwright`; and no source file grows past 600 lines. Imports are
read from the source (ast), including those inside functions, so a lazy import cannot hide an upward arrow.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "lmwright"
PAGE = ROOT / "docs" / "architecture.md"
FACES = {"lmwright.cli": "lmwright.__main__", "lmwright.api": "lmwright"}  # face: the one module that may import it


def floors() -> dict[str, int]:
    """Each top-level module or package of lmwright and its floor, from the table under '## Layers'."""
    section = PAGE.read_text(encoding="utf-8").split("\n## Layers", 1)[1].split("\n## ", 1)[0]
    out: dict[str, int] = {}
    for line in section.splitlines():
        row = re.match(r"\|\s*(\d+)\s*\|([^|]*)\|", line)
        if row:
            for name in re.findall(r"`([\w]+)/?`", row.group(2)):
                out[name] = int(row.group(1))
    assert out, f"{PAGE}: no table of layers under '## Layers'"
    return out


def modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = ["lmwright", *path.relative_to(SRC).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The lmwright modules `path` imports (`from a import b` is the module a.b where there is one)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "lmwright"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "lmwright":
            subs = {f"{node.module}.{a.name}" for a in node.names} & known.keys()
            names = {a.name for a in node.names}
            found |= subs if subs and len(subs) == len(names) else subs | {node.module}
    return found


def top(module: str) -> str:
    return module.split(".")[1] if "." in module else module


def graph() -> dict[str, set[str]]:
    known = modules()
    return {m: imports(p, known) for m, p in known.items()}


def test_every_module_has_a_floor_on_the_page():
    fl = floors()
    missing = sorted({top(m) for m in modules()} - fl.keys() - {"lmwright"})
    assert not missing, f"place these on a floor in {PAGE.name}'s table of layers: {missing}"


def test_no_import_runs_from_a_lower_floor_to_a_higher_one():
    fl = {**floors(), "lmwright": max(floors().values())}  # the front door is a face
    upward = [f"{m} (floor {fl[top(m)]}) imports {i} (floor {fl[top(i)]})"
              for m, targets in sorted(graph().items()) for i in sorted(targets)
              if top(m) in fl and top(i) in fl and fl[top(i)] > fl[top(m)]]
    assert not upward, "imports that run upward:\n" + "\n".join(upward)


def test_nothing_imports_the_faces():
    wrong = [f"{m} imports {face}" for m, targets in graph().items() for face, door in FACES.items()
             if any(t == face or t.startswith(face + ".") for t in targets) and m != door
             and not m.startswith(face + ".") and m != face]
    assert not wrong, wrong


def test_no_import_circles():
    g = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in g.get(v, ()):
            if w not in g:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in g[v]:
                circles.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    assert not circles, f"import circles: {circles}"


def test_no_source_file_is_over_600_lines():
    long = {str(p.relative_to(ROOT)): n for p in SRC.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 600}
    assert not long, long
