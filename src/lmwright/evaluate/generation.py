"""Generation metrics and the continuation task.

BLEU and chrF come from sacrebleu (corpus level, its default tokenisation, so figures compare with published
ones); ROUGE-1/2/L from Google's rouge-score (F-measure, Porter stemming, averaged over examples); exact match
after SQuAD's normalisation (lower case, no punctuation, no articles, single spaces).

The continuation task needs no labelled data: each document's first `prompt_tokens` tokens are the prompt and
its next `new_tokens` tokens the reference; the model continues greedily.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Sequence

import numpy as np
import torch

from lmwright.tokenizer import BOS

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalise_answer(s: str) -> str:
    return " ".join(_ARTICLES.sub(" ", s.lower().translate(_PUNCT)).split())


def exact_match(predictions: Sequence[str], references: Sequence[str]) -> np.ndarray:
    """1.0 where the normalised prediction equals the normalised reference."""
    return np.array([float(normalise_answer(p) == normalise_answer(r))
                     for p, r in zip(predictions, references, strict=True)])


def bleu(predictions: Sequence[str], references: Sequence[str]) -> float:
    import sacrebleu

    return float(sacrebleu.corpus_bleu(list(predictions), [list(references)]).score)


def chrf(predictions: Sequence[str], references: Sequence[str]) -> float:
    import sacrebleu

    return float(sacrebleu.corpus_chrf(list(predictions), [list(references)]).score)


def corpus_scorer(name: str, predictions: Sequence[str], references: Sequence[str]) -> Callable[[np.ndarray], float]:
    """`score(indices)`: corpus BLEU or chrF (`name`) of the examples at `indices`, as `bleu` / `chrf` give, from
    each example's n-gram counts taken once. A corpus score is a function of the counts summed over its examples,
    so a bootstrap resample sums rows instead of re-tokenising the text (sacrebleu's own paired bootstrap does the
    same); recomputing sacrebleu per resample cost seconds per interval."""
    from sacrebleu.metrics import BLEU, CHRF

    metric = {"bleu": BLEU, "chrf": CHRF}[name]()
    stats = np.array(metric._extract_corpus_statistics(list(predictions), [list(references)]), dtype=np.int64)
    return lambda idx: float(metric._compute_score_from_stats(stats[idx].sum(0).tolist()).score)


def rouge(predictions: Sequence[str], references: Sequence[str]) -> dict[str, np.ndarray]:
    """Per-example ROUGE-1, ROUGE-2 and ROUGE-L F-measures (their mean is the corpus figure)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    rows = [scorer.score(r, p) for p, r in zip(predictions, references, strict=True)]  # score(target, prediction)
    return {k: np.array([row[k].fmeasure for row in rows]) for k in ("rouge1", "rouge2", "rougeL")}


def generation_metrics(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """BLEU and chrF (0-100, sacrebleu), ROUGE-1/2/L and exact match (0-1)."""
    if not predictions:
        return {"n": 0}
    r = rouge(predictions, references)
    return {"bleu": bleu(predictions, references), "chrf": chrf(predictions, references),
            "rouge1": float(r["rouge1"].mean()), "rouge2": float(r["rouge2"].mean()),
            "rouge_l": float(r["rougeL"].mean()),
            "exact_match": float(exact_match(predictions, references).mean()), "n": len(predictions)}


@torch.no_grad()
def greedy_batch(model: torch.nn.Module, tok, prompts: list[list[int]], new_tokens: int,
                 batch: int = 32) -> list[list[int]]:
    """Greedy continuations of equal-length prompts, exactly `new_tokens` each (no stop at end-of-sequence:
    fixed-length references). Through the engine's KV cache when prompt and continuation fit the model's context
    (a token's step reads the cache instead of recomputing the whole prefix: a tenth of the work at 32 + 16
    tokens); beyond it, the prefix slides, a batch at a time, as generation past the context does."""
    model.eval()
    limit = model.cfg.max_seq_len
    if not prompts or new_tokens <= 0:
        return [[] for _ in prompts]
    if (longest := max(map(len, prompts)) + new_tokens) <= limit:
        from lmwright.model.engine import Engine, SamplingParams

        # the cache only as long as the longest continuation, not the model's whole context
        engine = Engine(model, tok, max_batch=min(batch, len(prompts)), eos_ids=set(), max_len=longest)
        reqs = engine.generate(prompts, SamplingParams(max_tokens=new_tokens, temperature=0, ignore_eos=True))
        return [r.output_ids for r in reqs]
    device = next(model.parameters()).device
    out: list[list[int]] = []
    for i in range(0, len(prompts), batch):
        ctx = torch.tensor(prompts[i: i + batch], dtype=torch.long, device=device)
        start = ctx.shape[1]
        for _ in range(new_tokens):
            nxt = model.lm_head(model.hidden(ctx[:, -limit:])[:, -1]).argmax(-1, keepdim=True)
            ctx = torch.cat([ctx, nxt], dim=1)
        out += ctx[:, start:].tolist()
    return out


def continuation_examples(tok, texts: Sequence[str], prompt_tokens: int, new_tokens: int,
                          limit: int) -> list[tuple[int, list[int], list[int]]]:
    """(document index, prompt ids with BOS, reference ids) for the first `limit` documents long enough."""
    bos = tok.token_to_id(BOS)
    rows = []
    for i, text in enumerate(texts):
        ids = tok.encode(text, add_special_tokens=False).ids
        if len(ids) >= prompt_tokens + new_tokens:
            rows.append((i, [bos, *ids[:prompt_tokens]], ids[prompt_tokens: prompt_tokens + new_tokens]))
        if len(rows) == limit:
            break
    return rows


def greedy_continuations(model: torch.nn.Module, tok, texts: Sequence[str], prompt_tokens: int, new_tokens: int,
                         limit: int) -> tuple[list, list[list[int]], list[float]]:
    """The continuation examples, the model's greedy tokens for each, and the share of them that match."""
    rows = continuation_examples(tok, texts, prompt_tokens, new_tokens, limit)
    gen = greedy_batch(model, tok, [p for _, p, _ in rows], new_tokens)
    match = [float(np.mean(np.array(g) == np.array(r))) for g, (_, _, r) in zip(gen, rows, strict=True)]
    return rows, gen, match


def continuation_task(model: torch.nn.Module, tok, texts: Sequence[str], prompt_tokens: int, new_tokens: int,
                      limit: int) -> dict:
    """Continue held-out documents; the metrics plus the per-example rows (for slices and the bootstrap)."""
    rows, gen, match = greedy_continuations(model, tok, texts, prompt_tokens, new_tokens, limit)
    preds = [tok.decode(g) for g in gen]
    refs = [tok.decode(r) for _, _, r in rows]
    return {"metrics": generation_metrics(preds, refs), "doc_index": [i for i, _, _ in rows],
            "predictions": preds, "references": refs,
            "prompts": [tok.decode(p[1:]) for _, p, _ in rows], "token_match": match}
