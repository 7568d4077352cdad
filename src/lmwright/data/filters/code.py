"""Code blocks in documentation (Markdown and reStructuredText), and the prose around them.

The quality rules were written for web prose: under C4 one curly bracket in a code sample removes the whole
page, identifiers and URLs are Gopher's "long words", and a README's repeated `import` lines are FineWeb's
duplicated lines. `split_code` separates a document into

- code: Markdown fenced blocks (``` and ~~~, with or without a language) and indented blocks (4 spaces or a tab
  after a blank line, outside lists); reStructuredText literal blocks (a paragraph ending in `::`, then an
  indented block) and the bodies of code directives (`code-block`, `code`, `sourcecode`, `doctest`, `raw`,
  `math`, ...); doctest blocks (a `>>>` line and the lines up to the next blank one) in either format;
- prose: every other line, its inline markup reduced to the words a reader sees (a link to its text, badges,
  images, URLs, HTML tags, heading marks, rST comments, targets, directive options and table borders dropped),
  which is what the rules of the `documentation` profile read;
- the document without its code blocks (what `code_blocks: strip` keeps), the markup left as written.

The format is recognised from the text (`detect_format`): a README named `.md` may well be reStructuredText.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Literal

Format = Literal["markdown", "rst"]

_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})(.*)$")
_DOCTEST = re.compile(r"^\s*>>>(\s|$)")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d{1,9}[.)])\s+\S")
_EXPLICIT = re.compile(r"^(\s*)\.\.(?:\s|$)")  # rST explicit markup: directive, comment, target, footnote
_DIRECTIVE = re.compile(r"^\s*\.\.\s+([\w:.+-]+)::(.*)$")
_FOOTNOTE = re.compile(r"^\s*\.\.\s+\[[^\]]+\]\s*(.*)$")
_OPTION = re.compile(r"^\s+:[\w -]+:(\s|$)")
# directives whose body is code (or, like raw HTML and LaTeX math, is no more prose than code is)
CODE_DIRECTIVES = frozenset({
    "code-block", "code", "sourcecode", "doctest", "testcode", "testoutput", "testsetup", "testcleanup",
    "ipython", "jupyter-execute", "parsed-literal", "prompt", "highlight", "literalinclude", "raw", "math",
    "productionlist"})
_TABLE_DIRECTIVES = frozenset({"list-table", "csv-table", "table"})
# directives whose argument is a sentence ("..  warning:: This API is deprecated.")
_ADMONITIONS = frozenset({"note", "warning", "tip", "important", "attention", "caution", "danger", "error",
                          "hint", "seealso", "admonition", "deprecated", "versionadded", "versionchanged"})
# a line of nothing but these, with a run of three: section underlines, horizontal rules, table borders
_RULE_CHARS = frozenset("-=~^_*+#`:'\".<>| \t")
_RUN_OF_3 = re.compile(r"([-=~^_*+#`:'\".<>])\1\1")
_FIELD = re.compile(r"^\s*:[\w -]+:(?:\s|$)")  # an rST field (":param x: ...") starts a line of its own
_TABLE_ROW = re.compile(r"^\s*\|.*\|\s*$|^\s*\|\s*$")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s")
_MD_REF_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*\S+")
# Inline markup, (pattern, replacement) in order: images before the links around them, links before URLs. Every
# repeat that could scan on without finding its end is bounded, so a hostile line costs linear time, not quadratic.
_INLINE = [
    (re.compile(r"!\[[^\]]{0,200}\]\([^)]{0,2000}\)|!\[[^\]]{0,200}\]\[[^\]]{0,200}\]"), ""),  # images, badges
    (re.compile(r"\[([^\]]{0,200})\]\([^)]{0,2000}\)"), r"\1"),  # [text](url)
    (re.compile(r"\[([^\]]{1,200})\]\[[^\]]{0,200}\]"), r"\1"),  # [text][ref]
    (re.compile(r"`([^`<]{0,500}?)\s{0,20}<[^>`]{0,2000}>`_{1,2}"), r"\1"),  # rST `text <url>`_
    (re.compile(r":(?:[\w+.-]{1,40}:){1,2}`([^`]{0,500})`"), r"\1"),  # rST roles, :class:`Foo`, :py:func:`f`
    (re.compile(r"`([^`]{1,500})`_{1,2}"), r"\1"),  # rST `reference`_
    # inline code (rST ``literal``, Markdown `code`): a name reads as a word of the sentence, a snippet is code
    (re.compile(r"``([\w./:@+-]{1,200})``|`([\w./:@+-]{1,200})`"), r"\1\2"),
    (re.compile(r"``[^`]{1,2000}``|`[^`]{1,2000}`"), ""),
    (re.compile(r"<[a-z][a-z+.-]{0,20}://[^>\s]{0,2000}>|</?[A-Za-z][^<>]{0,1000}>"), ""),  # autolinks, HTML tags
    (re.compile(r"\b(?:https?|ftp)://\S+|\bwww\.\S+\.\S+"), ""),  # bare URLs
    (re.compile(r"^\s{0,3}#{1,6}\s+|[ \t]#+[ \t]*$"), ""),  # Markdown heading marks
]
_RST_SUBSTITUTION = re.compile(r"\|(?![\s|])[^|\n]{0,200}(?<!\s)\|_{0,2}")  # |badge|; not a table's | cell |
_RST_REFERENCE = re.compile(r"(?<![\w.-])([A-Za-z0-9][\w.-]{0,100}?)_{1,2}(?=[\s.,;:!?)]|$)")  # PyPI_, not __init__


@dataclass(frozen=True)
class Parts:
    """A document split into prose and code."""

    prose: str  # the prose lines, inline markup reduced to its words; a code block leaves a blank line
    code: str  # the code blocks' lines (without fences and directive heads), blocks separated by a blank line
    spans: tuple[tuple[int, int], ...]  # each code block as [first, last + 1) line numbers, fences included
    without_code: str  # the document with its code blocks removed, the rest as written
    fmt: Format


def detect_format(text: str) -> Format:
    """reStructuredText when its own constructs outnumber Markdown's, else Markdown (plain text included)."""
    rst = (len(re.findall(r"^[ \t]*\.\.[ \t]+(?:[\w:.+-]+::|_|\||\[)", text, re.MULTILINE))
           + len(re.findall(r"::[ \t]*$", text, re.MULTILINE)) + len(re.findall(r">`_", text))
           + len(re.findall(r"``\S", text)) // 2)
    lines = text.split("\n")
    fences = sum(1 for i, ln in enumerate(lines) if (m := _FENCE.match(ln))  # not a run of ~ under a title
                 and (m.group(3).strip() or i == 0 or not lines[i - 1].strip()))
    md = (fences + len(re.findall(r"^#{1,6} \S", text, re.MULTILINE))
          + len(re.findall(r"\]\([^)\s]{1,500}\)", text)))
    return "rst" if rst > md else "markdown"


def _is_fence(m: re.Match, fmt: Format, prev_blank: bool) -> bool:
    """A fence opens a code block; in rST a bare run of ~ or ` right under a line is that line's underline."""
    if m.group(2)[0] == "`" and "`" in m.group(3):  # ``` followed by more backticks: inline code, not a fence
        return False
    return fmt == "markdown" or (m.group(2)[0] == "`" and (prev_blank or bool(m.group(3).strip())))


def _indent(line: str) -> int:
    wide = line.expandtabs(4)  # only leading tabs indent; a tab inside the line is not indentation
    return len(wide) - len(wide.lstrip())


def _block_end(lines: list[str], start: int, deeper_than: int) -> int:
    """The line after the last non-blank line, from `start` on, indented more than `deeper_than`."""
    end = j = start
    while j < len(lines) and (not lines[j].strip() or _indent(lines[j]) > deeper_than):
        if lines[j].strip():
            end = j + 1
        j += 1
    return end


def _in_head(lines: list[str], j: int, indent: int) -> bool:
    """Line j is part of a directive's head (arguments, options): not blank, indented more than the directive."""
    return j < len(lines) and bool(lines[j].strip()) and _indent(lines[j]) > indent


def _fence_end(lines: list[str], start: int, char: str, size: int) -> int:
    """Index of the closing fence (same character, at least as long, nothing after it), or len(lines)."""
    close = re.compile(rf"^\s*{re.escape(char)}{{{size},}}\s*$")
    j = start
    while j < len(lines) and not close.match(lines[j]):
        j += 1
    return j


def classify(lines: list[str], fmt: Format) -> tuple[list[str], list[tuple[int, int]], dict[int, str]]:
    """Each line's kind: 'p' prose, 'c' code, 'f' a code block's frame (fence, directive head, option), 'm' markup
    (neither: rST comments, targets, directive heads and options); the code spans; and prose lines rewritten
    (a footnote without its `.. [1]`, an admonition's sentence without its directive)."""
    n = len(lines)
    kinds, spans, rewritten = ["p"] * n, [], {}
    prev_blank, in_list, para_indent = True, False, 0
    i = 0
    while i < n:
        line = lines[i]
        if not line.strip():
            prev_blank, i = True, i + 1
            continue
        ind = _indent(line)
        start = i
        if (m := _FENCE.match(line)) and _is_fence(m, fmt, prev_blank):
            close = _fence_end(lines, i + 1, m.group(2)[0], len(m.group(2)))
            kinds[i] = "f"
            kinds[i + 1:close] = ["c"] * (close - i - 1)
            if close < n:
                kinds[close] = "f"
            i = close + 1
        elif _DOCTEST.match(line):
            while i < n and lines[i].strip():
                kinds[i] = "c"
                i += 1
        elif fmt == "markdown" and ind >= 4 and prev_blank and not in_list:
            i = _block_end(lines, i, 3)
            kinds[start:i] = ["c"] * (i - start)
        elif fmt == "rst" and _EXPLICIT.match(line):
            d = _DIRECTIVE.match(line)
            if d and not line.lstrip()[3:].startswith("|"):  # a directive (not a |substitution| definition)
                name = d.group(1).lower().split(":")[-1]
                j = i + 1
                while name not in _ADMONITIONS and _in_head(lines, j, ind) and not _OPTION.match(lines[j]):
                    j += 1  # its arguments go on (`.. image::` with the URL on the next line)
                while _in_head(lines, j, ind) and _OPTION.match(lines[j]):
                    j += 1
                if name in _TABLE_DIRECTIVES:  # tables are left out of the prose, as elsewhere
                    end = _block_end(lines, j, ind)
                    kinds[i:end] = ["m"] * (end - i)
                    i = end
                    prev_blank = False
                    continue
                if name in CODE_DIRECTIVES:
                    end = _block_end(lines, j, ind)
                    kinds[i:j] = ["f"] * (j - i)
                    kinds[j:end] = ["c"] * (end - j)
                    i = end
                else:  # the body (an admonition's text, a figure's caption) is prose, read line by line on
                    kinds[i:j] = ["m"] * (j - i)
                    if name in _ADMONITIONS and d.group(2).strip():
                        kinds[i], rewritten[i] = "p", d.group(2).strip()
                    i = j
                    prev_blank = False
                    continue
            elif f := _FOOTNOTE.match(line):
                rewritten[i] = f.group(1)
                i += 1
                prev_blank = False
                continue
            else:  # comment, hyperlink target, substitution definition: not read
                end = _block_end(lines, i + 1, ind)
                kinds[i:end] = ["m"] * (end - i)
                i = end
                prev_blank = False
                continue
        else:
            if prev_blank:
                para_indent = ind
            if fmt == "markdown":
                in_list = bool(_LIST_ITEM.match(line)) or (in_list and not (prev_blank and ind == 0))
            if fmt == "rst" and line.rstrip().endswith("::") and i + 1 < n and not lines[i + 1].strip():
                j = i + 1
                while j < n and not lines[j].strip():
                    j += 1
                if j < n and _indent(lines[j]) > para_indent:  # a literal block follows
                    end = _block_end(lines, j, para_indent)
                    kinds[j:end] = ["c"] * (end - j)
                    spans.append((j, end))
                    rest = line.rstrip()[:-2]
                    rewritten[i] = rest + ":" if rest and not rest[-1].isspace() else rest.rstrip()
                    i, prev_blank = end, False
                    continue
            prev_blank, i = False, i + 1
            continue
        spans.append((start, i))
        prev_blank = False
    return kinds, spans, rewritten


def reduce_markup(text: str, fmt: Format) -> str:
    """Inline markup reduced to the words a reader sees (a link to its text; images, URLs and tags dropped)."""
    for pattern, repl in _INLINE:
        text = pattern.sub(repl, text)
    if fmt == "rst":
        text = _RST_REFERENCE.sub(r"\1", _RST_SUBSTITUTION.sub("", text))
    return html.unescape(text).strip()


def _markup_only(line: str, fmt: Format) -> bool:
    """A line with no words for a reader: an underline, a rule, a table row or border, a link definition, a badge."""
    rule = set(line) <= _RULE_CHARS and bool(_RUN_OF_3.search(line))
    return bool(rule or _MD_REF_DEF.match(line) or _TABLE_ROW.match(line) or not reduce_markup(line, fmt))


def split_code(text: str, fmt: Format | None = None) -> Parts:
    """Split a document into its prose and its code blocks; `fmt` None: recognised from the text.

    The prose is unwrapped as it renders (a paragraph's source lines make one line), because the line rules
    (C4, FineWeb) were made for extracted web text, where a line is a paragraph: a README wrapped at 80 columns
    would otherwise have most of its lines end without punctuation. Tables are left out: cells of names,
    numbers and ticks are not sentences (Gopher's share of words with a letter would remove them)."""
    fmt = fmt or detect_format(text)
    lines = text.split("\n")
    kinds, spans, rewritten = classify(lines, fmt)
    prose: list[str] = []
    code: list[str] = []
    para: list[str] = []  # the source lines of the rendered line being read

    def flush() -> None:
        if para:
            prose.append(reduce_markup(" ".join(ln.strip() for ln in para), fmt))
            para.clear()

    hard_break = True
    for i, (line, kind) in enumerate(zip(lines, kinds, strict=True)):
        if kind == "p" and line.strip():
            line = rewritten.get(i, line)
            if _markup_only(line, fmt):  # a break, as it renders
                flush()
                hard_break = True
                continue
            if hard_break or _LIST_ITEM.match(line) or _FIELD.match(line):
                flush()
            para.append(line)
            hard_break = bool(_HEADING.match(line)) or line.endswith(("  ", "\\"))
            continue
        if kind == "c":
            code.append(line)
            if i + 1 == len(lines) or kinds[i + 1] != "c":
                code.append("")
        if kind in ("p", "c"):  # a blank line or code: the paragraph ends (markup lines leave no trace)
            flush()
            prose.append("")
            hard_break = True
    flush()
    inside = set()
    for a, b in spans:
        inside.update(range(a, b))
    without = "\n".join(line for i, line in enumerate(lines) if i not in inside)
    return Parts(prose=_tidy(_drop_comments("\n".join(prose))),
                 code=_tidy("\n".join(code)), spans=tuple(spans), without_code=_tidy(without), fmt=fmt)


def _drop_comments(text: str) -> str:
    """HTML comments removed (by search, not a regular expression: many unclosed `<!--` stay linear)."""
    out, pos = [], 0
    while (start := text.find("<!--", pos)) >= 0 and (end := text.find("-->", start + 4)) >= 0:
        out.append(text[pos:start])
        pos = end + 3
    return "".join(out) + text[pos:]


def _tidy(text: str) -> str:
    return re.sub(r"\n[ \t]*(?:\n[ \t]*)+\n", "\n\n", text).strip()
