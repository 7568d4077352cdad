"""A real documentation corpus without a download: the READMEs of the installed Python packages, and what each
filter profile keeps of it.

A wheel's `*.dist-info/METADATA` carries the package's long description (its README) after the headers, with
`Description-Content-Type` saying markdown or reStructuredText. This script writes one file per package (`.md`
or `.rst`, named by the normalised package name) from the site-packages of the running Python (a virtual
environment's first, then the system's), skipping descriptions under `--min-chars`.

With `--measure` it then runs the clean stage's own shard function (`CleanShard`: repairs, the source's filter
profile, PII) over the corpus once per profile — prose, technical, prose with `code_blocks: keep` (the prose view
at the published thresholds), documentation (code blocks kept) and documentation with `code_blocks: strip` — and
prints what each kept and removed by reason, and the clean stage's warning for the source.

    python benchmarks/readme_corpus.py OUT_DIR [--measure] [--json] [--min-chars 500]
"""

from __future__ import annotations

import argparse
import email.parser
import json
import re
import site
import sys
import sysconfig
import tempfile
import time
from collections import Counter
from pathlib import Path

from lmwright.data.clean_shard import CleanShard, removal_warnings
from lmwright.data.document import Document, doc_id, write_docs
from lmwright.spec import DataSpec

# label: (profile, overrides of it)
PROFILES = {"prose": ("prose", {}), "technical": ("technical", {}),
            # the prose view alone: code blocks out of the rules, every threshold the published one
            "prose, code_blocks: keep": ("prose", {"code_blocks": "keep"}),
            "documentation": ("documentation", {}),
            "documentation, strip": ("documentation", {"code_blocks": "strip"})}


def site_dirs() -> list[Path]:
    dirs = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *site.getsitepackages()]
    if sys.prefix != sys.base_prefix:  # a virtual environment: then the Python it was made from
        dirs += [sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_prefix})[k]
                 for k in ("purelib", "platlib")]
    return list(dict.fromkeys(Path(d) for d in dirs if Path(d).is_dir()))


def description(metadata: str) -> tuple[str, str, str]:
    """(name, kind, text): kind is 'md' or 'rst'; the text is the body, or the older `Description:` header."""
    msg = email.parser.Parser().parsestr(metadata)
    body = msg.get_payload()
    text = body if isinstance(body, str) and body.strip() else ""
    if not text and msg.get("Description"):  # metadata 1.x/2.0: continuation lines indented with 8 spaces or '|'
        lines = str(msg["Description"]).splitlines()
        text = "\n".join([lines[0]] + [re.sub(r"^ {8}\|?|^\|", "", ln) for ln in lines[1:]])
    ctype = (msg.get("Description-Content-Type") or "").split(";")[0].strip().lower()
    # no content type: the metadata spec says render as rst; old markdown READMEs say so by their fences and headings
    md = ctype == "text/markdown" or (not ctype and bool(re.search(r"^(```|#{1,6} )|\]\(https?://", text, re.MULTILINE)))
    name = re.sub(r"[-_.]+", "-", str(msg.get("Name") or "unknown")).lower()
    return name, "md" if md else "rst", text.strip() + "\n"


def write_corpus(out: Path, min_chars: int) -> dict[str, int]:
    out.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    counts: Counter = Counter()
    for d in site_dirs():
        for meta in sorted(d.glob("*.dist-info/METADATA")):
            name, kind, text = description(meta.read_text(encoding="utf-8", errors="replace"))
            if name in seen:  # the same package in the venv and the system: the venv's copy
                continue
            seen.add(name)
            if len(text) < min_chars:
                counts["skipped_short"] += 1
                continue
            (out / f"{name}.{kind}").write_text(text, encoding="utf-8")
            counts[kind] += 1
    return dict(counts)


def measure(corpus: Path) -> dict:
    files = sorted(p for p in corpus.iterdir() if p.suffix in (".md", ".rst"))
    docs = [Document(doc_id("readmes", p.name), p.read_text(encoding="utf-8"), p.name, "readmes", p.name,
                     "various", "2026-01-01T00:00:00+00:00") for p in files]
    result: dict = {"documents": len(docs), "chars": sum(len(d.text) for d in docs), "profiles": {}}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "docs.parquet"
        write_docs(path, docs)
        for i, (label, (profile, over)) in enumerate(PROFILES.items()):
            data = DataSpec.model_validate({"sources": [{"kind": "files", "name": "readmes", "paths": ["*"],
                                                         "profile": profile}], "profiles": {profile: over}})
            t0 = time.perf_counter()
            r = CleanShard(str(path), len(docs), data.model_dump_json())(0, Path(tmp) / str(i))
            seconds = time.perf_counter() - t0
            kept_chars = sum(len(t) for t in _kept_texts(Path(tmp) / str(i)))
            result["profiles"][label] = {"kept": r["kept"], "removed": dict(Counter(r["removed"]).most_common()),
                                         "kept_chars": kept_chars, "seconds": round(seconds, 2),
                                         "warnings": removal_warnings(r["by_source"], data)}
    return result


def _kept_texts(out: Path) -> list[str]:
    import pyarrow.parquet as pq

    return pq.read_table(out / "kept.parquet", columns=["text"]).column("text").to_pylist()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--measure", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--min-chars", type=int, default=500)
    args = ap.parse_args()
    written = write_corpus(args.out, args.min_chars)
    result: dict = {"written": written}
    if args.measure:
        result.update(measure(args.out))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"wrote {written.get('md', 0)} .md and {written.get('rst', 0)} .rst READMEs to {args.out} "
          f"({written.get('skipped_short', 0)} under {args.min_chars} characters skipped)")
    if args.measure:
        n = result["documents"]
        print(f"{n} documents, {result['chars'] / 1e6:.2f}M characters")
        for label, r in result["profiles"].items():
            top = ", ".join(f"{k} {v}" for k, v in r["removed"].items()) or "none"
            print(f"{label:<26} kept {r['kept']:>4} of {n} ({r['kept'] / n:.0%}, {r['kept_chars'] / 1e6:.2f}M chars, "
                  f"{r['seconds']:.1f} s)  removed: {top}")
            for w in r["warnings"]:
                print(f"{'':<26} warning: {w}")


if __name__ == "__main__":
    main()
