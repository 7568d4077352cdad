"""Documentation with code: code blocks found in Markdown and reStructuredText, the `documentation` profile (the
rules read the prose, the code is kept or stripped), and the clean stage's per-source warning."""

from __future__ import annotations

import re

import pyarrow.parquet as pq
import pytest

import lmwright
from lmwright.data.clean_shard import CleanShard, _setting, merge_by_source, removal_warnings
from lmwright.data.document import Document, doc_id, write_docs
from lmwright.data.filters import apply_profile
from lmwright.data.filters.code import detect_format, split_code
from lmwright.spec import DataSpec, Spec, load_spec
from tests.conftest import make_project, quiet

README_MD = """\
# fastjson

[![PyPI](https://img.shields.io/pypi/v/fastjson.svg)](https://pypi.org/project/fastjson/)
[![CI](https://github.com/example/fastjson/actions/workflows/ci.yml/badge.svg)](https://github.com/example/fastjson/actions)

fastjson is a small library that reads and writes JSON documents quickly. It keeps the interface of the
standard library's `json` module, so that an existing program can switch to it by changing one import.
See the [documentation](https://fastjson.readthedocs.io/en/latest/) for the full reference.

## Installation

Install the package from PyPI with pip:

```bash
pip install fastjson
```

## Usage

Reading a document returns plain Python objects:

```python
import fastjson

data = fastjson.loads('{"name": "Ada", "tags": ["math", "engines"]}')
assert data == {"name": "Ada", "tags": ["math", "engines"]}
```

Writing one is just as short, and the output can be indented for people to read:

~~~
>>> fastjson.dumps({"a": 1}, indent=2)
'{\\n  "a": 1\\n}'
~~~

The options are listed below.

- `indent`: the number of spaces for each level of nesting. When it is left out, the output
    stays on one line.
- `sort_keys`: whether the keys of each object are written in sorted order.

An older interface is still there for compatibility:

    from fastjson.compat import load_string
    value = load_string("{}")

>>> fastjson.loads("[1, 2]")
[1, 2]

## Contributing

Bug reports and pull requests are welcome on GitHub. Please run the test suite before you send a change,
and add a test for every bug you fix. The maintainers answer questions in the discussion forum.

## License

The project is released under the MIT license. It has no dependencies beyond the standard library.
"""

README_RST = """\
=========
tinycache
=========

.. image:: https://img.shields.io/pypi/v/tinycache.svg
    :target: https://pypi.org/project/tinycache/
    :alt: PyPI version

tinycache provides memoizing decorators and mappings with a fixed maximum size. When the cache is full, the
least recently used item is discarded to make room for the new one. See `the documentation
<https://tinycache.readthedocs.io/>`_ for details.

Installation
------------

tinycache is available from PyPI_ and can be installed by running::

    pip install tinycache

Typical usage looks like this:

.. code-block:: python
   :linenos:

   from tinycache import cached

   @cached(maxsize=32)
   def fib(n):
       return n if n < 2 else fib(n - 1) + fib(n - 2)

A mapping can be used directly as well. For example: ::

    cache = {"a": 1}
    cache.update({"b": 2})

.. note::

   The cache is not thread safe. Wrap it in a lock when threads share it.

.. code:: console

   $ python -m tinycache --stats

.. sourcecode:: json

   {"hits": 10, "misses": 2}

Doctests work too:

>>> from tinycache import LRUCache
>>> LRUCache(maxsize=2)
LRUCache({}, maxsize=2)

Project resources
~~~~~~~~~~~~~~~~~

The project is developed on GitHub, where the issue tracker and the change log live.

.. _PyPI: https://pypi.org/project/tinycache/
.. |badge| image:: https://example.org/badge.svg
"""


def test_markdown_code_blocks_fenced_indented_and_doctest():
    parts = split_code(README_MD)
    assert parts.fmt == "markdown"
    lines = README_MD.split("\n")
    blocks = ["\n".join(lines[a:b]) for a, b in parts.spans]
    assert [b.split("\n")[0] for b in blocks] == ["```bash", "```python", "~~~", "    from fastjson.compat import "
                                                 "load_string", '>>> fastjson.loads("[1, 2]")']
    assert blocks[0].endswith("```") and blocks[2].endswith("~~~")
    for snippet in ("pip install fastjson", "data = fastjson.loads(", ">>> fastjson.dumps", "load_string(\"{}\")",
                    "[1, 2]"):
        assert snippet in parts.code and snippet not in parts.prose
    # a list item's indented continuation is prose, not an indented code block
    assert "When it is left out, the output stays on one line." in parts.prose
    assert "{" not in parts.prose and "```" not in parts.prose


def test_markdown_prose_reads_as_rendered():
    prose = split_code(README_MD).prose
    assert prose.startswith("fastjson\n\nfastjson is a small library")  # heading marks and badges gone
    assert "https://" not in prose and "PyPI](" not in prose
    assert "See the documentation for the full reference." in prose  # a link reads as its text
    # the source's wrapped lines make one line each, as they render; a code name stays a word of the sentence
    assert ("It keeps the interface of the standard library's json module, so that an existing program can switch "
            "to it by changing one import.") in prose
    assert ("- indent: the number of spaces for each level of nesting. When it is left out, the output stays on one "
            "line.") in prose.split("\n")
    without = split_code(README_MD).without_code
    assert "[![PyPI]" in without and "pip install" not in without and "## Usage" in without


def test_rst_literal_blocks_directives_and_doctest():
    parts = split_code(README_RST)
    assert parts.fmt == "rst"
    for snippet in ("pip install tinycache", "def fib(n):", 'cache.update({"b": 2})', "python -m tinycache",
                    '{"hits": 10', ">>> LRUCache(maxsize=2)", "LRUCache({}, maxsize=2)"):
        assert snippet in parts.code and snippet not in parts.prose, snippet
    assert ":linenos:" not in parts.code and ":linenos:" not in parts.prose
    prose = parts.prose
    assert "can be installed by running:" in prose  # "running::" reads "running:"
    assert "For example:" in prose and "For example: :" not in prose  # " ::" disappears
    assert "The cache is not thread safe." in prose  # an admonition's body is prose
    assert "See the documentation for details." in prose  # an rST link across two lines reads as its text
    assert "tinycache is available from PyPI and" in prose
    for markup in ("====", "~~~~", ":target:", "image::", ".. _PyPI", "|badge|", "https://"):
        assert markup not in prose, markup
    # a run of ~ under a title is its underline, not a fence: the section after it is prose
    assert prose.endswith("The project is developed on GitHub, where the issue tracker and the change log live.")
    assert "python -m tinycache" not in parts.without_code and ".. note::" in parts.without_code


def test_format_is_recognised_from_the_text():
    assert detect_format(README_MD) == "markdown" and detect_format(README_RST) == "rst"
    assert detect_format("Plain words.\n\nMore plain words.") == "markdown"
    # an unclosed fence runs to the end, as CommonMark says
    parts = split_code("Some words here.\n\n```python\nx = {1: 2}\n")
    assert parts.code == "x = {1: 2}" and parts.prose == "Some words here."


def _doc_profile(**over) -> object:
    return DataSpec.model_validate({"profiles": {"documentation": over}}).profiles["documentation"]


def test_documentation_profile_keeps_or_strips_code_where_prose_removes_it():
    spec = Spec()
    assert apply_profile(README_MD, spec.data.profiles["prose"])[1] == "c4.curly_bracket"
    doc = spec.data.profiles["documentation"]
    assert doc.code_blocks == "keep" and doc.c4.curly_bracket and doc.c4.min_words_per_line == 3
    assert apply_profile(README_MD, doc) == (README_MD, None)
    assert apply_profile(README_RST, doc) == (README_RST, None)
    text, reason = apply_profile(README_MD, _doc_profile(code_blocks="strip"))
    assert reason is None and "pip install" not in text and "fastjson is a small library" in text
    # the other profiles are what they were: code blocks go through the rules like any text
    for name in ("prose", "technical", "minimal"):
        assert spec.data.profiles[name].code_blocks == "filter"


GERMAN = """\
# schnellcache

Dieses Paket stellt einen kleinen Zwischenspeicher für Funktionen bereit. Wenn der Speicher voll ist, wird der
älteste Eintrag entfernt, damit ein neuer Platz findet. Die Bibliothek hat keine Abhängigkeiten und läuft mit
jeder aktuellen Version von Python. Die Dokumentation beschreibt alle Optionen und gibt viele Beispiele für den
Einsatz in Webanwendungen. Fehler und Wünsche nehmen wir gerne im Fehlerverfolgungssystem entgegen, und wir
freuen uns über jede Mitarbeit an dem Projekt.

```python
from schnellcache import cached
```
"""


LOREM = README_MD.replace("## License", "## Lorem\n\nLorem ipsum dolor sit amet, consectetur adipiscing elit, sed do "
                                        "eiusmod tempor incididunt ut labore et dolore magna aliqua.\n\n## License")
BOILERPLATE = "\n".join(["Home", "About us", "Products", "Contact", "Log in", "Sign up", "Careers", "Press", "Blog",
                         "Terms of use", "Privacy policy", "Cookie settings"] * 4) + (
    "\n\nThis site uses cookies to improve the experience. By using the site you accept the cookie policy.\n")


@pytest.mark.parametrize(("text", "reasons"), [
    (LOREM, ("c4.lorem_ipsum",)),  # a template's placeholder text left in a real README
    (GERMAN, ("gopher_quality.stop_words", "language.not_kept")),  # not English: no English stop words, langid
    (GERMAN.replace("Python.", "Python, and the and the and the and the."), ("language.not_kept",)),
    ("# spam\n\n" + "Buy the best cheap library today and save money on every project you build.\n\n" * 12
     + "```python\nimport spam\n```\n", ("fineweb.dup_line_chars", "gopher_repetition.")),
    (BOILERPLATE, ("c4.few_sentences", "gopher_quality.min_words")),  # a navigation menu and a cookie banner
    ("# tool\n\n```python\n" + "\n".join(f"def f{i}(x):\n    return x * {i}\n" for i in range(40)) + "```\n",
     ("gopher_quality.min_words",)),  # code and nothing said about it
], ids=["lorem-ipsum", "german", "german-with-stop-words", "repeated", "boilerplate", "code-only"])
def test_documentation_profile_still_removes_bad_documents(text, reasons):
    """Lorem ipsum, another language, heavy repetition, boilerplate, and code with no prose around it."""
    reason = apply_profile(text, Spec().data.profiles["documentation"])[1]
    assert reason is not None and reason.startswith(reasons), reason


def test_documentation_profile_can_be_chosen_and_overridden_in_the_spec():
    s = load_spec(None, ["data.sources.0.profile=documentation",
                         "data.profiles.documentation.code_blocks=strip"])
    assert s.data.profiles["documentation"].code_blocks == "strip"
    assert s.data.profiles["documentation"].c4.min_sentences == 3  # the built-in's other fields stay
    from lmwright.errors import SpecError

    with pytest.raises(SpecError):
        load_spec(None, ["data.profiles.documentation.code_blocks=drop"])


def _shard(tmp_path, texts: dict[str, list[str]], spec: dict) -> tuple[dict, DataSpec]:
    docs = [Document(doc_id(src, f"{src}/{i}"), t, f"{i}.md", src, f"{src}/{i}", "MIT", "2026-01-01T00:00:00+00:00")
            for src, ts in texts.items() for i, t in enumerate(ts)]
    write_docs(tmp_path / "docs.parquet", docs)
    data = DataSpec.model_validate(spec)
    return CleanShard(str(tmp_path / "docs.parquet"), 100, data.model_dump_json())(0, tmp_path / "out"), data


def test_clean_shard_counts_per_source_and_warns_with_the_setting_to_change(tmp_path):
    spec = {"sources": [{"kind": "files", "name": "readmes", "paths": ["*.md"], "profile": "prose"},
                        {"kind": "files", "name": "notes", "paths": ["*.txt"], "profile": "documentation"}]}
    result, data = _shard(tmp_path, {"readmes": [README_MD] * 3 + ["too short"], "notes": [README_MD, README_RST]},
                          spec)
    by = merge_by_source([result, result])  # two shards' counts add up
    assert by["readmes"] == {"read": 8, "kept": 0, "removed": {"c4.curly_bracket": 6, "basic.too_short": 2}}
    assert by["notes"] == {"read": 4, "kept": 4, "removed": {}}
    [warning] = removal_warnings(by, data)
    assert warning.startswith("source 'readmes' lost 100% of its documents to the filters (8 of 8, profile prose): "
                              "c4.curly_bracket 6, basic.too_short 2; to keep more, set data.sources[0].profile: "
                              "documentation")
    assert "data.profiles.prose.c4.curly_bracket: false" in warning
    assert "data.profiles.prose.basic.min_chars (now 48)" in warning and "data.warn_removed_share: 0.3" in warning
    assert removal_warnings(by, data.model_copy(update={"warn_removed_share": None})) == []
    assert removal_warnings(by, data.model_copy(update={"warn_removed_share": 1.0})) == []


REASONS = ["basic.too_short", "basic.too_long", "basic.low_alpha", "basic.encoding_damage",
           "gopher_quality.min_words", "gopher_quality.max_words", "gopher_quality.short_words",
           "gopher_quality.long_words", "gopher_quality.symbols", "gopher_quality.bullet_lines",
           "gopher_quality.ellipsis_lines", "gopher_quality.alpha_words", "gopher_quality.stop_words",
           "gopher_repetition.dup_paragraphs", "gopher_repetition.dup_paragraph_chars", "gopher_repetition.dup_lines",
           "gopher_repetition.dup_line_chars", "gopher_repetition.top_3gram", "gopher_repetition.dup_7gram",
           "c4.lorem_ipsum", "c4.curly_bracket", "c4.few_sentences", "fineweb.empty", "fineweb.line_punct",
           "fineweb.short_lines", "fineweb.dup_line_chars", "fineweb.newlines", "language.not_kept",
           "language.low_score", "blocklist.hits"]


@pytest.mark.parametrize("reason", REASONS)
def test_every_reasons_advice_names_a_setting_the_spec_accepts(reason):
    """The setting a warning names for each rule is a real field of that rule's group: setting it loads."""
    profile = Spec().data.profiles["prose"]
    advice = _setting(reason, "prose", profile)
    m = re.match(r"(data\.profiles\.prose\.[\w.]+)(?:: (\w+)| \(now (.+?)[;)])", advice)
    assert m, advice
    path, value = m.group(1), m.group(2) or m.group(3)
    assert path.split(".")[3] == reason.split(".")[0]
    loaded = load_spec(None, [f"{path}={value}"])  # the field exists and takes a value of its kind
    assert loaded.data.profiles["prose"] is not None


def test_clean_stage_summary_has_by_source_and_warnings(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(4):
        (corpus / f"r{i}.md").write_text(README_MD.replace("fastjson", f"fastjson{i}"))
    spec = {"data": {"sources": [{"kind": "files", "name": "docs", "paths": ["corpus/*.md"], "profile": "prose"}]}}
    out = lmwright.run(make_project(tmp_path, spec), until="clean", reporter=quiet())["clean"].summary
    assert out["by_source"] == {"docs": {"read": 4, "kept": 0, "removed": {"c4.curly_bracket": 4}}}
    assert len(out["warnings"]) == 1 and "source 'docs' lost 100%" in out["warnings"][0]
    out = lmwright.run(tmp_path, ["data.sources.0.profile=documentation"], until="clean", reporter=quiet())
    clean = out["clean"]
    assert clean.summary["kept"] == 4 and clean.summary["warnings"] == []
    kept = pq.read_table(clean.path / "docs.parquet").column("text").to_pylist()
    assert all("pip install fastjson" in t for t in kept)  # the code is kept


@pytest.mark.parametrize("text", [
    "![" * 32768, "[" * 65536, "[a](" * 16384, "`a <" * 16000, "a." * 32768, ":a" * 32768, "<!--" * 16384,
    " " * 65536 + "x", "\n \n" * 20000, " #" * 32768 + "x", "=-" * 32768, "- a\n" * 16000, "    a\n\n" * 10000,
    "a::\n\n" * 10000, ">>> a\n" * 10000, "```a\n" * 16000, ".. " + "a:" * 32000,
], ids=["images", "brackets", "links", "rst-links", "references", "roles", "comments", "spaces", "blank-lines",
        "heading-marks", "rules", "list", "indented", "literal", "doctest", "fences", "directive"])
def test_code_split_stays_linear_on_hostile_input(text):
    """Every document goes through the split: no pattern may backtrack quadratically (on these 64 KB texts a
    quadratic one takes minutes; a linear one well under a second)."""
    import time

    for fmt in ("markdown", "rst", None):
        t0 = time.perf_counter()
        split_code(text, fmt)
        assert time.perf_counter() - t0 < 10, fmt


def test_a_tab_inside_a_line_is_not_indentation():
    from lmwright.data.filters.code import _indent

    assert _indent("Name\tValue of the thing") == 0 and _indent("\tcode") == 4 and _indent("    x\ty") == 4
