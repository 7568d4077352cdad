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

from lmwright.data.batches import windows


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


def doc_stream(tok: Tokenizer, texts: list[str], separate: bool = False) -> tuple[list[np.ndarray], np.ndarray]:
    """The token streams to score and each document's start in them. Joined (the default): one stream as the
    tokenize stage writes it, `<|bos|> text <|eos|>` per document. Separate: one stream per document,
    `<|bos|> text`, the convention of lm-evaluation-harness's rolling log-likelihood (no context from other
    documents, and the last window of a long document keeps a full window of context)."""
    from lmwright.tokenizer import BOS, EOS

    bos, eos = tok.token_to_id(BOS), tok.token_to_id(EOS)
    encoded = tok.encode_batch(texts, add_special_tokens=False)
    if separate:
        return [np.asarray([bos, *e.ids], dtype=np.int64) for e in encoded], np.zeros(len(texts), dtype=np.int64)
    docs = [np.asarray([bos, *e.ids, eos], dtype=np.int64) for e in encoded]
    starts = np.cumsum([0] + [len(d) for d in docs[:-1]])
    return [np.concatenate(docs) if docs else np.zeros(0, dtype=np.int64)], starts


@torch.no_grad()
def _token_losses(model: torch.nn.Module, tokens: np.ndarray, seq_len: int, batch: int, on_batch,
                  tail_context: bool = False) -> np.ndarray:
    """The loss of every target token of a stream (positions 1..n-1), over non-overlapping windows. With
    `tail_context` the last, partial window is moved back to end at the stream's end, so its tokens are
    predicted with a full window of context (lm-evaluation-harness's rolling windows); only its new tokens count."""
    device = next(model.parameters()).device
    n_targets = max(tokens.size - 1, 0)
    full = n_targets // seq_len * seq_len
    losses = np.zeros(n_targets)
    pos = 0
    body = tokens[: full + 1] if tail_context and full < n_targets and tokens.size > seq_len else tokens
    for x, y in windows(body, seq_len, batch):
        logits = model(x.to(device))
        loss = F.cross_entropy(logits.float().flatten(0, 1), y.to(device).flatten(), reduction="none")
        losses[pos: pos + loss.numel()] = loss.cpu().numpy()  # windows come in stream order
        pos += loss.numel()
        on_batch(x.shape[0])
    if pos < n_targets:  # the tail, with the full window before it as context
        t = torch.from_numpy(np.asarray(tokens[-(seq_len + 1):], dtype=np.int64))[None]
        logits = model(t[:, :-1].to(device))
        loss = F.cross_entropy(logits.float()[0], t[0, 1:].to(device), reduction="none")
        losses[pos:] = loss[-(n_targets - pos):].cpu().numpy()
        on_batch(1)
    return losses


def doc_scores(model: torch.nn.Module, tok: Tokenizer, texts: list[str], seq_len: int, batch: int = 16,
               on_batch=lambda n: None, separate: bool = False) -> dict[str, np.ndarray]:
    """Per-document sums: nats of every target token, nats and UTF-8 bytes of the text tokens, token counts.
    Joined, over the same windows as `lm_metrics`, so summed over documents they give exactly the split's
    figures; kept apart they give slices and bootstrap intervals. `separate`: each document on its own."""
    streams, starts = doc_stream(tok, texts, separate)
    nbytes = token_bytes(tok).numpy()
    model.eval()
    n = len(texts)
    out = {k: np.zeros(n) for k in ("nats", "text_nats", "bytes")}
    out["tokens"] = np.zeros(n, dtype=np.int64)
    for d, tokens in enumerate(streams):
        losses = _token_losses(model, tokens, seq_len, batch, on_batch, tail_context=separate)
        tb = nbytes[tokens[1:]]
        # joined: target j (stream position j + 1) belongs to the document that contains position j + 1
        owner = (np.searchsorted(starts, np.arange(1, tokens.size), side="right") - 1) if not separate \
            else np.full(tokens.size - 1, d)
        out["nats"] += np.bincount(owner, losses, minlength=n)
        out["tokens"] += np.bincount(owner, minlength=n)
        out["text_nats"] += np.bincount(owner, losses * (tb > 0), minlength=n)
        out["bytes"] += np.bincount(owner, tb, minlength=n)
    return out


def metrics_from_scores(s: dict[str, np.ndarray], idx: np.ndarray | slice = slice(None)) -> dict[str, float]:
    """Loss, perplexity and bits-per-byte of the documents `idx` (all by default)."""
    nats, n_tok = float(s["nats"][idx].sum()), int(s["tokens"][idx].sum())
    text_nats, text_bytes = float(s["text_nats"][idx].sum()), int(s["bytes"][idx].sum())
    mean = nats / max(n_tok, 1)
    return {"loss": mean, "perplexity": math.exp(min(mean, 50)),
            "bits_per_byte": text_nats / (math.log(2) * max(text_bytes, 1)), "tokens": n_tok, "bytes": text_bytes}
