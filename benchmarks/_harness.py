"""What the benchmarks share: check that the implementations agree, then time them side by side
in one process (a warm-up, then repeats with the order rotated each time, so no implementation
always runs first), and report medians (or min / median / max, to show the noise); the command
line of the benchmarks that measure one architecture at a time (`architecture_main`, the 10-20
channel names they build models on); and a timer that says where one instrumented run spends
its time."""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

import torch

# The 10-20 montage's 19 channels, as the braindecode models' channel tables spell them.
TEN_TWENTY = ["FP1", "FP2", "F7", "F3", "FZ", "F4", "F8", "T7", "C3", "CZ", "C4", "T8", "P7",
              "P3", "PZ", "P4", "P8", "O1", "O2"]  # fmt: skip


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
    unchecked: dict[str, Callable[[torch.Tensor], object]] | None = None,
) -> tuple[dict[str, float], float]:
    """Assert every run gives ``expected`` (to 1e-4), then time them, with the ``unchecked``
    runs (a reference that computes something else, such as a floor) in the same rounds;
    returns the median milliseconds per run and the largest absolute difference from
    ``expected``."""
    max_diff = 0.0
    for name, fn in runs.items():
        out = fn(x)
        diff = (out - expected).abs().max().item()
        max_diff = max(max_diff, diff)
        assert torch.allclose(out, expected, atol=1e-4, rtol=1e-4), (name, diff)
    calls = {name: (lambda fn=fn: fn(x)) for name, fn in {**runs, **(unchecked or {})}.items()}
    times = warm_rounds(calls, warmup=warmup, repeats=repeats, cuda=cuda)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}, max_diff


def rounds(
    runs: dict[str, Callable[[], object]], repeats: int, cuda: bool = False, per_round: int = 1
) -> dict[str, list[float]]:
    """Seconds per call of every run in each of ``repeats`` rounds; each round runs them all,
    the order rotated from round to round, so that load affects them alike and the ratios of
    one round compare like with like. Each run is timed over ``per_round`` calls in a row (their
    mean): a timer's and the scheduler's jitter, which a few-millisecond call feels, averages
    out within the round (``timeit``'s ``number``)."""
    order = list(runs)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for i in range(repeats):
        shift = i % len(order)
        for name in order[shift:] + order[:shift]:
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(per_round):
                runs[name]()
            if cuda:
                torch.cuda.synchronize()
            times[name].append((time.perf_counter() - start) / per_round)
    return times


def warm_rounds(
    runs: dict[str, Callable[[], object]],
    *,
    warmup: int,
    repeats: int,
    cuda: bool = False,
    per_round: int = 1,
) -> dict[str, list[float]]:
    """`rounds` after ``warmup`` calls of every run (in the given order)."""
    for _ in range(warmup):
        for fn in runs.values():
            fn()
    return rounds(runs, repeats, cuda, per_round)


def median_ms(seconds: Sequence[float]) -> float:
    """The median of ``seconds`` in milliseconds, rounded to 3 digits (the upper of the two
    middle values for an even count)."""
    return round(1e3 * sorted(seconds)[len(seconds) // 2], 3)


def spread(values: Sequence[float], digits: int = 3) -> dict[str, float]:
    """``{"min", "median", "max"}`` of ``values``, rounded."""
    return {
        "min": round(min(values), digits),
        "median": round(statistics.median(values), digits),
        "max": round(max(values), digits),
    }


class Measure(Protocol):
    def __call__(
        self, arch: str, *, quick: bool, batch: int, warmup: int, repeats: int, per_round: int
    ) -> dict[str, Any]: ...


def architecture_main(
    doc: str, architectures: Sequence[str], measure: Measure, argv: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """The command line of a benchmark that measures one architecture at a time: ``--only``
    some of ``architectures``, ``--batch``, ``--repeats``, ``--warmup``, ``--threads``, and
    ``--per-round`` (calls timed in a row per run and round, their mean kept), and ``--quick``
    (batch 2, one warm-up, 3 repeats of one call: ``measure`` builds tiny models); prints
    ``measure``'s result for each architecture as one JSON line and returns them. ``doc``: the
    script's docstring, whose first paragraph is the description."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny models: a smoke test")
    parser.add_argument("--only", nargs="+", choices=architectures, help="these architectures")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--per-round", type=int, default=1, help="calls timed in a row per round")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results = []
    for arch in args.only or architectures:
        result = measure(
            arch,
            quick=args.quick,
            batch=2 if args.quick else args.batch,
            warmup=1 if args.quick else args.warmup,
            repeats=3 if args.quick else args.repeats,
            per_round=1 if args.quick else args.per_round,
        )
        print(json.dumps(result), flush=True)
        results.append(result)
    return results


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


def significant(value: float, digits: int = 4) -> float:
    """``value`` to ``digits`` significant digits: a time printed beside a ratio of times keeps
    the ratio, where rounding to decimal places loses it for sub-millisecond calls.

    >>> significant(0.0234567), significant(1234.567)
    (0.02346, 1235.0)
    """
    return float(f"{value:.{digits}g}")
