"""What the benchmarks share: check that the implementations agree, then time them side by side
in one process (a warm-up, then repeats with the order rotated each time, so no implementation
always runs first), and report medians (or min / median / max, to show the noise); and a timer
that says where one instrumented run spends its time."""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

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
    times = rounds({name: (lambda fn=fn: fn(x)) for name, fn in runs.items()}, repeats, cuda)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}, max_diff


def rounds(
    runs: dict[str, Callable[[], object]], repeats: int, cuda: bool = False
) -> dict[str, list[float]]:
    """Seconds of every run in each of ``repeats`` rounds; each round runs them all, the order
    rotated from round to round, so that load affects them alike and the ratios of one round
    compare like with like."""
    order = list(runs)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for i in range(repeats):
        shift = i % len(order)
        for name in order[shift:] + order[:shift]:
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            runs[name]()
            if cuda:
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    return times


def spread(values: Sequence[float], digits: int = 3) -> dict[str, float]:
    """``{"min", "median", "max"}`` of ``values``, rounded."""
    return {
        "min": round(min(values), digits),
        "median": round(statistics.median(values), digits),
        "max": round(max(values), digits),
    }


class PhaseTimer:
    """Exclusive wall time per phase: a wrapped call's time, less that of the wrapped calls
    it makes, goes to its phase; an *inclusive* phase keeps its inner calls' time. With
    ``cuda``, the GPU is synchronised at each boundary, so a phase is charged for its own
    kernels rather than for whichever later call first waits on them."""

    def __init__(self, cuda: bool = False):
        self.seconds: dict[str, float] = defaultdict(float)
        self._stack: list[list] = []  # [phase, inclusive, seconds spent in inner calls]
        self._sync = torch.cuda.synchronize if cuda else (lambda: None)

    def wrap(self, fn: Callable, phase: str, inclusive: bool = False) -> Callable:
        """``fn``, timed as ``phase``."""

        def timed(*args: Any, **kwargs: Any) -> Any:
            if self._stack and self._stack[-1][1]:
                return fn(*args, **kwargs)  # inside an inclusive phase: counted there
            frame = [phase, inclusive, 0.0]
            self._stack.append(frame)
            self._sync()
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self._sync()
                elapsed = time.perf_counter() - start
                self._stack.pop()
                self.seconds[phase] += elapsed - frame[2]
                if self._stack:
                    self._stack[-1][2] += elapsed

        return timed


@contextmanager
def patched(replacements: Sequence[tuple[Any, str, Any]]) -> Iterator[None]:
    """Set ``obj.name = value`` for each replacement, and restore every one on exit (an
    attribute the object did not hold itself, such as a method, is deleted again)."""
    saved = [(obj, name, name in vars(obj), vars(obj).get(name)) for obj, name, _ in replacements]
    try:
        for obj, name, value in replacements:
            setattr(obj, name, value)
        yield
    finally:
        for obj, name, had, old in reversed(saved):
            if had:
                setattr(obj, name, old)
            else:
                delattr(obj, name)
