"""The `pydocs` source: the installed Python standard library's documentation.

Module, class, function and method docstrings (each object's own, not inherited) of every importable stdlib
module and submodule, plus the language-reference topics in `pydoc_data.topics`. Real English technical text
on every machine with Python, no download. Modules with import-time side effects (opening a browser, starting
a GUI, running tests) are skipped.

Each document is labelled with its library chapter (`labels: {"chapter": ...}`, see `CHAPTERS`): a label derived
by code from the module name, not by a person.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import json
import pkgutil
import sys
import warnings
from collections.abc import Iterator
from datetime import datetime, timezone

from lmwright.data.document import Document, doc_id

# Import-time side effects or GUI/test machinery: never imported.
SKIP = {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "test", "lib2to3", "__main__",
        "ensurepip", "venv", "pydoc_data", "xxlimited", "xxsubtype", "_pyrepl"}


def stdlib_modules(names: list[str] | None) -> list[str]:
    """Top-level names (or the given list) expanded with their submodules, sorted."""
    tops = sorted(names) if names else sorted(n for n in sys.stdlib_module_names if not n.startswith("_"))
    out: list[str] = []
    for top in tops:
        if top in SKIP:
            continue
        out.append(top)
        mod = _import(top)
        if mod is not None and hasattr(mod, "__path__"):
            for info in pkgutil.walk_packages(mod.__path__, prefix=top + ".", onerror=lambda _n: None):
                if not any(part in SKIP or part == "tests" for part in info.name.split(".")):
                    out.append(info.name)
    return out


def _import(name: str):
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            return importlib.import_module(name)
    except BaseException:  # noqa: BLE001 - platform-specific modules fail to import in many ways
        return None


def _own_doc(obj) -> str | None:
    doc = obj.__dict__.get("__doc__") if isinstance(obj, type) else getattr(obj, "__doc__", None)
    return inspect.cleandoc(doc) if isinstance(doc, str) and doc.strip() else None


def _members(module) -> Iterator[tuple[str, object]]:
    """(qualified name, object) for the module's own public classes, functions and methods."""
    mod_name = module.__name__
    for name, obj in sorted(vars(module).items()):
        if module is sys and hasattr(sys, f"__{name}__"):  # the original hook, not one a library installed
            obj = getattr(sys, f"__{name}__")
        if name.startswith("_") or getattr(obj, "__module__", None) != mod_name:
            continue
        if inspect.isclass(obj):
            yield f"{mod_name}.{name}", obj
            for attr, member in sorted(vars(obj).items()):
                if attr.startswith("_") and attr != "__init__":
                    continue
                if isinstance(member, classmethod | staticmethod):
                    member = member.__func__
                if inspect.isfunction(member) or inspect.ismethoddescriptor(member) or isinstance(member, property):
                    yield f"{mod_name}.{name}.{attr}", member
        elif inspect.isfunction(obj) or inspect.isbuiltin(obj):
            yield f"{mod_name}.{name}", obj


def collect_pydocs(source) -> Iterator[Document]:
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")

    def make(locator: str, text: str) -> Document:
        return Document(id=doc_id(source.name, locator), text=text, source=locator, source_name=source.name,
                        locator=locator, license=source.license, collected_at=now,
                        labels=json.dumps({"chapter": chapter(locator)}))

    seen: set[str] = set()
    for mod_name in stdlib_modules(source.modules):
        module = _import(mod_name)
        if module is None:
            continue
        doc = _own_doc(module)
        if doc and mod_name not in seen:
            seen.add(mod_name)
            yield make(mod_name, doc)
        for qualname, obj in _members(module):
            doc = _own_doc(obj)
            if doc and qualname not in seen:
                seen.add(qualname)
                yield make(qualname, doc)
    if source.topics:
        from pydoc_data.topics import topics

        for key in sorted(topics):
            yield make(f"topics.{key}", topics[key].strip())


# The chapters of the Python Library Reference (docs.python.org/3/library), by top-level module: a label every
# pydocs document gets without a human. Documents of modules not listed here are "other".
CHAPTERS: dict[str, tuple[str, ...]] = {
    "text processing": ("string", "re", "difflib", "textwrap", "unicodedata", "stringprep", "readline",
                        "rlcompleter"),
    "binary data": ("struct", "codecs"),
    "data types": ("datetime", "zoneinfo", "calendar", "collections", "heapq", "bisect", "array", "weakref",
                   "types", "copy", "pprint", "reprlib", "enum", "graphlib"),
    "numeric and mathematical": ("numbers", "math", "cmath", "decimal", "fractions", "random", "statistics"),
    "functional programming": ("itertools", "functools", "operator"),
    "file and directory access": ("pathlib", "posixpath", "ntpath", "genericpath", "stat", "filecmp", "tempfile",
                                  "glob", "fnmatch", "linecache", "shutil"),
    "data persistence": ("pickle", "copyreg", "shelve", "marshal", "dbm", "sqlite3"),
    "compression and archiving": ("zlib", "gzip", "bz2", "lzma", "zipfile", "tarfile"),
    "file formats": ("csv", "configparser", "tomllib", "netrc", "plistlib"),
    "cryptographic services": ("hashlib", "hmac", "secrets"),
    "operating system services": ("os", "io", "time", "argparse", "optparse", "getopt", "logging", "getpass",
                                  "curses", "platform", "errno", "ctypes"),
    "concurrent execution": ("threading", "multiprocessing", "concurrent", "subprocess", "sched", "queue",
                             "contextvars", "_thread"),
    "networking and interprocess communication": ("asyncio", "socket", "ssl", "select", "selectors", "signal",
                                                  "mmap"),
    "internet data handling": ("email", "json", "mailbox", "mimetypes", "base64", "binascii", "quopri"),
    "structured markup": ("html", "xml"),
    "internet protocols": ("webbrowser", "wsgiref", "urllib", "http", "ftplib", "poplib", "imaplib", "smtplib",
                           "uuid", "socketserver", "xmlrpc", "ipaddress"),
    "multimedia": ("wave", "colorsys"),
    "internationalization": ("gettext", "locale"),
    "program frameworks": ("turtle", "cmd", "shlex"),
    "graphical user interfaces": ("tkinter", "idlelib"),
    "development tools": ("typing", "pydoc", "doctest", "unittest", "test"),
    "debugging and profiling": ("bdb", "faulthandler", "pdb", "timeit", "trace", "tracemalloc", "cProfile",
                                "profile", "pstats"),
    "software packaging": ("ensurepip", "venv", "zipapp"),
    "runtime services": ("sys", "sysconfig", "builtins", "warnings", "dataclasses", "contextlib", "abc", "atexit",
                         "traceback", "gc", "inspect", "site", "__future__"),
    "custom interpreters": ("code", "codeop"),
    "importing modules": ("zipimport", "pkgutil", "modulefinder", "runpy", "importlib"),
    "language services": ("ast", "symtable", "token", "keyword", "tokenize", "tabnanny", "pyclbr", "py_compile",
                          "compileall", "dis", "pickletools"),
}
_CHAPTER_OF = {m: chapter for chapter, mods in CHAPTERS.items() for m in mods}


def chapter(locator: str) -> str:
    """The library chapter of a pydocs locator ("json.dumps" -> "internet data handling")."""
    if locator.startswith("topics."):
        return "language reference"
    return _CHAPTER_OF.get(locator.split(".")[0], "other")
