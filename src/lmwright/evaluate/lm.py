"""Language-modelling metrics: loss, perplexity and bits-per-byte over a whole split.

Bits-per-byte is the summed loss (in bits) of the tokens that carry text divided by the UTF-8 bytes they
carry; special tokens carry no bytes and are left out. Unlike loss or perplexity it does not depend on the
tokenizer, so models with different vocabularies compare fairly.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer

from lmwright.train.data import windows


def token_bytes(tok: Tokenizer) -> torch.Tensor:
    """UTF-8 bytes each token stands for (0 for special tokens). Byte-level BPE maps one byte to one character."""
    special = {t.content for t in tok.get_added_tokens_decoder().values()} \
        if hasattr(tok, "get_added_tokens_decoder") else set()
    out = torch.zeros(tok.get_vocab_size(), dtype=torch.long)
    for token, idx in tok.get_vocab().items():
        out[idx] = 0 if token in special else len(token)
    return out


@torch.no_grad()
def score_batches(model: torch.nn.Module, batches, nbytes: torch.Tensor, on_batch=lambda n: None) -> dict[str, float]:
    """Loss, perplexity and bits-per-byte over (input, target) batches; the model is left in eval mode."""
    model.eval()
    device = next(model.parameters()).device
    nbytes = nbytes.to(device)
    nats = n_tok = text_nats = text_bytes = 0.0
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        logits = model(x)
        loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="none")
        b = nbytes[y.flatten()]
        nats += loss.sum().item()
        n_tok += loss.numel()
        text_nats += loss[b > 0].sum().item()
        text_bytes += b.sum().item()
        on_batch(x.shape[0])
    mean = nats / max(n_tok, 1)
    return {
        "loss": mean,
        "perplexity": math.exp(min(mean, 50)),
        "bits_per_byte": text_nats / (math.log(2) * max(text_bytes, 1)),
        "tokens": int(n_tok),
        "bytes": int(text_bytes),
    }


def lm_metrics(model: torch.nn.Module, tokens: np.ndarray, seq_len: int, nbytes: torch.Tensor,
               batch: int = 16, on_batch=lambda n: None) -> dict[str, float]:
    """Every token of a split scored once, in non-overlapping windows."""
    return score_batches(model, windows(tokens, seq_len, batch), nbytes, on_batch)
