"""Sampling a token from a row of logits: the distribution a request's settings make of them, and one draw from it.

The engine (model/engine.py) samples every row it decodes this way, and speculative decoding (model/speculate.py)
checks guesses against the same distribution.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

GREEDY_BELOW = 1e-5  # a temperature this small is greedy (as vLLM), not a division by ~0


def greedy(p) -> bool:
    """Whether the settings `p` pick the top token every time (no penalty to move it)."""
    return p.temperature < GREEDY_BELOW and p.repetition_penalty == 1.0


def distribution(p, logits: torch.Tensor, seen: Callable[[], set[int]]) -> torch.Tensor | int:
    """What the next token is drawn from, given the sampling settings `p` (engine.SamplingParams) and `seen()`, the
    ids of the request's tokens so far (for the repetition penalty): the probabilities, or the token itself when
    decoding is greedy (or the numbers overflowed)."""
    logits = logits.float()
    if p.repetition_penalty != 1.0:
        ids = torch.tensor(sorted(seen()), device=logits.device)
        vals = logits[ids]
        logits[ids] = torch.where(vals > 0, vals / p.repetition_penalty, vals * p.repetition_penalty)
    if p.temperature < GREEDY_BELOW:
        return int(logits.argmax())
    # extreme penalties or temperatures overflow: keep the order, drop what is not a number
    logits = torch.nan_to_num(logits / p.temperature, nan=float("-inf"), posinf=3e38)
    if p.top_k:
        kth = torch.topk(logits, min(p.top_k, logits.numel())).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if p.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        probs = torch.softmax(sorted_logits, -1)
        drop = probs.cumsum(-1) - probs >= p.top_p  # keep the smallest set reaching top_p
        logits[order[drop]] = float("-inf")
    probs = torch.softmax(logits, -1)
    if not float(probs.sum()) > 0:  # a softmax that is not a number anywhere sums to nan
        return int(logits.argmax())
    return probs


def draw(probs: torch.Tensor, generator: torch.Generator | None) -> int:
    """One token drawn from `probs` (weights: they need not sum to 1) by inverting their cumulative sum at one
    uniform number. Exact, and one random number where `torch.multinomial` draws one per vocabulary entry: a fifth
    of its time over 4,096 tokens (21 against 102 microseconds, measured)."""
    cdf = probs.double().cumsum(-1)
    at = int(torch.searchsorted(cdf, uniform(generator, cdf.device) * cdf[-1], right=True))
    return at if at < len(cdf) else int(probs.nonzero().max())  # u * total rounded up to the total: the last token


def of_request(req, logits: torch.Tensor) -> torch.Tensor | int:
    """`distribution` for an engine request: its settings, and its prompt and output so far."""
    return distribution(req.params, logits, lambda: set(req.prompt_ids) | set(req.output_ids))


def sample(req, logits: torch.Tensor) -> int:
    """An engine request's next token from its row of logits, drawn from its own generator."""
    probs = of_request(req, logits)
    return probs if isinstance(probs, int) else draw(probs, req.generator)


def uniform(generator: torch.Generator | None, device: torch.device | str = "cpu") -> torch.Tensor:
    """One float64 number in [0, 1) from `generator` (on the generator's own device: an accelerator's generator
    draws there), as a scalar tensor on `device`."""
    at = generator.device if generator is not None else device
    return torch.rand((), generator=generator, dtype=torch.float64, device=at).to(device)


def pick(requests: list, logits: torch.Tensor, numpy_argmax: bool = False) -> list[int]:
    """Each request's next token from its row of `logits` (rows in the requests' order): greedy rows by one argmax
    over all rows (in numpy with `numpy_argmax`, for a CPU float32 buffer), rows sampled at a temperature alone (no
    top-k, top-p or penalty: the usual request) by one softmax and one cumulative sum for all of them and one uniform number each from the
    request's own generator, as `draw` takes it; the rest one by one through `distribution`."""
    out: list[int] = [0] * len(requests)
    top = [greedy(r.params) for r in requests]
    if any(top):
        best = (logits.numpy() if numpy_argmax else logits).argmax(-1).tolist()
        for i in (i for i, g in enumerate(top) if g):
            out[i] = best[i]
    plain = [i for i, r in enumerate(requests) if not top[i] and r.params.repetition_penalty == 1.0
             and not r.params.top_k and r.params.top_p >= 1.0]
    plain = plain if len(plain) > 1 else []  # one such row: `sample` alone is as cheap
    if plain:
        temps = [requests[i].params.temperature for i in plain]
        if numpy_argmax:  # numpy: PyTorch's threads, on rows this wide, wait on cores onnxruntime's workers hold
            scaled = np.nan_to_num(logits.numpy()[plain] / np.array(temps, np.float32)[:, None], nan=-np.inf,
                                   posinf=3e38)
            with np.errstate(invalid="ignore"):  # a row with nothing but -inf: nan, as torch's softmax gives
                weights = np.exp(scaled - scaled.max(-1, keepdims=True))
                cdf = np.cumsum(weights / weights.sum(-1, keepdims=True), -1, dtype=np.float64)
        else:
            scaled = torch.nan_to_num(logits[plain].float() / torch.tensor(temps, device=logits.device)[:, None],
                                      nan=float("-inf"), posinf=3e38)
            cdf = torch.softmax(scaled, -1).double().cumsum(-1).cpu().numpy()
        for j, i in enumerate(plain):
            total = cdf[j, -1]
            if not total > 0:  # not a number anywhere: the top token, as `distribution` gives (and no draw)
                out[i] = int(scaled[j].argmax())
                continue
            at = int(np.searchsorted(cdf[j], float(uniform(requests[i].generator)) * total, side="right"))
            # u * total rounded up to the total: the last token with any weight
            out[i] = at if at < cdf.shape[1] else int(np.flatnonzero(np.diff(cdf[j], prepend=0.0)).max())
    batched = set(plain)
    for i in (i for i in range(len(requests)) if not top[i] and i not in batched):
        out[i] = sample(requests[i], logits[i])
    return out
