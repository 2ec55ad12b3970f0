"""TinyMyo's windowing pipeline: a `Recording` to padded, normalised windows.

`TinyMyoPreprocess` holds the recipe (docs/ARCHITECTURE.md, "From a signal to a table");
`tinymyo_windows` applies it to one recording: filters at the recording's rate (the upper
cut-off lowered to ``0.45 * fs`` where it reaches Nyquist, BioFoundation's own DB5 band, unless
``clip_band`` is False), 2 kHz, windows labelled by their centre sample, zero channels up to
16, then ``"minmax"`` per window after the padding or ``"zscore"`` by a fitted `Scaler`.

>>> from emg_lens.data import Recording
>>> rng = np.random.default_rng(0)
>>> rec = Recording(1, {"emg": rng.standard_normal((3000, 8)).astype(np.float32)}, 2000.0,
...                 np.zeros(3000, np.int64), np.zeros(3000, np.int64))
>>> batch = tinymyo_windows(rec, labeled=False)
>>> lows, highs = batch.x.min(axis=2), batch.x.max(axis=2)
>>> batch.x.shape, batch.labels.tolist(), np.allclose(lows, -1), np.allclose(highs[:, :8], 1)
((5, 16, 1000), [-1, -1, -1, -1, -1], True, True)
>>> bool((batch.x[:, 8:] == -1).all())  # the padding, constant, at -1
True
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
from jaxtyping import Float, Int
from scipy import signal as sps

from emg_lens.data.preprocess import PreprocessSpec, Scaler, filter_signals
from emg_lens.data.recording import Recording
from emg_lens.data.spec import POSITIVE, DictSpec, Rules
from emg_lens.errors import (
    ArgumentError,
    ConfigError,
    DataFormatError,
    fields_checked,
)

NORMALIZATIONS = ("minmax", "zscore")
"""``"minmax"``: each window to [-1, 1] (pretraining); ``"zscore"``: per channel (downstream)."""


NYQUIST_CLIP = 0.45
"""An upper cut-off at/above Nyquist is lowered to this fraction of the sample rate."""

MAX_RESAMPLE_TERM = 1000
"""Largest up/down factor `resample` accepts (2048 Hz -> 2 kHz is 125/128)."""


@fields_checked
@dataclass(frozen=True)
class TinyMyoPreprocess(DictSpec):
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
        self.check_rules(RULES, types=True)  # the declared types, then the ranges


RULES: Rules = {
    "normalize": (f"one of {NORMALIZATIONS}", lambda v, _: v in NORMALIZATIONS),
    **dict.fromkeys(("order", "n_channels", "window", "step"), POSITIVE),
    "sample_rate": ("> 0 (Hz)", lambda v, _: v > 0),
    "band": ("(low, high) with 0 < low < high Hz, or None", lambda b, _: 0 < b[0] < b[1]),
}
"""`TinyMyoPreprocess`'s ranges: field -> (what is accepted, test) (`DictSpec.check_rules`)."""


@dataclass
class WindowBatch:
    """The windows of one recording, ready for the model or a store.

    Attributes:
        x: float32 ``[window, channel, time]``, padded with zero channels, then normalised
            (the padding: -1 under ``"minmax"``, 0 under ``"zscore"``).
        labels: int64 gesture label at each window's centre (-1: unlabelled).
        repetition: int64 repetition at each window's centre (0: rest or none).
        subject: the recording's subject.
        source: the recording's source (file path).
        info: provenance: the source rate, the band actually applied, the real channel count."""

    x: Float[np.ndarray, "window channel time"]
    labels: Int[np.ndarray, " window"]
    repetition: Int[np.ndarray, " window"]
    subject: int
    source: str
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.x)

    def keep(self, rows: np.ndarray) -> None:
        """Keep only the windows at ``rows`` (a mask), in place, with every per-window array."""
        self.x, self.labels = self.x[rows], self.labels[rows]
        self.repetition = self.repetition[rows]


def effective_band(fs: float, spec: TinyMyoPreprocess) -> tuple[float, float] | None:
    """The band-pass applied to a recording sampled at ``fs`` Hz (the module docstring: the
    upper cut-off lowered to ``0.45 * fs`` at Nyquist, else a `ConfigError`).

    >>> effective_band(2000.0, TinyMyoPreprocess()), effective_band(200.0, TinyMyoPreprocess())
    ((20.0, 450.0), (20.0, 90.0))
    """
    if spec.band is None:
        return None
    low, high = spec.band
    if high >= fs / 2:
        if not spec.clip_band:
            raise ConfigError(
                f"band-pass upper cut-off {high:g} Hz is at/above the Nyquist frequency {fs / 2:g}"
                f" Hz: pass a band below it, or clip_band=True to lower it to {NYQUIST_CLIP * fs:g}"
            )
        high = NYQUIST_CLIP * fs
    if not low < high:
        raise ConfigError(
            f"lower cut-off {low:g} Hz is not below the upper cut-off {high:g} Hz at {fs:g} Hz"
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
            f"cannot resample {fs_from:g} Hz to {fs_to:g} Hz by up/down ints <= {MAX_RESAMPLE_TERM}"
        )
    return sps.resample_poly(x, ratio.numerator, ratio.denominator, axis=0)


def _checked_emg(recording: Recording, spec: TinyMyoPreprocess) -> np.ndarray:
    emg = recording.signals.get("emg")
    if emg is None or emg.shape[1] > spec.n_channels:
        raise DataFormatError(
            f"{recording.source}: TinyMyo windows need an 'emg' signal of at most "
            f"{spec.n_channels} channels (select them first), got {recording.modalities}"
        )
    return emg


def _raw_windows(recording: Recording, spec: TinyMyoPreprocess, labeled: bool) -> WindowBatch:
    """Filtered, resampled, windowed and padded (not normalised); ``info["channels"]``: the
    real channels."""
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
        starts = np.arange(0, len(emg) - spec.window + 1, spec.step)
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


MINMAX_EPS = 1e-8
"""BioFoundation's ``MinMaxNormalization`` epsilon, added to each channel's range."""


def _minmax(x: np.ndarray) -> np.ndarray:
    """Each channel of each window ``[window, channel, time]`` to [-1, 1] over time, as
    BioFoundation's ``MinMaxNormalization``: ``((x - min) / (max - min + 1e-8) - 0.5) * 2`` (a
    constant channel becomes -1)."""
    low = x.min(axis=2, keepdims=True)
    span = x.max(axis=2, keepdims=True) - low
    return (((x - low) / (span + MINMAX_EPS) - 0.5) * 2).astype(np.float32)


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

    >>> from emg_lens.data import Recording
    >>> n = 400  # 2 s at 200 Hz -> 4000 samples at 2 kHz -> 7 windows
    >>> rec = Recording(2, {"emg": np.random.default_rng(0).standard_normal((n, 16))}, 200.0,
    ...                 np.repeat([0, 5], n // 2), np.repeat([0, 1], n // 2))
    >>> batch = tinymyo_windows(rec)
    >>> batch.x.shape, batch.labels.tolist(), batch.info["band"]
    ((7, 16, 1000), [0, 0, 0, 5, 5, 5, 5], (20.0, 90.0))
    """
    check_scaler(spec, scaler)
    batch = _raw_windows(recording, spec, labeled)
    if len(batch) and spec.normalize == "minmax":
        batch.x = _minmax(batch.x)  # the padding too, as the published pretraining does
    elif len(batch) and scaler is not None:  # zscore: check_scaler required it
        batch.x = scaler.transform(batch.x)
    return batch


def check_scaler(spec: TinyMyoPreprocess, scaler: Scaler | None) -> None:
    """Refuse a ``scaler`` that does not fit ``spec.normalize``: none for ``"minmax"``; one over
    ``spec.n_channels`` channels for ``"zscore"``.

    >>> check_scaler(TinyMyoPreprocess(), None)  # minmax: nothing to fit
    >>> check_scaler(TinyMyoPreprocess(normalize="zscore"), None)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    emg_lens.errors.ArgumentError: normalize='zscore' needs scaler=: 16 channel means and stds...
    """
    shapes = None if scaler is None else (np.shape(scaler.mean), np.shape(scaler.std))
    if spec.normalize == "minmax" and scaler is not None:
        raise ArgumentError("a scaler applies to normalize='zscore' only; normalize is 'minmax'")
    if spec.normalize == "zscore" and shapes != ((spec.n_channels,),) * 2:
        raise ArgumentError(
            f"normalize='zscore' needs scaler=: {spec.n_channels} channel means and stds, as "
            f"fit_scaler(training_recordings, spec) fits them; got {shapes or 'none'}"
        )


def fit_scaler(
    recordings: Iterable[Recording],
    spec: TinyMyoPreprocess = TinyMyoPreprocess(normalize="zscore"),
    *,
    repetitions: Iterable[int] | None = None,
) -> Scaler:
    """The per-channel z-score of the windows of ``recordings`` (the training part), as
    `Scaler.fit` would give on all of them at once, computed one recording at a time;
    ``repetitions`` keeps only windows centred in them. Padded channels get mean 0, std 1.

    >>> from emg_lens.data import Recording
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
        raise DataFormatError(f"no window to fit the z-score on in repetitions {wanted} (short?)")
    return Scaler.from_moments(count, mean, m2)
