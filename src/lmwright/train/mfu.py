"""Model FLOPs utilisation (MFU): the FLOP rate training reaches, as a fraction of the hardware's peak.

What "100%" means, by device:
- a GPU in `DATASHEET_TFLOPS`: its datasheet dense (no sparsity) peak for the training dtype, as PaLM and
  nanochat report it; fp32 counts the TF32 tensor cores only when torch is allowed to use them;
- any other device (CPUs, GPUs not in the table): a measured peak, a large square matmul in the training dtype on
  the thread count training uses, warmed up and timed 20 times for about 20 ms each; the best timing counts,
  since a hiccup can only make a timing slower;
- `train.peak_tflops` when set.
A utilisation above 100% is a wrong peak, not fast training: `MfuMeter` re-measures a measured peak, and if
training still runs faster it takes the rate training reached as the peak and warns. It never reports above 100%.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import torch

# Dense TFLOP/s per GPU from the vendors' datasheets, by training dtype; the first pattern that matches
# `torch.cuda.get_device_name()` wins, so the specific variants come before the family
DATASHEET_TFLOPS: list[tuple[str, dict[str, float]]] = [
    (r"H[12]00.*NVL", {"bf16": 835.5, "fp16": 835.5, "tf32": 417.5, "fp32": 60.0}),
    (r"H100.*PCIe", {"bf16": 756.5, "fp16": 756.5, "tf32": 378.0, "fp32": 51.2}),
    (r"H100|H200|GH200", {"bf16": 989.4, "fp16": 989.4, "tf32": 494.7, "fp32": 66.9}),  # SXM
    (r"B200", {"bf16": 2250.0, "fp16": 2250.0, "tf32": 1125.0}),
    (r"\bA100\b", {"bf16": 312.0, "fp16": 312.0, "tf32": 156.0, "fp32": 19.5}),
    (r"L40S", {"bf16": 362.1, "fp16": 362.1, "tf32": 183.0, "fp32": 91.6}),
    (r"\bL4\b", {"bf16": 121.0, "fp16": 121.0, "tf32": 60.0, "fp32": 30.3}),
    (r"\bA10\b", {"bf16": 125.0, "fp16": 125.0, "tf32": 62.5, "fp32": 31.2}),
    (r"RTX 4090", {"bf16": 165.2, "fp16": 165.2, "tf32": 82.6, "fp32": 82.6}),  # fp32 accumulation
    (r"RTX 3090", {"bf16": 71.0, "fp16": 71.0, "tf32": 35.6, "fp32": 35.6}),
    (r"V100.*SXM", {"fp16": 125.0, "fp32": 15.7}),
    (r"V100", {"fp16": 112.0, "fp32": 14.0}),
    (r"\bT4\b", {"fp16": 65.0, "fp32": 8.1}),
    (r"MI300X", {"bf16": 1307.4, "fp16": 1307.4, "tf32": 653.7, "fp32": 163.4}),
]

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Peak:
    flops: float  # FLOP/s of one process
    source: str  # how it was found, for the progress line and the report

    def describe(self) -> str:
        return f"{self.flops / 1e12:.3g} TFLOP/s ({self.source})"


def datasheet_peak(device_name: str, precision: str) -> float | None:
    """The datasheet dense FLOP/s of a known GPU for a precision, or None."""
    key = precision
    if precision == "fp32" and torch.get_float32_matmul_precision() != "highest":
        key = "tf32"  # torch may run fp32 matmuls on TF32 tensor cores
    for pattern, peaks in DATASHEET_TFLOPS:
        if re.search(pattern, device_name, re.IGNORECASE):
            return peaks[key] * 1e12 if key in peaks else None
    return None


@cache
def measured_peak(device_type: str, precision: str, threads: int, repeats: int = 20, block_s: float = 0.02) -> float:
    """FLOP/s of a large square matmul in this dtype on this many threads: the best of `repeats` timings of a
    block of matmuls lasting about `block_s` each, after a warm-up. Many short timings, the fastest kept: on a
    shared machine a hiccup only slows a timing, so the best one is the machine's rate. Cached per process (the
    thread count is part of the key)."""
    device = torch.device(device_type)
    dtype = DTYPES[precision]

    def sync() -> None:  # GPU kernels run asynchronously: time them to completion
        if device.type == "cuda":
            torch.cuda.synchronize()
        elif device.type == "mps":
            torch.mps.synchronize()

    def timed(a: torch.Tensor, b: torch.Tensor, k: int) -> float:
        sync()
        t0 = time.perf_counter()
        for _ in range(k):
            a @ b
        sync()
        return time.perf_counter() - t0

    n = 1024 if device.type == "cpu" else 4096
    while True:  # a dtype this device is slow at (bf16 on most CPUs) gets a smaller matmul, not a minute's wait
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        if timed(a, b, 1) < 0.1 or n <= 256:
            break
        n //= 2
    timed(a, b, 3)  # warm-up: kernels chosen, caches and clocks up
    k = max(1, round(block_s / max(timed(a, b, 1), 1e-9)))
    best, t_end = 0.0, time.perf_counter() + 2.0
    for i in range(repeats):
        best = max(best, 2 * n**3 * k / timed(a, b, k))
        if i >= 2 and time.perf_counter() > t_end:
            break
    return best


def find_peak(device: torch.device, precision: str, peak_tflops: float | None = None) -> Peak:
    """The MFU denominator for training on `device` in `precision` (see the module docstring)."""
    if peak_tflops:
        return Peak(peak_tflops * 1e12, "train.peak_tflops")
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        if (flops := datasheet_peak(name, precision)) is not None:
            return Peak(flops, f"datasheet dense {precision} peak of {name}")
    flops = measured_peak(device.type, precision, torch.get_num_threads())
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} CPU threads"
    return Peak(flops, f"measured: best of 20 {precision} matmul timings on {where}")


class MfuMeter:
    """MFU from a token rate, never above 100%: a rate above the peak means the peak was wrong, so it is
    re-measured (when it was measured) or raised to the rate reached, with a warning through `warn`."""

    def __init__(self, peak: Peak, flops_per_token: float, world: int, device: torch.device, precision: str,
                 warn: Callable[[str], None]):
        self.peak, self.fpt, self.world, self.device, self.precision, self.warn = (peak, flops_per_token, world,
                                                                                 device, precision, warn)

    def __call__(self, tokens_per_s: float) -> float:
        rate = tokens_per_s * self.fpt / self.world  # FLOP/s of one process
        if rate <= self.peak.flops:
            return rate / self.peak.flops
        before = self.peak.describe()
        if self.peak.source.startswith("measured"):
            measured_peak.cache_clear()
            again = measured_peak(self.device.type, self.precision, torch.get_num_threads())
            if again > self.peak.flops:
                self.peak = Peak(again, self.peak.source + ", re-measured")
        if rate > self.peak.flops:
            self.peak = Peak(rate, f"the rate training reached, above the peak {before}")
        self.warn(f"training ran at {rate / 1e12:.3g} TFLOP/s, above the MFU peak {before}: that peak was wrong; "
                  f"MFU is now against {self.peak.describe()}")
        return rate / self.peak.flops
