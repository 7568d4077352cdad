"""Risk checks: canary exposure rises when a model memorises the canary; verbatim continuation; the
counterfactual bias gap; PII and blocklist rates in generations."""

from __future__ import annotations

import pytest
import torch

from lmwright.data.canaries import make_canaries, plant
from lmwright.evaluate.risk import counterfactual_bias, exposure, generation_safety, verbatim_rate
from lmwright.model.config import ModelConfig
from lmwright.model.llama import LlamaLM
from lmwright.tokenizer import train_tokenizer

TEXTS = ["The json module encodes and decodes JSON documents.", "Return a new list of the items.",
         "Digits 0 1 2 3 4 5 6 7 8 9 appear in version numbers such as 3 1 2."] * 20


@pytest.fixture(scope="module")
def tok():
    canary = make_canaries([1], seed=5)[0]
    return train_tokenizer([*TEXTS, canary["text"]], 300, 1)


def _model(tok, seed=0) -> LlamaLM:
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=tok.get_vocab_size(), n_layers=2, d_model=48, n_heads=4, n_kv_heads=2, ffn_dim=96,
                      max_seq_len=64)
    return LlamaLM(cfg)


def _train_on(model: LlamaLM, tok, texts: list[str], steps: int) -> None:
    ids = [torch.tensor(tok.encode(t).ids) for t in texts]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(steps):
        x = ids[step % len(ids)][None]
        loss = model(x[:, :-1], x[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def test_canaries_are_seeded_and_planted_as_often_as_asked():
    a, b = make_canaries([1, 4, 16], seed=3), make_canaries([1, 4, 16], seed=3)
    assert a == b and len({c["secret"] for c in a}) == 3
    assert all(len(c["secret"].split()) == 6 for c in a)
    texts = plant(["x"] * 10, a, seed=3)
    assert len(texts) == 10 + 21
    assert [texts.count(c["text"]) for c in a] == [1, 4, 16]


def test_exposure_is_low_for_a_fresh_model_and_high_once_the_canary_is_memorised(tok):
    canary = make_canaries([1], seed=5)[0]
    model = _model(tok)
    fresh = exposure(model, tok, canary, candidates=300, seed=1)
    _train_on(model, tok, [canary["text"], *TEXTS[:3]], steps=240)
    learnt = exposure(model, tok, canary, candidates=300, seed=1)
    assert fresh["exposure"] < 6, fresh
    assert learnt["exposure"] > 12, learnt
    assert learnt["sampled_rank"] == 1  # above every sampled alternative
    assert learnt["logprob"] > fresh["logprob"] + 5


def test_verbatim_rate_counts_exact_continuations(tok):
    model = _model(tok, seed=1)
    doc = "The json module encodes and decodes JSON documents, and the csv module reads tables."
    before = verbatim_rate(model, tok, [doc], prompt_tokens=6, new_tokens=6, limit=4)
    _train_on(model, tok, [doc], steps=150)
    after = verbatim_rate(model, tok, [doc], prompt_tokens=6, new_tokens=6, limit=4)
    assert before["n"] == after["n"] == 1
    assert before["rate"] == 0.0 and after["rate"] == 1.0 and after["token_match"] == 1.0
    assert verbatim_rate(model, tok, ["short"], 6, 6, 4)["n"] == 0  # too short to probe: not counted


def test_bias_gap_shows_a_taught_preference(tok):
    model = _model(tok, seed=2)
    templates = [{"context": "{term} wrote", "continuation": " the json module."}]
    groups = {"a": ["Digits"], "b": ["Return"]}
    before = counterfactual_bias(model, tok, templates, groups)
    _train_on(model, tok, ["Digits wrote the json module.", "Return wrote a new list."], steps=160)
    after = counterfactual_bias(model, tok, templates, groups)
    assert after["gap_per_group"]["a"] > 0 > after["gap_per_group"]["b"]
    assert after["max_abs_gap"] > before["max_abs_gap"] + 1
    assert sum(after["gap_per_group"].values()) == pytest.approx(0, abs=1e-6)  # gaps are from the group mean


def test_generation_safety_counts_pii_and_blocklisted_words():
    texts = ["write to alice@example.com today", "the json module", "you are a fucking idiot", "plain text"]
    s = generation_safety(texts)
    assert s["pii_rate"] == 0.25 and s["pii_types"] == {"email": 1}
    assert s["blocklist_rate"] == 0.25 and s["n"] == 4


def test_continuation_logprobs_are_the_summed_log_softmax_of_the_continuation_tokens(tok):
    # the head runs only where a continuation token is predicted; the figure must be the full forward's
    from lmwright.evaluate.classify import continuation_logprobs

    model = _model(tok, seed=3).eval()
    contexts = ["The json module", "Return a new", "Digits " * 40]  # the last is cut to the model's context
    conts = [" encodes JSON documents.", " list", " 0 1 2"]
    got = continuation_logprobs(model, tok, contexts, conts, batch=2)
    for c, t, g in zip(contexts, conts, got, strict=True):
        ids = (tok.encode(c).ids + tok.encode(t, add_special_tokens=False).ids)[-(model.cfg.max_seq_len + 1):]
        n = len(tok.encode(t, add_special_tokens=False).ids)
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([ids[:-1]])).float()[0], -1)
        want = sum(logp[p, ids[p + 1]].item() for p in range(len(ids) - 1 - n, len(ids) - 1))
        assert g == pytest.approx(want, abs=1e-4)


def test_greedy_continuations_through_the_engine_equal_recomputing_the_prefix(tok):
    # the engine's KV cache path (prompt + continuation within the context) and the sliding recompute past it
    from lmwright.evaluate.generation import greedy_batch

    model = _model(tok, seed=4).eval()
    prompts = [tok.encode(t).ids[:6] for t in TEXTS[:3]]

    def naive(p: list[int], n: int) -> list[int]:
        ctx = list(p)
        with torch.no_grad():
            for _ in range(n):
                ctx.append(int(model(torch.tensor([ctx[-model.cfg.max_seq_len:]]))[0, -1].argmax()))
        return ctx[len(p):]

    assert greedy_batch(model, tok, prompts, 12, batch=2) == [naive(p, 12) for p in prompts]
    assert greedy_batch(model, tok, prompts, 0) == [[], [], []]
    n = model.cfg.max_seq_len  # past the context: no cache, the prefix slides
    assert greedy_batch(model, tok, prompts[:1], n) == [naive(prompts[0], n)]
