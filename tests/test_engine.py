"""The inference engine: greedy output equals transformers' `generate`, alone and under continuous batching;
sampling settings; stop sequences; streaming; cancellation."""

from __future__ import annotations

import copy

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


# -- speculative decoding (model/speculate.py) ------------------------------------------------------------------

def test_prompt_lookup_takes_the_latest_longest_match():
    from lmwright.model.speculate import lookup

    seq = [1, 2, 3, 9, 1, 2, 3, 4, 5, 7, 2, 3]
    assert lookup(seq, 3, 3, 1) == [4, 5, 7]  # "2 3" last seen before 4 5 7 (nearer than before 9)
    assert lookup([8, 8, 8, 8, 8, 8], 3, 3, 1) == [8, 8, 8]  # a loop: the occurrence with 3 tokens after it
    assert lookup(seq, 1, 3, 1) == [4]
    assert lookup([5, 6, 7], 3, 3, 1) == []  # nothing repeats
    assert lookup(seq, 0, 3, 1) == []


def _drafters(model, tok, other):
    from lmwright.model.speculate import DraftModel, PromptLookup

    return {"prompt lookup": PromptLookup(num_tokens=4, max_running=8),
            "itself as draft": DraftModel(Engine(model, tok, max_batch=8), num_tokens=3, max_running=8),  # all kept
            "another model": DraftModel(Engine(other, tok, max_batch=8), num_tokens=4, max_running=8)}


@pytest.fixture(scope="module")
def other_model(two_versions):
    from lmwright.core.models import resolve_model
    from lmwright.core.workspace import Workspace

    path, _, _ = resolve_model(Workspace.open(two_versions), "tiny@2")
    return lmwright.load_model(path)


def test_speculative_greedy_equals_transformers_alone_and_under_continuous_batching(model_tok, hf_greedy,
                                                                                   other_model):
    model, tok = model_tok
    params = SamplingParams(max_tokens=24, temperature=0, ignore_eos=True)
    for name, drafter in _drafters(model, tok, other_model).items():
        for p in PROMPTS[:2]:  # alone
            eng = Engine(model, tok, max_batch=8, drafter=drafter)
            (req,) = eng.generate([tok.encode(p).ids], params)
            assert req.output_ids == hf_greedy[p], (name, p)
        eng = Engine(model, tok, max_batch=2, drafter=drafter)  # more requests than slots: they join and leave
        short = SamplingParams(max_tokens=5, temperature=0, ignore_eos=True)
        reqs = [eng.submit(tok.encode(p).ids, short if i == 1 else params) for i, p in enumerate(PROMPTS)]
        eng.run_until_done()
        assert [r.output_ids for r in reqs] == [hf_greedy[p][:len(r.output_ids)] for p, r in zip(PROMPTS, reqs, strict=True)]
        assert [len(r.output_ids) for r in reqs] == [24, 5, 24, 24, 24], name
        stats = eng.spec_stats
        assert stats.accepted > 0 and stats.tokens_per_step > 1, (name, stats)
        assert sum(r.accepted for r in reqs) == stats.accepted
        if name == "itself as draft":
            assert stats.acceptance_rate == 1.0


def test_speculative_sampling_keeps_the_models_distribution(model_tok):
    """The accept/reject rule: each token is distributed as the model's (after temperature and top-k) whatever the
    guess; checked exactly on a fixed distribution, then end to end against the model's own sequence
    probabilities (top-k 2, three tokens: eight sequences)."""
    import itertools

    from lmwright.model.speculate import PromptLookup, resample

    p = torch.tensor([0.5, 0.2, 0.15, 0.1, 0.05])
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(5)
    for _ in range(20000):
        token = 2 if float(torch.rand(1, generator=g)) < p[2] else resample(p, 2, g)
        counts[token] += 1
    assert torch.allclose(counts / 20000, p, atol=0.012)

    model, tok = model_tok
    prompt = tok.encode("The json module").ids

    def probs(seq):
        with torch.no_grad():
            logits = model(torch.tensor([seq]))[0, -1] / 0.9
        kth = torch.topk(logits, 2).values[-1]
        return torch.softmax(logits.masked_fill(logits < kth, float("-inf")), -1)

    exact = {}
    for a in torch.topk(probs(prompt), 2).indices.tolist():
        for b in torch.topk(probs(prompt + [a]), 2).indices.tolist():
            pb = probs(prompt + [a, b])
            for c in torch.topk(pb, 2).indices.tolist():
                exact[(a, b, c)] = float(probs(prompt)[a] * probs(prompt + [a])[b] * pb[c])

    class Always:  # guesses the same two tokens every time: often wrong, so the rule's both branches run
        num_tokens, max_running = 2, 16

        def admit(self, engine, req):
            pass

        def propose(self, engine, rows):
            return [list(next(iter(exact)))[1:1 + k] for _, k in rows]

        def release(self, slot):
            pass

    n = 600
    for drafter in (Always(), PromptLookup(num_tokens=2, max_running=16)):
        eng = Engine(model, tok, max_batch=16, drafter=drafter)
        reqs = [eng.submit(prompt, SamplingParams(max_tokens=3, temperature=0.9, top_k=2, seed=s, ignore_eos=True))
                for s in range(n)]
        eng.run_until_done()
        seen = {k: 0 for k in exact}
        for r in reqs:
            seen[tuple(r.output_ids)] += 1
        tv = 0.5 * sum(abs(seen[k] / n - exact[k]) for k in itertools.chain(exact))
        assert tv < 0.08, (type(drafter).__name__, tv)
        assert isinstance(drafter, PromptLookup) or eng.spec_stats.drafted > 0


def test_onnxruntime_backend_greedy_equals_transformers_alone_batched_and_speculating(model_tok, hf_greedy):
    """`serve.backend: onnxruntime`: the decode step exported to onnxruntime gives `generate`'s tokens one at a
    time, under continuous batching (more requests than slots, joining and leaving), and with prompt lookup."""
    from lmwright.model.speculate import PromptLookup

    model, tok = model_tok
    eng = Engine(model, tok, max_batch=2, backend="onnxruntime")
    assert eng.warm_up() > 0 and eng.onnx_step.kind == "exported" and eng.compiled is None  # 8-wide heads
    params = SamplingParams(max_tokens=24, temperature=0, ignore_eos=True)
    (req,) = eng.generate([tok.encode(PROMPTS[0]).ids], params)
    assert req.output_ids == hf_greedy[PROMPTS[0]]
    short = SamplingParams(max_tokens=5, temperature=0, ignore_eos=True)
    reqs = [eng.submit(tok.encode(p).ids, short if i == 1 else params) for i, p in enumerate(PROMPTS)]
    eng.run_until_done()
    assert [r.output_ids for r in reqs] == [hf_greedy[p][:len(r.output_ids)] for p, r in zip(PROMPTS, reqs, strict=True)]
    assert [len(r.output_ids) for r in reqs] == [24, 5, 24, 24, 24]
    assert sorted(eng.free) == [0, 1]
    spec = Engine(model, tok, max_batch=2, backend="onnxruntime", drafter=PromptLookup(num_tokens=4, max_running=8))
    spec.onnx_step = eng.onnx_step  # an exported step holds no cache (an in-place one is refused): shared, not rebuilt
    reqs = spec.generate([tok.encode(p).ids for p in PROMPTS], params)
    assert [r.output_ids for r in reqs] == [hf_greedy[p] for p in PROMPTS]
    assert spec.spec_stats.steps > 0


def test_backend_is_checked_with_the_install_line(model_tok, monkeypatch):
    import sys

    from lmwright.errors import LmwrightError

    model, tok = model_tok
    with pytest.raises(ValueError, match="unknown backend 'tensorrt'"):
        Engine(model, tok, backend="tensorrt")
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # as if it were not installed
    with pytest.raises(LmwrightError, match=r'needs onnxscript: pip install "lmwright\[export\]"'):
        Engine(model, tok, backend="onnxruntime")


def test_incremental_detokenization_equals_decoding_everything(model_tok):
    """The engine decodes only the tokens since the text was last whole; at every token the text equals the
    tokenizer's decode of the whole output, for random ids (byte tokens that cut characters in two included)."""
    import random

    from lmwright.model.engine import Request

    model, tok = model_tok
    eng = Engine(model, tok, max_batch=1)
    vocab = tok.get_vocab_size()
    accented = tok.encode("é ü 日本語 🙂 naïve").ids  # multi-byte characters, split across byte-level tokens
    rng = random.Random(0)
    for trial in range(200):
        req = Request("r", [1], SamplingParams(), lambda r, t, f: None)
        pool = accented if trial % 2 else range(vocab)
        for _ in range(rng.randint(1, 40)):
            req.output_ids.append(rng.choice(list(pool)))
            assert eng._detokenize(req) == tok.decode(req.output_ids), (trial, req.output_ids)


def test_other_decoders_decode_the_whole_output(model_tok):
    """A SentencePiece-style decoder strips the leading space of whatever it decodes, so decoding in pieces would
    lose spaces: such tokenizers get the whole output decoded at every token."""
    from tokenizers import Tokenizer, decoders, models

    from lmwright.model.engine import Request

    model, _ = model_tok
    sp = Tokenizer(models.WordLevel({"<unk>": 0, "▁Hello": 1, "▁world": 2}, unk_token="<unk>"))
    sp.decoder = decoders.Metaspace()
    eng = Engine(model, sp, max_batch=1, eos_ids={0})
    assert not eng.incremental_text
    req = Request("r", [1], SamplingParams(), lambda r, t, f: None)
    for tok_id in (1, 2, 2):
        req.output_ids.append(tok_id)
        text = eng._detokenize(req)
    assert text == sp.decode([1, 2, 2]) == "Hello world world"


def test_onnxruntime_backend_refuses_what_it_cannot_run(model_tok):
    from lmwright.errors import LmwrightError

    model, tok = model_tok
    with pytest.raises(LmwrightError, match="float32 models on the CPU; this one is torch.float64"):
        Engine(copy.deepcopy(model).double(), tok, backend="onnxruntime")


@pytest.mark.parametrize("head_dim", [16, 32])
def test_fused_onnxruntime_graph_computes_the_decode_step(head_dim):
    """onnx_fused.py's graph of onnxruntime's fused operators (GroupQueryAttention and fused RMSNorm) gives the
    engine's own decode step, rows at different lengths, against `Engine._decode_core`: the logits, each row's
    new key and value written into the engine's cache at its position, and nothing else in the cache touched;
    then a whole engine run on it gives the PyTorch engine's tokens under continuous batching (more requests
    than slots: rows just prefilled sit beside rows decoding). The trained tiny model's heads (8) are below what GroupQueryAttention's CPU
    kernel takes, so this uses random models whose logits are peaked enough that greedy has no near-ties."""
    from lmwright.model.config import ModelConfig
    from lmwright.model.llama import LlamaLM
    from lmwright.model.onnx_step import OnnxStep
    from lmwright.tokenizer import train_tokenizer

    tok = train_tokenizer([SamplingParams.__doc__ or "", Engine.__doc__ or "", __doc__ or ""] * 20, 300, 1)
    cfg = ModelConfig(vocab_size=tok.get_vocab_size(), n_layers=2, d_model=4 * head_dim, n_heads=4, n_kv_heads=2,
                      ffn_dim=128, max_seq_len=64, init="normal", init_std=0.2)
    model = LlamaLM(cfg)
    model.init_weights(0)
    eng = Engine(model, tok, max_batch=4, backend="onnxruntime")
    step = OnnxStep.decode(eng)  # threads timed: the timing writes only the last position of each slot
    assert step.kind == "fused" and step.in_place and step.threads in (1, torch.get_num_threads())
    torch.manual_seed(0)
    eng.k_cache.normal_()
    eng.v_cache.normal_()
    for pos in ([9], [5, 40, 17], [1, 2, 3, 30]):
        n, span = len(pos), max(pos) + 1
        tokens, pos_t = torch.randint(0, cfg.vocab_size, (n,)), torch.tensor(pos)
        before_k, before_v = eng.k_cache.clone(), eng.v_cache.clone()
        with torch.no_grad():
            want_logits, want_k, want_v = eng._decode_core(tokens, pos_t, eng.k_cache[:, :n, :, :span],
                                                           eng.v_cache[:, :n, :, :span])
        logits = step.decode(tokens.tolist(), pos)  # writes each row's new key and value into the cache
        assert torch.allclose(logits, want_logits, atol=1e-4), pos
        rows = torch.arange(n)
        assert torch.allclose(eng.k_cache[:, rows, :, pos_t], want_k.transpose(0, 1), atol=1e-5), pos
        assert torch.allclose(eng.v_cache[:, rows, :, pos_t], want_v.transpose(0, 1), atol=1e-5), pos
        written = torch.zeros_like(eng.k_cache, dtype=torch.bool)
        written[:, rows, :, pos_t] = True
        assert torch.equal(eng.k_cache[~written], before_k[~written]) and torch.equal(eng.v_cache[~written],
                                                                                        before_v[~written])
    # several new tokens of one row (prefill from 0, a check of guesses, one ending at the context's end) against
    # `Engine._extend_core`: the logits after each, the keys and values written at start.., nothing else touched
    for slot, start, s in ((2, 0, 7), (1, 9, 3), (3, 60, 4)):
        tokens = torch.randint(0, cfg.vocab_size, (1, s))
        before_k, before_v = eng.k_cache.clone(), eng.v_cache.clone()
        with torch.no_grad():
            want_logits, want_k, want_v = eng._extend_core(
                tokens, start + torch.arange(s)[None], torch.tensor([start]),
                eng.k_cache[:, slot: slot + 1, :, :max(start, 1)], eng.v_cache[:, slot: slot + 1, :, :max(start, 1)])
        logits = step.extend(slot, start, tokens[0].tolist())
        assert torch.allclose(logits, want_logits[0], atol=1e-4), (slot, start)
        assert torch.allclose(step.extend(slot, start, tokens[0].tolist(), last_only=True), want_logits[0, -1:],
                              atol=1e-4)
        assert torch.allclose(eng.k_cache[:, slot, :, start: start + s], want_k[:, 0], atol=1e-5)
        assert torch.allclose(eng.v_cache[:, slot, :, start: start + s], want_v[:, 0], atol=1e-5)
        written = torch.zeros_like(eng.k_cache, dtype=torch.bool)
        written[:, slot, :, start: start + s] = True
        assert torch.equal(eng.k_cache[~written], before_k[~written]) and torch.equal(eng.v_cache[~written],
                                                                                        before_v[~written])
    with pytest.raises(ValueError, match="run past the context"):
        step.extend(0, 62, [1, 2, 3])
    eng.k_cache.zero_()
    eng.v_cache.zero_()
    eng.onnx_step = step
    prompts = [tok.encode(t).ids for t in ("The engine", "Sampling settings", "A request", "Continuous", "x", "It")]
    lengths = [3, 12, 7, 12, 5, 12]  # requests leave at different steps, and the waiting ones join beside the rest

    def run(engine: Engine) -> list:
        reqs = [engine.submit(p, SamplingParams(max_tokens=k, temperature=0, ignore_eos=True))
                for p, k in zip(prompts, lengths, strict=True)]
        engine.run_until_done()
        return reqs

    plain_engine = Engine(model, tok, max_batch=4)
    ours, plain = run(eng), run(plain_engine)
    assert [r.output_ids for r in ours] == [r.output_ids for r in plain]
    # and the cache each slot's last request left is the PyTorch engine's, over every position it wrote (a row
    # that sat out a step, just prefilled, kept its prompt's keys)
    for r in ours:
        if r is max((q for q in ours if q.slot == r.slot), key=lambda q: q.scheduled):
            n = len(r.prompt_ids) + len(r.output_ids) - 1
            for mine, theirs in ((eng.k_cache, plain_engine.k_cache), (eng.v_cache, plain_engine.v_cache)):
                assert torch.allclose(mine[:, r.slot, :, :n], theirs[:, r.slot, :, :n], atol=1e-4), r.slot
    # prompt scoring (a drift feature) reads the fused prefill's block outputs: the PyTorch engine's figure, for a
    # short prompt and for one longer than the prompt lengths whose bindings are kept (16)
    scoring = [Engine(model, tok, max_batch=4, backend=b, score_prompts=True) for b in ("onnxruntime", "torch")]
    long = tok.encode(" ".join([SamplingParams.__doc__ or ""] * 4)).ids[:40]
    for p in (prompts[1], long):
        scored = [e.generate([p], SamplingParams(max_tokens=8, temperature=0, ignore_eos=True))[0] for e in scoring]
        nats = [e.score_prompt(r) for e, r in zip(scoring, scored, strict=True)]
        assert scoring[0].fused() and nats[1] > 0 and nats[0] == pytest.approx(nats[1], rel=1e-4)
        assert scored[0].output_ids == scored[1].output_ids
    assert len(long) == 40
    # with prompt lookup (the checking pass beside the in-place step) the tokens are the PyTorch engine's too
    from lmwright.model.speculate import PromptLookup

    # (the fused graph checks one request's guesses at a time: alone, and batched where it decodes plainly)
    spec = Engine(model, tok, max_batch=4, backend="onnxruntime", drafter=PromptLookup(num_tokens=3, max_running=4))
    spec.warm_up()
    assert [r.output_ids for r in run(spec)] == [r.output_ids for r in plain]
    for p, k, want in zip(prompts, lengths, plain, strict=True):
        assert spec.generate([p], SamplingParams(max_tokens=k, temperature=0, ignore_eos=True))[0].output_ids == \
            want.output_ids
    assert spec.spec_stats.steps > 0
    other = Engine(model, tok, max_batch=4, backend="onnxruntime")
    other.onnx_step = step  # bound to eng's cache: refused, not silently writing eng's requests
    with pytest.raises(ValueError, match="another engine's cache"):
        other.generate([prompts[0]], SamplingParams(max_tokens=2, temperature=0))


def test_draw_follows_the_weights_and_never_picks_a_zero():
    """model/sampling.py's inverse-CDF draw: unnormalised weights with zeros among them (as top-k and top-p leave
    them), 40,000 seeded draws; each token's frequency within 4 standard errors of its probability."""
    from lmwright.model.sampling import draw

    weights = torch.tensor([0.0, 3.0, 0.0, 1.0, 0.5, 0.0, 2.5, 0.0])
    g = torch.Generator().manual_seed(0)
    counts = torch.bincount(torch.tensor([draw(weights, g) for _ in range(40_000)]), minlength=8).double()
    p = weights.double() / weights.sum()
    assert torch.all(counts[p == 0] == 0)
    se = (p * (1 - p) / 40_000).sqrt()
    assert torch.all((counts / 40_000 - p).abs() <= 4 * se + 1e-12), counts
    assert draw(torch.tensor([0.0, 0.0, 1.0]), g) == 2


def test_pick_samples_rows_together_as_each_alone():
    """The engine's batched sampling (`pick`: one softmax for every row sampled at a temperature alone) draws the
    token each row's own `distribution` and `draw` would, from the same seeded generators; greedy rows, rows with
    top-k or a penalty, and a row of nans (the top token) beside them."""
    from types import SimpleNamespace

    from lmwright.model.sampling import distribution, draw, pick

    settings = [SamplingParams(temperature=0.7), SamplingParams(temperature=0), SamplingParams(temperature=1.3),
                SamplingParams(temperature=0.9, top_k=5), SamplingParams(temperature=1.0, repetition_penalty=1.3),
                SamplingParams(temperature=2.0), SamplingParams(temperature=0.5)]
    logits = torch.randn(len(settings), 300, generator=torch.Generator().manual_seed(1)) * 3
    logits[6] = float("nan")

    def requests(trial: int) -> list:  # each row's own seeded generator, `trial` draws along
        reqs = [SimpleNamespace(params=p, generator=torch.Generator().manual_seed(10 + i), prompt_ids=[1, 2],
                                output_ids=[3]) for i, p in enumerate(settings)]
        for r in reqs:
            torch.rand(trial, generator=r.generator, dtype=torch.float64)
        return reqs

    def after(reqs: list) -> list[float]:  # each generator's next number: the same draws were taken
        return [float(torch.rand((), generator=r.generator, dtype=torch.float64)) for r in reqs]

    for trial in range(20):
        want, alone = [], requests(trial)
        for r, row in zip(alone, logits, strict=True):
            probs = distribution(r.params, row.clone(), lambda r=r: set(r.prompt_ids) | set(r.output_ids))
            want.append(probs if isinstance(probs, int) else draw(probs, r.generator))
        drawn = after(alone)
        for numpy_argmax in (False, True):
            together = requests(trial)
            assert pick(together, logits.clone(), numpy_argmax=numpy_argmax) == want
            assert after(together) == drawn  # a draw only where alone drew too (none for the row of nans)
    assert len({tuple(pick(requests(t), logits.clone())) for t in range(20)}) > 5  # the draws do differ
