"""What every synthetic generator draws a recording from (`emg_acc`, `hdsemg`, `eeg`): the
protocol's timeline (`trial_timeline`: labels in order, each repeated, trials between rests),
the ramp a trial's activity rises and falls on (`onset_ramp`), and the noises it is made of
(`muscle_noise`, the spectral shape of surface EMG; `slow_noise`, tremor-like motion)."""

from __future__ import annotations

import functools
import operator
from collections.abc import Iterable
from typing import Any, NamedTuple

import numpy as np
from scipy import signal as sps

from emg_lens.errors import ArgumentError, ConfigError, check_ints, check_number


def check_bounds(spec: Any, **bounds: str) -> None:
    """Refuse a number field of the synthetic ``spec`` outside its bound (field -> ``"> 0"``,
    ``">= 100"``...): a `ConfigError` naming the class, the field, the bound and the value.

    >>> from emg_lens.data import SyntheticSpec
    >>> check_bounds(SyntheticSpec(), movement_seconds="> 0")
    >>> check_bounds(SyntheticSpec(), subject_offset="> 0")
    Traceback (most recent call last):
    ...
    emg_lens.errors.ConfigError: SyntheticSpec.subject_offset must be > 0, got 0.0
    """
    for field, bound in bounds.items():
        strict, limit = bound.startswith("> "), float(bound.split()[1])
        ok = functools.partial(operator.lt if strict else operator.le, limit)  # limit < v
        name = f"{type(spec).__name__}.{field}"
        check_number(getattr(spec, field), name, bound, ok, ConfigError)


def check_options(options: Iterable[str], known: Iterable[str], fmt: str) -> None:
    """Refuse an option of ``emg-lens synth --format fmt`` outside ``known``: an
    `ArgumentError` naming the flags refused and those the format takes.

    >>> check_options(["seed"], ["n_subjects", "seed"], "uci")
    >>> check_options(["n_gestures"], ["n_subjects", "seed"], "uci")
    Traceback (most recent call last):
    ...
    emg_lens.errors.ArgumentError: --n-gestures: not an option of --format uci (it takes --n-subjects, --seed)
    """  # noqa: E501
    options, known = list(options), list(known)
    flags = {k: "--" + k.replace("_", "-") for k in [*options, *known]}
    if unknown := sorted(set(options) - set(known)):
        refused, takes = (", ".join(flags[k] for k in keys) for keys in (unknown, known))
        raise ArgumentError(f"{refused}: not an option of --format {fmt} (it takes {takes})")


def check_subjects(spec: Any, subjects: Iterable[int] | None) -> list[int]:
    """``subjects`` (None: all) of the synthetic ``spec``, numbered 1..``spec.n_subjects``, or a
    `ConfigError` naming the subjects that do not exist.

    >>> from emg_lens.data import SyntheticSpec
    >>> check_subjects(SyntheticSpec(n_subjects=3), None)
    [1, 2, 3]
    >>> check_subjects(SyntheticSpec(n_subjects=2), [2, 3])
    Traceback (most recent call last):
    ...
    emg_lens.errors.ConfigError: subjects must be a list of integers in 1..2, got [2, 3]
    """
    n = spec.n_subjects
    if subjects is None:
        return list(range(1, n + 1))
    return check_ints(subjects, "subjects", 1, n, ConfigError, empty=True)


class Timeline(NamedTuple):
    """A synthetic recording's protocol (`trial_timeline`): its ``total`` samples, the trials
    ``runs`` (label, repetition) in order, the ``slices`` they occupy, and per sample the label
    and repetition (``stimulus``, ``repetition``: 0 at rest)."""

    total: int
    runs: list[tuple[int, int]]
    slices: list[slice]
    stimulus: np.ndarray
    repetition: np.ndarray


def trial_timeline(
    labels: Iterable[int], n_repetitions: int, n_trial: int, n_rest: int
) -> Timeline:
    """Each of ``labels`` in order, repeated ``n_repetitions`` times (as in a NinaPro exercise):
    ``n_trial`` samples each, with ``n_rest`` samples of rest before every trial and after
    the last.

    >>> t = trial_timeline([4, 7], 2, n_trial=2, n_rest=1)
    >>> t.total, t.runs[1], t.slices[1]
    (13, (4, 2), slice(4, 6, None))
    >>> t.stimulus.tolist()
    [0, 4, 4, 0, 4, 4, 0, 7, 7, 0, 7, 7, 0]
    """
    runs = [(label, r) for label in labels for r in range(1, n_repetitions + 1)]
    total = n_rest + len(runs) * (n_trial + n_rest)
    stimulus = np.zeros(total, np.int64)
    repetition = np.zeros(total, np.int64)
    slices = []
    for i, (label, rep) in enumerate(runs):
        start = n_rest + i * (n_trial + n_rest)
        slices.append(slice(start, start + n_trial))
        stimulus[slices[-1]], repetition[slices[-1]] = label, rep
    return Timeline(total, runs, slices, stimulus, repetition)


def onset_ramp(n: int, width: int) -> np.ndarray:
    """0 -> 1 at movement onset, 1 -> 0 at offset: muscles do not switch on instantly."""
    ramp = np.ones(n)
    width = min(width, n // 2)
    if width > 0:
        edge = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, width))
        ramp[:width], ramp[-width:] = edge, edge[::-1]
    return ramp


def muscle_noise(rng: np.random.Generator, n: int, channels: int, fs: float) -> np.ndarray:
    """Unit-variance noise band-limited to 20–450 Hz: the spectral shape of surface EMG."""
    sos = sps.butter(4, [20, min(450, 0.45 * fs)], btype="bandpass", fs=fs, output="sos")
    x = sps.sosfilt(sos, rng.standard_normal((n, channels)), axis=0)
    return x / x.std(axis=0, keepdims=True)


def slow_noise(rng: np.random.Generator, n: int, shape: tuple, fs: float) -> np.ndarray:
    """Tremor-like motion below 10 Hz."""
    sos = sps.butter(2, 10, btype="lowpass", fs=fs, output="sos")
    x = sps.sosfilt(sos, rng.standard_normal((n, *shape)), axis=0)
    return x / (x.std(axis=0, keepdims=True) + 1e-12)
