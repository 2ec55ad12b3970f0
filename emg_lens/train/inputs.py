"""The windows the pretraining and fine-tuning recipes read, and a synthetic source of them.

A recipe takes its data as any `torch.utils.data.Dataset` whose items are
``(x: float32 [channels, time], y: int64 scalar)`` — ``y = -1`` for an unlabeled window, the
contract `emg_lens.data.windows.WindowStore` keeps — or as numpy arrays: ``X [N, C, T]``
(unlabeled) or a pair ``(X, y)``. `window_dataset` turns either into a Dataset and checks the
window shape against the model where the data enters.

`synthetic_windows` cuts the sEMG channels of `emg_lens.data.synthetic` recordings into
windows, for the CLI's default data and for tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from jaxtyping import Float, Int
from scipy.ndimage import uniform_filter1d
from torch.utils.data import Dataset, Subset, TensorDataset, random_split

from emg_lens.data.preprocess import PreprocessSpec, filter_signals
from emg_lens.data.synthetic import SyntheticSpec, generate_recordings
from emg_lens.errors import ArgumentError, DataFormatError, InputShapeError, describe

__all__ = [
    "SyntheticWindows",
    "labeled_subset",
    "random_holdout",
    "synthetic_windows",
    "window_dataset",
]

UNLABELED = -1
# Gestures that sEMG alone tells apart (the others need the accelerometers).
EMG_GESTURES = SyntheticSpec(n_subjects=1, n_acc_gestures=0, n_interaction_gestures=0)


def window_dataset(data: Any, input_shape: tuple[int, int], *, what: str = "data") -> Dataset:
    """``data`` as a Dataset of ``(x [C, T], y)`` items whose windows have ``input_shape``
    ``(C, T)``; ``what`` names the argument in error messages.

    >>> ds = window_dataset(np.zeros((5, 2, 40), np.float32), (2, 40))
    >>> len(ds), ds[0][0].shape, int(ds[0][1])
    (5, torch.Size([2, 40]), -1)
    """
    if isinstance(data, Dataset):
        _check_item(data, input_shape, what)
        return data
    labels = None
    if isinstance(data, tuple):
        if len(data) != 2:
            raise ArgumentError(f"{what} as a tuple must be (X, y), got {len(data)} items")
        data, labels = data
    X = data if isinstance(data, torch.Tensor) else np.asarray(data)
    numeric = isinstance(X, torch.Tensor) or X.dtype.kind in "biuf"
    if not numeric or X.ndim != 3 or tuple(X.shape[1:]) != tuple(input_shape) or len(X) == 0:
        raise InputShapeError(
            f"{what} must hold windows [N >= 1, channels={input_shape[0]}, "
            f"time={input_shape[1]}] of numbers, got {describe(data)}"
        )
    X = torch.as_tensor(X).to(torch.float32)
    if labels is None:
        y = torch.full((len(X),), UNLABELED, dtype=torch.long)
    else:
        y_arr = np.asarray(labels)
        if y_arr.shape != (len(X),) or not np.issubdtype(y_arr.dtype, np.integer):
            raise DataFormatError(
                f"{what} labels must be integers [N={len(X)}] (-1 = unlabeled), "
                f"got {describe(y_arr)}"
            )
        y = torch.as_tensor(y_arr, dtype=torch.long)
    return TensorDataset(X, y)


def _check_item(dataset: Dataset, input_shape: tuple[int, int], what: str) -> None:
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise DataFormatError(f"{what} is an empty dataset; it needs at least one window")
    item = dataset[0]
    if not isinstance(item, tuple | list) or len(item) != 2:
        raise DataFormatError(
            f"{what} items must be (x [C, T], y) pairs, got {describe(item)} for item 0"
        )
    x, y = item
    if tuple(np.shape(x)) != tuple(input_shape) or np.ndim(y) != 0:
        raise InputShapeError(
            f"{what} item 0 must be (x [channels={input_shape[0]}, time={input_shape[1]}], "
            f"scalar y), got x {describe(x)} and y {describe(y)}"
        )


def labeled_subset(dataset: Dataset) -> tuple[Dataset, int]:
    """The labelled windows (``y >= 0``) of ``dataset`` and the number of classes they imply
    (largest label + 1). The labels come from ``dataset.labels`` where it has them, one per
    item (`emg_lens.data.windows.WindowStore` does: no window is read); otherwise every item
    is read once.

    >>> ds = window_dataset((np.zeros((4, 1, 20), np.float32), np.array([0, -1, 2, 1])), (1, 20))
    >>> subset, n_classes = labeled_subset(ds)
    >>> len(subset), n_classes
    (3, 3)
    """
    labels = _labels(dataset)
    keep = [i for i, y in enumerate(labels) if y >= 0]
    if not keep:
        raise DataFormatError(
            f"none of the {len(labels)} windows is labelled (every y is -1); fine-tuning needs "
            "class labels >= 0"
        )
    return Subset(dataset, keep), max(labels) + 1


def _labels(dataset: Dataset) -> list[int]:
    """Each item's label: ``dataset.labels`` where it holds one per item, else read."""
    n = len(dataset)  # type: ignore[arg-type]
    given = getattr(dataset, "labels", None)
    if given is not None and np.shape(given) == (n,):
        return np.asarray(given, dtype=np.int64).tolist()
    return [int(dataset[i][1]) for i in range(n)]


def random_holdout(dataset: Dataset, fraction: float, *, seed: int = 0) -> tuple[Dataset, Dataset]:
    """(train, held-out) with a seeded random ``fraction`` of the windows held out (at least
    one, and at least one left to train on).

    >>> train, val = random_holdout(TensorDataset(torch.zeros(10, 1)), 0.2)
    >>> len(train), len(val)
    (8, 2)
    """
    n = len(dataset)  # type: ignore[arg-type]
    if not 0 < fraction < 1 or n < 2:
        raise ArgumentError(
            f"a held-out fraction must be in (0, 1) of at least 2 windows, got {fraction!r} of {n}"
        )
    n_val = min(n - 1, max(1, round(fraction * n)))
    train, val = random_split(dataset, [n - n_val, n_val], torch.Generator().manual_seed(seed))
    return train, val


@dataclass
class SyntheticWindows:
    """Windows of synthetic sEMG with their gesture class (``-1`` unless the window lies inside
    one movement), repetition (0 outside a movement) and subject."""

    X: Float[np.ndarray, "n channel time"]
    y: Int[np.ndarray, " n"]
    repetition: Int[np.ndarray, " n"]
    subject: Int[np.ndarray, " n"]
    n_classes: int

    def split(
        self, val_repetitions: tuple[int, ...] = (2, 5), *, labeled_only: bool = False
    ) -> tuple[TensorDataset, TensorDataset]:
        """(train, validation) datasets split by repetition (NinaPro DB2's test repetitions by
        default); windows outside movements go to train, or nowhere with ``labeled_only``.

        >>> w = synthetic_windows(SyntheticSpec(n_subjects=1, movement_seconds=0.5))
        >>> train, val = w.split(labeled_only=True)
        >>> len(train) > len(val) > 0, int(val[0][1]) >= 0
        (True, True)
        """
        val = np.isin(self.repetition, val_repetitions)
        keep = self.y >= 0 if labeled_only else np.ones_like(val)
        return self._subset(keep & ~val), self._subset(keep & val)

    def _subset(self, mask: np.ndarray) -> TensorDataset:
        return TensorDataset(torch.from_numpy(self.X[mask]), torch.from_numpy(self.y[mask]))


def synthetic_windows(
    spec: SyntheticSpec = EMG_GESTURES,
    *,
    window: int = 100,
    step: int = 50,
    envelope_ms: float | None = 10.0,
    subjects: list[int] | None = None,
) -> SyntheticWindows:
    """Windows of ``window`` samples every ``step`` samples over the 12 sEMG channels of each
    synthetic recording, filtered and rectified as IsoNet's preprocessing does
    (`PreprocessSpec` defaults), smoothed by an ``envelope_ms`` moving average (the linear
    envelope; None: no smoothing) and z-scored per channel over the recording (a label-free,
    per-session normalisation). Gesture classes are ``gesture - 1``.

    Why the envelope: the synthetic sEMG is band-limited noise under a gesture-dependent
    amplitude, and noise cannot be predicted from its neighbours, so a masked patch can only be
    reconstructed through that amplitude. The default spec (one subject) keeps only gestures
    that sEMG alone tells apart. ``subjects`` picks some of the spec's subjects (default: all);
    a subject's windows do not depend on which others are cut with it.

    >>> w = synthetic_windows(SyntheticSpec(n_subjects=1, movement_seconds=0.5), window=40)
    >>> w.X.shape[1:], w.n_classes, sorted(set(w.y.tolist()))[:2]
    ((12, 40), 12, [-1, 0])
    """
    if not isinstance(window, int) or window < 1 or not isinstance(step, int) or step < 1:
        raise ArgumentError(f"window and step must be ints >= 1, got {window!r} and {step!r}")
    parts: dict[str, list[np.ndarray]] = {"X": [], "y": [], "repetition": [], "subject": []}
    for rec in generate_recordings(spec, subjects):
        emg = filter_signals({"emg": rec.signals["emg"]}, rec.sample_rate, PreprocessSpec())["emg"]
        if envelope_ms is not None:
            width = max(1, round(envelope_ms * 1e-3 * rec.sample_rate))
            emg = uniform_filter1d(emg, width, axis=0, mode="nearest")
        emg = (emg - emg.mean(axis=0)) / (emg.std(axis=0) + 1e-8)
        starts = np.arange(0, rec.n_samples - window + 1, step)
        if not len(starts):
            raise DataFormatError(
                f"{rec.source}: {rec.n_samples} samples hold no {window}-sample window"
            )
        span = starts[:, None] + np.arange(window)  # [n, window] sample indices
        stimulus, repetition = rec.stimulus[span], rec.repetition[span]
        inside = (stimulus == stimulus[:, :1]).all(1) & (repetition == repetition[:, :1]).all(1)
        inside &= stimulus[:, 0] != 0
        parts["X"].append(emg[span].transpose(0, 2, 1).astype(np.float32))
        parts["y"].append(np.where(inside, stimulus[:, 0] - 1, UNLABELED))
        parts["repetition"].append(np.where(inside, repetition[:, 0], 0))
        parts["subject"].append(np.full(len(starts), rec.subject))
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    return SyntheticWindows(
        X=arrays["X"],
        y=arrays["y"].astype(np.int64),
        repetition=arrays["repetition"].astype(np.int64),
        subject=arrays["subject"].astype(np.int64),
        n_classes=spec.n_gestures,
    )
