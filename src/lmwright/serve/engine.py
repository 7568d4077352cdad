"""The inference engine: a KV cache, continuous batching, sampling and streaming.

The cache is one preallocated slab per layer, `[slots, kv_heads, max_seq_len, head_dim]`; a request holds a
slot from its prefill to its last token. Each `step()` first admits waiting requests into free slots (one
prefill each), then runs one decode step for every running request together, samples each row with that
request's own settings, and releases the slots of the requests that finished: requests join and leave
between decode steps (continuous batching), and nobody waits for the longest request of a batch.

The forward pass here reuses the model's weights (`LlamaLM`) with the same maths as `model/llama.py`, plus
the cache: per-layer fused q|k|v and gate|up weights are built once, not per step, because at batch 1 a
small model's decode time is per-operation overhead, not arithmetic.

Sampling follows the usual order (Hugging Face's and vLLM's): repetition penalty on the logits of tokens
already in the prompt or output, temperature, top-k, top-p, then a draw from a per-request seeded generator;
temperature 0 is greedy. Stop sequences end a request at the first match (the text before it is returned);
streamed text holds back anything that could still become a stop sequence or is an incomplete UTF-8 character.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from lmwright.model.llama import LlamaLM, apply_rope


@dataclass
class SamplingParams:
    max_tokens: int = 64
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    ignore_eos: bool = False
    stop_token_ids: frozenset[int] = frozenset()  # besides end-of-sequence, e.g. a chat template's <|end|>


@dataclass
class Request:
    id: str
    prompt_ids: list[int]
    params: SamplingParams
    on_event: Callable[[Request, str, bool], None]  # (request, new text, finished)
    output_ids: list[int] = field(default_factory=list)
    text: str = ""  # the output text so far (stop sequence removed)
    sent: int = 0  # characters of `text` already streamed
    finish_reason: str | None = None
    slot: int = -1
    arrived: float = field(default_factory=time.perf_counter)
    scheduled: float | None = None  # prefill started (queue time = scheduled - arrived)
    first_token: float | None = None
    token_times: list[float] = field(default_factory=list)
    generator: torch.Generator | None = None
    cancelled: bool = False

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None


class Engine:
    """`submit()` from any thread; `step()` (or `run_forever()` in one background thread) does the work."""

    def __init__(self, model: LlamaLM, tokenizer, max_batch: int = 16, eos_ids: set[int] | None = None):
        self.model = model.eval()
        self.tok = tokenizer
        self.cfg = cfg = model.cfg
        self.max_batch, self.max_len = max_batch, cfg.max_seq_len
        self.device = next(model.parameters()).device
        dtype = next(model.parameters()).dtype
        shape = (max_batch, cfg.n_kv_heads, cfg.max_seq_len, cfg.head_dim)
        self.k_cache = [torch.zeros(shape, dtype=dtype, device=self.device) for _ in range(cfg.n_layers)]
        self.v_cache = [torch.zeros(shape, dtype=dtype, device=self.device) for _ in range(cfg.n_layers)]
        self.lengths = [0] * max_batch
        self.free = list(range(max_batch - 1, -1, -1))
        self.waiting: deque[Request] = deque()
        self.running: dict[int, Request] = {}
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.eos_ids = eos_ids if eos_ids is not None else {tokenizer.token_to_id("<|eos|>")}
        self._ids = itertools.count()
        with torch.no_grad():  # fused weights, built once
            self.layers = []
            for blk in model.model.layers:
                a, m = blk.self_attn, blk.mlp
                qkv_b = torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias]) if a.q_proj.bias is not None else None
                gu_b = torch.cat([m.gate_proj.bias, m.up_proj.bias]) if m.gate_proj.bias is not None else None
                self.layers.append((blk, torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]), qkv_b,
                                    torch.cat([m.gate_proj.weight, m.up_proj.weight]), gu_b))

    # -- requests ---------------------------------------------------------------------------------------------
    def submit(self, prompt_ids: list[int], params: SamplingParams,
               on_event: Callable[[Request, str, bool], None] = lambda r, t, f: None, request_id: str | None = None) -> Request:
        if not prompt_ids:
            raise ValueError("the prompt is empty")
        if len(prompt_ids) >= self.max_len:
            raise ValueError(f"the prompt has {len(prompt_ids)} tokens; this model's context is {self.max_len}")
        req = Request(request_id or f"req-{next(self._ids)}", list(prompt_ids), params, on_event)
        if params.seed is not None:
            req.generator = torch.Generator(device=self.device).manual_seed(params.seed)
        with self.lock:
            self.waiting.append(req)
        self.wake.set()
        return req

    def cancel(self, req: Request) -> None:
        req.cancelled = True  # finished at the next step, its slot released
        self.wake.set()

    @property
    def n_running(self) -> int:
        return len(self.running)

    @property
    def n_waiting(self) -> int:
        return len(self.waiting)

    # -- the model with a cache -------------------------------------------------------------------------------
    @torch.no_grad()
    def _forward(self, ids: torch.Tensor, slots: list[int], starts: list[int]) -> torch.Tensor:
        """Logits of the last position of each row. Prefill: one row, `starts` [0]; decode: one token per row."""
        b, t = ids.shape
        m = self.model
        x = m.model.embed_tokens(ids)
        pos = torch.tensor(starts, device=self.device)[:, None] + torch.arange(t, device=self.device)  # (b, t)
        cos, sin = m.rope_cos[pos][:, None].to(x.dtype), m.rope_sin[pos][:, None].to(x.dtype)  # (b, 1, t, hd)
        slot_t = torch.tensor(slots, device=self.device)
        total = max(s + t for s in starts)  # keys to attend over
        single = b == 1
        mask = None
        if not single:  # decode of several rows of different lengths: row i sees its keys 0..starts[i]
            mask = (torch.arange(total, device=self.device)[None, :] <= pos[:, -1:]).view(b, 1, 1, total)
        for li, (blk, w_qkv, b_qkv, w_gu, b_gu) in enumerate(self.layers):
            a = blk.self_attn
            h = blk.input_layernorm(x)
            q, k, v = F.linear(h, w_qkv, b_qkv).split([a.n_heads * a.hd, a.n_kv * a.hd, a.n_kv * a.hd], dim=-1)
            q, k, v = q.view(b, t, a.n_heads, a.hd), k.view(b, t, a.n_kv, a.hd), v.view(b, t, a.n_kv, a.hd)
            if hasattr(a, "q_norm"):
                q, k = a.q_norm(q), a.k_norm(k)
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
            kc, vc = self.k_cache[li], self.v_cache[li]
            if single:
                s0 = starts[0]
                kc[slots[0], :, s0: s0 + t] = k[0]
                vc[slots[0], :, s0: s0 + t] = v[0]
                keys, vals = kc[slots[0]: slots[0] + 1, :, : s0 + t], vc[slots[0]: slots[0] + 1, :, : s0 + t]
                # a prefill starts at 0 (causal over its own tokens); a decode token sees every cached key
                y = F.scaled_dot_product_attention(q, keys, vals, is_causal=t > 1, enable_gqa=a.n_kv != a.n_heads)
            else:
                kc[slot_t, :, pos[:, 0]] = k[:, :, 0]
                vc[slot_t, :, pos[:, 0]] = v[:, :, 0]
                y = F.scaled_dot_product_attention(q, kc[slot_t, :, :total], vc[slot_t, :, :total], attn_mask=mask,
                                                   enable_gqa=a.n_kv != a.n_heads)
            x = x + a.o_proj(y.transpose(1, 2).reshape(b, t, -1))
            gate, up = F.linear(blk.post_attention_layernorm(x), w_gu, b_gu).chunk(2, dim=-1)
            x = x + blk.mlp.down_proj(blk.mlp.act(gate) * up)
        return m.lm_head(m.model.norm(x[:, -1]))

    # -- sampling ---------------------------------------------------------------------------------------------
    def _sample(self, req: Request, logits: torch.Tensor) -> int:
        p = req.params
        logits = logits.float()
        if p.repetition_penalty != 1.0:
            seen = torch.tensor(sorted(set(req.prompt_ids) | set(req.output_ids)), device=logits.device)
            vals = logits[seen]
            logits[seen] = torch.where(vals > 0, vals / p.repetition_penalty, vals * p.repetition_penalty)
        if p.temperature <= 0:
            return int(logits.argmax())
        logits = logits / p.temperature
        if p.top_k:
            kth = torch.topk(logits, min(p.top_k, logits.numel())).values[-1]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if p.top_p < 1.0:
            sorted_logits, order = torch.sort(logits, descending=True)
            cum = torch.softmax(sorted_logits, -1).cumsum(-1)
            drop = cum - torch.softmax(sorted_logits, -1) >= p.top_p  # keep the smallest set reaching top_p
            logits[order[drop]] = float("-inf")
        return int(torch.multinomial(torch.softmax(logits, -1), 1, generator=req.generator))

    # -- the loop -------------------------------------------------------------------------------------------------
    def _emit(self, req: Request, tok_id: int | None) -> None:
        now = time.perf_counter()
        if tok_id is not None:
            req.output_ids.append(tok_id)
            req.token_times.append(now)
            if req.first_token is None:
                req.first_token = now
            text = self.tok.decode(req.output_ids)
            cut = min((i for i in (text.find(s) for s in req.params.stop if s) if i >= 0), default=-1)
            if cut >= 0:
                req.text, req.finish_reason = text[:cut], "stop"
            else:
                req.text = text
        if req.finish_reason is None:
            if req.cancelled:
                req.finish_reason = "abort"
            elif len(req.output_ids) >= req.params.max_tokens or len(req.prompt_ids) + len(req.output_ids) >= self.max_len:
                req.finish_reason = "length"
        # stream what can no longer change: not an incomplete character, not a possible stop-sequence start
        safe = len(req.text)
        if req.finish_reason is None:
            while safe and req.text[safe - 1] == "\ufffd":
                safe -= 1
            for s in req.params.stop:
                for n in range(min(len(s) - 1, safe), 0, -1):
                    if req.text[:safe].endswith(s[:n]):
                        safe -= n
                        break
        delta = req.text[req.sent: safe]
        req.sent = max(req.sent, safe)
        req.on_event(req, delta, req.finished)

    def step(self) -> int:
        """Admit, prefill, decode once; returns how many requests are running or waiting."""
        admitted = []
        with self.lock:
            while self.waiting and self.free:
                req = self.waiting.popleft()
                req.slot = self.free.pop()
                admitted.append(req)
        for req in admitted:  # prefill: the whole prompt into the slot's cache, then the first token
            req.scheduled = time.perf_counter()
            if req.cancelled:
                self._finish(req)
                continue
            logits = self._forward(torch.tensor([req.prompt_ids], device=self.device), [req.slot], [0])
            self.lengths[req.slot] = len(req.prompt_ids)
            self.running[req.slot] = req
            self._after_token(req, self._sample(req, logits[0]))
        active = [r for r in self.running.values() if not r.finished and r not in admitted]
        if active:
            ids = torch.tensor([[r.output_ids[-1]] for r in active], device=self.device)
            logits = self._forward(ids, [r.slot for r in active], [self.lengths[r.slot] for r in active])
            for r, row in zip(active, logits, strict=True):
                self.lengths[r.slot] += 1
                self._after_token(r, self._sample(r, row))
        for slot in [s for s, r in self.running.items() if r.finished]:
            self._finish(self.running.pop(slot))
        return len(self.running) + len(self.waiting)

    def _after_token(self, req: Request, tok_id: int) -> None:
        if (tok_id in self.eos_ids or tok_id in req.params.stop_token_ids) and not req.params.ignore_eos:
            req.finish_reason = "stop"
            self._emit(req, None)
        else:
            self._emit(req, tok_id)

    def _finish(self, req: Request) -> None:
        if req.finish_reason is None:
            req.finish_reason = "abort"
            req.on_event(req, "", True)
        with self.lock:
            self.free.append(req.slot)

    def run_until_done(self) -> None:
        while self.step():
            pass

    def run_forever(self, stop: threading.Event) -> None:
        """The serving loop: steps while there is work, sleeps on `wake` when there is none."""
        while not stop.is_set():
            if not self.step():
                self.wake.wait(0.05)
                self.wake.clear()

    # -- convenience -----------------------------------------------------------------------------------------------
    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[Request]:
        """Every prompt through the engine at once (continuous batching), in this thread."""
        reqs = [self.submit(p, params) for p in prompts]
        self.run_until_done()
        return reqs
