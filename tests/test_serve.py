"""`lmwright serve` against the official `openai` client on a live server (loopback): models, completions, chat,
streaming, errors; keys, rate limits, body and token limits, timeouts; the metrics text; the request log,
feedback and safety flags; the chat page in Chromium; `lmwright chat` in a terminal."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import openai
import pytest

from lmwright.core.store import Store
from lmwright.core.workspace import Workspace
from lmwright.errors import LmwrightError
from lmwright.ops.deploy import build_app
from lmwright.serve.auth import hash_key
from tests.conftest import live


@pytest.fixture
def served(tiny_copy):
    """(base url, workspace) of the tiny model served with the default settings."""
    ws = Workspace.open(tiny_copy)
    with live(build_app(ws)) as url:
        yield url, ws


def client(url: str, key: str = "none") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


def test_models_chat_and_completions_with_the_openai_client(served):
    url, ws = served
    c = client(url)
    assert [m.id for m in c.models.list().data] == ["tiny-assistant", "tiny"]  # the assistant first: the default
    assert c.models.retrieve("tiny").id == "tiny" and c.models.retrieve("tiny-assistant").max_model_len == 64
    with pytest.raises(openai.NotFoundError):
        c.models.retrieve("gpt-4")
    chat = c.chat.completions.create(model="tiny-assistant", messages=[{"role": "system", "content": "Be brief."},
                                                             {"role": "user", "content": "What does json do?"}],
                                     max_tokens=8, temperature=0)
    assert chat.object == "chat.completion" and chat.choices[0].message.role == "assistant"
    assert chat.model == "tiny-assistant"
    assert chat.choices[0].finish_reason in ("stop", "length")
    assert chat.usage.completion_tokens <= 8 and chat.usage.prompt_tokens > 5
    assert chat.usage.total_tokens == chat.usage.prompt_tokens + chat.usage.completion_tokens
    again = c.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "What does json do?"}],
                                      max_tokens=8, temperature=0.9, seed=11)
    same = c.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "What does json do?"}],
                                     max_tokens=8, temperature=0.9, seed=11)
    assert again.choices[0].message.content == same.choices[0].message.content  # seeded
    comp = c.completions.create(model="tiny", prompt="The json module", max_tokens=6, temperature=0)
    assert comp.object == "text_completion" and comp.usage.completion_tokens == 6
    assert comp.choices[0].finish_reason == "length"


def test_streaming_chunks_match_the_whole_response(served):
    url, _ = served
    c = client(url)
    whole = c.completions.create(model="tiny", prompt="The json module", max_tokens=10, temperature=0)
    chunks = list(c.completions.create(model="tiny", prompt="The json module", max_tokens=10, temperature=0,
                                       stream=True, stream_options={"include_usage": True}))
    assert "".join(ch.choices[0].text for ch in chunks if ch.choices) == whole.choices[0].text
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "length"
    assert chunks[-1].usage.completion_tokens == 10 and not chunks[-1].choices
    chat = list(client(url).chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hi"}],
                                                    max_tokens=6, temperature=0, stream=True))
    assert chat[0].choices[0].delta.role == "assistant" and chat[-1].choices[0].finish_reason in ("stop", "length")
    assert all(ch.object == "chat.completion.chunk" for ch in chat)
    with httpx.stream("POST", f"{url}/v1/completions", json={"prompt": "x", "max_tokens": 2, "stream": True}) as r:
        lines = [ln for ln in r.iter_lines() if ln]
    assert r.headers["content-type"].startswith("text/event-stream") and lines[-1] == "data: [DONE]"


def _error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    return err


def test_bad_requests_get_openai_errors_never_a_500(served):
    url, _ = served
    c = client(url)
    with pytest.raises(openai.BadRequestError) as e:
        c.completions.create(model="tiny", prompt="x", max_tokens=100_000)
    assert e.value.status_code == 400 and e.value.body["param"] == "max_tokens"
    with pytest.raises(openai.NotFoundError) as e:
        c.completions.create(model="gpt-4", prompt="x")
    assert e.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError, match="role"):
        c.chat.completions.create(model="tiny", messages=[{"role": "wizard", "content": "x"}])
    with pytest.raises(openai.BadRequestError, match="context"):
        c.completions.create(model="tiny", prompt="word " * 500, max_tokens=2)
    cases = [({"prompt": "x", "max_tokens": "lots"}, "max_tokens"), ({"max_tokens": 3}, "prompt"),
             ({"prompt": "x", "temperature": -1}, "temperature"), ({"prompt": "x", "n": 3}, "n"),
             ({"prompt": "x", "stop": ["a", "b", "c", "d", "e"]}, "stop"), ({"prompt": ["a", "b"]}, "prompt"),
             ({"prompt": "x", "frequency_penalty": 1}, "frequency_penalty")]
    for body, param in cases:
        assert _error(httpx.post(f"{url}/v1/completions", json=body), 400)["param"] == param, body
    assert _error(httpx.post(f"{url}/v1/completions", content=b"{not json",
                             headers={"content-type": "application/json"}), 400)["code"] == "invalid_json"
    assert _error(httpx.post(f"{url}/v1/completions", json={"prompt": "x" * 70_000}), 413)["code"] == "body_too_large"
    chunked = {"content-type": "application/json"}  # a generator body goes without content-length
    big = json.dumps({"prompt": "x" * 70_000}).encode()
    assert _error(httpx.post(f"{url}/v1/completions", content=iter([big]), headers=chunked), 413)["code"] == \
        "body_too_large"
    small = json.dumps({"prompt": "The json module", "max_tokens": 2}).encode()
    r = httpx.post(f"{url}/v1/completions", content=iter([small[:5], small[5:]]), headers=chunked)
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 2  # the body read once, then replayed
    assert _error(httpx.get(f"{url}/v1/nothing"), 404)["type"] == "not_found_error"
    assert _error(httpx.get(f"{url}/v1/completions"), 405)


def test_keys_are_required_and_hashed_and_limits_apply(tiny_copy):
    ws = Workspace.open(tiny_copy, ["serve.rate_limit_per_minute=4", "serve.timeout_s=0.001"])
    store = Store(ws.store_url)
    store.add_api_key("ci", hash_key("lmw-secret"))
    assert all("lmw-secret" not in (k.key_hash + k.name) for k in store.api_keys())
    with live(build_app(ws)) as url:
        assert httpx.get(f"{url}/health").status_code == 200  # open
        with pytest.raises(openai.AuthenticationError):
            client(url, "wrong").models.list()
        assert _error(httpx.get(f"{url}/metrics"), 401)["code"] == "invalid_api_key"
        good = client(url, "lmw-secret")
        assert good.models.list().data[0].id == "tiny-assistant"
        with pytest.raises(openai.InternalServerError) as e:  # timeout_s is 1 ms: 504, which the client must not retry
            client(url, "lmw-secret").with_options(max_retries=2).completions.create(model="tiny", prompt="x",
                                                                                   max_tokens=50)
        assert e.value.status_code == 504 and e.value.body["code"] == "request_timeout"
        assert e.value.response.headers["x-should-retry"] == "false"
        assert [r.status for r in Store(ws.store_url).requests()] == [504]  # one call, one generation
        good.models.list()
        good.models.list()
        with pytest.raises(openai.RateLimitError) as e:  # the 5th request within the minute
            good.models.list()
        assert int(e.value.response.headers["retry-after"]) >= 1


def test_metrics_request_log_feedback_and_safety(served):
    url, ws = served
    c = client(url)
    r = c.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "mail bob@example.com"}],
                                  max_tokens=4, temperature=0)
    list(c.completions.create(model="tiny", prompt="The json", max_tokens=3, stream=True))
    httpx.post(f"{url}/v1/completions", json={"prompt": "x", "max_tokens": -1})
    text = httpx.get(f"{url}/metrics").text
    for name in ("lmwright_time_to_first_token_seconds_bucket", "lmwright_inter_token_latency_seconds_bucket",
                 "lmwright_e2e_request_latency_seconds_bucket", "lmwright_request_queue_time_seconds_bucket",
                 "lmwright_prompt_tokens_total", "lmwright_generation_tokens_total", "lmwright_num_requests_running",
                 "lmwright_num_requests_waiting", 'lmwright_request_success_total{finished_reason="length"',
                 'lmwright_http_requests_total{route="/v1/completions",status="400"} 1.0'):
        assert name in text, name
    assert 'le="0.001"' in text and 'le="80.0"' in text  # LLM-sized buckets
    log = {row.request_id: row for row in Store(ws.store_url).requests()}
    row = log[r.id]
    assert row.model == "tiny" and row.status == 200 and row.completion_tokens == r.usage.completion_tokens
    assert row.flags == {"input_pii": {"email": 1}} and row.prompt is None and row.e2e_s > 0
    ok = httpx.post(f"{url}/v1/feedback", json={"id": r.id, "rating": 1, "correction": "It encodes JSON."})
    assert ok.status_code == 200 and ok.json()["recorded"]
    (fb,) = Store(ws.store_url).feedback()
    assert fb.request_id == r.id and fb.rating == 1
    assert _error(httpx.post(f"{url}/v1/feedback", json={"id": "chatcmpl-nope", "rating": 1}), 404)
    assert _error(httpx.post(f"{url}/v1/feedback", json={"id": r.id, "rating": 9}), 400)["param"] == "rating"


def test_speculative_decoding_through_the_server_gives_the_same_answers_and_counts_its_guesses(tiny_copy):
    """serve.speculative: prompt lookup, and the base model as the assistant's draft (same tokenizer); greedy
    answers equal the plain server's, streamed or not, and /metrics has the guesses made and kept."""
    prompts = ["The json module", "Return a new list of the json module"]
    ws = Workspace.open(tiny_copy)
    with live(build_app(ws)) as url:
        plain = [client(url).completions.create(model=m, prompt=p, max_tokens=12, temperature=0).choices[0].text
                 for m in ("tiny", "tiny-assistant") for p in prompts]
    for sets in (["serve.speculative.method=prompt_lookup"],
                 ["serve.speculative.method=draft", "serve.speculative.draft_model=tiny@champion"]):
        ws = Workspace.open(tiny_copy, sets)
        with live(build_app(ws)) as url:
            c = client(url)
            ours = [c.completions.create(model=m, prompt=p, max_tokens=12, temperature=0).choices[0].text
                    for m in ("tiny", "tiny-assistant") for p in prompts]
            streamed = "".join(ch.choices[0].text for ch in c.completions.create(
                model="tiny", prompt=prompts[1], max_tokens=12, temperature=0, stream=True) if ch.choices)
            text = httpx.get(f"{url}/metrics").text
        assert ours == plain and streamed == plain[1], sets
        drafted = sum(float(line.split()[-1]) for line in text.splitlines()
                      if line.startswith("lmwright_spec_decode_draft_tokens_total{"))
        accepted = sum(float(line.split()[-1]) for line in text.splitlines()
                       if line.startswith("lmwright_spec_decode_accepted_tokens_total{"))
        assert drafted > 0 and 0 < accepted <= drafted, (sets, drafted, accepted)


def test_onnxruntime_backend_through_the_server_gives_the_same_answers_at_once_and_streamed(tiny_copy):
    """serve.backend onnxruntime: the served versions' decode steps run on onnxruntime (said in /health); greedy
    answers to concurrent requests (continuous batching), streamed and not, equal the PyTorch server's."""
    from concurrent.futures import ThreadPoolExecutor

    prompts = ["The json module", "Return a new list of", "This function", "Raise ValueError if the", "Decode"]

    def answers(url: str) -> list[str]:
        def one(p: str) -> str:
            return client(url).completions.create(model="tiny", prompt=p, max_tokens=16, temperature=0).choices[0].text
        with ThreadPoolExecutor(len(prompts)) as pool:  # at once: they share decode steps
            return list(pool.map(one, prompts))

    with live(build_app(Workspace.open(tiny_copy))) as url:
        plain = answers(url)
    app = build_app(Workspace.open(tiny_copy, ["serve.backend=onnxruntime", "serve.threads=2"]))
    with live(app) as url:
        ours = answers(url)
        streamed = "".join(ch.choices[0].text for ch in client(url).completions.create(
            model="tiny", prompt=prompts[1], max_tokens=16, temperature=0, stream=True) if ch.choices)
        versions = httpx.get(f"{url}/health").json()["models"]
        steps = [m.engine.onnx_step for m in app.state.server.engines.values()]
    assert ours == plain and streamed == plain[1]
    assert {v["backend"] for v in versions.values()} == {"onnxruntime"}
    assert steps and all(s.threads == 2 and s.spins for s in steps)  # serve.threads, spinning past one thread


def test_a_failed_onnxruntime_export_falls_back_to_pytorch(tiny_copy, monkeypatch):
    from lmwright.model import onnx_step

    def fail(*args, **kwargs):
        raise RuntimeError("exporter broke")

    monkeypatch.setattr(onnx_step.OnnxStep, "decode", fail)
    with live(build_app(Workspace.open(tiny_copy, ["serve.backend=onnxruntime"]))) as url:
        versions = httpx.get(f"{url}/health").json()["models"]
        answer = client(url).completions.create(model="tiny", prompt="The json module", max_tokens=4, temperature=0)
    assert {v["backend"] for v in versions.values()} == {"torch"} and answer.choices[0].text


def test_a_draft_model_with_another_tokenizer_is_refused_by_name(tiny_copy, tmp_path):
    from lmwright.model.config import ModelConfig
    from lmwright.model.hf import save_hf
    from lmwright.model.llama import LlamaLM
    from lmwright.tokenizer import save_tokenizer, train_tokenizer

    tok = train_tokenizer(["other words entirely"] * 20, 300, 1)
    save_tokenizer(tok, tmp_path / "tok")
    m = LlamaLM(ModelConfig(vocab_size=tok.get_vocab_size(), n_layers=1, d_model=16, n_heads=2, n_kv_heads=1,
                            ffn_dim=32, max_seq_len=16))
    save_hf(m, tmp_path / "tok", tmp_path / "other", {"bos": 0, "eos": 1, "pad": 2})
    ws = Workspace.open(tiny_copy, ["serve.speculative.method=draft", f"serve.speculative.draft_model={tmp_path / 'other'}"])
    with pytest.raises(LmwrightError, match="draft_model .* tokenizer is not the served model's"):
        build_app(ws)


def test_blocklist_refuse_policy(tiny_copy):
    ws = Workspace.open(tiny_copy, ["serve.safety.blocklist=refuse"])
    with live(build_app(ws)) as url:
        err = _error(httpx.post(f"{url}/v1/completions", json={"prompt": "you fucking idiot"}), 400)
        assert err["code"] == "content_filter"


@pytest.mark.slow
def test_chat_page_streams_and_stops_in_a_browser(tiny_copy):
    from playwright.sync_api import sync_playwright

    ws = Workspace.open(tiny_copy)
    app = build_app(ws)
    engine = app.state.server.default.engine
    forward = engine._decode

    def slow_forward(*a, **k):  # a slower model, so there is time to press Stop
        time.sleep(0.03)
        return forward(*a, **k)

    with live(app) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(url + "/")
        assert "tiny" in page.title()
        page.wait_for_function("document.querySelectorAll('#model option').length === 2", timeout=10_000)
        assert page.eval_on_selector_all("#model option", "os => os.map(o => o.value)") == ["tiny-assistant", "tiny"]
        page.fill("#temperature", "0")
        page.fill("#max_tokens", "8")
        page.fill("#prompt", "What does the json module do?")
        page.click("#send")
        page.wait_for_selector(".assistant[data-done='true']", timeout=20_000)
        first = page.eval_on_selector(".assistant", "e => e.textContent")  # the tiny model likes spaces
        assert first and page.get_attribute(".assistant", "data-finish") in ("stop", "length")
        engine._decode = slow_forward
        page.fill("#max_tokens", "40")
        page.fill("#prompt", "And csv?")
        page.click("#send")
        page.wait_for_function("document.querySelectorAll('.assistant')[1].textContent.length > 0", timeout=20_000)
        assert page.is_enabled("#stop") and not page.is_enabled("#send")
        page.click("#stop")
        page.wait_for_function("document.querySelectorAll('.assistant')[1].dataset.done === 'true'", timeout=20_000)
        assert page.eval_on_selector_all(".assistant", "es => es[1].dataset.finish") == "stopped"
        assert page.is_enabled("#send")
        # a 64-token context leaves 31 for a prompt that asks for 40 tokens: the first turns are left out, and said
        assert "oldest message(s) were left out" in page.text_content(".note")
        browser.close()
    deadline = time.time() + 10
    while time.time() < deadline and not any(r.finish_reason == "abort" for r in Store(ws.store_url).requests()):
        time.sleep(0.1)
    assert any(r.finish_reason == "abort" for r in Store(ws.store_url).requests())  # the server stopped decoding


def test_terminal_chat(tiny_copy):
    p = subprocess.run([sys.executable, "-m", "lmwright", "chat", "-C", str(tiny_copy), "--temperature", "0",
                        "--max-tokens", "5"], input="What is json?\n/reset\nAnd csv?\n/quit\n", capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("tiny-assistant@1> ") == 2 and "chatting with tiny-assistant@1" in p.stderr
