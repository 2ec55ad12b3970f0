"""What the forward benchmarks share: check that the implementations agree, then time them
side by side in one process (a warm-up, then repeats with the order rotated each time, so
no implementation always runs first), and report medians."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def time_ms(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, cuda: bool) -> float:
    """Wall time of ``fn(x)`` in milliseconds (synchronising the GPU around it)."""
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn(x)
    if cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1e3


@torch.inference_mode()
def compare_and_time(
    runs: dict[str, Callable[[torch.Tensor], torch.Tensor]],
    x: torch.Tensor,
    expected: torch.Tensor,
    *,
    warmup: int,
    repeats: int,
    cuda: bool,
) -> tuple[dict[str, float], float]:
    """Assert every run gives ``expected`` (to 1e-4), then time them; returns the median
    milliseconds per run and the largest absolute difference from ``expected``."""
    max_diff = 0.0
    for name, fn in runs.items():
        out = fn(x)
        diff = (out - expected).abs().max().item()
        max_diff = max(max_diff, diff)
        assert torch.allclose(out, expected, atol=1e-4, rtol=1e-4), (name, diff)
    for _ in range(warmup):
        for fn in runs.values():
            fn(x)
    order = list(runs)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for i in range(repeats):
        shift = i % len(order)
        for name in order[shift:] + order[:shift]:  # rotate who runs first
            times[name].append(time_ms(runs[name], x, cuda))
    return {name: statistics.median(t) for name, t in times.items()}, max_diff
