"""Synthetic sEMG cut into windows: what TinyMyo pretraining and fine-tuning read by default,
and the ``"synthetic-windows"`` data source (`emg_lens.data.registry`).

`synthetic_windows` filters, smooths and z-scores the sEMG channels of
`emg_lens.data.synthetic.emg_acc` recordings and cuts them into labelled windows (``-1``
outside a movement)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float, Int
from scipy.ndimage import uniform_filter1d
from torch.utils.data import TensorDataset

from emg_lens.data.formats._matlab import require
from emg_lens.data.preprocess import PreprocessSpec, filter_signals
from emg_lens.data.reader import DatasetReader, Source, Windows, no_files
from emg_lens.data.synthetic.emg_acc import SyntheticSpec, generate_recordings
from emg_lens.errors import check_int, checked

UNLABELED = -1
"""The class of a window outside any one movement."""

EMG_GESTURES = SyntheticSpec(n_subjects=1, n_acc_gestures=0, n_interaction_gestures=0)
"""Gestures that sEMG alone tells apart (the others need the accelerometers)."""


@checked
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


@checked
def synthetic_windows(
    spec: SyntheticSpec = EMG_GESTURES,
    *,
    window: int = 100,
    step: int = 50,
    envelope_ms: float | None = 10.0,
    subjects: list[int] | None = None,
) -> SyntheticWindows:
    """Windows of ``window`` samples every ``step`` over the sEMG channels of each synthetic
    recording, filtered and rectified as `PreprocessSpec`'s defaults do, smoothed by an
    ``envelope_ms`` moving average (None: none) and z-scored per channel over the recording.
    Classes are ``gesture - 1``. The envelope because the synthetic sEMG is noise under a
    gesture-dependent amplitude: a masked patch can only be reconstructed through that
    amplitude. ``subjects``: some of the spec's subjects (default: all).

    >>> w = synthetic_windows(SyntheticSpec(n_subjects=1, movement_seconds=0.5), window=40)
    >>> w.X.shape[1:], w.n_classes, sorted(set(w.y.tolist()))[:2]
    ((12, 40), 12, [-1, 0])
    """
    window, step = check_int(window, "window", 1), check_int(step, "step", 1)
    parts: dict[str, list[np.ndarray]] = {"X": [], "y": [], "repetition": [], "subject": []}
    for rec in generate_recordings(spec, subjects):
        emg = filter_signals({"emg": rec.signals["emg"]}, rec.sample_rate, PreprocessSpec())["emg"]
        if envelope_ms is not None:
            width = max(1, round(envelope_ms * 1e-3 * rec.sample_rate))
            emg = uniform_filter1d(emg, width, axis=0, mode="nearest")
        emg = (emg - emg.mean(axis=0)) / (emg.std(axis=0) + 1e-8)
        starts = np.arange(0, rec.n_samples - window + 1, step)
        require(len(starts), rec.source, f"{rec.n_samples} samples hold no {window}-sample window")
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


def _read_windows(source: Source, subject: int) -> Windows:
    windows = synthetic_windows(
        SyntheticSpec(**source["synthetic"]),
        window=source["window"],
        step=source["step"],
        envelope_ms=source["envelope_ms"],
        subjects=[subject],
    )
    meta = {"source": "synthetic", "window": source["window"], "step": source["step"]}
    what = f"synthetic windows (subject {subject})"
    return Windows(windows.X, windows.y, windows.repetition, what, meta)


READER = DatasetReader(
    montage=lambda source: {"emg": source["synthetic"]["n_emg"]},
    subjects=lambda source: list(range(1, source["synthetic"]["n_subjects"] + 1)),
    files=no_files,
    read_windows=_read_windows,
)
"""Synthetic sEMG windows for the registry (`emg_lens.data.registry`): a window source."""
