"""The one chat template: its rendered text, its encoded ids and its Jinja copy agree with each other and with
`transformers`' `apply_chat_template` on a saved tokenizer; the server renders requests with it."""

from __future__ import annotations

import pytest

from lmwright.chat_template import (
    BOS,
    CHAT_ROLES,
    CHAT_TEMPLATE,
    CHAT_TOKENS,
    END_OF_TURN,
    IGNORE,
    BadMessage,
    encode_conversation,
    encode_prompt,
    render_chat,
    role_token,
)
from lmwright.tokenizer import SPECIAL_TOKENS, save_tokenizer, train_tokenizer

TEXTS = ["Return a new list containing all items from the iterable in ascending order.",
         "Serialize obj to a JSON formatted str. Ünïcödé text too: naïve café — ok."]
CONVERSATIONS = [
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What does json do?"},
     {"role": "assistant", "content": "It encodes JSON."}, {"role": "user", "content": "And csv?"},
     {"role": "assistant", "content": "It reads CSV."}],
    [{"role": "user", "content": ""}, {"role": "assistant", "content": ""}],
    [{"role": "user", "content": "naïve café — 日本語 🙂"}, {"role": "assistant", "content": " spaced \n\tout "}],
]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(our tokenizer, the same saved and loaded by `transformers`)."""
    from transformers import AutoTokenizer

    tok = train_tokenizer(TEXTS * 20, vocab_size=320, min_frequency=1)
    out = tmp_path_factory.mktemp("tok")
    save_tokenizer(tok, out)
    return tok, AutoTokenizer.from_pretrained(out)


def test_the_markers_are_the_vocabularys_special_tokens():
    assert CHAT_TOKENS == [*(role_token(r) for r in CHAT_ROLES), END_OF_TURN]
    assert CHAT_TOKENS == ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
    assert SPECIAL_TOKENS[0] == BOS and set(CHAT_TOKENS) <= set(SPECIAL_TOKENS)


@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_text_ids_and_jinja_agree_with_transformers(saved, messages):
    tok, hf = saved
    assert hf.chat_template == CHAT_TEMPLATE
    prompt = hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert prompt == BOS + render_chat(messages)  # the server's text, plus the <|bos|> the tokenizer adds
    assert tok.encode(render_chat(messages)).ids == encode_prompt(tok, messages)  # the server's ids
    assert encode_prompt(tok, messages) == hf(prompt, add_special_tokens=False)["input_ids"]
    whole = hf.apply_chat_template(messages, tokenize=False)
    ids, labels = encode_conversation(tok, messages)
    assert ids == hf(whole, add_special_tokens=False)["input_ids"]
    learned = tok.decode([i for i, lab in zip(ids, labels, strict=True) if lab != IGNORE], skip_special_tokens=False)
    assert learned == "".join(m["content"] + END_OF_TURN for m in messages if m["role"] == "assistant")


def test_rendering_takes_openai_content_and_names_the_bad_message():
    parts = [{"type": "text", "text": "one "}, {"type": "text", "text": "two"}]
    assert render_chat([{"role": "user", "content": parts}]) == "<|user|>one two<|end|><|assistant|>"
    assert render_chat([{"role": "user", "content": None}, {"role": "user"}]) == \
        "<|user|><|end|><|user|><|end|><|assistant|>"
    with pytest.raises(BadMessage, match=r"messages\[1\].role 'wizard' is not one of system, user, assistant") as e:
        render_chat([{"role": "user", "content": "x"}, {"role": "wizard", "content": "x"}])
    assert e.value.param == "messages.1.role"
    with pytest.raises(BadMessage, match="only text parts") as e:
        render_chat([{"role": "user", "content": [{"type": "image_url"}]}, {"role": "wizard", "content": "x"}])
    assert e.value.param == "messages.0.content"  # the first offending message


def test_the_server_renders_requests_with_the_template():
    from lmwright.serve.routes import Message, render_request
    from lmwright.serve.state import ApiError

    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": [{"type": "text", "text": "u"}]}]
    assert render_request([Message(**m) for m in messages]) == render_chat(messages)
    with pytest.raises(ApiError) as e:
        render_request([Message(role="tool", content="x")])
    assert (e.value.status, e.value.param, e.value.code) == (400, "messages.0.role", None)
