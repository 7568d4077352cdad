"""Fine-tuning data: the row shapes people already have, read from JSONL or Parquet.

- SFT: Alpaca (`instruction`, optional `input`, `output`), ShareGPT (`conversations`: [{`from`, `value`}]) and
  OpenAI chat (`messages`: [{`role`, `content`}]); each becomes a list of {role, content} messages.
- Classification: `text` and `label`.
- Preference: `prompt`, `chosen`, `rejected` (strings; or message lists, whose last assistant turn is used).

A malformed row does not stop the run: it is quarantined with its file, line and reason, and every row is
accounted for (kept + quarantined = read).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmwright.chat_template import CHAT_ROLES
from lmwright.data.rows import read_records
from lmwright.errors import LmwrightError

SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "chatgpt": "assistant", "bing": "assistant", "bard": "assistant"}


class BadRow(ValueError):
    """A row that cannot be used; the message says which field and why."""


@dataclass
class Loaded:
    rows: list[Any] = field(default_factory=list)
    quarantined: list[dict] = field(default_factory=list)  # {file, line, reason, row}
    read: int = 0
    formats: dict[str, int] = field(default_factory=dict)  # SFT: rows per detected shape

    def summary(self) -> dict:
        reasons: dict[str, int] = {}
        for q in self.quarantined:
            reasons[q["reason"].split(":")[0]] = reasons.get(q["reason"].split(":")[0], 0) + 1
        return {"read": self.read, "kept": len(self.rows), "quarantined": len(self.quarantined),
                "quarantine_reasons": reasons, "formats": self.formats}


def _text(rec: dict, name: str, required: bool = True) -> str:
    v = rec.get(name)
    if v is None or (isinstance(v, str) and not v.strip()):
        if required:
            raise BadRow(f"missing field: '{name}' is missing or empty")
        return ""
    if not isinstance(v, str):
        raise BadRow(f"wrong type: '{name}' should be a string, not {type(v).__name__}")
    return v


def _messages(turns: Any, field_name: str, role_key: str, content_key: str, roles: dict[str, str]) -> list[dict]:
    if not isinstance(turns, list) or not turns:
        raise BadRow(f"wrong type: '{field_name}' should be a non-empty list of turns")
    out = []
    for i, t in enumerate(turns):
        if not isinstance(t, dict):
            raise BadRow(f"wrong type: '{field_name}[{i}]' should be an object")
        role = roles.get(str(t.get(role_key, "")).lower())
        if role is None:
            raise BadRow(f"bad role: '{field_name}[{i}].{role_key}' is {t.get(role_key)!r}; expected one of "
                         f"{', '.join(sorted(set(roles)))}")
        content = t.get(content_key)
        if not isinstance(content, str):
            raise BadRow(f"wrong type: '{field_name}[{i}].{content_key}' should be a string")
        out.append({"role": role, "content": content})
    if not any(m["role"] == "assistant" and m["content"].strip() for m in out):
        raise BadRow(f"no assistant turn: '{field_name}' has nothing to learn from")
    return out


def sft_messages(rec: dict) -> tuple[str, list[dict]]:
    """(shape, messages) of one SFT row, in whichever shape it comes."""
    if "messages" in rec:
        return "openai", _messages(rec["messages"], "messages", "role", "content", {r: r for r in CHAT_ROLES})
    if "conversations" in rec:
        return "sharegpt", _messages(rec["conversations"], "conversations", "from", "value", SHAREGPT_ROLES)
    if "instruction" in rec or "output" in rec:
        instruction, extra, output = _text(rec, "instruction"), _text(rec, "input", False), _text(rec, "output")
        user = f"{instruction}\n\n{extra}" if extra else instruction
        msgs = ([{"role": "system", "content": _text(rec, "system")}] if rec.get("system") else [])
        return "alpaca", msgs + [{"role": "user", "content": user}, {"role": "assistant", "content": output}]
    raise BadRow("unknown shape: expected 'messages' (OpenAI), 'conversations' (ShareGPT) or "
                 f"'instruction'/'output' (Alpaca); fields here: {', '.join(sorted(rec)) or 'none'}")


def _answer(v: Any, name: str) -> str:
    if isinstance(v, list):  # a message list: its last assistant turn
        turns = [m.get("content") for m in v if isinstance(m, dict) and m.get("role") == "assistant"]
        v = turns[-1] if turns else None
    if not isinstance(v, str) or not v.strip():
        raise BadRow(f"missing field: '{name}' is missing or empty")
    return v


def load(path: Path, kind: str, label_field: str = "label", text_field: str = "text") -> Loaded:
    """Rows of `kind` (sft, classify, preference) from `path`, malformed rows quarantined."""
    out = Loaded()
    for n, rec, why in read_records(path, "fine-tuning data"):
        out.read += 1
        try:
            if rec is None:
                raise BadRow(f"bad line: {why}")
            if kind == "sft":
                shape, msgs = sft_messages(rec)
                out.formats[shape] = out.formats.get(shape, 0) + 1
                out.rows.append(msgs)
            elif kind == "classify":
                label = rec.get(label_field)
                if label is None or str(label).strip() == "":
                    raise BadRow(f"missing field: '{label_field}' is missing or empty")
                out.rows.append({"text": _text(rec, text_field), "label": str(label)})
            elif kind == "preference":
                prompt = rec.get("prompt")
                if isinstance(prompt, list):
                    prompt = "\n".join(str(m.get("content", "")) for m in prompt if isinstance(m, dict))
                if not isinstance(prompt, str) or not prompt.strip():
                    raise BadRow("missing field: 'prompt' is missing or empty")
                chosen, rejected = _answer(rec.get("chosen"), "chosen"), _answer(rec.get("rejected"), "rejected")
                if chosen == rejected:
                    raise BadRow("same answers: 'chosen' and 'rejected' are identical")
                out.rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
            else:
                raise LmwrightError(f"unknown fine-tuning task {kind!r}")
        except BadRow as exc:
            out.quarantined.append({"file": str(path), "line": n, "reason": str(exc),
                                    "row": json.dumps(rec, default=str)[:500] if rec is not None else None})
    if not out.rows:
        first = out.quarantined[0] if out.quarantined else None
        raise LmwrightError(f"{path}: no usable {kind} rows"
                            + (f"; line {first['line']}: {first['reason']}" if first else " (the file is empty)"))
    return out
