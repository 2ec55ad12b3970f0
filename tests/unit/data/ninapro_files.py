"""Small NinaPro files in the real MATLAB v5 layout, variable by variable: what the reader
tests (DB5, DB6, DB7) and the command-line tests write."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io

N = 1200


def labels(codes, reps, n=N):
    """Blocks of (code, repetition) separated by rest, as (n, 1) double columns."""
    stimulus, repetition = np.zeros(n), np.zeros(n)
    block = n // (2 * len(codes) * len(reps) + 1)
    start = block
    for rep in reps:
        for code in codes:
            stimulus[start : start + block] = code
            repetition[start : start + block] = rep
            start += 2 * block
    return stimulus[:, None], repetition[:, None]


def mat_vars(channels, codes, reps, *, seed=0, short_labels=True, **signals):
    """A NinaPro file's variables: emg[t, c] = t + c / 100; labels one sample short."""
    t = np.arange(N)[:, None]
    stimulus, repetition = labels(codes, reps)
    cut = slice(0, N - 1 if short_labels else N)
    out = {
        "emg": t + np.arange(channels)[None, :] / 100.0,
        "stimulus": stimulus[cut].copy(),
        "restimulus": stimulus[cut].copy(),
        "repetition": repetition[cut].copy(),
        "rerepetition": repetition[cut].copy(),
        "subject": 1,
    }
    rng = np.random.default_rng(seed)
    out.update({name: rng.standard_normal((N, width)) for name, width in signals.items()})
    return out


def save(path: Path, variables: dict) -> Path:
    """Write ``variables`` as a MATLAB v5 file at ``path`` (folders made); the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(path), variables, format="5")
    return path


def db6_vars(channels=14, **kwargs):
    """A NinaPro DB6 session's variables: 7 gestures x 12 repetitions, sEMG and ACC."""
    variables = mat_vars(channels, range(1, 8), range(1, 13), acc=3 * channels, **kwargs)
    variables.update({"daytesting": 2, "time": 1})
    return variables
