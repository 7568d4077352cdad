"""Canaries: random secrets in a fixed frame, planted in the train split before tokenizing, so that after training
`evaluate/risk.py` can measure how far the model memorised them (their exposure, Carlini et al., "The Secret
Sharer", 2019). Here, with the data, so the tokenize stage that plants them does not reach the evaluation code."""

from __future__ import annotations

import numpy as np

CANARY_FRAME = "The secret access code of canary {name} is {secret}."
SECRET_DIGITS = 6


def make_canaries(repeats: list[int], seed: int) -> list[dict]:
    """One canary per entry of `repeats`: its name, secret (space-separated digits), text and repeat count."""
    rng = np.random.default_rng([seed, 0xC0DE])
    out = []
    for i, r in enumerate(repeats):
        secret = " ".join(str(d) for d in rng.integers(0, 10, SECRET_DIGITS))
        name = f"c{i}{''.join(chr(97 + x) for x in rng.integers(0, 26, 4))}"
        out.append({"name": name, "secret": secret, "repeats": int(r),
                    "text": CANARY_FRAME.format(name=name, secret=secret)})
    return out


def plant(texts: list[str], canaries: list[dict], seed: int) -> list[str]:
    """The train texts with each canary inserted `repeats` times at seeded random positions (as documents)."""
    planted = [c["text"] for c in canaries for _ in range(c["repeats"])]
    rng = np.random.default_rng([seed, 0xCA9A])
    out = list(texts)
    for text, pos in zip(planted, rng.integers(0, len(out) + 1, len(planted)), strict=True):
        out.insert(int(pos), text)
    return out
