"""The `serve` section: the OpenAI-compatible server's address, batching, limits and safety checks."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from lmwright.spec.base import Section


class SafetySpec(Section):
    redact_pii: bool = True  # PII in prompts and outputs replaced by typed placeholders (data/filters/pii.py)
    blocklist: Literal["flag", "refuse", "off"] = "flag"  # blocklisted words: record the flag, or refuse (400)


class SpeculativeSpec(Section):
    """Speculative decoding (model/speculate.py): guesses checked by the model, several tokens per step when they
    hold; the output is the model's own either way (greedy: the same tokens; sampling: the same distribution)."""

    method: Literal["none", "prompt_lookup", "draft"] = "none"
    num_tokens: int = Field(4, ge=1, le=16)  # guesses per step
    # prompt_lookup: the longest tail of the text looked up, then shorter ones (a lookup costs ~ context x max_ngram)
    max_ngram: int = Field(3, ge=1, le=8)
    min_ngram: int = Field(1, ge=1, le=8)
    draft_model: str | None = Field(None, min_length=1)  # draft: a registered model or directory, same tokenizer
    # speculate only while at most this many requests run: a fuller batch already keeps the CPU busy, and checking
    # everyone's guesses would cost more than it saves
    max_running: int = Field(4, ge=1)

    @model_validator(mode="after")
    def _draft_needs_a_model(self) -> SpeculativeSpec:
        if self.method == "draft" and self.draft_model is None:
            raise ValueError("method draft needs draft_model: a registered NAME[@N|@ALIAS] or a model directory "
                             "with the served model's tokenizer")
        if self.min_ngram > self.max_ngram:
            raise ValueError(f"min_ngram ({self.min_ngram}) is above max_ngram ({self.max_ngram})")
        return self


class ServeSpec(Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)  # 0 = any free port
    model: str | None = None  # a model directory or registered name; None = the project's assistant (if any) and base
    max_batch: int = Field(16, ge=1)  # requests decoded together (KV-cache slots)
    compile: bool = True  # torch.compile the decode step, one graph per batch size, built at start (~10 s each)
    # where the decode step runs: PyTorch (compiled with `compile`), or onnxruntime (model/onnx_step.py: a fused
    # graph writing the cache in place for plain Llama blocks, else the exported step; needs the export extra)
    backend: Literal["torch", "onnxruntime"] = "torch"
    # onnxruntime's threads for the step; None = one fewer than the cores (at least one), leaving one to the server's
    # event loop, HTTP and text: on 2 cores one thread serves 1.1-1.3x faster than two that spin (benchmarks/decode.py)
    threads: int | None = Field(None, ge=1)
    max_queue: int = Field(256, ge=1)  # waiting requests beyond this get 503
    max_tokens: int = Field(256, ge=1)  # the largest max_tokens a request may ask for (default when absent: 64)
    max_body_kb: int = Field(64, ge=1)  # larger request bodies get 413, at the first byte over
    body_timeout_s: float = Field(30.0, gt=0)  # a request body still arriving after this gets 408
    timeout_s: float = Field(60.0, gt=0)  # a request still running after this is stopped: 504, finish_reason "timeout"
    rate_limit_per_minute: int = Field(600, ge=0)  # per API key (or per client address without keys); 0 = off
    failed_auth_per_minute: int = Field(10, ge=0)  # wrong or missing keys per client address, then 429; 0 = off
    log_prompts: bool = False  # store prompt and output text in the request log
    # per request, whatever log_prompts says: the prompt's drift features (bytes, unknown-byte rate, language,
    # perplexity under the served model) and, with features_sketch, a hashed bag of its words (data/sketch.py)
    features: bool = True
    features_sketch: bool = True
    safety: SafetySpec = Field(default_factory=SafetySpec)
    speculative: SpeculativeSpec = Field(default_factory=SpeculativeSpec)
