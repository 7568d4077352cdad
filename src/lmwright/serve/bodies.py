"""The request bodies the server takes: OpenAI's fields, checked strictly, and what it refuses by name.

Types are strict, as OpenAI's API is: `"max_tokens": true` is not 1 and `"stream": "yes"` is not true; numbers are
finite. A parameter OpenAI defines that this server does not implement (tools, function calling, response formats,
echo, best_of, suffix, logit_bias, log probabilities, several choices) is refused with its name when it asks for
something, and accepted at its neutral value (`"tools": []`, `"echo": false`, `"n": 1`), so a client that always
sends the defaults still works. A name OpenAI does not define is refused too ("unrecognized request argument"),
as OpenAI does, so a misspelt parameter is never silently ignored. Message objects are looser: a client that sends
back the assistant message it received (with `"refusal": null`, `"tool_calls": null`) must not be refused.

Text must be valid Unicode: a lone surrogate (`"\\ud800"`, which JSON can spell) is a 400 naming the field, not
a crash in the tokenizer.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictInt

from lmwright.serve.state import ApiError


def _valid_unicode(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"contains a lone surrogate ({text[exc.start]!a}) at character {exc.start}; send valid "
                         "Unicode (UTF-8, or JSON's \\u escapes in high-low pairs)") from None
    return text


Text = Annotated[str, AfterValidator(_valid_unicode)]


def _valid_rating(rating: int) -> int:
    if rating not in (-1, 1, 2, 3, 4, 5):
        raise ValueError(f"{rating} is neither -1/1 (thumbs) nor 1 to 5 (stars)")
    return rating


Rating = Annotated[StrictInt, AfterValidator(_valid_rating)]
Number = Annotated[float, Field(allow_inf_nan=False)]


class _Sampling(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    model: Text | None = None
    max_tokens: StrictInt | None = Field(None, ge=1)
    max_completion_tokens: StrictInt | None = Field(None, ge=1)
    temperature: Number = Field(1.0, ge=0, le=2)
    top_p: Number = Field(1.0, gt=0, le=1)
    top_k: StrictInt | None = Field(None, ge=1)  # an extension (vLLM's)
    repetition_penalty: Number = Field(1.0, gt=0)  # an extension (vLLM's)
    frequency_penalty: Number = Field(0.0, ge=-2, le=2)
    presence_penalty: Number = Field(0.0, ge=-2, le=2)
    stop: Text | list[Text] | None = None
    seed: StrictInt | None = Field(None, ge=-(2**63), le=2**63 - 1)
    n: StrictInt = Field(1, ge=1)
    stream: StrictBool = False
    stream_options: dict[str, Any] | None = None
    user: Text | None = None
    # OpenAI's, accepted and not used
    metadata: dict[str, Any] | None = None
    store: StrictBool | None = None
    service_tier: Text | None = None
    # OpenAI's, refused unless neutral (see `refuse_unsupported`)
    logprobs: Any = None
    top_logprobs: Any = None
    logit_bias: dict[str, Any] | None = None


class CompletionBody(_Sampling):
    prompt: Text | list[Text]
    echo: StrictBool = False
    best_of: StrictInt | None = None
    suffix: Text | None = None


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: Text | None = None


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: str
    content: Text | list[ContentPart] | None = None
    name: Text | None = None
    tool_calls: Any = None
    function_call: Any = None


class ChatBody(_Sampling):
    messages: list[Message] = Field(min_length=1)
    tools: list[Any] | None = None
    tool_choice: Any = None
    parallel_tool_calls: StrictBool | None = None  # meaningless without tools: accepted either way
    functions: list[Any] | None = None
    function_call: Any = None
    response_format: dict[str, Any] | None = None


class FeedbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    id: Text = Field(min_length=1, max_length=64)  # the response id (cmpl-... / chatcmpl-...)
    rating: Rating | None = None
    correction: Text | None = Field(None, max_length=20_000)
    comment: Text | None = Field(None, max_length=5_000)


def _unsupported(param: str, what: str) -> ApiError:
    return ApiError(400, f"{param}: {what} is not supported by this server", param=param, code="unsupported_parameter")


def refuse_unsupported(body: _Sampling) -> None:
    """Raise for the first OpenAI parameter that asks for something this server does not do."""
    if body.n != 1:
        raise _unsupported("n", "more than one choice (n=1 only)")
    if body.logprobs not in (None, False, 0) or body.top_logprobs not in (None, 0):
        raise _unsupported("logprobs" if body.logprobs not in (None, False, 0) else "top_logprobs",
                           "returning log probabilities")
    if body.logit_bias:
        raise _unsupported("logit_bias", "biasing token logits")
    if body.frequency_penalty or body.presence_penalty:
        param = "frequency_penalty" if body.frequency_penalty else "presence_penalty"
        raise ApiError(400, f"{param} is not supported; use repetition_penalty", param=param,
                       code="unsupported_parameter")
    if isinstance(body, CompletionBody):
        if body.echo:
            raise _unsupported("echo", "echoing the prompt")
        if body.best_of not in (None, 1):
            raise _unsupported("best_of", "choosing the best of several completions (best_of=1 only)")
        if body.suffix:
            raise _unsupported("suffix", "a suffix (insertion)")
    if isinstance(body, ChatBody):
        if body.tools or body.functions:
            raise _unsupported("tools" if body.tools else "functions", "tool and function calling")
        for param in ("tool_choice", "function_call"):
            if getattr(body, param) not in (None, "none", "auto"):
                raise _unsupported(param, "tool and function calling")
        if body.response_format and body.response_format.get("type") != "text":
            raise _unsupported("response_format", f"the response format {body.response_format.get('type')!r} "
                                                  "(text only)")
        for i, m in enumerate(body.messages):
            if m.tool_calls or m.function_call:
                field = "tool_calls" if m.tool_calls else "function_call"
                raise _unsupported(f"messages.{i}.{field}", "tool and function calling")
