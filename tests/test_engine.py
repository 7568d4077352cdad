"""The inference engine: greedy output equals transformers' `generate`, alone and under continuous batching;
sampling settings; stop sequences; streaming; cancellation."""

from __future__ import annotations

import pytest
import torch

import lmwright
from lmwright.model.engine import Engine, SamplingParams

PROMPTS = ["The json module", "Return a new list of", "This function", "Raise ValueError if the", "Decode"]


@pytest.fixture(scope="module")
def model_tok(tiny_run):
    root, _ = tiny_run
    return lmwright.load_model(root / "lmwright-out" / "model"), lmwright.load_tokenizer(root / "lmwright-out" / "model")


@pytest.fixture(scope="module")
def hf_greedy(tiny_run, model_tok):
    from transformers import AutoModelForCausalLM

    root, _ = tiny_run
    hf = AutoModelForCausalLM.from_pretrained(root / "lmwright-out" / "model", dtype=torch.float32).eval()
    _, tok = model_tok
    out = {}
    for p in PROMPTS:
        ids = tok.encode(p).ids
        gen = hf.generate(torch.tensor([ids]), max_new_tokens=24, do_sample=False, eos_token_id=None, pad_token_id=2)
        out[p] = gen[0, len(ids):].tolist()
    return out


def test_greedy_equals_transformers_one_at_a_time_and_batched(model_tok, hf_greedy):
    model, tok = model_tok
    params = SamplingParams(max_tokens=24, temperature=0, ignore_eos=True)
    for p in PROMPTS:  # one stream
        (req,) = Engine(model, tok, max_batch=4).generate([tok.encode(p).ids], params)
        assert req.output_ids == hf_greedy[p], p
    reqs = Engine(model, tok, max_batch=8).generate([tok.encode(p).ids for p in PROMPTS], params)  # together
    assert [r.output_ids for r in reqs] == [hf_greedy[p] for p in PROMPTS]
    assert all(r.finish_reason == "length" for r in reqs)


def test_requests_join_and_leave_between_decode_steps(model_tok, hf_greedy):
    """Continuous batching: a request that arrives mid-way, and more requests than slots, still get exactly the
    output they would get alone."""
    model, tok = model_tok
    eng = Engine(model, tok, max_batch=2)
    short = SamplingParams(max_tokens=6, temperature=0, ignore_eos=True)
    long = SamplingParams(max_tokens=24, temperature=0, ignore_eos=True)
    a = eng.submit(tok.encode(PROMPTS[0]).ids, long)
    b = eng.submit(tok.encode(PROMPTS[1]).ids, short)
    for _ in range(3):
        eng.step()
    c = eng.submit(tok.encode(PROMPTS[2]).ids, long)  # waits for b's slot
    d = eng.submit(tok.encode(PROMPTS[3]).ids, long)
    seen_running = set()
    while eng.step():
        seen_running.add(eng.n_running)
    assert max(seen_running) <= 2
    assert a.output_ids == hf_greedy[PROMPTS[0]]
    assert b.output_ids == hf_greedy[PROMPTS[1]][:6]
    assert c.output_ids == hf_greedy[PROMPTS[2]] and d.output_ids == hf_greedy[PROMPTS[3]]
    assert c.scheduled > b.token_times[-1]  # c joined after b left
    assert sorted(eng.free) == [0, 1]  # every slot released


def test_sampling_is_seeded_and_each_setting_acts(model_tok):
    model, tok = model_tok
    eng = Engine(model, tok, max_batch=4)
    ids = tok.encode(PROMPTS[0]).ids

    def run(**kw):
        return eng.generate([ids], SamplingParams(max_tokens=16, ignore_eos=True, **kw))[0].output_ids

    assert run(temperature=1.0, seed=3) == run(temperature=1.0, seed=3)
    assert run(temperature=1.0, seed=3) != run(temperature=1.0, seed=4)
    greedy = run(temperature=0)
    assert run(temperature=1.0, top_k=1, seed=5) == greedy  # top-1 is greedy
    assert run(temperature=1.0, top_p=1e-6, seed=5) == greedy  # the smallest nucleus is the top token
    assert run(temperature=0, repetition_penalty=5.0) != greedy
    r = eng.generate([ids], SamplingParams(max_tokens=16, temperature=0, repetition_penalty=5.0, ignore_eos=True))[0]
    assert len(set(r.output_ids)) > len(set(greedy))  # the penalty spreads the choice


def test_stop_sequences_streaming_and_cancel(model_tok):
    model, tok = model_tok
    eng = Engine(model, tok, max_batch=2)
    ids = tok.encode(PROMPTS[0]).ids
    full = eng.generate([ids], SamplingParams(max_tokens=24, temperature=0, ignore_eos=True))[0].text
    stop = full[5:8]
    assert stop and stop in full
    deltas: list[str] = []
    req = eng.submit(ids, SamplingParams(max_tokens=24, temperature=0, ignore_eos=True, stop=[stop]),
                     lambda r, d, done: deltas.append(d))
    eng.run_until_done()
    assert req.finish_reason == "stop" and req.text == full[: full.index(stop)]
    assert "".join(deltas) == req.text  # the stream never showed the stop sequence or anything after it
    gone = eng.submit(ids, SamplingParams(max_tokens=24, temperature=0, ignore_eos=True))
    eng.step()
    eng.cancel(gone)
    eng.run_until_done()
    assert gone.finish_reason == "abort" and len(gone.output_ids) < 24 and sorted(eng.free) == [0, 1]
    ended: list[bool] = []
    queued = eng.submit(ids, SamplingParams(), lambda r, d, done: ended.append(done))  # no step yet: waiting
    eng.cancel(queued)  # leaves the queue now, not when a slot frees (a server's queue limit counts the queue)
    assert eng.n_waiting == 0 and queued.finish_reason == "abort" and ended == [True] and not queued.output_ids
    with pytest.raises(ValueError, match="context"):
        eng.submit(list(range(10)) * 10, SamplingParams())
