"""Fine-tuning data made from the pydocs corpus without a human, from each split's documents (so held-out
documents give held-out examples, by the same stable split as pretraining).

- Instructions (Alpaca shape): "What does `json.dumps` do?" -> the docstring's summary sentence; and for a
  module's top-level function or class, "Which module provides `dumps`?" -> "The `json` module."
- Classification: a docstring -> its library chapter (text processing, networking, concurrency, ...), keeping
  the chapters with enough training examples.
- Preference pairs: the instruction's right summary (chosen) against another document's (rejected).
"""

from __future__ import annotations

import random
import re

from lmwright.data.sources.pydocs import chapter

_SIGNATURE = re.compile(r"^[\w.]+\(.*\)(\s*->.*)?$")


def summary(text: str, limit: int = 200) -> str | None:
    """The first sentence of a docstring's first prose paragraph (builtins start with their signature)."""
    for para in re.split(r"\n\s*\n", text.strip()):
        para = " ".join(line.strip() for line in para.splitlines() if line.strip())
        if not para or _SIGNATURE.match(para) or para.startswith(("Help on", ">>>")):
            continue
        sentence = re.split(r"(?<=[.!?])\s", para, maxsplit=1)[0]
        if len(sentence) < 12:
            return None
        return sentence if len(sentence) <= limit else sentence[:limit].rsplit(" ", 1)[0] + " ..."
    return None


def _pydocs(docs: list[dict]) -> list[dict]:
    return [d for d in docs if d.get("locator") and not str(d["locator"]).startswith("topics.")]


def instructions(docs: list[dict]) -> list[dict]:
    out = []
    for d in _pydocs(docs):
        name = str(d["locator"])
        s = summary(d["text"])
        if s is None:
            continue
        out.append({"instruction": f"What does `{name}` do?", "output": s, "source": name})
        parts = name.split(".")
        if len(parts) == 2 and not parts[1].startswith("_"):
            out.append({"instruction": f"Which module provides `{parts[1]}`?", "output": f"The `{parts[0]}` module.",
                        "source": name})
    return out


def classification(docs: list[dict], max_chars: int = 400) -> list[dict]:
    return [{"text": d["text"][:max_chars], "label": chapter(str(d["locator"])), "source": d["locator"]}
            for d in _pydocs(docs) if chapter(str(d["locator"])) != "other"]


def frequent_labels(rows: list[dict], min_count: int) -> list[str]:
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["label"]] = counts.get(r["label"], 0) + 1
    return sorted(k for k, v in counts.items() if v >= min_count)


def preferences(docs: list[dict], seed: int) -> list[dict]:
    rows = [r for r in instructions(docs) if r["instruction"].startswith("What does")]
    rng = random.Random(seed)
    out = []
    for r in rows:
        other = rows[rng.randrange(len(rows))]["output"] if len(rows) > 1 else None
        if other and other != r["output"]:
            out.append({"prompt": r["instruction"], "chosen": r["output"], "rejected": other})
    return out
