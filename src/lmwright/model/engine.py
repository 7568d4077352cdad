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
from tokenizers import decoders

from lmwright.errors import LmwrightError
from lmwright.model.llama import LlamaLM
from lmwright.model.sampling import of_request, pick, sample
from lmwright.model.speculate import SpecStats, speculative_step
from lmwright.tokenizer import EOS


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
    # with Engine(score_prompts=True): the prompt's hidden states from prefill, scored later by `score_prompt` (off
    # the path to the first token), then its NLL under the model (a drift feature for monitoring)
    prompt_hidden: torch.Tensor | None = None
    prompt_nats: float | None = None
    settled: str = ""  # the text of output_ids[:settled_at], which later tokens cannot change (`_detokenize`)
    settled_at: int = 0
    checks: int = 0  # speculative decoding: passes that checked guesses for this request, tokens guessed, kept
    drafted: int = 0
    accepted: int = 0

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None


class _DecodeLayer:
    """One block's weights arranged for decoding: q|k|v and gate|up as single matrices, and the q and k rows of
    each head reordered from RoPE's rotate-half layout (pairs i, i + hd/2) to interleaved pairs (2i, 2i + 1), so
    RoPE rotates adjacent pairs. Attention scores are unchanged: q and k are permuted alike."""

    def __init__(self, blk, cfg):
        a, m = blk.self_attn, blk.mlp
        hd = cfg.head_dim
        perm = torch.stack([torch.arange(hd // 2), torch.arange(hd // 2) + hd // 2], 1).flatten()

        def heads(w: torch.Tensor, n: int) -> torch.Tensor:
            return w.view(n, hd, *w.shape[1:])[:, perm].reshape(w.shape)

        self.n_heads, self.n_kv, self.hd, self.gqa = a.n_heads, a.n_kv, hd, a.n_kv != a.n_heads
        self.w_qkv = torch.cat([heads(a.q_proj.weight, a.n_heads), heads(a.k_proj.weight, a.n_kv), a.v_proj.weight])
        self.b_qkv = torch.cat([heads(a.q_proj.bias, a.n_heads), heads(a.k_proj.bias, a.n_kv), a.v_proj.bias]) \
            if a.q_proj.bias is not None else None
        self.q_norm = (a.q_norm.weight[perm], a.k_norm.weight[perm], a.q_norm.eps) if hasattr(a, "q_norm") else None
        self.w_gu = torch.cat([m.gate_proj.weight, m.up_proj.weight])
        self.b_gu = torch.cat([m.gate_proj.bias, m.up_proj.bias]) if m.gate_proj.bias is not None else None
        self.n1, self.n2, self.eps = blk.input_layernorm.weight, blk.post_attention_layernorm.weight, cfg.norm_eps
        self.w_o, self.b_o = a.o_proj.weight, a.o_proj.bias
        self.w_down, self.b_down, self.act = m.down_proj.weight, m.down_proj.bias, m.act

    def qkv(self, x: torch.Tensor, freqs: torch.Tensor, rope) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (rows, d): one row per token (a prefill's positions, or a decode's requests); q, k, v as
        (rows, heads, hd), q and k rotated. Two-dimensional on purpose: small matmuls run faster that way."""
        qkv = F.linear(F.rms_norm(x, (x.shape[-1],), self.n1, self.eps), self.w_qkv, self.b_qkv)
        qk, v = qkv.view(x.shape[0], self.n_heads + 2 * self.n_kv, self.hd).split([self.n_heads + self.n_kv, self.n_kv], 1)
        if self.q_norm is not None:
            qw, kw, eps = self.q_norm
            q, k = qk.split([self.n_heads, self.n_kv], 1)
            qk = torch.cat([F.rms_norm(q, (self.hd,), qw, eps), F.rms_norm(k, (self.hd,), kw, eps)], 1)
        q, k = rope(qk, freqs).split([self.n_heads, self.n_kv], 1)  # queries and keys rotated together
        return q, k, v

    def rest(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The attention output projection, the residual, and the MLP with its residual; x, y (rows, d)."""
        x = x + F.linear(y, self.w_o, self.b_o)
        gate, up = F.linear(F.rms_norm(x, (x.shape[-1],), self.n2, self.eps), self.w_gu, self.b_gu).chunk(2, dim=-1)
        return x + F.linear(self.act(gate) * up, self.w_down, self.b_down)


class Engine:
    """`submit()` from any thread; `step()` (or `run_forever()` in one background thread) does the work."""

    def __init__(self, model: LlamaLM, tokenizer, max_batch: int = 16, eos_ids: set[int] | None = None,
                 compile: bool = False, score_prompts: bool = False, drafter=None, backend: str = "torch",
                 threads: int | None = None, max_len: int | None = None):
        """`drafter`: a speculative decoding drafter (model/speculate.py), or None to decode one token a step.
        `backend`: where the decode step runs, "torch" (compiled with `compile`) or "onnxruntime"
        (model/onnx_step.py, built at `warm_up`: on the fused graph prefill and checks of guesses run there too; on
        the exported step prefill stays in PyTorch). `threads`: onnxruntime's, None to time one against all cores.
        `max_len`: the longest prompt + output a request may reach, below the model's context (the cache is sized to
        it: a long-context model's full-length cache can be gigabytes); torch backend only."""
        if backend not in ("torch", "onnxruntime"):
            raise ValueError(f"unknown backend {backend!r}: torch or onnxruntime")
        if max_len is not None and backend != "torch":
            raise ValueError("max_len is for the torch backend (the exported steps' caches span the whole context)")
        if backend == "onnxruntime":
            from lmwright.model.onnx_step import require_onnxruntime

            require_onnxruntime()
            param = next(model.parameters())
            if param.device.type != "cpu" or param.dtype != torch.float32:
                raise LmwrightError(f"serve.backend onnxruntime runs float32 models on the CPU; this one is "
                                    f"{param.dtype} on {param.device} (set serve.backend: torch)")
        self.backend, self.onnx_step, self.onnx_extend, self.threads = backend, None, None, threads
        self.model = model.eval()
        self.drafter, self.spec_stats = drafter, SpecStats()
        self.score_prompts = score_prompts
        self.tok = tokenizer
        self.cfg = cfg = model.cfg
        self.max_batch, self.max_len = max_batch, min(max_len or cfg.max_seq_len, cfg.max_seq_len)
        self.device = next(model.parameters()).device
        dtype = next(model.parameters()).dtype
        shape = (cfg.n_layers, max_batch, cfg.n_kv_heads, self.max_len, cfg.head_dim)
        self.k_cache = torch.zeros(shape, dtype=dtype, device=self.device)  # [layer, slot, kv head, position, hd]
        self.v_cache = torch.zeros(shape, dtype=dtype, device=self.device)
        self.lengths = [0] * max_batch
        self.free = list(range(max_batch - 1, -1, -1))
        self.waiting: deque[Request] = deque()
        self.running: dict[int, Request] = {}
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.eos_ids = eos_ids if eos_ids is not None else {tokenizer.token_to_id(EOS)}
        # text is decoded incrementally only where that is exact: byte-level BPE (lmwright's own tokenizers), whose
        # text is its tokens' bytes joined; a SentencePiece-style decoder strips each piece's leading space
        self.incremental_text = isinstance(getattr(tokenizer, "decoder", None), decoders.ByteLevel)
        self._ids = itertools.count()
        with torch.no_grad():
            self.layers = [_DecodeLayer(blk, cfg) for blk in model.model.layers]
            half = cfg.head_dim // 2
            # RoPE on interleaved pairs (a, b) -> (a cos - b sin, b cos + a sin), as x * cos + pairs_swapped(x) * sin
            # with each pair's cos repeated and its sin negated on the first: (T, 2, hd)
            cos, sin = model.rope_cos[:, :half], model.rope_sin[:, :half]
            self.freqs = torch.stack([cos.repeat_interleave(2, -1), torch.stack([-sin, sin], -1).flatten(-2)], 1)
        # compiled: two graphs, one for a single row and one for any number of rows (the row count symbolic)
        self.compiled = torch.compile(self._decode_core) if compile and backend == "torch" else None
        # with a drafter: the pass that checks guesses, with rows, tokens per row and span all symbolic
        self.compiled_extend = torch.compile(self._extend_core) if compile and drafter is not None \
            and backend == "torch" else None

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
        """Stop a request: one still waiting leaves the queue now (so it no longer counts against a server's queue
        limit); a running one finishes at the next step, its slot released."""
        req.cancelled = True
        with self.lock:
            waiting = req in self.waiting
            if waiting:
                self.waiting.remove(req)
        if waiting and req.finish_reason is None:
            req.finish_reason = "abort"
            req.on_event(req, "", True)
        self.wake.set()

    @property
    def n_running(self) -> int:
        return len(self.running)

    @property
    def n_waiting(self) -> int:
        return len(self.waiting)

    # -- the model with a cache -------------------------------------------------------------------------------
    def _rope(self, x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
        """x (rows, heads, hd) in the interleaved layout of `_DecodeLayer`; freqs (rows, 1, 2, hd) from `self.freqs`.
        The same products and sums as rotating each pair (a cos - b sin is a cos + b (-sin)) in fewer operations:
        a multiply-add with the pairs swapped, no gathers and stacks (which an exported graph pays per node)."""
        swapped = x.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)
        return x * freqs[..., 0, :] + swapped * freqs[..., 1, :]

    @torch.no_grad()
    def _prefill(self, ids: list[int], slot: int, req: Request | None = None) -> torch.Tensor:
        """The whole prompt into `slot`'s cache; the logits of its last position. With `score_prompts`, the hidden
        states of the prompt's positions are kept on `req` for `score_prompt`: the served model's perplexity of what
        it is asked, a drift feature."""
        m, t = self.model, len(ids)
        if self.fused():
            logits = self.onnx_step.extend(slot, 0, ids, last_only=True)
            if self.score_prompts and req is not None and t > 1:
                req.prompt_hidden = self.onnx_step.hidden[:-1].clone()  # the buffer is the next call's
            return logits
        x = m.model.embed_tokens(torch.tensor(ids, device=self.device))  # (t, d)
        freqs = self.freqs[:t, None]
        for li, layer in enumerate(self.layers):
            q, k, v = layer.qkv(x, freqs, self._rope)  # (t, heads, hd)
            k, v = k.transpose(0, 1), v.transpose(0, 1)
            self.k_cache[li, slot, :, :t] = k
            self.v_cache[li, slot, :, :t] = v
            y = F.scaled_dot_product_attention(q.transpose(0, 1)[None], k[None], v[None], is_causal=True,
                                               enable_gqa=layer.gqa)
            x = layer.rest(x, y[0].transpose(0, 1).reshape(t, -1))
        if self.score_prompts and req is not None and t > 1:
            req.prompt_hidden = x[:-1]  # the output layer over every position costs up to ~2x a small model's
        return m.lm_head(m.model.norm(x[-1:]))  # prefill: `score_prompt` pays it later, not the first token

    @torch.no_grad()
    def score_prompt(self, req: Request) -> float | None:
        """The prompt's negative log-likelihood (nats) from the hidden states prefill kept; safe from any thread (it
        only reads the weights). Frees them; None when the engine does not score prompts."""
        if req.prompt_nats is None and req.prompt_hidden is not None:
            m, h = self.model, req.prompt_hidden
            req.prompt_hidden = None
            logits = m.lm_head(m.model.norm(h)).float()
            target = torch.tensor(req.prompt_ids[1:len(h) + 1], device=logits.device)
            req.prompt_nats = float(F.cross_entropy(logits, target, reduction="sum"))
        return req.prompt_nats

    def _decode_core(self, tokens: torch.Tensor, pos: torch.Tensor, k_cache: torch.Tensor,
                     v_cache: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One decode step over the first n slots, as a pure function (no writes), so `torch.compile` can fuse
        it without copying the cache: (logits (n, V), new keys and values (layers, n, kv, hd)).

        The caches come cut to the positions in use, `span` = the longest row's length (a symbolic size when
        compiled, so one graph serves every length). Attention is over each row's cached keys 0..pos-1 (the rest
        of the span masked) plus the new key, combined by one softmax."""
        m, n = self.model, tokens.shape[0]
        x = m.model.embed_tokens(tokens)  # (n, d)
        freqs = self.freqs[pos][:, None]
        span = k_cache.shape[3]
        visible = (torch.arange(span, device=x.device)[None, :] < pos[:, None])[:, None, None]  # (n, 1, 1, span)
        new_k, new_v = [], []
        for li, layer in enumerate(self.layers):
            q, k, v = layer.qkv(x, freqs, self._rope)  # (n, heads, hd)
            g = layer.n_heads // layer.n_kv
            qg = q.view(n, layer.n_kv, g, layer.hd) * layer.hd ** -0.5
            kc, vc = k_cache[li, :n], v_cache[li, :n]  # (n, kv, span, hd)
            scores = torch.matmul(qg, kc.transpose(-1, -2)).masked_fill(~visible, float("-inf"))  # (n, kv, g, T)
            own = (qg * k[:, :, None]).sum(-1, keepdim=True)  # (n, kv, g, 1): the new token's own key
            top = torch.maximum(scores.amax(-1, keepdim=True), own)
            p_cache, p_own = torch.exp(scores - top), torch.exp(own - top)
            y = (torch.matmul(p_cache, vc) + p_own * v[:, :, None]) / (p_cache.sum(-1, keepdim=True) + p_own)
            x = layer.rest(x, y.reshape(n, -1))
            new_k.append(k)
            new_v.append(v)
        return m.lm_head(m.model.norm(x)), torch.stack(new_k), torch.stack(new_v)

    def _extend_core(self, tokens: torch.Tensor, pos: torch.Tensor, start: torch.Tensor, k_cache: torch.Tensor,
                     v_cache: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Several new tokens per row at once: tokens and pos (n, s), each row's cached keys 0..start-1 in
        k_cache, v_cache (layers, n, kv, span, hd). Each new token attends to its row's cache and to the new tokens
        up to itself. Returns (logits (n, s, V), new keys and values (layers, n, kv, s, hd))."""
        m, (n, s) = self.model, tokens.shape
        x = m.model.embed_tokens(tokens.flatten())  # (n*s, d)
        freqs = self.freqs[pos.flatten()][:, None]
        span = k_cache.shape[3]
        cached = (torch.arange(span, device=x.device)[None, :] < start[:, None])[:, None].expand(n, s, span)
        causal = torch.ones(s, s, dtype=torch.bool, device=x.device).tril()[None].expand(n, s, s)
        mask = torch.cat([cached, causal], -1)[:, None]  # (n, 1, s, span + s)
        new_k, new_v = [], []
        for li, layer in enumerate(self.layers):
            q, k, v = (t.view(n, s, -1, layer.hd).transpose(1, 2) for t in layer.qkv(x, freqs, self._rope))
            y = F.scaled_dot_product_attention(q, torch.cat([k_cache[li], k], 2), torch.cat([v_cache[li], v], 2),
                                               attn_mask=mask, enable_gqa=layer.gqa)  # (n, heads, s, hd)
            x = layer.rest(x, y.transpose(1, 2).reshape(n * s, -1))
            new_k.append(k)
            new_v.append(v)
        return m.lm_head(m.model.norm(x)).view(n, s, -1), torch.stack(new_k), torch.stack(new_v)

    @torch.no_grad()
    def extend(self, rows: list[tuple[int, int, list[int]]]) -> list[torch.Tensor]:
        """Feed rows of (slot, start position, tokens) into their slots' caches in one pass (rows may differ in
        length: shorter ones are padded, and padding is neither written nor returned); the logits after each
        token, a (len(tokens), V) tensor per row. Speculative decoding checks a draft this way, and a draft model
        catches up on the tokens it has not seen.

        As in `_decode`, the pass runs over slots 0..n-1 (n = the highest slot given + 1), so the cache is read
        as a view, never gathered; idle slots' rows are computed and dropped."""
        if len(rows) == 1 and self.fused():  # one row: the fused graph writes the cache itself
            slot, st, t = rows[0]
            return [self.onnx_step.extend(slot, st, t)]
        n, s = max(sl for sl, _, _ in rows) + 1, max(len(t) for _, _, t in rows)
        tokens = torch.zeros(n, s, dtype=torch.long)
        start = torch.zeros(n, dtype=torch.long)
        for slot, st, t in rows:
            tokens[slot, :len(t)] = torch.tensor(t)
            start[slot] = st
        pos = (start[:, None] + torch.arange(s)).clamp(max=self.max_len - 1)  # padding: any valid position
        span = max(int(start.max()), 2)  # compiled graphs specialise a size of 1; the mask hides the extra one
        args = (tokens.to(self.device), pos.to(self.device), start.to(self.device),
                self.k_cache[:, :n, :, :span], self.v_cache[:, :n, :, :span])
        if self.backend == "onnxruntime":
            logits, new_k, new_v = self._onnx_extend()(*args)
        elif self.compiled_extend is not None:
            for t, dim in ((args[0], 0), (args[0], 1), (args[1], 0), (args[1], 1), (args[2], 0), (args[3], 1),
                           (args[3], 3), (args[4], 1), (args[4], 3)):
                if t.shape[dim] > 1:  # a size of 1 is specialised: one graph for one row, one for several
                    torch._dynamo.mark_dynamic(t, dim)
            logits, new_k, new_v = self.compiled_extend(*args)
        else:
            logits, new_k, new_v = self._extend_core(*args)
        for slot, st, t in rows:
            self.k_cache[:, slot, :, st: st + len(t)] = new_k[:, slot, :, :len(t)]
            self.v_cache[:, slot, :, st: st + len(t)] = new_v[:, slot, :, :len(t)]
        return [logits[slot, :len(t)] for slot, _, t in rows]

    def _decode(self, rows: list[Request]) -> torch.Tensor:
        """One token for each request in `rows`; their logits, in order.

        The step runs over the slots 0..n-1, n = the highest slot in use + 1 (rounded up to a compiled size when
        compiling), so the cache is read as a view, never gathered; idle slots' rows are computed and dropped."""
        n = max(r.slot for r in rows) + 1
        tokens, pos = [0] * n, [0] * n
        for r in rows:
            tokens[r.slot], pos[r.slot] = r.output_ids[-1], self.lengths[r.slot]
        if self.fused():  # no autograd to turn off: onnxruntime's, and the step's own buffers
            # the step writes the cache of every row 0..n-1: a row not decoding now gets its own length, the next
            # position it writes before it reads it
            decoding = {r.slot for r in rows}
            pos = [p if s in decoding else min(self.lengths[s], self.max_len - 1) for s, p in enumerate(pos)]
            logits = self.onnx_step.decode(tokens, pos)
            # rows picked in numpy: a torch gather of 16 rows runs on PyTorch's threads, which then wait on cores
            # onnxruntime's spinning workers hold (5 ms a step, measured)
            slots = [r.slot for r in rows]
            return logits if slots == list(range(n)) else torch.from_numpy(logits.numpy()[slots])
        with torch.no_grad():
            logits, new_k, new_v = self._core(torch.tensor(tokens, device=self.device),
                                              torch.tensor(pos, device=self.device))
            if len(rows) == 1:  # plain slicing: cheaper than an indexed write
                slot, at = rows[0].slot, pos[rows[0].slot]
                self.k_cache[:, slot, :, at] = new_k[:, slot]
                self.v_cache[:, slot, :, at] = new_v[:, slot]
                return logits[slot: slot + 1]
            sl = torch.tensor([r.slot for r in rows], device=self.device)
            at = torch.tensor([pos[r.slot] for r in rows], device=self.device)
            # two index tensors apart: the indexed dimension comes first, so the values go (row, layer, kv, hd)
            self.k_cache[:, sl, :, at] = new_k[:, sl].transpose(0, 1)
            self.v_cache[:, sl, :, at] = new_v[:, sl].transpose(0, 1)
            return logits[sl]

    def _core(self, tokens: torch.Tensor, pos: torch.Tensor):
        # at least 2 positions: compiled graphs specialise a size of 1, and a span of 2 costs nothing
        span = max(int(pos.max()), 1) + 1
        k, v = self.k_cache[:, :, :, :span], self.v_cache[:, :, :, :span]
        if self.backend == "onnxruntime":
            n = tokens.shape[0]
            return self._onnx_step()(tokens, pos, k[:, :n], v[:, :n])
        if self.compiled is None:
            return self._decode_core(tokens, pos, k, v)
        if tokens.shape[0] > 1:  # one graph for every row count above one, not one per count
            torch._dynamo.mark_dynamic(tokens, 0)
            torch._dynamo.mark_dynamic(pos, 0)
        torch._dynamo.mark_dynamic(k, 3)  # and one for every span
        torch._dynamo.mark_dynamic(v, 3)
        return self.compiled(tokens, pos, k, v)

    def fused(self) -> bool:
        """Whether steps run on onnx_fused.py's graph, which writes this engine's cache in place."""
        return self.backend == "onnxruntime" and self._onnx_step().in_place

    def _onnx_step(self):
        if self.onnx_step is None:  # built once, at warm-up or at the first decode step
            from lmwright.model.onnx_step import OnnxStep

            self.onnx_step = OnnxStep.decode(self, self.threads)
        if self.onnx_step.in_place and self.onnx_step.k_cache is not self.k_cache:
            raise ValueError("this onnxruntime decode step writes another engine's cache; build one per engine")
        return self.onnx_step

    def _onnx_extend(self):
        if self.onnx_extend is None:  # the checking pass, with the decode step's thread count
            from lmwright.model.onnx_step import OnnxStep

            self.onnx_extend = OnnxStep.extend(self, self._onnx_step().threads)
        return self.onnx_extend

    @torch.no_grad()
    def warm_up(self) -> float:
        """Compile the decode graphs (and the checking pass's, with a drafter), or build the onnxruntime step, now
        rather than on a live request; returns the seconds it took. The warm-up writes only where no request
        reads before writing: free slots, and the last position of every slot (onnxruntime's thread timing)."""
        t0 = time.perf_counter()
        if self.backend == "onnxruntime":
            if not self.fused() and self.drafter is not None:  # fused: the same graph checks guesses
                self._onnx_extend()
        if self.compiled is not None:
            for n in sorted({1, min(2, self.max_batch)}):
                self._core(torch.zeros(n, dtype=torch.long, device=self.device),
                           torch.full((n,), 2, dtype=torch.long, device=self.device))
        if self.compiled_extend is not None:  # and the checking pass, for one row and for several
            self.extend([(0, 2, [0, 0, 0])])
            if self.max_batch > 1:
                self.extend([(0, 2, [0, 0]), (1, 3, [0, 0, 0])])
        return time.perf_counter() - t0

    # -- sampling ---------------------------------------------------------------------------------------------
    def _sample(self, req: Request, logits: torch.Tensor) -> int:
        return sample(req, logits)

    def distribution(self, req: Request, logits: torch.Tensor) -> torch.Tensor | int:
        """What `req`'s next token is drawn from (model/sampling.py): the probabilities, or the token itself."""
        return of_request(req, logits)

    # -- the loop -------------------------------------------------------------------------------------------------
    def _detokenize(self, req: Request) -> str:
        """The output's text, decoded incrementally: only the tokens since the last point where the text was whole
        (no character cut in two) are decoded again, not the whole output at every token. Byte-level BPE text is
        the concatenation of its tokens' bytes, so the text up to such a point never changes; the result equals
        decoding every output token at once (tests/test_engine.py checks this on random ids). Other decoders
        decode the whole output."""
        if not self.incremental_text:
            return self.tok.decode(req.output_ids)
        tail = self.tok.decode(req.output_ids[req.settled_at:])
        if not tail.endswith("\ufffd"):  # whole: what is decoded so far is final
            req.settled, req.settled_at = req.settled + tail, len(req.output_ids)
            return req.settled
        return req.settled + tail  # a character still arriving: decoded again with the next token

    def _emit(self, req: Request, tok_id: int | None) -> None:
        now = time.perf_counter()
        if tok_id is not None:
            req.output_ids.append(tok_id)
            req.token_times.append(now)
            if req.first_token is None:
                req.first_token = now
            settled = len(req.settled)
            text = self._detokenize(req)
            # a stop sequence is looked for where it could first appear: the text before had none
            cut = min((i for i in (text.find(s, max(0, settled - len(s))) for s in req.params.stop if s) if i >= 0),
                      default=-1)
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
                req.slot = self.free.pop(self.free.index(min(self.free)))  # low slots: a smaller decode view
                admitted.append(req)
        for req in admitted:  # prefill: the whole prompt into the slot's cache, then the first token
            req.scheduled = time.perf_counter()
            if req.cancelled:
                self._finish(req)
                continue
            logits = self._prefill(req.prompt_ids, req.slot, req)
            self.lengths[req.slot] = len(req.prompt_ids)
            if self.drafter is not None:
                self.drafter.admit(self, req)
            self.running[req.slot] = req
            self._after_token(req, self._sample(req, logits[0]))
        active = [r for r in self.running.values() if not r.finished and r not in admitted]
        if active and not (self.drafter is not None and speculative_step(self, active)):
            logits = self._decode(active)
            # in numpy on the fused graph's float32 buffer (no PyTorch thread woken beside onnxruntime's); a PyTorch
            # step's logits may be on an accelerator or in bfloat16
            for r, tok_id in zip(active, pick(active, logits, numpy_argmax=self.fused()), strict=True):
                self.lengths[r.slot] += 1
                self._after_token(r, tok_id)
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
        if self.drafter is not None:
            self.drafter.release(req.slot)
        if req.finish_reason is None:
            req.finish_reason = "abort"
            req.on_event(req, "", True)
        with self.lock:
            self.free.append(req.slot)

    def run_until_done(self) -> None:
        while self.step():
            pass

    def run_forever(self, stop: threading.Event) -> None:
        """The serving loop: steps while there is work, sleeps on `wake` when there is none. A step that fails
        (a bug) ends the requests it held with finish_reason "error" and the loop goes on."""
        import traceback

        while not stop.is_set():
            try:
                busy = self.step()
            except Exception:  # noqa: BLE001 - the server must outlive one bad step
                traceback.print_exc()
                self._fail_running()
                continue
            if not busy:
                self.wake.wait(0.05)
                self.wake.clear()

    def _fail_running(self) -> None:
        for slot, req in list(self.running.items()):
            req.finish_reason = req.finish_reason or "error"
            req.on_event(req, "", True)
            self.running.pop(slot)
            with self.lock:
                if slot not in self.free:
                    self.free.append(slot)

    # -- convenience -----------------------------------------------------------------------------------------------
    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[Request]:
        """Every prompt through the engine at once (continuous batching), in this thread."""
        reqs = [self.submit(p, params) for p in prompts]
        self.run_until_done()
        return reqs
