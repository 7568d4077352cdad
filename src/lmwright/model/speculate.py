"""Speculative decoding for the engine: a drafter guesses the next few tokens, the model checks them all in one
pass, and every guess it agrees with is a token for the price of a fraction of a step.

A small model's decode step on a CPU costs about the same for one token as for five (the time goes to launching
operations, not to arithmetic), so each accepted guess is nearly free. The output is exactly the model's own:
- greedy: a guess is kept while it equals the model's choice at its position; the first disagreement is replaced
  by the model's choice. The tokens are the ones plain decoding makes.
- sampling: the drafters here propose a token, not a distribution (q is a point mass on it), so the standard
  accept/reject rule (Leviathan et al., 2023; Chen et al., 2023) reads: keep guess d with probability p(d), where
  p is the model's distribution after the request's penalty, temperature, top-k and top-p; otherwise draw from p
  with d removed and renormalised. Each token is then distributed as p exactly (p(d) + (1 - p(d)) * 0 for d, and
  (1 - p(d)) * p(x) / (1 - p(d)) = p(x) for any other x). A seeded request is reproducible, but its draws are not
  the ones plain decoding with that seed makes.

Drafters:
- `PromptLookup`: the tokens that followed the latest earlier occurrence of the sequence's last n tokens (n from
  `max_ngram` down to `min_ngram`), in the prompt or the text so far. Free to run; strong on code, quotes and
  anything that repeats its input.
- `DraftModel`: a smaller model with the same tokenizer, greedy, with its own cache in the same slots; after each
  check it keeps the part of its cache the model agreed with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from lmwright.errors import LmwrightError
from lmwright.model.sampling import draw, greedy, uniform

# the engine imports this module, so its classes are not imported back here: an import circle
Engine = Request = Any


@dataclass
class SpecStats:
    """What speculation did, summed over an engine's life: requests' checks (one per request per pass), tokens
    guessed, guesses kept, tokens made."""

    steps: int = 0
    drafted: int = 0
    accepted: int = 0
    tokens: int = 0

    @property
    def acceptance_rate(self) -> float | None:
        return self.accepted / self.drafted if self.drafted else None

    @property
    def tokens_per_step(self) -> float | None:
        return self.tokens / self.steps if self.steps else None

    def to_dict(self) -> dict:
        rate, per = self.acceptance_rate, self.tokens_per_step
        return {"steps": self.steps, "drafted": self.drafted, "accepted": self.accepted, "tokens": self.tokens,
                "acceptance_rate": None if rate is None else round(rate, 4),
                "tokens_per_step": None if per is None else round(per, 3)}


class PromptLookup:
    """Guesses by n-gram lookup in the request's own tokens (prompt and output)."""

    def __init__(self, num_tokens: int = 4, max_ngram: int = 3, min_ngram: int = 1, max_running: int = 4):
        if not 1 <= min_ngram <= max_ngram:
            raise LmwrightError(f"prompt lookup needs 1 <= min_ngram <= max_ngram (got {min_ngram}, {max_ngram})")
        self.num_tokens, self.max_ngram, self.min_ngram = num_tokens, max_ngram, min_ngram
        self.max_running = max_running

    def admit(self, engine: Engine, req: Request) -> None:
        pass

    def propose(self, engine: Engine, rows: list[tuple[Request, int]]) -> list[list[int]]:
        return [lookup(r.prompt_ids + r.output_ids, k, self.max_ngram, self.min_ngram) for r, k in rows]

    def release(self, slot: int) -> None:
        pass


def lookup(seq: list[int], k: int, max_ngram: int, min_ngram: int) -> list[int]:
    """Up to k tokens that followed an earlier occurrence of seq's last n tokens, longest n first: the latest
    occurrence with k tokens after it (the nearest context predicts best), else the one with the most (a match
    near the end, as in a loop, has only a token or two after it)."""
    if k <= 0:
        return []
    for n in range(min(max_ngram, len(seq) - 1), min_ngram - 1, -1):
        tail, best = seq[-n:], []
        for j in range(len(seq) - n - 1, -1, -1):
            if seq[j: j + n] == tail and len(follow := seq[j + n: j + n + k]) > len(best):
                best = follow
                if len(best) == k:
                    break
        if best:
            return best
    return []


class DraftModel:
    """Guesses with a smaller model (the same tokenizer), greedily, from a cache of its own."""

    def __init__(self, engine: Engine, num_tokens: int = 4, max_running: int = 4):
        self.engine, self.num_tokens, self.max_running = engine, num_tokens, max_running
        self.cached: dict[int, list[int]] = {}  # slot -> the tokens in the draft model's cache for that slot

    @staticmethod
    def check_compatible(tokenizer, draft_tokenizer, vocab: int, draft_vocab: int, name: str) -> None:
        """Guesses are token ids: the draft model must cut text into the same tokens as the served one, and not
        guess ids beyond the served model's embedding."""
        if tokenizer.to_str() != draft_tokenizer.to_str():
            raise LmwrightError(f"serve.speculative.draft_model {name}: its tokenizer is not the served model's; "
                                "speculative decoding needs the same tokenizer (a model from the same project, or "
                                "one trained with its tokenizer)")
        if draft_vocab > vocab:
            raise LmwrightError(f"serve.speculative.draft_model {name}: its vocabulary has {draft_vocab} ids, the "
                                f"served model's {vocab}; use a draft model with the served model's vocabulary")

    def admit(self, engine: Engine, req: Request) -> None:
        if len(req.prompt_ids) < self.engine.max_len:  # one row: `extend` would pad every lower slot to this length
            self.engine._prefill(req.prompt_ids, req.slot)
            self.cached[req.slot] = list(req.prompt_ids)
        else:  # longer than the draft model's context: it does not guess for this request
            self.cached.pop(req.slot, None)

    def propose(self, engine: Engine, rows: list[tuple[Request, int]]) -> list[list[int]]:
        drafts: list[list[int]] = [[] for _ in rows]
        live = []  # (row index, slot, guesses wanted) of the rows the draft model can guess for
        for i, (r, k) in enumerate(rows):
            seq = r.prompt_ids + r.output_ids
            k = min(k, self.engine.max_len - len(seq))
            if k > 0 and r.slot in self.cached:
                live.append((i, r.slot, k, seq))
        if not live:
            return drafts
        feed = []  # catch up on what the draft model has not seen (the last token, or the tokens it got wrong)
        for _, slot, _, seq in live:
            have = min(_common(self.cached[slot], seq), len(seq) - 1)  # at least one token in: its logits
            feed.append((slot, have, seq[have:]))
            self.cached[slot] = list(seq)
        for (i, *_), logits in zip(live, self.engine.extend(feed), strict=True):  # feed is in live's order
            drafts[i].append(int(logits[-1].argmax()))
        while more := [(i, slot) for i, slot, k, _ in live if len(drafts[i]) < k]:  # one guess more per pass
            feed = [(slot, len(self.cached[slot]), drafts[i][-1:]) for i, slot in more]
            for (i, slot), logits in zip(more, self.engine.extend(feed), strict=True):
                self.cached[slot].append(drafts[i][-1])
                drafts[i].append(int(logits[-1].argmax()))
        return drafts

    def release(self, slot: int) -> None:
        self.cached.pop(slot, None)


def _common(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def speculative_step(engine: Engine, active: list[Request]) -> bool:
    """One check of every running request's guesses, in one pass of the model; False (nothing done) when no
    request had a guess, or more requests run than the drafter's `max_running` (one, on the fused onnxruntime
    graph), so the engine runs its plain decode step."""
    drafter = engine.drafter
    # a full batch keeps the machine busy: checking guesses would cost more. The fused onnxruntime graph checks one
    # row a call, so there a second request already makes the batched decode step the cheaper way
    if len(active) > (min(1, drafter.max_running) if engine.fused() else drafter.max_running):
        return False
    budgets = [(r, max(0, min(drafter.num_tokens, engine.max_len - engine.lengths[r.slot] - 1,
                              r.params.max_tokens - len(r.output_ids) - 1))) for r in active]
    drafts = drafter.propose(engine, budgets)
    if not any(drafts):
        return False
    rows = [(r.slot, engine.lengths[r.slot], [r.output_ids[-1], *d]) for r, d in zip(active, drafts, strict=True)]
    stats = engine.spec_stats
    for r, d, logits in zip(active, drafts, engine.extend(rows), strict=True):
        before = len(r.output_ids)
        kept, examined = _check(engine, r, d, logits)
        engine.lengths[r.slot] += kept + 1  # the fed token and the kept guesses are in the cache now
        if d:  # a row without guesses decoded plainly in this pass: it is not a check
            r.checks += 1
            r.drafted += examined  # guesses never looked at (the request ended first) are neither kept nor not
            r.accepted += kept
            stats.steps += 1
            stats.drafted += examined
            stats.accepted += kept
            stats.tokens += len(r.output_ids) - before
    return True


def _check(engine: Engine, req: Request, draft: list[int], logits: torch.Tensor) -> tuple[int, int]:
    """Emit the tokens the model makes at the positions of `draft` and one after; returns (guesses kept, guesses
    examined: the request may end before the last)."""
    # greedy: the model's token at every position in one argmax (as `distribution` gives each alone)
    best = logits.argmax(-1).tolist() if greedy(req.params) else None
    for i, guess in enumerate(draft):
        probs = best[i] if best is not None else engine.distribution(req, logits[i])
        if isinstance(probs, int):  # greedy
            keep, token = probs == guess, probs
        else:
            u = float(uniform(req.generator))
            keep = u < float(probs[guess])
            token = guess if keep else resample(probs, guess, req.generator)
        engine._after_token(req, token)
        if not keep or req.finished:
            return i + int(keep), i + 1
    if not req.finished:
        engine._after_token(req, best[len(draft)] if best is not None else engine._sample(req, logits[len(draft)]))
    return len(draft), len(draft)


def resample(probs: torch.Tensor, rejected: int, generator: torch.Generator | None) -> int:
    """A draw from `probs` without the rejected guess: the residual distribution of a point-mass draft."""
    rest = probs.clone()
    rest[rejected] = 0.0
    total = float(rest.sum())
    if total <= 0:  # the guess held all the mass, yet was rejected: only possible by rounding
        return rejected
    return draw(rest, generator)
