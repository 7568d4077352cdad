"""Answers for the risk checks, through the serving engine (`model/engine.py`: KV cache, every prompt of a check
decoded together), so a check costs about one batched decode, and a served model is probed the way it is served.

`chat_answers` prompts an assistant with conversations through the one chat template; `text_answers` continues raw
text with a base model. Both return `Answer`s: the text, and with `scored` the probability the model gave each
token it chose (from one teacher-forced pass over prompt and answer), which the false-information check reads as
confidence. A prompt that leaves no room for `max_new` tokens in the model's context is not answered (None): the
checks count those as skipped rather than score a truncated prompt.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from lmwright.chat_template import encode_prompt
from lmwright.tokenizer import chat_stop_ids


@dataclass
class Answer:
    text: str
    ids: list[int]
    token_probs: list[float] = field(default_factory=list)


def _run(model, tok, prompts: list[list[int] | None], max_new: int, temperature: float, seed: int,
         stop_ids: frozenset[int], stop: list[str], scored: bool) -> list[Answer | None]:
    from lmwright.model.engine import Engine, SamplingParams

    room = model.cfg.max_seq_len - max_new - 1
    live = [(i, p) for i, p in enumerate(prompts) if p and len(p) <= room]
    out: list[Answer | None] = [None] * len(prompts)
    if not live:
        return out
    engine = Engine(model, tok, max_batch=min(32, len(live)))
    reqs = [engine.submit(p, SamplingParams(max_tokens=max_new, temperature=temperature, seed=seed + i,
                                            stop_token_ids=stop_ids, stop=stop)) for i, p in live]
    engine.run_until_done()
    for (i, _), r in zip(live, reqs, strict=True):
        out[i] = Answer(r.text.strip(), list(r.output_ids))
    if scored:
        _score(model, [(p, out[i]) for i, p in live])
    return out


@torch.no_grad()
def _score(model, rows: list[tuple[list[int], Answer]], batch: int = 32) -> None:
    """Each answer's token probabilities under the model, prompt and answer in one right-padded forward pass."""
    device = next(model.parameters()).device
    for s in range(0, len(rows), batch):
        group = [(p, a) for p, a in rows[s: s + batch] if a.ids]
        if not group:
            continue
        width = max(len(p) + len(a.ids) for p, a in group)
        x = torch.zeros(len(group), width, dtype=torch.long)
        for j, (p, a) in enumerate(group):
            x[j, : len(p) + len(a.ids)] = torch.tensor(p + a.ids)
        probs = torch.softmax(model(x.to(device)).float(), -1).cpu()
        for j, (p, a) in enumerate(group):
            pos = torch.arange(len(p) - 1, len(p) - 1 + len(a.ids))
            a.token_probs = probs[j, pos, torch.tensor(a.ids)].tolist()


def chat_answers(model, tok, conversations: list[list[dict]], max_new: int, temperature: float = 0.0,
                 seed: int = 0, scored: bool = False) -> list[Answer | None]:
    """The assistant's reply to each conversation (OpenAI messages, ending with a user turn)."""
    prompts = [encode_prompt(tok, c) for c in conversations]
    return _run(model, tok, prompts, max_new, temperature, seed, chat_stop_ids(tok), [], scored)


def text_answers(model, tok, prompts: list[str], max_new: int, temperature: float = 0.0, seed: int = 0,
                 scored: bool = False, stop: list[str] | None = None) -> list[Answer | None]:
    """A base model's continuation of each prompt (after `<|bos|>`), ending at `stop` when given."""
    ids = [tok.encode(p).ids for p in prompts]  # the post-processor prepends <|bos|>
    return _run(model, tok, ids, max_new, temperature, seed, frozenset(), list(stop or []), scored)
