"""`lmwright init`: write a project's lmwright.yaml, the commented default or one fitted to the user's data.

`lmwright init DIR --data "docs/**/*.md" --data notes.jsonl --data sqlite:///app.db#posts` samples the data
(`data/sniff.py`: formats, the text field, labels, dates, code blocks), then writes a short spec: the sources with the
filter profile that suits what was sampled, a model and step count sized to the corpus (`model/sizing.py`), the
fine-tunings its data has rows for (the others off, with what they would need; `finetune/fit.py`), generation prompts
from its own documents, and acceptance criteria as commented examples to adapt. Every field it leaves out takes the
default that `lmwright init DIR` (without --data) writes out in full.
"""

from __future__ import annotations

import os
import re
import textwrap
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from lmwright.cli.common import JsonOpt, err, out
from lmwright.errors import LmwrightError
from lmwright.spec import DEFAULT_SPEC_TEXT, SPEC_FILENAME


def register(app: typer.Typer) -> None:
    app.command()(init)


def init(
    directory: Annotated[Path, typer.Argument(help="Directory to create the project in.")] = Path("."),
    data: Annotated[list[str] | None, typer.Option(
        "--data", help="Your data (repeatable): a glob such as \"docs/**/*.md\" or corpus/*.jsonl (relative to "
                       "here), a database URL such as sqlite:///app.db#posts (#table optional), or http(s) seed "
                       "URLs to crawl. A JSONL/Parquet file of instruction rows (messages, conversations, or instruction and "
                       "output) or of preference pairs (prompt, chosen, rejected) becomes that fine-tuning's data. "
                       "Without --data: the built-in default project (Python's own documentation).")] = None,
    name: Annotated[str | None, typer.Option(help="The project's name (default: the directory's name).")] = None,
    json_: JsonOpt = False,
) -> None:
    """Write lmwright.yaml: the commented default project, or with --data one fitted to your data."""
    target = directory / SPEC_FILENAME
    if target.exists():
        raise LmwrightError(f"{target} already exists; edit it, or remove it to start again")
    if not data:
        directory.mkdir(parents=True, exist_ok=True)
        target.write_text(DEFAULT_SPEC_TEXT, encoding="utf-8")
        err.print(f"wrote {target}; edit it, then run `lmwright run -C {directory}`")
        return
    from lmwright.data.sniff import sniff

    rows = {arg: kind for arg in data if (kind := _rows_kind(arg))}  # fine-tuning rows, not documents
    documents = [arg for arg in data if arg not in rows]
    if not documents:
        raise LmwrightError(f"{', '.join(rows)}: fine-tuning rows ({', '.join(rows.values())}), and no documents to "
                            "pretrain on; add --data with your documents (or write finetune.base and the recipe's "
                            "data into lmwright.yaml by hand to fine-tune an existing model)")
    found = sniff(documents, Path.cwd())
    project = name or _name(directory)
    tuning = {}
    for arg, kind in rows.items():
        if kind in tuning:
            raise LmwrightError(f"--data {arg} and {tuning[kind]} are both {kind} rows; a recipe reads one file: "
                                "join them into one")
        tuning[kind] = arg
    text, facts = spec_text(found, project, directory, {k: _relocate_path(v, directory) for k, v in tuning.items()})
    _check(text, directory)
    directory.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    if json_:
        import json

        reports = [{k: v for k, v in r.items() if k != "texts"} for r in found.to_dict()["reports"]]
        written = yaml.safe_load(text)["data"]["sources"]
        for src in written:  # the spec needs the URL as it is; the output need not show a password
            if src.get("kind") == "sql":
                from sqlalchemy.engine import make_url

                src["url"] = make_url(src["url"]).render_as_string(hide_password=True)
        out.print_json(json.dumps({"spec": str(target), **facts, "sources": written, "reports": reports},
                                  default=str))
    for rep in found.reports:
        size = f"{rep.docs:,} documents{' (estimated)' if rep.estimated else ''}, {_mb(rep.text_bytes)} of text"
        err.print(f"[bold]{rep.name}[/bold] ({rep.kind}{', ' + ', '.join(rep.formats) if rep.formats else ''}): {size}")
        for line in [rep.text_reason, f"profile {rep.profile}: {rep.profile_reason}",
                     *([f"labels: {', '.join(rep.label_fields)}"] if rep.label_fields else []), *rep.notes]:
            if line:
                err.print(f"  {line}")
    err.print(f"model: {facts['model_line']}")
    for line in facts["finetune"]:
        err.print(f"finetune {line}")
    err.print(f"wrote {target}; read it, then run `lmwright run -C {directory}`")


def _name(directory: Path) -> str:
    raw = directory.resolve().name or "my-lm"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", raw).strip("-") or "my-lm"


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.0f} kB"


def _relocate_path(path: str, directory: Path) -> str:
    """A path given relative to here, made relative to the project directory (where the spec's paths start)."""
    rel = Path(os.path.relpath(Path.cwd(), directory.resolve()))
    return path if Path(path).is_absolute() or str(rel) == "." else str(rel / path)


def _relocate(source: dict, directory: Path) -> dict:
    if source.get("kind") != "files":
        return source
    return {**source, "paths": [_relocate_path(p, directory) for p in source["paths"]]}


SFT_KEYS = ({"messages"}, {"conversations"}, {"instruction", "output"})
PREFERENCE_KEYS = {"prompt", "chosen", "rejected"}


def _rows_kind(arg: str) -> str | None:
    """`sft` or `preference` when `arg` names one JSONL/Parquet file of such rows (by the keys of its first
    records), else None: it is documents to pretrain on."""
    from lmwright.data.compressed import read_bytes, split_suffix

    if "://" in arg or any(c in arg for c in "*?["):
        return None
    path = Path(arg)
    if not path.is_file() or split_suffix(path)[0] not in (".jsonl", ".json", ".parquet"):
        return None
    try:
        if split_suffix(path)[0] == ".parquet":
            import pyarrow.parquet as pq

            records = next(pq.ParquetFile(path).iter_batches(batch_size=20), None)
            records = records.to_pylist() if records is not None else []
        else:  # the opening megabyte only: a corpus of gigabytes is not read here
            import json

            records = []
            for line in read_bytes(path, 2**20).decode("utf-8", errors="replace").splitlines()[:20]:
                try:  # the last line read may be cut short
                    rec = json.loads(line)
                except ValueError:
                    continue
                if isinstance(rec, dict):
                    records.append(rec)
    except (LmwrightError, OSError, ValueError):
        return None
    if not records:
        return None
    keys = set.intersection(*(set(r) for r in records))
    if keys >= PREFERENCE_KEYS:
        return "preference"
    if any(keys >= k for k in SFT_KEYS):
        return "sft"
    return None


def _prompts(texts: list[str], n: int = 4) -> list[str]:
    """Generation prompts for the report: the opening words of the first prose line of a few sampled documents."""
    out: list[str] = []
    for t in texts:
        for line in t.splitlines():
            line = line.strip().lstrip("#*>-=| ").strip()
            words = line.split()
            if len(words) >= 4 and not line.startswith(("```", "~~~", "..", "<", "{", "[", "!")) \
                    and sum(w.isalpha() for w in words[:4]) >= 3:
                prompt = " ".join(words[:4])
                if prompt not in out:
                    out.append(prompt)
                break
        if len(out) == n:
            break
    return out or ["The"]


def spec_text(found, project: str, directory: Path, tuning: dict[str, str] | None = None) -> tuple[str, dict[str, Any]]:
    """The spec's text for the sniffed data (and the fine-tuning rows `tuning`: recipe -> file), and what was
    decided (for the command's output)."""
    from lmwright.finetune.fit import fits
    from lmwright.model.sizing import shape_config, size_for, tokens_from_bytes
    from lmwright.spec import Spec

    sources = [_relocate(s, directory) for s in found.sources]
    text_bytes = sum(r.text_bytes for r in found.reports)
    train_tokens = tokens_from_bytes(int(text_bytes * 0.9))  # the default split keeps 90% for training
    sized = size_for(train_tokens)
    labelled = [(r.name, r.label_fields[0]) for r in found.reports if r.label_fields]
    finetune: dict[str, Any] = {kind: {"enabled": True, "data": path} for kind, path in (tuning or {}).items()}
    if labelled:
        finetune["classify"] = {"label": labelled[0][1]}
    nested = _nest(sized)  # {"tokenizer": {...}, "model": {...}, "train": {...}}: size_for's keys are dotted
    spec = Spec.model_validate({**nested, "data": {"sources": sources}, "finetune": finetune})
    plan = fits(spec)
    lines = [f.line() for f in plan.values()]
    for kind, f in plan.items():  # a recipe with no rows is written off, so the spec says what it runs
        if not f.runs and getattr(spec.finetune, kind).enabled:
            finetune.setdefault(kind, {})["enabled"] = False
    model, train, tokenizer = nested["model"], nested["train"], nested["tokenizer"]
    n_params = shape_config(tuple(model[k] for k in ("n_layers", "d_model", "n_heads", "n_kv_heads")),
                            tokenizer["vocab_size"]).n_params()
    model_line = (f"{model['n_layers']} layers x {model['d_model']} wide (~{n_params / 1e6:.1f}M parameters), "
                  f"{train['max_steps']} steps, for ~{train_tokens:,} training tokens (estimated from "
                  f"{_mb(text_bytes)} of text)")
    parts = [
        f"# lmwright project spec for your data, written by `lmwright init --data` on {date.today().isoformat()}.\n"
        "# Every field left out takes its default; `lmwright init DIR` (without --data) writes them all with\n"
        "# comments. Override any field for one run with: lmwright run --set train.max_steps=100\n"
        "version: 1\n",
        _section("project", {"name": project, "seed": 1337}),
        "requirements:                 # the report card checks each criterion: METRIC OP NUMBER\n"
        "  acceptance: []              # none yet: run once, read the report card, then keep what you need, e.g.\n"
        "  # - test.bits_per_byte <= 2.0      # the built-in corpus's model reaches ~1.6; yours depends on its text\n"
        "  # - risk.verbatim_rate <= 0.25     # share of training documents continued word for word\n"
        "  # - risk.pii_rate <= 0.05          # share of sampled generations with personal data\n"
        "  # - risk.robustness_drop <= 0.1    # the metric's loss under typos, case and spacing noise\n",
        _sources_block(sources, found.reports),
        f"# the tokenizer, model and steps are sized to ~{train_tokens:,} training tokens (estimated from "
        f"{_mb(text_bytes)} of text);\n# `lmwright model plan` gives the figures once the data is tokenized\n"
        + _section("tokenizer", tokenizer),
        _section("model", model),
        _section("train", train),
        _section("eval", {"prompts": _prompts(found.samples)}, "prompts: opening words of your own documents"),
        _finetune_block(finetune, lines),
    ]
    facts = {"train_tokens_estimate": train_tokens, "sized": sized, "finetune": lines, "model_line": model_line}
    return "\n".join(p for p in parts if p), facts


def _nest(flat: dict[str, Any]) -> dict:
    out: dict = {}
    for key, value in flat.items():
        node = out
        *head, last = key.split(".")
        for k in head:
            node = node.setdefault(k, {})
        node[last] = value
    return out


def _section(name: str, body: dict, comment: str = "") -> str:
    dumped = yaml.safe_dump({name: body}, sort_keys=False, allow_unicode=True, width=110)
    return (f"# {comment}\n" if comment else "") + dumped


def _sources_block(sources: list[dict], reports) -> str:
    lines = ["data:", "  sources:"]
    for src, rep in zip(sources, reports, strict=True):
        what = f"{rep.docs:,} documents{' (estimated)' if rep.estimated else ''}, {_mb(rep.text_bytes)} of text"
        lines.append(f"    # {src['name']}: {what}")
        for note in (rep.text_reason, f"profile {rep.profile}: {rep.profile_reason}"):
            if note:
                lines.extend(f"    #   {chunk}" for chunk in _wrap(note, 100))
        if src.get("license") == "unknown":
            lines.append("    #   license: set your data's SPDX licence id (governance checks it against the model's)")
        dumped = yaml.safe_dump([src], sort_keys=False, allow_unicode=True, width=110)
        lines.extend("    " + line for line in dumped.rstrip("\n").splitlines())
    return "\n".join(lines) + "\n"


def _wrap(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False)  # a path stays whole


def _finetune_block(finetune: dict, lines: list[str]) -> str:
    head = "\n".join(f"# {chunk}" for line in lines for chunk in _wrap(line, 110))
    body = yaml.safe_dump({"finetune": finetune}, sort_keys=False, width=110) if finetune else ""
    return "# fine-tunings that fit this data (finetune/fit.py):\n" + head + "\n" + body


def _check(text: str, directory: Path) -> None:
    """The written spec must load as the run will load it; a failure here is lmwright's bug, said plainly."""
    from lmwright.spec import Spec

    try:
        Spec.model_validate(yaml.safe_load(text))
    except Exception as exc:  # noqa: BLE001 - any failure: the spec we are about to write is wrong
        raise LmwrightError(f"the spec written for {directory} does not validate ({exc}); please report this "
                            "as a bug in lmwright init") from exc
