"""Model FLOPs utilisation: FLOPs a training sample costs, and the machine's measured matmul peak."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def counted_flops(step: Callable[[], object]) -> int:
    """FLOPs of the matmuls, convolutions and attention that `step` runs, forward and backward."""
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def synchronize(device: str) -> None:
    """Wait for queued GPU work, so wall time covers it; nothing to wait for on CPU."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def matmul_peak_gflops(
    precision: str, device: str, size: int, window_seconds: float = 0.5, windows: int = 4
) -> float:
    """GFLOP/s of back-to-back size x size matmuls in the given precision, on torch's current threads:
    the ceiling a training step's matmuls could reach here. The best of several short windows, since on
    shared cores other load only ever lowers a window's rate."""
    a, b = (torch.randn(size, size, device=device, dtype=DTYPES[precision]) for _ in range(2))
    a @ b  # warm-up: thread pool, kernels, caches
    synchronize(device)
    rates = []
    for _ in range(windows):
        calls, start = 0, time.perf_counter()
        while calls == 0 or time.perf_counter() - start < window_seconds:
            a @ b
            calls += 1
            synchronize(device)
        rates.append(2 * size**3 * calls / (time.perf_counter() - start) / 1e9)
    return max(rates)


def mfu(flops_per_sample: float, samples_per_s: float | None, peak_gflops: float | None) -> float | None:
    """Achieved model FLOP/s over the peak; None when the trainer did not run or there is no peak."""
    if samples_per_s is None or peak_gflops is None:
        return None
    return flops_per_sample * samples_per_s / (peak_gflops * 1e9)
