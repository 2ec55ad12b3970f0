"""`Recording`: one subject's continuous multimodal session, whatever file it came from.

Every reader and generator returns Recordings; `emg_lens.data.preprocess` turns them into
model-ready windows.

>>> import numpy as np
>>> rec = Recording(
...     subject=1,
...     signals={"emg": np.zeros((100, 2), np.float32)},
...     sample_rate=2000.0,
...     stimulus=np.zeros(100, np.int64),
...     repetition=np.zeros(100, np.int64),
... )
>>> rec.n_samples, rec.modalities
(100, {'emg': 2})
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from emg_lens.errors import DataFormatError, checked


@checked
@dataclass
class Recording:
    """A continuous recording: per-modality signals plus per-sample labels.

    Attributes:
        subject: subject number (1-based, as in the datasets).
        signals: modality name -> float32 array ``[time, channels]``, in montage order.
        sample_rate: Hz, shared by every signal and label vector.
        stimulus: per-sample gesture label (0 = rest), global across exercises.
        repetition: per-sample repetition index (0 = rest), 1-based.
        source: where it came from (a file path, or ``"synthetic"``), for error messages.
        extras: other per-sample arrays a file holds (``glove``, ``force``, ...).
        meta: what a reader knows beyond the samples (gesture names, the files of each
            trial, a placement), for tables and figures."""

    subject: int
    signals: dict[str, np.ndarray]
    sample_rate: float
    stimulus: np.ndarray
    repetition: np.ndarray
    source: str = "<memory>"
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.signals:
            raise DataFormatError(f"{self.source}: a recording needs at least one signal")
        lengths = {name: len(x) for name, x in self.signals.items()}
        lengths["stimulus"] = len(self.stimulus)
        lengths["repetition"] = len(self.repetition)
        if len(set(lengths.values())) != 1:
            raise DataFormatError(f"{self.source}: signals and labels differ in length: {lengths}")
        for name, x in self.signals.items():
            if x.ndim != 2:
                raise DataFormatError(
                    f"{self.source}: {name!r} must be [time, channels], not {x.shape}"
                )
            if not np.isfinite(x).all():
                bad = int((~np.isfinite(x)).sum())
                raise DataFormatError(f"{self.source}: signal {name!r} holds {bad} NaN/Inf values")
        if not self.sample_rate > 0:
            raise DataFormatError(f"{self.source}: sample_rate must be > 0, got {self.sample_rate}")

    @property
    def n_samples(self) -> int:
        return len(self.stimulus)

    @property
    def modalities(self) -> dict[str, int]:
        """Modality -> channel count, in montage order (an `EncoderConfig.modalities`)."""
        return {name: x.shape[1] for name, x in self.signals.items()}

    @property
    def gestures(self) -> list[int]:
        """The distinct non-rest gesture labels, sorted."""
        return sorted(int(g) for g in np.unique(self.stimulus) if g != 0)
