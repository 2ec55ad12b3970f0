"""Synthetic EPN-612, UCI EMG Data for Gestures and NinaPro DB8, written in their real layouts.

Each generator returns `Recording` s as its reader returns them, with the real protocol's
durations by default (DB8's acquisitions cut to 4 s), and structure the thesis's preprocessing
keeps: EPN and UCI gestures switch on a 40 Hz burst on a gesture-specific pair of channels, so
a classifier can beat chance; DB8's EMG amplitude on channel ``c`` follows degree of actuation
``c % 5`` (a few glove rows NaN, as in the real files), so a regressor can beat the mean.
``synthesize_*`` write them (``emg-lens synth --format epn612 | uci | ninapro-db8``).

>>> recs = synthetic_epn612(n_subjects=3, per_gesture=1)
>>> [r.subject for r in recs], recs[0].n_samples, sorted(set(recs[0].stimulus.tolist()))
([1, 2, 1001], 12000, [0, 1, 2, 3, 4, 5])
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from itertools import chain, zip_longest
from pathlib import Path
from typing import Any

import numpy as np

from emg_lens.data.formats import epn612, ninapro_db8, uci_gestures
from emg_lens.data.recording import Recording
from emg_lens.data.synthetic.protocol import check_options
from emg_lens.errors import check_int, check_number, checked

EPN_TESTING_PER_GESTURE = epn612.CALIBRATION + 2
"""Testing users' labelled samples per gesture: the calibration ones and 2 to test."""


CARRIER_HZ = 40.0
"""A gesture's channels carry a sine at this frequency (inside the thesis's 20-90 Hz band)."""


def _trial(
    rng: np.random.Generator,
    n: int,
    gesture: int,
    channels: int,
    gain: np.ndarray,
    *,
    middle: bool = True,
) -> np.ndarray:
    """Noise on every channel and, for a gesture, a 40 Hz burst on its pair of channels (in the
    middle half, or throughout): a shape, not only a level, so it survives the per-recording
    z-score and the model's LayerNorms (200 Hz data)."""
    x = rng.normal(0.0, 1.0, (n, channels))
    if gesture > 0:
        on = slice(n // 4, 3 * n // 4) if middle else slice(0, n)
        t = np.arange(on.stop - on.start) / 200.0
        for c in ((gesture - 1) % channels, (gesture + 2) % channels):
            x[on, c] += 6.0 * np.sin(2 * np.pi * CARRIER_HZ * t + rng.uniform(0, 2 * np.pi))
    return x * gain


EPN_TRIAL_SECONDS = 5.0
"""Seconds of one EPN-612 sample: every gesture repetition is a 5 s recording (zenodo.org/records
/4421500), 1000 samples at 200 Hz."""

UCI_GESTURE_SECONDS = 3.0
"""UCI: each gesture is held 3 s, with 3 s pauses between gestures (archive.ics.uci.edu/dataset
/481, Lobov et al. 2018)."""


@checked
def synthetic_epn612(
    n_subjects: int = 4,
    *,
    per_gesture: int = 4,
    testing_per_gesture: int = EPN_TESTING_PER_GESTURE,
    trial_seconds: float = EPN_TRIAL_SECONDS,
    seed: int = 0,
) -> list[Recording]:
    """EPN-612 users as `epn612.load_epn612` returns them: the first ``ceil(n / 2)`` in the
    training group (``per_gesture`` samples of each gesture in each part), the rest in the
    testing group (``testing_per_gesture`` in ``trainingSamples``), each sample
    ``trial_seconds`` long, ``emg`` in int8 steps / 128."""
    n_subjects = check_int(n_subjects, "n_subjects", minimum=2)
    n = max(30, round(trial_seconds * epn612.SAMPLE_RATE))
    n_train = math.ceil(n_subjects / 2)
    users = [
        *range(1, n_train + 1),
        *(epn612.TESTING_OFFSET + u for u in range(1, n_subjects - n_train + 1)),
    ]
    recordings = []
    for subject in users:
        rng = np.random.default_rng([seed, subject])
        gain = rng.uniform(0.7, 1.3, epn612.CHANNELS) * 3.0
        testing = subject > epn612.TESTING_OFFSET
        plan = [(0, testing_per_gesture)] if testing else [(0, per_gesture), (1, per_gesture)]
        trials, stimulus, part = [], [], []
        for p, count in plan:
            for _ in range(check_int(count, "samples per gesture", minimum=1)):
                for g in range(len(epn612.GESTURES)):
                    x = _trial(rng, n, g, epn612.CHANNELS, gain)
                    trials.append(np.clip(np.rint(x), -128, 127) / epn612.INT8_SCALE)
                    stimulus.append(g)
                    part.append(p)
        recordings.append(
            Recording(
                subject=subject,
                signals={"emg": np.concatenate(trials).astype(np.float32)},
                sample_rate=epn612.SAMPLE_RATE,
                stimulus=np.repeat(stimulus, n),
                repetition=np.repeat(np.arange(1, len(trials) + 1), n),
                source="synthetic",
                extras={"part": np.repeat(part, n)},
            )
        )
    return recordings


def uci_subjects(n_subjects: int) -> list[int]:
    """``n_subjects`` UCI subject numbers taken in turn from the thesis's train, validation
    and test groups, so every split gets subjects.

    >>> uci_subjects(4)
    [1, 25, 31, 2]
    """
    groups = uci_gestures.SUBJECT_SPLITS.values()
    order = [s for s in chain.from_iterable(zip_longest(*groups)) if s is not None]
    return sorted(order[: check_int(n_subjects, "n_subjects", minimum=1)], key=order.index)


@checked
def synthetic_uci(
    n_subjects: int = 3,
    *,
    gesture_seconds: float = UCI_GESTURE_SECONDS,
    rows_per_second: float = uci_gestures.ROWS_PER_SECOND,
    seed: int = 0,
) -> list[Recording]:
    """UCI subjects (`uci_subjects`) as `uci_gestures.load_uci_gestures` returns them: two
    files each, every class 1-7 held ``gesture_seconds`` after an unmarked pause as long, at
    ``rows_per_second`` rows a second, values to 5 decimals, ``time`` in ms."""
    check_int(n_subjects, "n_subjects (of UCI's 36)", 1, 36)
    n = max(30, round(gesture_seconds * rows_per_second))
    classes = range(1, len(uci_gestures.CLASSES))
    recordings = []
    for subject in uci_subjects(n_subjects):
        rng = np.random.default_rng([seed, subject])
        gain = rng.uniform(0.7, 1.3, uci_gestures.CHANNELS) * 2.0
        parts, stimulus, files = [], [], []
        for k in (1, 2):
            for g in classes:
                for code, length in ((0, n), (g, n)):
                    parts.append(
                        _trial(rng, length, code, uci_gestures.CHANNELS, gain, middle=False)
                    )
                    stimulus.append(np.full(length, code))
                    files.append(np.full(length, k))
        x = np.clip(np.rint(np.concatenate(parts)), -128, 127) * 1e-5
        file_of = np.concatenate(files)
        time = np.zeros(len(file_of))
        for k in (1, 2):  # ms since each file's start
            time[file_of == k] = np.arange(np.sum(file_of == k)) * (1000 / rows_per_second) + 1
        recordings.append(
            Recording(
                subject=subject,
                signals={"emg": x.astype(np.float32)},
                sample_rate=uci_gestures.SAMPLE_RATE,
                stimulus=np.concatenate(stimulus),
                repetition=file_of,
                source="synthetic",
                extras={"time_ms": time},
            )
        )
    return recordings


@checked
def synthetic_db8(subject: int = 1, *, seconds: float = 4.0, seed: int = 0) -> Recording:
    """One DB8 subject as `ninapro_db8.load_ninapro_db8` returns it: three acquisitions of
    ``seconds`` each at 2 kHz; glove sensors follow slow sinusoids (degrees), 1% of glove rows
    are NaN; EMG channel ``c`` is noise whose amplitude follows DoA ``c % 5``."""
    rng = np.random.default_rng([seed, check_int(subject, "subject", minimum=1)])
    n = max(200, round(seconds * ninapro_db8.SAMPLE_RATE))
    t = np.arange(3 * n) / ninapro_db8.SAMPLE_RATE
    freq = rng.uniform(0.2, 0.6, ninapro_db8.GLOVE_CHANNELS)
    phase = rng.uniform(0, 2 * np.pi, ninapro_db8.GLOVE_CHANNELS)
    glove = 40.0 + 30.0 * np.sin(2 * np.pi * freq * t[:, None] + phase)
    doa = glove @ ninapro_db8.DOA_MATRIX.T
    span = doa.max(axis=0) - doa.min(axis=0)
    level = (doa - doa.min(axis=0)) / np.where(span > 0, span, 1.0)  # 0..1 per DoA
    channels = np.arange(ninapro_db8.CHANNELS) % doa.shape[1]
    emg = rng.normal(0.0, 1.0, (3 * n, ninapro_db8.CHANNELS)) * (0.1 + level[:, channels])
    glove[rng.random(3 * n) < 0.01] = np.nan
    return Recording(
        subject=subject,
        signals={"emg": (emg * 1e-4).astype(np.float32)},  # volts, as Delsys sensors give
        sample_rate=ninapro_db8.SAMPLE_RATE,
        stimulus=np.zeros(3 * n, np.int64),
        repetition=np.zeros(3 * n, np.int64),
        source="synthetic",
        extras={"glove": glove, "acquisition": np.repeat([1, 2, 3], n)},
    )


def _options(options: Mapping[str, Any], fmt: str, seconds: float) -> tuple[int, int, float]:
    """(n_subjects, seed, seconds) from ``emg-lens synth``'s options; ``seconds`` is the
    format's real duration, used when ``movement_seconds`` is not given."""
    check_options(options, ("n_subjects", "seed", "movement_seconds"), fmt)
    given = options.get("movement_seconds")
    if given is not None:
        wanted = "a number of seconds in (0, 10000)"
        seconds = check_number(given, "--movement-seconds", wanted, lambda s: 0 < s < 1e4)
    return options.get("n_subjects", 4), options.get("seed", 0), seconds


def synthesize_epn612(out: str | Path, options: Mapping[str, Any]) -> Iterator[Path]:
    """Synthetic EPN-612 user files under ``out`` (``movement_seconds``: per sample, default
    the real 5 s)."""
    n, seed, seconds = _options(options, "epn612", EPN_TRIAL_SECONDS)
    recordings = synthetic_epn612(n, trial_seconds=seconds, seed=seed)
    unlabelled = len(epn612.GESTURES) * 2  # the testing group's withheld samples
    return (
        epn612.write_epn612(r, out, unlabelled=unlabelled * (r.subject > epn612.TESTING_OFFSET))
        for r in recordings
    )


def synthesize_uci(out: str | Path, options: Mapping[str, Any]) -> Iterator[Path]:
    """Synthetic UCI subject folders under ``out`` (``movement_seconds``: per gesture and per
    pause, default the real 3 s)."""
    n, seed, seconds = _options(options, "uci", UCI_GESTURE_SECONDS)
    return (
        p
        for r in synthetic_uci(n, gesture_seconds=seconds, seed=seed)
        for p in uci_gestures.write_uci_gestures(r, out)
    )


def synthesize_db8(out: str | Path, options: Mapping[str, Any]) -> Iterator[Path]:
    """Synthetic DB8 files under ``out`` (``movement_seconds``: per acquisition)."""
    n, seed, seconds = _options(options, "ninapro-db8", 4.0)
    check_int(n, "n_subjects", minimum=1)
    return (
        p
        for s in range(1, n + 1)
        for p in ninapro_db8.write_ninapro_db8(synthetic_db8(s, seconds=seconds, seed=seed), out)
    )
