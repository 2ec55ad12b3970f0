"""What TinyMyo's downstream datasets share: the thesis's preprocessing recipe and its steps.

EPN-612, UCI and NinaPro DB8 are preprocessed as BioFoundation's (later removed) scripts did, at
the data's own rate: band-pass 20-90 Hz and a 50 Hz notch (Q = 30) in SOS form (the scripts'
``filtfilt`` on ``b, a`` agrees to rounding at these orders); a per-channel z-score (``ddof=1``)
over each recording (EPN: trial; UCI: file less class 0; DB8: acquisition), fitted on no
training split, as the scripts did; then windows. Each window's ``repetition`` column holds its
split code (`SPLIT_CODES`), which the window store records in ``splits``.

>>> x = np.arange(12, dtype=np.float64).reshape(6, 2)
>>> z = zscore(x)
>>> z.mean(axis=0).round(6).tolist(), z.std(axis=0, ddof=1).round(6).tolist()
([0.0, 0.0], [1.0, 1.0])
>>> pad_or_crop(np.ones((3, 2)), 5)[:, 0].tolist(), pad_or_crop(np.ones((3, 2)), 2).shape
([1.0, 1.0, 1.0, 0.0, 0.0], (2, 2))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from jaxtyping import Float

from emg_lens.data.preprocess import PreprocessSpec, filter_signals
from emg_lens.data.reader import DatasetReader
from emg_lens.data.recording import Recording
from emg_lens.data.spec import POSITIVE, DictSpec, Rules
from emg_lens.data.windows.pipeline import WindowBatch
from emg_lens.errors import (
    ArgumentError,
    DataFormatError,
    fields_checked,
)
from emg_lens.geometry import Montage

THESIS_FILTERS = {"emg_band": (20.0, 90.0), "notch": 50.0}
"""The downstream datasets' `PreprocessSpec` defaults: the thesis's 20-90 Hz band and 50 Hz
notch. The IsoNet-paper pipeline (``emg-lens train``) reads them too; TinyMyo's windows follow
`DownstreamPreprocess` instead."""

SPLITS = ("train", "val", "test")
"""The downstream splits, in order."""

SPLIT_CODES: dict[str, int] = {"train": 1, "val": 2, "test": 3}
"""Split -> the code a window's ``repetition`` column holds in a downstream window store."""


@fields_checked
@dataclass(frozen=True)
class DownstreamPreprocess(DictSpec):
    """The thesis's downstream recipe for one dataset (parameters only; see the module)."""

    dataset: str  # the registry name
    sample_rate: float  # Hz, the data's own rate: nothing is resampled
    n_channels: int  # the data's channels: nothing is padded
    band: tuple[float, float] | None = (20.0, 90.0)  # Hz, band-pass; None: none
    notch: float | None = 50.0  # Hz (Q = 30); None: none
    order: int = 4  # Butterworth order
    window: int = 1000  # samples per window (EPN: each trial padded or cropped to it)
    step: int | None = 500  # samples between window starts (UCI, DB8); None: one per trial (EPN)
    normalize: str = "recording"  # per-channel z-score over each recording, as the scripts

    def __post_init__(self) -> None:
        self.check_rules(RULES, types=True)  # the declared types, then the ranges


RULES: Rules = {
    **dict.fromkeys(("n_channels", "order", "window", "step"), POSITIVE),
    "band": (
        "(low, high) with 0 < low < high < Nyquist (sample_rate / 2) Hz, or None",
        lambda b, spec: 0 < b[0] < b[1] < spec.sample_rate / 2,
    ),
    "normalize": (
        "'recording' (the thesis's per-recording z-score)",
        lambda v, _: v == "recording",
    ),
}
"""`DownstreamPreprocess`'s ranges: field -> (what is accepted, test) (`DictSpec.check_rules`)."""


def thesis_preprocess(
    emg: Float[np.ndarray, "time channel"], spec: DownstreamPreprocess, where: str
) -> Float[np.ndarray, "time channel"]:
    """The recipe's filters and z-score on one stretch of ``emg``: band-pass and notch at
    ``spec.sample_rate``, then the per-channel `zscore` (float64 out); ``where`` names the
    recording or trial in the error a too short one raises.

    >>> spec = DownstreamPreprocess("epn612", 200.0, 2)
    >>> x = thesis_preprocess(np.random.default_rng(0).standard_normal((400, 2)), spec, "x")
    >>> x.shape, x.std(axis=0, ddof=1).round(6).tolist()
    ((400, 2), [1.0, 1.0])
    """
    # sosfiltfilt pads 3 * (2 * sections + 1) samples on each side; shorter input cannot be
    # filtered forwards and backwards.
    shortest = 3 * (2 * spec.order + 1) + 1
    if len(emg) < shortest:
        raise DataFormatError(
            f"{where}: {len(emg)} samples, too short to filter: {shortest}+ needed"
        )
    filters = PreprocessSpec(
        emg_band=spec.band, lowpass=None, notch=spec.notch, order=spec.order, rectify=False
    )
    return zscore(filter_signals({"emg": emg}, spec.sample_rate, filters)["emg"].astype(np.float64))


def zscore(x: Float[np.ndarray, "time channel"]) -> Float[np.ndarray, "time channel"]:
    """Per-channel z-score over time (``ddof=1``, as the scripts); a flat channel is centred
    and left at scale 1."""
    std = x.std(axis=0, ddof=1) if len(x) > 1 else np.zeros(x.shape[1])
    return (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)


def pad_or_crop(x: Float[np.ndarray, "time channel"], length: int) -> np.ndarray:
    """``x`` cut to its first ``length`` samples, or zero-padded at the end up to them."""
    if len(x) >= length:
        return x[:length]
    return np.concatenate([x, np.zeros((length - len(x), x.shape[1]), x.dtype)])


def window_starts(n_samples: int, window: int, step: int) -> np.ndarray:
    """Starts of the whole windows of ``window`` samples every ``step`` in ``n_samples``.

    >>> window_starts(10, 4, 3).tolist()
    [0, 3, 6]
    """
    return np.arange(0, n_samples - window + 1, step)


def stack_windows(windows: list[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    """``windows`` (each of ``shape``) stacked as one float32 array, or an empty
    ``[0, *shape]`` one when there are none (a recording without a whole window).

    >>> stack_windows([], (8, 200)).shape, stack_windows([np.zeros((8, 200))] * 2, (8, 200)).dtype
    ((0, 8, 200), dtype('float32'))
    """
    if not windows:
        return np.zeros((0, *shape), np.float32)
    return np.stack(windows).astype(np.float32)


def label_runs(labels: np.ndarray) -> list[tuple[int, int, int]]:
    """Runs of one label: ``(label, start, stop)`` for each maximal constant stretch.

    >>> label_runs(np.array([2, 2, 5, 5, 5, 2]))
    [(2, 0, 2), (5, 2, 5), (2, 5, 6)]
    """
    if not len(labels):
        return []
    edges = np.flatnonzero(np.diff(labels)) + 1
    starts = np.concatenate([[0], edges])
    stops = np.concatenate([edges, [len(labels)]])
    return [(int(labels[a]), int(a), int(b)) for a, b in zip(starts, stops)]


@dataclass(frozen=True)
class DownstreamTask:
    """What a downstream dataset's reader adds (`emg_lens.data.reader.DatasetReader`
    ``downstream``): its task, clock and channels, and the thesis's windowing:
    ``windows(recording, spec, options)`` returns a recording's windows (a `WindowBatch`, or a
    `emg_lens.data.windows.store.RegressionBatch`), their ``repetition`` the split code, and in
    ``info["longest"]`` the longest stretch of each split code that a window had to fit in;
    ``options`` are the dataset's own settings, refused by name when unknown. ``window`` and
    ``step`` are the dataset's defaults (``step=None``: one window per trial, EPN)."""

    task: str  # "classification" or "regression"
    sample_rate: float
    n_channels: int
    windows: Callable[[Recording, DownstreamPreprocess, Mapping[str, Any]], WindowBatch]
    split_rule: str  # how windows split, in words (stored in the window store)
    classes: tuple[str, ...] = ()  # classification: class index -> name
    target_names: tuple[str, ...] = ()  # regression: output -> name
    options: tuple[str, ...] = ()  # the keys ``windows`` accepts
    window: int = 1000  # default samples per window
    step: int | None = 500  # default samples between window starts; None: one per trial
    unit: str = "recording"  # what a window must fit in, for messages ("run of one class")

    def spec(
        self, name: str, *, window: int | None = None, step: int | None = None
    ) -> DownstreamPreprocess:
        """The thesis's recipe for this dataset: ``window`` and ``step`` (None: the dataset's
        defaults; ``step`` is unused, and dropped, where each trial is one window)."""
        return DownstreamPreprocess(
            name,
            self.sample_rate,
            self.n_channels,
            window=self.window if window is None else window,
            step=None if self.step is None else self.step if step is None else step,
        )

    def check_options(self, name: str, options: Mapping[str, Any]) -> dict[str, Any]:
        """``options`` as a dict, refusing keys this dataset does not take."""
        if unknown := sorted(set(options) - set(self.options)):
            raise ArgumentError(f"{name} windows take options {list(self.options)}, got {unknown}")
        return dict(options)


def downstream_reader(
    montage: Montage,
    task: DownstreamTask,
    *,
    subjects: Callable[[str], list[int]],
    files: Callable[[str, int], list[Path]],
    read: Callable[[str, int], Recording],
) -> DatasetReader:
    """The registry's reader of a downstream dataset: its files under ``source["root"]``
    (``subjects``, ``files``, ``read`` of the root), one modality ``"emg"`` of
    ``task.n_channels`` channels placed as ``montage`` says, filtered as the thesis filters it
    (`THESIS_FILTERS`) and windowed as ``task`` says.

    >>> from emg_lens.data import dataset_info
    >>> uci = dataset_info("uci")  # the registry's entry, read through its reader
    >>> uci.montage({"root": "."}), uci.downstream.task
    ({'emg': 8}, 'classification')
    """
    return DatasetReader(
        montage=lambda source: {"emg": task.n_channels},
        subjects=lambda source: subjects(source["root"]),
        files=lambda source, subject: files(source["root"], subject),
        read=lambda source, subject: read(source["root"], subject),
        preprocess=THESIS_FILTERS,
        downstream=task,
        geometry=lambda source: {"emg": montage},
    )
