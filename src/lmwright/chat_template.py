"""The one chat template: how a conversation becomes the text and the token ids a model sees.

A conversation is OpenAI's messages shape, `[{"role", "content"}]`. The template is `<|bos|>`, then per message
`<|role|>content<|end|>`; a prompt for generation ends with `<|assistant|>`. It is written down once, as the pieces
below (`role_token`, `END_OF_TURN`, `GENERATION_PROMPT`), and offered three ways that cannot drift apart:

- `render_chat`: the prompt as text (to read, and to compare with `transformers`).
- `encode_conversation` / `encode_prompt`: token ids, with the assistant-token mask, that fine-tuning trains on
  (`pack` then lays them into training rows) and that the server and `lmwright chat` feed the model
  (`fit_conversation` first leaves out the oldest turns that no longer fit the context).
- `CHAT_TEMPLATE`: the same template as Jinja, which `tokenizer.save_tokenizer` writes into
  `tokenizer_config.json` so that `transformers`' `apply_chat_template` works on a saved model.

Tests check that the three agree: the ids equal the tokenized rendered text, and both equal what
`apply_chat_template` makes of a saved model.

The template's markers are defined here, and the tokenizer builds its vocabulary from them: `lmwright.tokenizer`
imports `BOS`, `CHAT_TOKENS` and `CHAT_TEMPLATE` from this module (and re-exports the names it always had), while
this module imports nothing of lmwright's but its errors. The dependency runs one way only (tokenizer ->
chat_template), with no import inside a function to hide a circle; `<|bos|>` is named here rather than beside
`<|eos|>` and `<|pad|>` because the template opens with it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from lmwright.errors import LmwrightError

# -- the template's pieces: everything below is built from these -----------------------------------------------------

BOS = "<|bos|>"  # opens a conversation (and, in the token shards, every document)
CHAT_ROLES = ("system", "user", "assistant")
END_OF_TURN = "<|end|>"  # closes every message; a chat reply stops at it (tokenizer.chat_stop_ids)


def role_token(role: str) -> str:
    """The marker that opens a message: `<|role|>` (a special token for each of `CHAT_ROLES`)."""
    return f"<|{role}|>"


GENERATION_PROMPT = role_token("assistant")  # what a prompt ends with: the model continues as the assistant
CHAT_TOKENS = [*(role_token(r) for r in CHAT_ROLES), END_OF_TURN]  # special tokens of the vocabulary, in this order


def _turn(role: str, content: str) -> str:
    """One message as text: the template's single definition of a turn."""
    return role_token(role) + content + END_OF_TURN


# The Jinja form, built from the same pieces (`bos_token`, `messages` and `add_generation_prompt` are the names
# `apply_chat_template` passes in).
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}" + _turn("{{ m['role'] }}", "{{ m['content'] }}") + "{% endfor %}"
    + "{% if add_generation_prompt %}" + GENERATION_PROMPT + "{% endif %}"
)

IGNORE = -100  # the label of a token that carries no loss (PyTorch's cross-entropy ignore_index)


# -- text: what a served model is prompted with ----------------------------------------------------------------------

class BadMessage(LmwrightError):
    """A message the template cannot render; `param` names the field (`messages.{i}.role` or `.content`)."""

    def __init__(self, message: str, param: str):
        super().__init__(message)
        self.param = param


def normalize(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """The messages as `{"role", "content"}` with string contents. A content is a string, None (empty) or OpenAI's
    content parts (text parts only, joined); OpenAI's `developer` role is the system turn. Raises `BadMessage`
    for a role outside `CHAT_ROLES` or a part that is not text, naming the first offending message."""
    out = []
    for i, m in enumerate(messages):
        role = "system" if m["role"] == "developer" else m["role"]
        if role not in CHAT_ROLES:
            raise BadMessage(f"messages[{i}].role {role!r} is not one of {', '.join(CHAT_ROLES)}",
                             f"messages.{i}.role")
        content = m.get("content")
        if isinstance(content, list):  # OpenAI's content parts: text only
            if any(not isinstance(p, Mapping) or p.get("type") != "text" for p in content):
                raise BadMessage(f"messages[{i}].content: only text parts are supported", f"messages.{i}.content")
            content = "".join(str(p.get("text", "")) for p in content)
        out.append({"role": role, "content": content or ""})
    return out


def render_chat(messages: Sequence[Mapping[str, Any]]) -> str:
    """The prompt for a conversation so far as text: each message's turn, then `<|assistant|>`, without the
    `<|bos|>` that opens the ids. For reading and for `apply_chat_template` parity; a model is fed
    `encode_prompt`'s ids, where the markers come from the template alone (see `encode_conversation`)."""
    return "".join(_turn(m["role"], m["content"]) for m in normalize(messages)) + GENERATION_PROMPT


# -- ids: what a model is fed and fine-tuning trains on ---------------------------------------------------------------
# The markers are inserted by id and each content is tokenized on its own as text: lmwright's tokenizers never read a
# marker typed inside a content as the marker (`tokenizer.text_only`), so a message cannot open a system turn or end
# the sequence by spelling `<|system|>` or `<|eos|>`. For contents without such spellings the ids equal those of
# the rendered text (a test checks this against `transformers`).

def _ids(tok: Tokenizer, text: str) -> list[int]:
    return tok.encode(text, add_special_tokens=False).ids


def _special(tok: Tokenizer, text: str) -> list[int]:
    """A template marker's id; spelled out as text by a tokenizer that lacks it (another model's)."""
    i = tok.token_to_id(text)
    return [i] if i is not None else _ids(tok, text)


def encode_conversation(tok: Tokenizer, messages: Sequence[Mapping[str, Any]]) -> tuple[list[int], list[int]]:
    """(ids, labels) for one conversation (string contents). Labels are `IGNORE` everywhere except the assistant's
    content and its `<|end|>`: the model learns to answer and to stop, never to write the user's turns. The tokenizer
    must be text-only (`tokenizer.text_only`; lmwright's always are), else a content could spell a marker."""
    bos = tok.token_to_id(BOS)
    ids = [bos] if bos is not None else []
    labels = [IGNORE] * len(ids)
    end = _special(tok, END_OF_TURN)
    for m in messages:
        head = _special(tok, role_token(m["role"]))
        body = _ids(tok, m["content"]) + end
        ids += head + body
        labels += [IGNORE] * len(head) + (body if m["role"] == "assistant" else [IGNORE] * len(body))
    return ids, labels


def encode_prompt(tok: Tokenizer, messages: Sequence[Mapping[str, Any]]) -> list[int]:
    """The ids of a conversation so far plus `<|assistant|>`: what the model continues to answer."""
    ids, _ = encode_conversation(tok, messages)
    return ids + _special(tok, GENERATION_PROMPT)


def prompt_budget(context: int, max_tokens: int) -> int:
    """The tokens a chat's prompt may take in a `context`-token model: room is left for the answer's `max_tokens`,
    up to half the context (a long answer must not squeeze the conversation out)."""
    return context - 1 - min(max_tokens, context // 2)


def fit_conversation(tok: Tokenizer, messages: Sequence[Mapping[str, Any]],
                     budget: int) -> tuple[list[int], list[dict[str, str]]]:
    """(prompt ids, the messages kept) for a conversation trimmed to `budget` tokens: the system turns and the latest
    messages that fit, oldest dropped first, as a chat must once it outgrows the context. Raises `BadMessage` when
    the system turns and the last message alone are over the budget."""
    msgs = normalize(messages)
    ids = encode_prompt(tok, msgs)
    if len(ids) <= budget:
        return ids, msgs
    # a turn's ids do not depend on its neighbours (markers are by id), so each turn costs its own length
    empty = len(encode_conversation(tok, [])[0])
    cost = [len(encode_conversation(tok, [m])[0]) - empty for m in msgs]
    keep = {i for i, m in enumerate(msgs) if m["role"] == "system"}
    used = len(encode_prompt(tok, [])) + sum(cost[i] for i in keep)
    for i in reversed([i for i in range(len(msgs)) if i not in keep]):
        if used + cost[i] > budget:
            break
        keep.add(i)
        used += cost[i]
    if len(msgs) - 1 not in keep or used > budget:
        fixed = len(encode_prompt(tok, [])) + sum(cost[i] for i, m in enumerate(msgs) if m["role"] == "system")
        what = (f"the system turns take {fixed} tokens with the template's markers" if fixed > budget else
                f"the last message takes {cost[-1]} tokens beside {fixed} for the system turns and the markers")
        raise BadMessage(f"{what}; this model's context leaves {budget} for the prompt",
                         f"messages.{len(msgs) - 1}.content")
    kept = [m for i, m in enumerate(msgs) if i in keep]
    return encode_prompt(tok, kept), kept


def pack(examples: list[tuple[list[int], list[int]]], seq_len: int, pad_id: int,
         packing: bool = True) -> tuple[np.ndarray, np.ndarray, int]:
    """Rows of seq_len + 1 ids and labels. Packed: examples laid end to end and cut into rows (attention crosses
    example boundaries; each example starts with <|bos|>, which is how the model tells them apart). Unpacked:
    one example per row, padded to the longest (at most seq_len + 1). Examples longer than a row are cut. Returns (ids, labels, truncated count)."""
    width = seq_len + 1
    truncated = sum(len(ids) > width for ids, _ in examples)
    if packing:
        flat_ids = [i for ids, _ in examples for i in ids]
        flat_lab = [x for _, lab in examples for x in lab]
        n = max(1, -(-len(flat_ids) // width))
        ids_arr = np.full((n, width), pad_id, dtype=np.int64)
        lab_arr = np.full((n, width), IGNORE, dtype=np.int64)
        for r in range(n):
            chunk = flat_ids[r * width: (r + 1) * width]
            ids_arr[r, : len(chunk)] = chunk
            lab_arr[r, : len(chunk)] = flat_lab[r * width: (r + 1) * width]
        return ids_arr, lab_arr, 0
    width = min(width, max((len(ids) for ids, _ in examples), default=1))  # no wider than the longest
    ids_arr = np.full((len(examples), width), pad_id, dtype=np.int64)
    lab_arr = np.full((len(examples), width), IGNORE, dtype=np.int64)
    for r, (ids, lab) in enumerate(examples):
        ids_arr[r, : min(len(ids), width)] = ids[:width]
        lab_arr[r, : min(len(lab), width)] = lab[:width]
    return ids_arr, lab_arr, truncated
