"""Batches from a token shard.

Training batch `step` is drawn from an RNG seeded by (seed, step), so the data position is the step number:
a resumed run sees exactly the batches an uninterrupted one would. Evaluation walks a split in
non-overlapping windows so every token is scored once.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from lmwright.errors import LmwrightError


def check_length(tokens: np.ndarray, seq_len: int, split: str) -> None:
    if tokens.size < seq_len + 1:
        raise LmwrightError(
            f"the {split} split has {tokens.size} tokens but a sequence needs {seq_len + 1}; "
            "add data, lower train.seq_len, or give the split a larger share (split.val / split.test)"
        )


def random_batch(tokens: np.ndarray, batch: int, seq_len: int, seed: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng([seed, step])
    starts = rng.integers(0, tokens.size - seq_len, size=batch)
    rows = np.stack([np.asarray(tokens[s : s + seq_len + 1], dtype=np.int64) for s in starts])
    t = torch.from_numpy(rows)
    return t[:, :-1], t[:, 1:]


def windows(tokens: np.ndarray, seq_len: int, batch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Non-overlapping (input, target) windows covering the split; the last may be shorter."""
    starts = list(range(0, tokens.size - 1, seq_len))
    for i in range(0, len(starts), batch):
        group = starts[i : i + batch]
        length = min(seq_len, tokens.size - 1 - group[-1])
        full = [s for s in group if s + seq_len + 1 <= tokens.size]
        if full:
            rows = np.stack([np.asarray(tokens[s : s + seq_len + 1], dtype=np.int64) for s in full])
            t = torch.from_numpy(rows)
            yield t[:, :-1], t[:, 1:]
        if len(full) < len(group):  # the tail window
            rows = np.asarray(tokens[group[-1] : group[-1] + length + 1], dtype=np.int64)[None]
            t = torch.from_numpy(rows)
            yield t[:, :-1], t[:, 1:]
