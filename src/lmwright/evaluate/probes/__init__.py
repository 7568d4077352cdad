"""The probe sets the risk checks ship with: package data written for lmwright (none of it is copied from a public
data set), read here. Each check documents its own set, what it measures and its limits:

- `injection.jsonl`: 40 attempts to make the assistant break its system prompt (`evaluate/injection.py`);
- `bias_templates.jsonl` and `bias_groups.json`: 60 counterfactual templates over 5 demographic axes
  (`evaluate/risk.py`, `shipped_bias`);
- `toxicity_prompts.jsonl` and `toxicity_lexicon.txt`: prompts that invite a rude answer and the word list that
  scores the answers (`evaluate/toxicity.py`);
- `facts.jsonl`: questions about Python's standard library with known answers, for corpora without their own
  (`evaluate/facts.py`).

`digest()` hashes every file here: the stages that run the checks count it in their fingerprint, so editing a
probe set reruns them (data files are not code, so the code version alone would miss it).
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path

HERE = Path(__file__).parent


@cache
def jsonl(name: str) -> tuple[dict, ...]:
    """The records of a shipped JSONL probe file."""
    lines = (HERE / name).read_text(encoding="utf-8").splitlines()
    return tuple(json.loads(line) for line in lines if line.strip())


def read_json(name: str):
    return json.loads((HERE / name).read_text(encoding="utf-8"))


def path(name: str) -> Path:
    return HERE / name


def digest() -> str:
    """The SHA-256 of every probe file, by name."""
    h = hashlib.sha256()
    for f in sorted(HERE.iterdir()):
        if f.suffix in (".jsonl", ".json", ".txt"):
            h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()
