"""Conversations as token ids under the chat template stored with the tokenizer, with the loss mask.

The template (`tokenizer.CHAT_TEMPLATE`) is `<|bos|>` then, per message, `<|role|>content<|end|>`; a prompt
for generation ends with `<|assistant|>`. Each piece is tokenized on its own; since the role tokens are special
tokens that the tokenizer never merges across, the ids equal those of the rendered template string (a test
checks this against `transformers`' `apply_chat_template`). Labels are -100 everywhere except the assistant's
content and its `<|end|>`: the model learns to answer and to stop, never to write the user's turns.
"""

from __future__ import annotations

import numpy as np

from lmwright.tokenizer import BOS, END_OF_TURN

IGNORE = -100


def _ids(tok, text: str) -> list[int]:
    return tok.encode(text, add_special_tokens=False).ids


def _special(tok, text: str) -> list[int]:
    """A template marker's id; spelled out as text by a tokenizer that lacks it (another model's)."""
    i = tok.token_to_id(text)
    return [i] if i is not None else _ids(tok, text)


def encode_conversation(tok, messages: list[dict]) -> tuple[list[int], list[int]]:
    """(ids, labels) for one conversation; labels are the ids on assistant turns, -100 elsewhere."""
    bos = tok.token_to_id(BOS)
    ids = [bos] if bos is not None else []
    labels = [IGNORE] * len(ids)
    end = _special(tok, END_OF_TURN)
    for m in messages:
        head = _special(tok, f"<|{m['role']}|>")
        body = _ids(tok, m["content"]) + end
        ids += head + body
        labels += [IGNORE] * len(head) + (body if m["role"] == "assistant" else [IGNORE] * len(body))
    return ids, labels


def encode_prompt(tok, messages: list[dict]) -> list[int]:
    """The ids of a conversation so far plus `<|assistant|>`: what the model continues to answer."""
    ids, _ = encode_conversation(tok, messages)
    return ids + _special(tok, "<|assistant|>")


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
