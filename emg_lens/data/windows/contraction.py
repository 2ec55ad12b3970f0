"""A contraction's windows and a continuous target (the force), held out by time blocks.

A contraction has no trials to hold out, and overlapping windows of a slowly changing force
would put near copies of every test window in training: `contraction_windows` holds out every
third contiguous block instead (a window touching a test block is used by neither side). The
envelope it reads, for users: docs/guide/recordings.md, "An HD-sEMG contraction".

>>> n = 4 * 2048
>>> rec = Recording(1, {"emg": np.ones((n, 2), np.float32)}, 2048.0, np.zeros(n, np.int64),
...                 np.zeros(n, np.int64), extras={"force": np.linspace(0, 1, n)})
>>> w = contraction_windows(rec, window=512, step=256, block=2048, test_every=2)
>>> w.X_train.shape, w.X_test.shape, np.unique(w.test_block).tolist()
((14, 2, 32), (14, 2, 32), [1, 3])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from jaxtyping import Float, Int

from emg_lens.data.recording import Recording
from emg_lens.errors import ArgumentError, DataFormatError, check_int


@dataclass(frozen=True)
class ContractionWindows:
    """Training and test windows (``[window, channel, step]`` envelopes) and targets, the
    held-out block of each test window, and where each window starts (samples)."""

    X_train: Float[np.ndarray, "n_train channel step"]
    y_train: Float[np.ndarray, " n_train"]
    X_test: Float[np.ndarray, "n_test channel step"]
    y_test: Float[np.ndarray, " n_test"]
    test_block: Int[np.ndarray, " n_test"]
    train_start: Int[np.ndarray, " n_train"]
    test_start: Int[np.ndarray, " n_test"]


def envelope(
    windows: Float[np.ndarray, "n channel time"], bin: int
) -> Float[np.ndarray, "n channel step"]:
    """``log(1 + mean |x|)`` over consecutive ``bin``-sample bins of each channel.

    >>> envelope(np.array([[[1.0, -1.0, 3.0, -3.0]]]), 2).round(4).tolist()
    [[[0.6931, 1.3863]]]
    """
    n, c, t = windows.shape
    if t % bin:
        raise ArgumentError(f"window = {t} samples must be a multiple of bin = {bin}")
    return np.log1p(np.abs(windows).reshape(n, c, t // bin, bin).mean(-1))


def contraction_windows(
    recording: Recording,
    target: str = "force",
    *,
    modality: str = "emg",
    window: int = 512,
    step: int = 128,
    block: int = 2048,
    test_every: int = 3,
    bin: int = 16,
) -> ContractionWindows:
    """Envelope windows of ``recording``'s ``modality`` and the mean of ``extras[target]``
    over each, split by time blocks (see the module docstring): blocks of ``block`` samples,
    block ``b`` held out when ``b % test_every == 1``, windows of ``window`` samples every
    ``step``, envelopes in bins of ``bin`` samples."""
    for name, value in {"window": window, "step": step, "block": block, "bin": bin}.items():
        check_int(value, name, minimum=1)
    check_int(test_every, "test_every (some blocks train)", minimum=2)
    if window > block or window % bin or step % bin:
        raise ArgumentError(
            f"window = {window}, step = {step}: multiples of bin = {bin}, window <= block = {block}"
        )
    lacks = [f"extra channel {target!r}"] * (target not in recording.extras)
    lacks += [f"signal {modality!r}"] * (modality not in recording.signals)
    holds = f"extras {sorted(recording.extras)}, signals {sorted(recording.signals)}"
    if lacks:
        raise DataFormatError(f"{recording.source}: no {' or '.join(lacks)}; it holds {holds}")
    signal, y = recording.signals[modality], np.asarray(recording.extras[target], np.float64)
    starts = np.arange(0, len(y) - window + 1, step)
    first, last = starts // block, (starts + window - 1) // block
    held = lambda b: b % test_every == 1  # noqa: E731
    test = held(first) & (first == last)
    train = ~held(first) & ~held(last)
    if not test.any() or not train.any():
        raise DataFormatError(
            f"{recording.source}: {len(y)} samples give no {'test' if train.any() else 'training'}"
            f" window with window={window}, block={block}, test_every={test_every}"
        )
    # the envelope of the whole recording, then cut: overlapping windows share their bins
    n_bins = len(y) // bin
    env = envelope(signal[: n_bins * bin].T[None].astype(np.float64), bin)[0]
    X = np.stack([env[:, s // bin : (s + window) // bin] for s in starts])
    mean = X[train].mean(axis=(0, 2), keepdims=True)
    scale = X[train].std(axis=(0, 2), keepdims=True)
    X = ((X - mean) / np.where(scale > 0, scale, 1.0)).astype(np.float32)
    targets = np.array([y[s : s + window].mean() for s in starts])
    return ContractionWindows(
        X[train], targets[train], X[test], targets[test], first[test], starts[train], starts[test]
    )
