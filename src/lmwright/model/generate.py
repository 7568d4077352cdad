"""Sampling from a model: greedy, temperature and top-k, with a seed and stop at end-of-sequence.

The spine's generator re-runs the forward pass over the (cropped) context for each token; the serving engine
with its KV cache and batching replaces it for throughput.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer

from lmwright.tokenizer import EOS


@torch.no_grad()
def generate_ids(model: torch.nn.Module, ids: list[int], max_new_tokens: int, temperature: float = 0.0,
                 top_k: int | None = None, seed: int = 0, stop_ids: set[int] | None = None) -> list[int]:
    model.eval()
    g = torch.Generator().manual_seed(seed)
    ctx = torch.tensor([ids], dtype=torch.long)
    out: list[int] = []
    limit = model.cfg.max_seq_len
    for _ in range(max_new_tokens):
        logits = model(ctx[:, -limit:])[0, -1].float()
        if temperature <= 0:
            nxt = int(logits.argmax())
        else:
            logits = logits / temperature
            if top_k:
                kth = torch.topk(logits, min(top_k, logits.numel())).values[-1]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            nxt = int(torch.multinomial(torch.softmax(logits, -1), 1, generator=g))
        if stop_ids and nxt in stop_ids:
            break
        out.append(nxt)
        ctx = torch.cat([ctx, torch.tensor([[nxt]])], dim=1)
    return out


def generate_text(model: torch.nn.Module, tok: Tokenizer, prompt: str, max_new_tokens: int = 64,
                  temperature: float = 0.0, top_k: int | None = None, seed: int = 0) -> str:
    """The continuation of `prompt` (without the prompt)."""
    ids = tok.encode(prompt).ids  # the post-processor prepends <|bos|>
    new = generate_ids(model, ids, max_new_tokens, temperature, top_k, seed, stop_ids={tok.token_to_id(EOS)})
    return tok.decode(new)
