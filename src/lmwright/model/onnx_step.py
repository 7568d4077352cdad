"""The engine's decode step on onnxruntime (`serve.backend: onnxruntime`).

At batch 1 a small model's decode step is mostly per-operation overhead in PyTorch (dispatch, guards, the Python
wrapper of a compiled graph), and its matrix-vector products are slower than onnxruntime's. So the engine's step,
`Engine._decode_core` (a pure function of the new tokens, their positions and the cache cut to the span in use),
runs in an onnxruntime session: as a graph of onnxruntime's fused operators where the model's blocks allow it
(`onnx_fused.py`), else exported from PyTorch with the dynamo exporter (rows and span dynamic). With speculative
decoding the pass that checks guesses (`Engine._extend_core`) is exported too. Prefill, the cache, sampling,
stops and streaming stay the engine's, so continuous batching behaves exactly as with PyTorch. The graphs are
the engine's, not the export's `model.onnx`: they take and return keys and values in the engine's cache layout
(RoPE pairs interleaved).
"""

from __future__ import annotations

import logging
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from lmwright.errors import LmwrightError

INSTALL = 'pip install "lmwright[export]"'


def require_onnxruntime() -> None:
    """Fail now, with the install line, when the backend's packages are missing (not at the first request)."""
    missing = []
    for name in ("onnxruntime", "onnxscript", "onnx"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise LmwrightError(f"serve.backend onnxruntime needs {', '.join(missing)}: {INSTALL} (or set "
                            "serve.backend: torch)")


class OnnxStep:
    """One of the engine's pure functions on onnxruntime: `step(*tensors) -> tuple of tensors`.

    `OnnxStep.decode(engine)` is the decode step: an `InPlaceStep` (onnx_fused.py's graph, writing the engine's
    cache) where the blocks allow it, else `Engine._decode_core(tokens, pos, k_cache, v_cache)` exported;
    `OnnxStep.extend(engine, threads)` is `Engine._extend_core(tokens, pos, start, k_cache, v_cache)`, the pass
    that checks speculative guesses. Built from an engine (its weights arranged for decoding); `seconds` is how long the export and the
    session took. With more than one thread, onnxruntime's worker threads spin (wait busily) a moment after each
    operator: on two cores that makes the step 1.2-1.3x faster than one thread, where sleeping workers make it
    slower; the timing at start keeps one thread where the spinning does not pay."""

    in_place = False  # InPlaceStep: the cache is written by the step itself

    def __init__(self, write, names: list[str], threads: list[int], pick=None, kind: str = "exported"):
        """`write(path)` writes the graph to `path`; `threads`: the thread counts to build a session for, of which
        `pick(sessions)` keeps the fastest; `kind` says how it was made ("fused": onnx_fused.py's graph of
        onnxruntime's fused operators; "exported": the engine's PyTorch function through the dynamo exporter)."""
        require_onnxruntime()
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "step.onnx"
            write(path)
            sessions = {t: _session(path, t) for t in threads}  # onnxruntime reads the weights in: tmp may go
        self.names, self.kind = names, kind
        self.threads = pick(sessions) if len(sessions) > 1 else threads[0]
        self.session = sessions[self.threads]
        self.seconds = time.perf_counter() - t0

    @property
    def spins(self) -> bool:
        """Whether the session's worker threads spin between operators (`_session`: with more than one thread)."""
        return self.threads > 1

    @classmethod
    def decode(cls, engine, threads: int | None = None, fused: bool = True) -> OnnxStep:
        """`threads`: onnxruntime's intra-op threads; None times 1 and PyTorch's count on this machine and keeps
        the faster (the default model's step on 2 cores: 0.21 ms on one thread, 0.17 ms on two spinning).
        `fused`: onnx_fused.py's graph where the model's blocks allow it (else the exported step)."""
        from lmwright.model import onnx_fused

        names = ["tokens", "pos", "k_cache", "v_cache"]
        threads_ = sorted({threads} if threads else {1, torch.get_num_threads()})
        pick = lambda sessions: _fastest(sessions, engine)  # noqa: E731
        if fused and onnx_fused.supported(engine.cfg):
            def write(path: Path) -> None:
                import onnx

                onnx.save_model(onnx_fused.decode_graph(engine), str(path), save_as_external_data=True,
                                location=path.name + ".data")
            return InPlaceStep(engine, write, threads_)
        rows, span = min(2, engine.max_batch), min(8, engine.cfg.max_seq_len)
        n = torch.export.Dim("rows", min=1, max=max(engine.max_batch, 2))
        s = torch.export.Dim("span", min=2, max=engine.cfg.max_seq_len)
        example = (torch.zeros(rows, dtype=torch.long), torch.full((rows,), span - 1, dtype=torch.long),
                   engine.k_cache[:, :rows, :, :span].contiguous(), engine.v_cache[:, :rows, :, :span].contiguous())
        return cls(_exporter(_Decode(engine), example, ({0: n}, {0: n}, {1: n, 3: s}, {1: n, 3: s}), names),
                   names, threads_, pick)

    @classmethod
    def extend(cls, engine, threads: int) -> OnnxStep:
        rows, new, span = min(2, engine.max_batch), 3, min(8, engine.cfg.max_seq_len)
        n = torch.export.Dim("rows", min=1, max=max(engine.max_batch, 2))
        t = torch.export.Dim("new", min=1, max=engine.cfg.max_seq_len)
        s = torch.export.Dim("span", min=2, max=engine.cfg.max_seq_len)
        start = torch.full((rows,), span, dtype=torch.long)
        example = (torch.zeros(rows, new, dtype=torch.long), start[:, None] + torch.arange(new), start,
                   engine.k_cache[:, :rows, :, :span].contiguous(), engine.v_cache[:, :rows, :, :span].contiguous())
        names = ["tokens", "pos", "start", "k_cache", "v_cache"]
        dynamic = ({0: n, 1: t}, {0: n, 1: t}, {0: n}, {1: n, 3: s}, {1: n, 3: s})
        return cls(_exporter(_Extend(engine), example, dynamic, names), names, [threads])

    def __call__(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # the cache views come cut to the rows and span in use: one contiguous copy each, small next to the
        # weights' reads
        out = self.session.run(None, {k: np.ascontiguousarray(t.numpy()) for k, t in zip(self.names, tensors, strict=True)})
        return tuple(torch.from_numpy(x) for x in out)


def _exporter(module: torch.nn.Module, example: tuple, dynamic: tuple, names: list[str]):
    """A writer of `module`'s graph through the dynamo exporter (its notes and warnings quieted)."""
    def write(path: Path) -> None:
        quiet = logging.getLogger("torch.onnx")  # the exporter's notes about packages it does not need
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(module.eval(), example, str(path), dynamo=True, optimize=True, verbose=False,
                                  input_names=names, output_names=["logits", "new_k", "new_v"],
                                  dynamic_shapes=dynamic)
        finally:
            quiet.setLevel(level)
    return write


class InPlaceStep(OnnxStep):
    """onnx_fused.py's graph, bound to the engine's own cache. `decode(tokens, pos)`: one new token for each of rows
    0..n-1, each row's key and value written at its position; the logits (n, vocab). `extend(slot, start, tokens)`:
    several new tokens of one row (GroupQueryAttention's CPU kernel takes several tokens for one row only), for
    prefill (start 0) and for checking guesses; their keys and values written at start.., the logits after each.

    Every row of 0..n-1 is computed and written, so a row that is not decoding this step (a request just
    prefilled, a free slot) must be given a position whose content does not matter: its own length, the next
    position it will write before it reads it (`Engine._decode` does so). The buffers of each shape are bound
    once (the cache never moves), so a step costs one call and no copies. The logits come back in one buffer per
    shape, overwritten by the next call of that shape; one thread steps (the engine's)."""

    in_place = True

    def __init__(self, engine, write, threads: list[int]):
        self.k_cache, self.v_cache, self.layers = engine.k_cache, engine.v_cache, len(engine.layers)
        self.max_len, self.vocab, self.d_model = engine.max_len, engine.cfg.vocab_size, engine.cfg.d_model
        self.hidden: torch.Tensor | None = None  # the last extend's block output
        self._bound: dict = {}
        super().__init__(write, [], threads, pick=lambda sessions: _fastest_in_place(self, sessions, engine.max_batch),
                         kind="fused")
        self._bound = {}  # the timing's bindings were to the sessions it dropped

    def _binding(self, session, rows: slice, s: int, k: int):
        n = rows.stop - rows.start
        bufs = {"tokens": np.zeros((n, s), np.int64), "seqlens": np.zeros(n, np.int32),
                "total": np.zeros((), np.int32), "which": np.arange(s - k, s, dtype=np.int64)}
        logits = torch.empty(n, k, self.vocab, dtype=torch.float32)
        hidden = torch.empty(n, s, self.d_model, dtype=torch.float32)
        io = session.io_binding()
        for name, a in bufs.items():
            io.bind_input(name, "cpu", 0, a.dtype, list(a.shape), a.ctypes.data)
        for i in range(self.layers):
            for kind, cache in (("k", self.k_cache), ("v", self.v_cache)):
                part = cache[i, rows]  # contiguous: the slot dimension is the layer's outermost
                io.bind_input(f"past_{kind}_{i}", "cpu", 0, np.float32, list(part.shape), part.data_ptr())
                io.bind_output(f"present_{kind}_{i}", "cpu", 0, np.float32, list(part.shape), part.data_ptr())
        io.bind_output("logits", "cpu", 0, np.float32, [n, k, self.vocab], logits.data_ptr())
        io.bind_output("hidden", "cpu", 0, np.float32, list(hidden.shape), hidden.data_ptr())
        return io, bufs, logits, hidden

    def _run(self, session, rows: slice, tokens: list, last: list[int], k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens: a list of each row's new tokens; last: each row's last new position (its length after the
        step, minus one); the logits of each row's last k new tokens, and the last block's output at each."""
        s = len(tokens[0])
        key = (id(session), rows.start, rows.stop, s, k)
        bound = self._bound.get(key)
        if bound is None:
            bound = self._binding(session, rows, s, k)
            if s <= 16:  # decode steps and guess checks recur; a prompt's length seldom does
                self._bound[key] = bound
        io, bufs, logits, hidden = bound
        bufs["tokens"][:] = tokens
        bufs["seqlens"][:] = last
        bufs["total"][()] = max(last) + 1
        session.run_with_iobinding(io)
        return logits, hidden

    def __call__(self, *tensors: torch.Tensor):
        raise TypeError("an in-place step has no copying call: use decode() or extend(), which write the cache")

    def decode(self, tokens: list[int], pos: list[int], session=None) -> torch.Tensor:
        return self._run(session or self.session, slice(0, len(tokens)), [[t] for t in tokens], pos, 1)[0][:, 0]

    def extend(self, slot: int, start: int, tokens: list[int], last_only: bool = False) -> torch.Tensor:
        """`tokens` into `slot` at positions start.. (which must end inside the context); the logits after each
        token (len(tokens), vocab), or after the last only (1, vocab). `hidden` is then the last block's output at
        each token (len(tokens), d), until the next call of this shape."""
        if start + len(tokens) > self.max_len:
            raise ValueError(f"{start} + {len(tokens)} tokens run past the context of {self.max_len}")
        k = 1 if last_only else len(tokens)
        logits, hidden = self._run(self.session, slice(slot, slot + 1), [tokens], [start + len(tokens) - 1], k)
        self.hidden = hidden[0]
        return logits[0]


def _fastest_in_place(step: InPlaceStep, sessions: dict, max_batch: int) -> int:
    """As `_fastest`, for the in-place step: every row at the last position, the one place no request reads
    before its own step writes it, so timing at any moment leaves every request's cache as it was. (Attention
    over the whole context leans the choice toward more threads, against what short requests would pick.)"""
    return _fastest_of(sessions, sorted({1, max_batch}),
                       lambda sess, n: step.decode([0] * n, [step.max_len - 1] * n, sess))


class _Decode(torch.nn.Module):
    """The engine's decode step as a module, for the exporter (the weights it reads become the graph's constants)."""

    def __init__(self, engine):
        super().__init__()
        self.engine = engine

    def forward(self, tokens, pos, k_cache, v_cache):
        return self.engine._decode_core(tokens, pos, k_cache, v_cache)


class _Extend(_Decode):
    """The engine's checking pass (several new tokens per row) as a module."""

    def forward(self, tokens, pos, start, k_cache, v_cache):
        return self.engine._extend_core(tokens, pos, start, k_cache, v_cache)


def _session(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # a step's operators are microseconds long: a worker woken from sleep for each costs more than it shares,
    # one that spins a moment between them does not (on the step's own cores; the engine's Python runs between)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if threads > 1 else "0")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _fastest(sessions: dict, engine) -> int:
    """The thread count whose session runs a one-row and a full-batch step fastest here."""
    span = min(64, engine.cfg.max_seq_len)
    feeds = [{"tokens": np.zeros(rows, np.int64), "pos": np.full(rows, span - 1, np.int64),
              "k_cache": np.ascontiguousarray(engine.k_cache[:, :rows, :, :span].numpy()),
              "v_cache": np.ascontiguousarray(engine.v_cache[:, :rows, :, :span].numpy())}
             for rows in sorted({1, engine.max_batch})]
    return _fastest_of(sessions, range(len(feeds)), lambda sess, i: sess.run(None, feeds[i]))


def _fastest_of(sessions: dict, shapes, call, reps: int = 20) -> int:
    """The key of `sessions` (a thread count) whose session runs `call(session, shape)` fastest over `shapes`: each
    shape's time relative to the best at that shape, summed; best of three interleaved rounds."""
    best = {(t, shape): float("inf") for t in sessions for shape in shapes}
    for _ in range(3):
        for t, sess in sessions.items():
            for shape in shapes:
                call(sess, shape)
                start = time.perf_counter()
                for _ in range(reps):
                    call(sess, shape)
                best[t, shape] = min(best[t, shape], time.perf_counter() - start)
    floor = {shape: min(best[t, shape] for t in sessions) for shape in shapes}
    return min(sessions, key=lambda t: sum(best[t, shape] / floor[shape] for shape in shapes))
