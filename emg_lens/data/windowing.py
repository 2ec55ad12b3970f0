"""TinyMyo's windowing pipeline, and the HDF5 window store that pretraining reads lazily.

`TinyMyoPreprocess` holds the recipe (parameters only); the functions here do the work, per
recording, in this order:

1. band-pass 20-450 Hz (4th-order Butterworth, SOS, zero-phase) and a 50 Hz notch, at the
   recording's own rate (`emg_lens.data.preprocess.filter_signals`). Where the upper cut-off
   is at or above that rate's Nyquist frequency (NinaPro DB5 at 200 Hz), it is lowered to
   ``0.45 * fs`` -- 90 Hz at 200 Hz, BioFoundation's own DB5 band -- unless ``clip_band`` is
   False, which makes it a `ConfigError`. (Resampling first would come to the same: after
   upsampling nothing is left above the old Nyquist frequency for a 450 Hz edge to remove;
   filtering at the source rate is cheaper and keeps the band explicit.);
2. resampling to 2 kHz with `scipy.signal.resample_poly` (rational up/down);
3. windows of 1000 samples every 500 (50% overlap) over the whole recording; a window's label
   and repetition are those of its centre sample (-1 for unlabelled data such as emg2pose);
4. normalisation: ``"minmax"`` maps each window (its real channels together) to [-1, 1] (for
   pretraining); ``"zscore"`` applies a per-channel `Scaler` fitted on the training part with
   `fit_scaler` (downstream);
5. zero channels appended up to 16 (they stay exactly zero under either normalisation).

`write_window_store` writes the windows of many recordings to one HDF5 file, incrementally and
atomically; `WindowStore` is the lazy `torch.utils.data.Dataset` over it: item ``i`` is
``(x, y)``, ``x`` float32 ``[16, 1000]``, ``y`` an int64 scalar.

>>> import tempfile
>>> from pathlib import Path
>>> from emg_lens.data.recording import Recording
>>> rng = np.random.default_rng(0)
>>> rec = Recording(1, {"emg": rng.standard_normal((3000, 8)).astype(np.float32)}, 2000.0,
...                 np.zeros(3000, np.int64), np.zeros(3000, np.int64))
>>> path = write_window_store(Path(tempfile.mkdtemp()) / "w.h5", [rec], labeled=False,
...                           progress=False)
>>> store = WindowStore(path)
>>> x, y = store[0]
>>> len(store), tuple(x.shape), x.dtype, int(y), float(x[:8].abs().max()), float(x[8:].abs().max())
(5, (16, 1000), torch.float32, -1, 1.0, 0.0)
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from fractions import Fraction
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from jaxtyping import Float, Int
from scipy import signal as sps
from tqdm.auto import tqdm

from emg_lens._io import atomic_write, leftover_temp_files
from emg_lens.data.preprocess import PreprocessSpec, Scaler, filter_signals
from emg_lens.data.recording import Recording
from emg_lens.errors import ArgumentError, ConfigError, DataFormatError, IndexOutOfRangeError

__all__ = [
    "NORMALIZATIONS",
    "STORE_FORMAT",
    "TinyMyoPreprocess",
    "WindowBatch",
    "WindowStore",
    "effective_band",
    "fit_scaler",
    "resample",
    "tinymyo_windows",
    "write_window_store",
]

NORMALIZATIONS = ("minmax", "zscore")
"""``"minmax"``: each window to [-1, 1] (pretraining); ``"zscore"``: per channel (downstream)."""

STORE_FORMAT = "emg_lens.window_store/1"
"""The ``format`` attribute of a window store; a file without it is not one."""

NYQUIST_CLIP = 0.45
"""An upper cut-off at/above Nyquist is lowered to this fraction of the sample rate."""

MAX_RESAMPLE_TERM = 1000
"""Largest up/down factor `resample` accepts (2048 Hz -> 2 kHz is 125/128)."""


@dataclass(frozen=True)
class TinyMyoPreprocess:
    """TinyMyo's preprocessing recipe; the defaults are the published ones."""

    band: tuple[float, float] | None = (20.0, 450.0)  # Hz, band-pass; None: no band-pass
    notch: float | None = 50.0  # Hz, mains notch (Q = 30); None: no notch
    order: int = 4  # Butterworth order
    clip_band: bool = True  # upper cut-off >= Nyquist: lower it to 0.45 fs (else ConfigError)
    sample_rate: float = 2000.0  # Hz, the model's clock: every recording is resampled to it
    n_channels: int = 16  # channels zero-padded up to this
    window: int = 1000  # samples per window (50 patches of 20)
    step: int = 500  # samples between window starts (50% overlap)
    normalize: str = "minmax"  # one of NORMALIZATIONS

    def __post_init__(self) -> None:
        if self.normalize not in NORMALIZATIONS:
            raise ConfigError(
                f"TinyMyoPreprocess.normalize must be one of {NORMALIZATIONS}, got "
                f"{self.normalize!r}"
            )
        for name in ("order", "n_channels", "window", "step"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(
                    f"TinyMyoPreprocess.{name} must be an integer >= 1, got {value!r}"
                )
        if not self.sample_rate > 0:
            raise ConfigError(f"TinyMyoPreprocess.sample_rate must be > 0, got {self.sample_rate}")
        if self.band is not None and not 0 < self.band[0] < self.band[1]:
            raise ConfigError(
                f"TinyMyoPreprocess.band must be (low, high) with 0 < low < high Hz, got "
                f"{self.band}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TinyMyoPreprocess:
        """The spec from `to_dict`'s output (JSON lists become tuples again).

        >>> spec = TinyMyoPreprocess(window=200, step=100)
        >>> TinyMyoPreprocess.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
        True
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown TinyMyoPreprocess fields {unknown}; known: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


@dataclass
class WindowBatch:
    """The windows of one recording, ready for the model or a store.

    Attributes:
        x: float32 ``[window, channel, time]``, normalised and zero-padded.
        labels: int64 gesture label at each window's centre (-1: unlabelled).
        repetition: int64 repetition at each window's centre (0: rest or none).
        subject: the recording's subject.
        source: the recording's source (file path).
        info: provenance: the source rate, the band actually applied, the real channel count.
    """

    x: Float[np.ndarray, "window channel time"]
    labels: Int[np.ndarray, " window"]
    repetition: Int[np.ndarray, " window"]
    subject: int
    source: str
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.x)


# ----------------------------------------------------------------------------- signal steps


def effective_band(fs: float, spec: TinyMyoPreprocess) -> tuple[float, float] | None:
    """The band-pass applied to a recording sampled at ``fs`` Hz.

    The upper cut-off is lowered to ``0.45 * fs`` where it is at/above Nyquist and
    ``spec.clip_band`` is set; otherwise that is a `ConfigError`, as is a lower cut-off that
    does not stay below the upper one.

    >>> effective_band(2000.0, TinyMyoPreprocess()), effective_band(200.0, TinyMyoPreprocess())
    ((20.0, 450.0), (20.0, 90.0))
    """
    if spec.band is None:
        return None
    low, high = spec.band
    if high >= fs / 2:
        if not spec.clip_band:
            raise ConfigError(
                f"band-pass upper cut-off {high:g} Hz is at/above the Nyquist frequency "
                f"{fs / 2:g} Hz of {fs:g} Hz data; set clip_band=True to lower it to "
                f"{NYQUIST_CLIP:g} x fs = {NYQUIST_CLIP * fs:g} Hz, or pass a band below "
                f"{fs / 2:g} Hz"
            )
        high = NYQUIST_CLIP * fs
    if not low < high:
        raise ConfigError(
            f"band-pass lower cut-off {low:g} Hz is not below the upper cut-off {high:g} Hz "
            f"usable at {fs:g} Hz (Nyquist {fs / 2:g} Hz)"
        )
    return (float(low), float(high))


def resample(
    x: Float[np.ndarray, "time channel"], fs_from: float, fs_to: float
) -> Float[np.ndarray, "new_time channel"]:
    """Resample along time from ``fs_from`` to ``fs_to`` Hz with `scipy.signal.resample_poly`
    (up/down from the exact ratio, each at most `MAX_RESAMPLE_TERM`).

    >>> resample(np.zeros((200, 3)), 200.0, 2000.0).shape
    (2000, 3)
    >>> resample(np.zeros((2048, 1)), 2048.0, 2000.0).shape  # up 125, down 128
    (2000, 1)
    """
    if fs_from == fs_to:
        return x
    ratio = Fraction(fs_to / fs_from).limit_denominator(MAX_RESAMPLE_TERM)
    exact = fs_to / fs_from
    if ratio.numerator > MAX_RESAMPLE_TERM or abs(float(ratio) - exact) > 1e-9 * exact:
        raise ArgumentError(
            f"cannot resample {fs_from:g} Hz to {fs_to:g} Hz with integer up/down factors of "
            f"at most {MAX_RESAMPLE_TERM} (closest: {ratio.numerator}/{ratio.denominator})"
        )
    return sps.resample_poly(x, ratio.numerator, ratio.denominator, axis=0)


def _checked_emg(recording: Recording, spec: TinyMyoPreprocess) -> np.ndarray:
    emg = recording.signals.get("emg")
    if emg is None:
        raise DataFormatError(
            f"{recording.source}: TinyMyo windows need an 'emg' signal; the recording has "
            f"{recording.modalities}"
        )
    if emg.shape[1] > spec.n_channels:
        raise DataFormatError(
            f"{recording.source}: 'emg' has {emg.shape[1]} channels, more than the "
            f"{spec.n_channels} TinyMyo takes; select {spec.n_channels} channels first"
        )
    return emg


def _window_starts(n_samples: int, spec: TinyMyoPreprocess) -> np.ndarray:
    return np.arange(0, n_samples - spec.window + 1, spec.step)


def _raw_windows(recording: Recording, spec: TinyMyoPreprocess, labeled: bool) -> WindowBatch:
    """Steps 1-3 and 5 (no normalisation): padded windows; ``info["channels"]`` real ones."""
    emg = _checked_emg(recording, spec)
    fs = recording.sample_rate
    band = effective_band(fs, spec)
    info = {"sample_rate": fs, "band": band, "channels": emg.shape[1]}
    starts = np.zeros(0, np.int64)
    x = np.zeros((0, spec.n_channels, spec.window), np.float32)
    # A recording too short for one window (a sample of slack for rounding) is not filtered.
    if recording.n_samples * spec.sample_rate / fs + 1 >= spec.window:
        paper_filters = PreprocessSpec(
            emg_band=band, lowpass=None, notch=spec.notch, order=spec.order, rectify=False
        )
        emg = filter_signals({"emg": emg}, fs, paper_filters)["emg"]
        emg = resample(emg, fs, spec.sample_rate)
        starts = _window_starts(len(emg), spec)
        x = np.zeros((len(starts), spec.n_channels, spec.window), np.float32)
        for i, start in enumerate(starts):  # [window, channel, time]; the rest: zero padding
            x[i, : emg.shape[1]] = emg[start : start + spec.window].T
    # Each window takes the labels of its centre sample, found back on the source clock.
    centres = (starts + spec.window // 2) * fs / spec.sample_rate
    at = np.minimum(centres.astype(np.int64), recording.n_samples - 1)
    labels = recording.stimulus[at].astype(np.int64) if labeled else np.full(len(at), -1, np.int64)
    return WindowBatch(
        x=x,
        labels=labels,
        repetition=recording.repetition[at].astype(np.int64),
        subject=recording.subject,
        source=recording.source,
        info=info,
    )


def _minmax(x: np.ndarray) -> np.ndarray:
    """Each window to [-1, 1] over all its values (a constant window becomes 0)."""
    low = x.min(axis=(1, 2), keepdims=True)
    span = x.max(axis=(1, 2), keepdims=True) - low
    scale = np.divide(2.0, span, out=np.zeros_like(span), where=span > 0)
    return ((x - low) * scale - (span > 0)).astype(np.float32)


def tinymyo_windows(
    recording: Recording,
    spec: TinyMyoPreprocess = TinyMyoPreprocess(),
    *,
    labeled: bool = True,
    scaler: Scaler | None = None,
) -> WindowBatch:
    """One recording through TinyMyo's pipeline (see the module docstring).

    Args:
        recording: any `Recording` with an ``"emg"`` signal of at most ``spec.n_channels``
            channels, at any rate `resample` can convert.
        spec: the recipe.
        labeled: labels from ``recording.stimulus`` (0 = rest); False gives -1 everywhere.
        scaler: for ``normalize="zscore"``, the per-channel `Scaler` from `fit_scaler` (over
            ``spec.n_channels`` channels); must be None for ``"minmax"``.

    A recording shorter than one window gives an empty batch.

    >>> from emg_lens.data.recording import Recording
    >>> n = 400  # 2 s at 200 Hz -> 4000 samples at 2 kHz -> 7 windows
    >>> rec = Recording(2, {"emg": np.random.default_rng(0).standard_normal((n, 16))}, 200.0,
    ...                 np.repeat([0, 5], n // 2), np.repeat([0, 1], n // 2))
    >>> batch = tinymyo_windows(rec)
    >>> batch.x.shape, batch.labels.tolist(), batch.info["band"]
    ((7, 16, 1000), [0, 0, 0, 5, 5, 5, 5], (20.0, 90.0))
    """
    _check_scaler(spec, scaler)
    batch = _raw_windows(recording, spec, labeled)
    if len(batch) and spec.normalize == "minmax":
        real = batch.info["channels"]  # min-max over the real channels; padding stays zero
        batch.x[:, :real] = _minmax(batch.x[:, :real])
    elif len(batch):
        batch.x = scaler.transform(batch.x)
    return batch


def _check_scaler(spec: TinyMyoPreprocess, scaler: Scaler | None) -> None:
    if spec.normalize == "minmax" and scaler is not None:
        raise ArgumentError(
            "a scaler was given but TinyMyoPreprocess.normalize is 'minmax' (per window); "
            "use normalize='zscore' to apply it"
        )
    if spec.normalize == "zscore":
        if scaler is None:
            raise ArgumentError(
                "normalize='zscore' needs scaler=: fit it on the training part with "
                "fit_scaler(training_recordings, spec)"
            )
        if np.shape(scaler.mean) != (spec.n_channels,) or np.shape(scaler.std) != (
            spec.n_channels,
        ):
            raise ArgumentError(
                f"the scaler must hold {spec.n_channels} channel means and stds (the padded "
                f"channels), got mean {np.shape(scaler.mean)} and std {np.shape(scaler.std)}"
            )


def fit_scaler(
    recordings: Iterable[Recording],
    spec: TinyMyoPreprocess = TinyMyoPreprocess(normalize="zscore"),
    *,
    repetitions: Iterable[int] | None = None,
) -> Scaler:
    """The per-channel z-score of the windows of ``recordings`` (the training part), as
    `Scaler.fit` would give on all of them at once, computed one recording at a time.

    ``repetitions`` keeps only windows whose centre lies in those repetitions (e.g. the
    training repetitions of a subject); padded channels get mean 0 and std 1.

    >>> from emg_lens.data.recording import Recording
    >>> x = np.random.default_rng(0).standard_normal((4000, 2)) * [1.0, 3.0]
    >>> rec = Recording(1, {"emg": x}, 2000.0, np.zeros(4000), np.ones(4000))
    >>> scaler = fit_scaler([rec])
    >>> scaler.mean.shape, bool(scaler.std[1] > 2 * scaler.std[0]), float(scaler.std[5])
    ((16,), True, 1.0)
    """
    wanted = None if repetitions is None else sorted(set(repetitions))
    count, mean, m2 = 0, np.zeros(spec.n_channels), np.zeros(spec.n_channels)
    for recording in recordings:
        batch = _raw_windows(recording, spec, labeled=True)
        x = batch.x if wanted is None else batch.x[np.isin(batch.repetition, wanted)]
        if not len(x):
            continue
        # Chan et al.'s pairwise update: exact moments without holding every window at once.
        x = x.astype(np.float64)
        n = x.shape[0] * x.shape[2]
        batch_mean = x.mean(axis=(0, 2))
        batch_m2 = ((x - batch_mean[None, :, None]) ** 2).sum(axis=(0, 2))
        delta = batch_mean - mean
        total = count + n
        mean = mean + delta * n / total
        m2 = m2 + batch_m2 + delta**2 * count * n / total
        count = total
    if count == 0:
        raise DataFormatError(
            f"no window to fit the z-score on (repetitions {wanted}; every recording shorter "
            f"than {spec.window} samples at {spec.sample_rate:g} Hz, or none given)"
        )
    return Scaler.from_moments(count, mean, m2)


# ----------------------------------------------------------------------------- the store


def write_window_store(
    path: str | Path,
    source: Iterable[Recording | WindowBatch],
    spec: TinyMyoPreprocess = TinyMyoPreprocess(),
    *,
    labeled: bool = True,
    scaler: Scaler | None = None,
    compression: str | None = None,
    progress: bool = True,
) -> Path:
    """Write the windows of ``source`` to an HDF5 window store at ``path``.

    Recordings go through `tinymyo_windows` (with ``spec``, ``labeled``, ``scaler``);
    `WindowBatch` items are written as they are (their shape must match ``spec``). Windows
    are appended recording by recording (resizable datasets; one recording in memory at a
    time) under a tqdm bar.

    The file holds ``windows`` float32 ``[N, C, T]`` (one chunk per window, optionally
    ``compression="gzip"`` or ``"lzf"``), ``labels`` int64 ``[N]`` (-1: unlabelled),
    ``repetition``, ``subject`` and ``session`` int64 ``[N]``; attributes ``format``,
    ``preprocess`` (the spec as JSON), ``sample_rate``, ``n_channels``, ``window``,
    ``labeled``, ``scaler`` (JSON, or ``null``), ``sessions`` (JSON list: one entry per
    recording, with its source, subject, source rate and applied band; ``session`` indexes
    it) and ``complete``.

    It is written to a temporary file and renamed to ``path`` only once complete
    (`emg_lens._io.atomic_write`): a run that fails or is interrupted leaves no ``path`` (an
    existing store there stays untouched).

    Raises:
        DataFormatError: no item yields a window, or a recording is unusable.
        ArgumentError: an item is neither a Recording nor a WindowBatch, a batch's shape does
            not match ``spec``, or the scaler does not fit ``spec.normalize``.

    Returns the path written.
    """
    path = Path(path)
    _check_scaler(spec, scaler)
    if compression not in (None, "gzip", "lzf"):
        raise ArgumentError(f"compression must be None, 'gzip' or 'lzf', got {compression!r}")
    shape = (spec.n_channels, spec.window)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        sessions: list[dict[str, Any]] = []
        with h5py.File(tmp, "w") as f:
            windows = f.create_dataset(
                "windows",
                shape=(0, *shape),
                maxshape=(None, *shape),
                dtype=np.float32,
                chunks=(1, *shape),
                compression=compression,
            )
            columns = {
                name: f.create_dataset(
                    name, shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(4096,)
                )
                for name in ("labels", "repetition", "subject", "session")
            }
            total = len(source) if hasattr(source, "__len__") else None
            bar = tqdm(source, total=total, desc=path.name, unit="rec", disable=not progress)
            for item in bar:
                batch = _as_batch(item, spec, labeled, scaler)
                start, n = len(windows), len(batch)
                for ds in (windows, *columns.values()):
                    ds.resize(start + n, axis=0)
                if n:
                    windows[start:] = batch.x
                    columns["labels"][start:] = batch.labels
                    columns["repetition"][start:] = batch.repetition
                    columns["subject"][start:] = batch.subject
                    columns["session"][start:] = len(sessions)
                sessions.append({"source": batch.source, "subject": batch.subject, **batch.info})
                bar.set_postfix(windows=start + n)
            if len(windows) == 0:
                raise DataFormatError(
                    f"{path}: no window written: none of the {len(sessions)} recordings holds "
                    f"{spec.window} samples at {spec.sample_rate:g} Hz"
                )
            f.attrs.update(
                {
                    "format": STORE_FORMAT,
                    "preprocess": json.dumps(spec.to_dict()),
                    "sample_rate": spec.sample_rate,
                    "n_channels": spec.n_channels,
                    "window": spec.window,
                    "labeled": labeled,
                    "scaler": json.dumps(_scaler_dict(scaler)),
                    "sessions": json.dumps(sessions),
                }
            )
            f.attrs["complete"] = True  # last: a store without it was never finished

    return atomic_write(path, write)


def _as_batch(
    item: Recording | WindowBatch, spec: TinyMyoPreprocess, labeled: bool, scaler: Scaler | None
) -> WindowBatch:
    if isinstance(item, Recording):
        return tinymyo_windows(item, spec, labeled=labeled, scaler=scaler)
    if not isinstance(item, WindowBatch):
        raise ArgumentError(
            f"write_window_store takes Recordings or WindowBatches, got {type(item).__name__}"
        )
    expected = (spec.n_channels, spec.window)
    if item.x.ndim != 3 or item.x.shape[1:] != expected:
        raise ArgumentError(
            f"{item.source}: WindowBatch.x has shape {item.x.shape}; the store holds "
            f"[N, {expected[0]}, {expected[1]}] windows (spec.n_channels, spec.window)"
        )
    if not len(item.labels) == len(item.repetition) == len(item.x):
        raise ArgumentError(
            f"{item.source}: WindowBatch holds {len(item.x)} windows but {len(item.labels)} "
            f"labels and {len(item.repetition)} repetitions"
        )
    return item


def _scaler_dict(scaler: Scaler | None) -> dict[str, list[float]] | None:
    if scaler is None:
        return None
    return {"mean": np.asarray(scaler.mean).tolist(), "std": np.asarray(scaler.std).tolist()}


class WindowStore(torch.utils.data.Dataset):
    """A window store read lazily: a `torch.utils.data.Dataset` of ``(x, y)`` pairs.

    ``x`` is a float32 tensor ``[n_channels, window]``, ``y`` an int64 scalar tensor (-1 for
    unlabelled windows). Opening reads the attributes and the small per-window columns only;
    each item reads one window. The HDF5 file is opened on first access in each process (a
    DataLoader worker, forked or spawned, never uses its parent's handle), and a pickled
    store carries no handle.

    Args:
        path: a file written by `write_window_store`.
        subjects: keep only the windows of these subjects.
        repetitions: keep only the windows whose centre lies in these repetitions.

    Attributes:
        meta: the store's attributes (JSON decoded): ``preprocess``, ``sample_rate``,
            ``n_channels``, ``window``, ``labeled``, ``scaler``, ``sessions``, ...
        n_channels, window, sample_rate: the window shape and clock.
        labels, subject, repetition, session: the selected windows' columns (numpy).

    >>> import tempfile
    >>> from emg_lens.data.recording import Recording
    >>> recs = [Recording(s, {"emg": np.ones((2000, 4))}, 2000.0, np.ones(2000), np.ones(2000))
    ...         for s in (1, 2)]
    >>> path = write_window_store(Path(tempfile.mkdtemp()) / "w.h5", recs, progress=False)
    >>> WindowStore(path).subjects, len(WindowStore(path)), len(WindowStore(path, subjects=[2]))
    ([1, 2], 6, 3)
    """

    def __init__(
        self,
        path: str | Path,
        *,
        subjects: Iterable[int] | None = None,
        repetitions: Iterable[int] | None = None,
    ) -> None:
        self.path = Path(path)
        self._h5: h5py.File | None = None
        self._dataset: h5py.Dataset | None = None
        self._pid: int | None = None
        columns = self._read_index()
        keep = np.ones(len(columns["labels"]), dtype=bool)
        if subjects is not None:
            subjects = sorted(set(subjects))
            present = sorted(set(columns["subject"].tolist()))
            if missing := [s for s in subjects if s not in present]:
                raise ArgumentError(
                    f"{self.path}: no windows of subjects {missing}; it holds {present}"
                )
            keep &= np.isin(columns["subject"], subjects)
        if repetitions is not None:
            keep &= np.isin(columns["repetition"], sorted(set(repetitions)))
        self._rows = np.flatnonzero(keep)
        self.labels = columns["labels"][self._rows]
        self.subject = columns["subject"][self._rows]
        self.repetition = columns["repetition"][self._rows]
        self.session = columns["session"][self._rows]

    def _read_index(self) -> dict[str, np.ndarray]:
        if not self.path.is_file():
            left = [p.name for p in leftover_temp_files(self.path)]
            hint = f" ({', '.join(left)} left from an interrupted write)" if left else ""
            raise DataFormatError(f"{self.path}: no such window store{hint}")
        try:
            with h5py.File(self.path, "r") as f:
                attrs = dict(f.attrs)
                if attrs.get("format") != STORE_FORMAT or not attrs.get("complete", False):
                    raise DataFormatError(
                        f"{self.path}: not a complete window store (attribute format="
                        f"{attrs.get('format')!r}, complete={attrs.get('complete')!r}; expected "
                        f"{STORE_FORMAT!r} and True, as write_window_store leaves them)"
                    )
                names = ("windows", "labels", "repetition", "subject", "session")
                if missing := [n for n in names if n not in f]:
                    raise DataFormatError(f"{self.path}: window store lacks datasets {missing}")
                columns = {n: f[n][:] for n in names[1:]}
                shape = f["windows"].shape
        except OSError as exc:
            raise DataFormatError(
                f"{self.path}: cannot be read as an HDF5 window store (truncated or corrupt?): "
                f"{exc}"
            ) from exc
        if any(len(c) != shape[0] for c in columns.values()):
            raise DataFormatError(
                f"{self.path}: {shape[0]} windows but columns of lengths "
                f"{ {n: len(c) for n, c in columns.items()} }"
            )
        self.meta = {k: _decode_attr(k, v) for k, v in attrs.items()}
        self.n_channels, self.window = int(shape[1]), int(shape[2])
        self.sample_rate = float(self.meta["sample_rate"])
        return columns

    @property
    def subjects(self) -> list[int]:
        """The distinct subjects among the selected windows, sorted."""
        return sorted(set(self.subject.tolist()))

    def _windows(self) -> h5py.Dataset:
        """This process's handle on the ``windows`` dataset, opened on first use."""
        if self._h5 is None or self._pid != os.getpid():
            self._h5 = h5py.File(self.path, "r")  # per process: never a forked parent's handle
            self._pid = os.getpid()
            self._dataset = self._h5["windows"]  # looked up once: a lookup costs more than a read
        return self._dataset

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
            raise ArgumentError(f"a WindowStore index must be an integer, got {index!r}")
        n = len(self._rows)
        if not -n <= index < n:
            raise IndexOutOfRangeError(f"{self.path}: index {index} is outside 0..{n - 1}")
        row = int(self._rows[index])
        x = torch.from_numpy(self._windows()[row])
        return x, torch.tensor(int(self.labels[index]), dtype=torch.int64)

    def close(self) -> None:
        """Close this process's file handle (reopened on the next access)."""
        if self._h5 is not None and self._pid == os.getpid():
            self._h5.close()
        self._h5, self._dataset = None, None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_h5"], state["_pid"], state["_dataset"] = None, None, None  # per process
        return state

    def __repr__(self) -> str:
        return (
            f"WindowStore({str(self.path)!r}, windows={len(self)}, subjects={self.subjects}, "
            f"shape=[{self.n_channels}, {self.window}])"
        )


def _decode_attr(name: str, value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode()
    if name in ("preprocess", "scaler", "sessions") and isinstance(value, str):
        return json.loads(value)
    return value.item() if isinstance(value, np.generic) else value
