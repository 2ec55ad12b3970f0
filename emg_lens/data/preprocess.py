"""From a continuous `Recording` to model-ready windows, as the IsoNet paper preprocesses.

Steps, in order (each a field of `PreprocessSpec`): Butterworth band-pass 10–500 Hz on sEMG and
low-pass 90 Hz on the other modalities (zero-phase, or causal for streaming; "4th-order" is
scipy's ``butter(4, ...)``, the field's convention: a band-pass of 8 poles, -6 dB at each
cut-off when applied forward and backward); optional accelerometer magnitudes; sEMG
rectification; one segment per repetition (``"transient"``, ``"steady"``, ``"full"`` or
``(start_s, stop_s)``); windows; a split by repetition and a per-channel z-score fitted on the
training repetitions only.

>>> from emg_lens.data import SyntheticSpec, generate_recordings
>>> rec = generate_recordings(SyntheticSpec(n_subjects=1, movement_seconds=0.5))[0]
>>> data = prepare_subject(rec, PreprocessSpec(segment="transient", window=200, step=100))
>>> data.X_train.shape[1:], data.n_classes, sorted(set(data.rep_test.tolist()))
((48, 200), 12, [2, 5])
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from jaxtyping import Float
from numpy.typing import ArrayLike
from scipy import signal as sps

from emg_lens._hints import checked
from emg_lens.data.recording import Recording
from emg_lens.data.spec import POSITIVE, DictSpec, Rules
from emg_lens.data.trials import (
    GIVEN,
    WINDOW_LABELS,
    given_trials,
    record_trials,
    trial_ids,
    trial_unit,
)
from emg_lens.errors import (
    ArgumentError,
    ConfigError,
    DataFormatError,
    InputShapeError,
    check_int,
    check_number,
    fields_checked,
    is_int,
)

SEGMENTS = {"transient": (0.0, 0.5), "steady": (1.0, 2.0), "full": (0.0, None)}


@fields_checked
@dataclass(frozen=True)
class PreprocessSpec(DictSpec):
    """How to turn a recording into windows. Defaults follow the paper where it says."""

    emg_band: tuple[float, float] | None = (10.0, 500.0)  # Hz; None: no band-pass
    lowpass: float | None = 90.0  # Hz, for every non-sEMG modality; None: no filter
    notch: float | None = None  # Hz (50 in Europe); applied to sEMG
    order: int = 4  # Butterworth order
    causal: bool = False  # True: sosfilt (streaming); False: zero-phase sosfiltfilt
    rectify: bool = True  # |sEMG| after filtering
    envelope: float | None = None  # Hz: low-pass the rectified sEMG (its linear envelope)
    acc_magnitude: bool = False  # replace each 3-axis sensor by its magnitude
    segment: str | tuple[float, float] = "steady"  # "transient", "steady", "full", (s0, s1)
    window: int = 200  # samples per window: the model's n_samples
    step: int | None = 50  # samples between window starts; None: one window per segment
    train_repetitions: tuple[int, ...] = (1, 3, 4, 6)
    test_repetitions: tuple[int, ...] = (2, 5)
    gestures: tuple[int, ...] | None = None  # keep only these labels (e.g. DB2 B: 1..17)
    standardize: bool = True  # per-channel z-score fitted on training windows

    def __post_init__(self) -> None:
        self.check_rules(SPEC_RULES, types=True)  # the declared types, then the ranges


SPEC_RULES: Rules = {
    "segment": (
        f"one of {sorted(SEGMENTS)} or (start_s, stop_s), seconds into each repetition with "
        "0 <= start_s < stop_s",
        lambda s, _: s in SEGMENTS if isinstance(s, str) else 0 <= s[0] < s[1],
    ),
    "window": POSITIVE,
    "step": POSITIVE,
    "envelope": (
        "a low-pass cut-off in Hz (> 0) of the rectified sEMG (needs rectify=True), or None",
        lambda hz, spec: spec.rectify and hz > 0,
    ),
    "test_repetitions": (
        "repetitions none of which is in train_repetitions",
        lambda test, spec: not set(test) & set(spec.train_repetitions),
    ),
}
"""`PreprocessSpec`'s ranges: field -> (what is accepted, test) (`DictSpec.check_rules`)."""


@checked
@dataclass
class SubjectData:
    """One subject's windows, split by repetition. ``classes[y]`` is the gesture label."""

    subject: int
    modalities: dict[str, int]
    classes: list[int]
    X_train: Float[np.ndarray, "n_train channel time"]
    y_train: np.ndarray
    rep_train: np.ndarray
    X_test: Float[np.ndarray, "n_test channel time"]
    y_test: np.ndarray
    rep_test: np.ndarray
    meta: dict = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def train_trials(self) -> np.ndarray:
        """The trial of each training window (`emg_lens.data.trials.trial_ids`)."""
        unit = trial_unit(self.meta)
        return trial_ids(self.y_train, self.rep_train, unit, given_trials(self.meta, "train"))

    @property
    def test_trials(self) -> np.ndarray:
        """The trial of each held-out window, of the unit ``meta["trial_unit"]`` names
        (`emg_lens.data.trials`): what every inference over held-out data counts.

        >>> X, y = np.zeros((3, 1, 4)), np.array([0, 0, 1])
        >>> SubjectData.from_windows({"emg": 1}, (X, y), (X, y)).test_trials.tolist()
        [0, 1, 2]
        """
        unit = trial_unit(self.meta)
        return trial_ids(self.y_test, self.rep_test, unit, given_trials(self.meta, "test"))

    def select_test(self, index: np.ndarray) -> SubjectData:
        """This subject with the held-out windows at ``index`` only (positions in the test
        set, in that order, repeats allowed), each with its repetition, recorded trial and
        window labels (`emg_lens.data.pooled.window_labels`).

        >>> X, y, recorded = np.zeros((4, 1, 2)), np.array([0, 0, 1, 1]), [5, 5, 6, 6]
        >>> data = SubjectData.from_windows({"emg": 1}, (X, y), meta=record_trials([], recorded))
        >>> data.select_test(np.array([3, 0, 1])).test_trials.tolist()
        [0, 1, 1]
        """
        index = np.asarray(index, dtype=np.int64)
        meta = self.meta
        recorded = given_trials(meta, "test")
        if recorded is not None:
            meta = {**meta, GIVEN: {**meta[GIVEN], "test": recorded[index].tolist()}}
        if labels := meta.get(WINDOW_LABELS):
            kept = {
                n: {**c, "test": np.asarray(c["test"])[index].tolist()} for n, c in labels.items()
            }
            meta = {**meta, WINDOW_LABELS: kept}
        return replace(
            self,
            X_test=self.X_test[index],
            y_test=np.asarray(self.y_test)[index],
            rep_test=np.asarray(self.rep_test)[index],
            meta=meta,
        )

    def select_windows(self, n_windows: int) -> SubjectData:
        """This subject with at most ``n_windows`` held-out windows (an int >= 2), evenly
        spaced over the test set (`select_test`), so every gesture and repetition is kept.

        >>> X, y = np.zeros((10, 1, 4)), np.arange(10) % 2
        >>> data = SubjectData.from_windows({"emg": 1}, (X, y))
        >>> data.select_windows(4).X_test.shape[0], data.select_windows(40).X_test.shape[0]
        (4, 10)
        """
        n_windows, n = check_int(n_windows, "n_windows", minimum=2), len(self.y_test)
        if n == 0:
            raise ArgumentError(f"subject {self.subject} has no test windows to inspect")
        keep = np.linspace(0, n - 1, min(n, n_windows)).round().astype(int)
        return self.select_test(np.unique(keep))

    @classmethod
    def from_windows(
        cls,
        modalities: dict[str, int],
        test: tuple[ArrayLike, ArrayLike],
        train: tuple[ArrayLike, ArrayLike] | None = None,
        *,
        subject: int = 0,
        classes: list[int] | None = None,
        repetitions: tuple[int, int] = (1, 2),
        meta: dict | None = None,
    ) -> SubjectData:
        """A subject from windows made elsewhere (a notebook, a test): ``test`` and
        ``train`` are ``(X [n, channels, time], y [n])`` with ``y`` class indices (no training
        windows when ``train`` is None). ``classes`` (default ``0..max(y)``) labels the
        indices; every training window is of repetition ``repetitions[0]``, every test window
        of ``repetitions[1]``. ``X`` is stored as float32.

        >>> X, y = np.zeros((4, 2, 5)), np.array([0, 1, 0, 1])
        >>> data = SubjectData.from_windows({"emg": 2}, (X, y), (X, y), subject=3)
        >>> data.subject, data.classes, data.X_train.dtype, data.rep_test.tolist()
        (3, [0, 1], dtype('float32'), [2, 2, 2, 2])
        """
        X_test, y_test = np.asarray(test[0], np.float32), np.asarray(test[1])
        if train is None:
            X_train, y_train = X_test[:0], y_test[:0]
        else:
            X_train, y_train = np.asarray(train[0], np.float32), np.asarray(train[1])
        if classes is None:
            top = max([int(y.max()) for y in (y_train, y_test) if len(y)], default=-1)
            classes = list(range(top + 1))
        return cls(
            subject=subject,
            modalities=dict(modalities),
            classes=list(classes),
            X_train=X_train,
            y_train=y_train,
            rep_train=np.full(len(y_train), repetitions[0]),
            X_test=X_test,
            y_test=y_test,
            rep_test=np.full(len(y_test), repetitions[1]),
            meta={"trial_unit": "window", **({} if meta is None else meta)},
        )

    @classmethod
    def from_epochs(
        cls,
        epochs: Any,
        *,
        test: np.ndarray | None = None,
        test_fraction: float = 0.2,
        subject: int = 1,
    ) -> SubjectData:
        """A subject from an ``mne.Epochs`` (`emg_lens.data.epochs`): one modality per channel
        type, the event codes as classes with their ``event_id`` names
        (``meta["class_names"]``), the channel names and the electrodes on the scalp
        (``meta["placement"]``); each epoch a trial, unless braindecode's
        ``i_trial_in_dataset`` says otherwise. Held out: the epochs where ``test`` (a boolean
        mask or indices) is true, or else the last ``test_fraction`` of each class's trials in
        time order, whole.

        >>> import mne
        >>> info = mne.create_info(["C3", "Cz", "C4", "Pz"], 100.0, "eeg")
        >>> events = np.c_[np.arange(10) * 100, np.zeros(10, int), np.tile([1, 2], 5)]
        >>> epochs = mne.EpochsArray(np.random.randn(10, 4, 50), info, events,
        ...                          event_id={"left": 1, "right": 2}, verbose=False)
        >>> data = SubjectData.from_epochs(epochs)
        >>> data.modalities, data.meta["class_names"], len(data.y_test)
        ({'eeg': 4}, {1: 'left', 2: 'right'}, 2)
        """
        from emg_lens.data.epochs import epoch_arrays

        arrays = epoch_arrays(epochs)
        order = np.argsort(np.asarray(epochs.events)[:, 0], kind="stable")
        held = _held_out(arrays.codes, test, test_fraction, order, arrays.trials)
        return _from_arrays(arrays, held, subject, source="mne.Epochs")

    @classmethod
    def from_windows_dataset(
        cls,
        dataset: Any,
        *,
        split_by: str | None = None,
        test_values: tuple[Any, ...] = (),
        test_fraction: float = 0.2,
    ) -> list[SubjectData]:
        """One subject per ``subject`` of a braindecode windows dataset (``BaseConcatDataset``
        of ``WindowsDataset`` or ``EEGWindowsDataset``), as `from_epochs` builds one, each
        window's trial the event it was cut from, or else its recording. Held out: the
        recordings whose description's ``split_by`` (``"session"``, ``"run"``) is one of
        ``test_values``, or else the last ``test_fraction`` of each class's trials, whole.
        Subjects keep their numbers when all are integers >= 1, else are numbered 1, 2, ... in
        order (``meta["subject"]`` keeps each one's value)."""
        from emg_lens.data.epochs import windows_arrays, windows_dataset_subjects

        if (split_by is None) != (not test_values):
            raise ArgumentError(
                f"split_by and test_values go together, got {split_by!r}, {test_values!r}"
            )
        out = []
        subjects = windows_dataset_subjects(dataset)
        # Their own numbers only when every subject is an integer >= 1: numbering some in
        # order beside others' own numbers gave 'x' and 1 (or 0 and 1) one number.
        own = all(is_int(v, 1) for v in subjects)
        for number, (value, parts) in enumerate(subjects.items(), 1):
            arrays, groups = windows_arrays(parts, split_by)
            test = None if split_by is None else np.isin(groups, list(test_values))
            order = np.arange(len(arrays.codes))
            unit = "recording" if arrays.unit == "recording" else "trial"
            held = _held_out(arrays.codes, test, test_fraction, order, arrays.trials, unit)
            data = _from_arrays(arrays, held, int(value) if own else number, "braindecode")
            data.meta["subject"] = value if not isinstance(value, np.generic) else value.item()
            out.append(data)
        return out


def _held_out(
    codes: np.ndarray,
    test: Any,
    fraction: float,
    order: np.ndarray,
    trials: np.ndarray | None = None,
    unit: str = "trial",
) -> np.ndarray:
    """Which windows are held out: ``test`` (a mask or indices), or the last ``fraction`` of
    each class's trials (None: each window its own) in ``order``, each whole. No trial is on
    both sides, every class keeps a training window and the test set is not empty, or a
    `DataFormatError` names the trial or the class."""
    n = len(codes)
    trials = np.arange(n) if trials is None else np.asarray(trials)
    unit = "window" if len(np.unique(trials)) == n else unit
    if test is not None:
        test, held = np.asarray(test), np.zeros(n, bool)
        mask = test.dtype == bool and test.shape == (n,)
        index = np.issubdtype(test.dtype, np.integer) and np.all((test >= 0) & (test < n))
        if not (mask or index):
            raise ArgumentError(
                f"test must be a mask of {n} booleans or indices in [0, {n}), got {test}"
            )
        held[test.nonzero()[0] if mask else test] = True
        if len(split := np.intersect1d(trials[held], trials[~held])):
            raise DataFormatError(f"test splits {unit} {int(split[0])}: hold out whole {unit}s")
    else:
        check_number(fraction, "test_fraction", "a number between 0 and 1", lambda f: 0 < f < 1)
        held = np.zeros(n, bool)
        for code in np.unique(codes):
            members = order[codes[order] == code]
            in_order = list(dict.fromkeys(trials[members].tolist()))  # by first window
            k = int(np.ceil(fraction * len(in_order)))
            if k >= len(in_order):
                raise DataFormatError(
                    f"class {int(code)} has {len(in_order)} {unit}(s): too few to hold out "
                    f"{fraction:g} of them and train on the rest"
                )
            held[members[np.isin(trials[members], in_order[len(in_order) - k :])]] = True
        held = np.isin(trials, trials[held])  # whole: a trial of two classes on one side
    if len(np.unique(codes)) < 2:
        raise DataFormatError(f"the windows hold one class only ({int(codes[0])}); need two")
    untrained = sorted(int(c) for c in np.unique(codes) if not (~held & (codes == c)).any())
    if untrained or not held.any():
        raise DataFormatError(f"classes {untrained} have no training window, or no test window")
    return held


def _from_arrays(arrays: Any, held: np.ndarray, subject: int, source: str) -> SubjectData:
    classes = sorted(int(c) for c in np.unique(arrays.codes))
    y = np.searchsorted(classes, arrays.codes)
    trials = arrays.trials
    trials = {} if trials is None else record_trials(trials[~held], trials[held], arrays.unit)
    return SubjectData.from_windows(
        arrays.modalities,
        (arrays.X[held], y[held]),
        (arrays.X[~held], y[~held]),
        subject=subject,
        classes=classes,
        meta={
            "source": source,
            "class_names": arrays.class_names,
            "channel_names": arrays.channel_names,
            "placement": arrays.placement,
            "sample_rate": arrays.sample_rate,
            **trials,
        },
    )


WINDOW_LIMIT = float(np.finfo(np.float32).max)
"""The largest magnitude a window's value may have (float32's, about 3.4e38): what a model reads
in float32, and far from what overflows the baseline's float64 squares."""


def check_window_range(X: np.ndarray, field: str) -> None:
    """Refuse, naming ``field`` and its largest magnitude, finite values beyond `WINDOW_LIMIT`
    (their squares overflow); NaN and inf are left to the finiteness checks.

    >>> check_window_range(np.array([[[1.0, -1e200]]]), "subject 2: its X_train")
    Traceback (most recent call last):
    ...
    emg_lens.errors.InputShapeError: subject 2: its X_train holds values up to 1e+200 in \
magnitude, beyond float32's range (|x| <= 3.4e+38) that models and the feature baseline read: \
rescale or clean them
    """
    if X.dtype.kind != "f" or X.dtype.itemsize <= 4:
        return
    over = np.isfinite(X) & (np.abs(X) > WINDOW_LIMIT)
    if over.any():
        top = float(np.abs(X[over]).max())
        raise InputShapeError(
            f"{field} holds values up to {top:.3g} in magnitude, beyond float32's range (|x| <= "
            f"{WINDOW_LIMIT:.2g}) that models and the feature baseline read: rescale or clean them"
        )


MIN_STD = 1e-8
"""A channel whose std is at most this is flat: a `Scaler` centres it and leaves its scale (std 1)
rather than dividing by almost zero."""


def _usable_std(std: np.ndarray) -> np.ndarray:
    return np.where(std > MIN_STD, std, 1.0)


@dataclass
class Scaler:
    """Per-channel z-score. Fit on training windows only."""

    mean: np.ndarray  # [channel]
    std: np.ndarray  # [channel]

    @classmethod
    def fit(cls, X: Float[np.ndarray, "n channel time"]) -> Scaler:
        """The z-score of the windows ``X``, per channel over windows and time.

        >>> Scaler.fit(np.array([[[1.0, 3.0], [2.0, 2.0]]])).std.tolist()  # channel 1 is flat
        [1.0, 1.0]
        """
        return cls(X.mean(axis=(0, 2)), _usable_std(X.std(axis=(0, 2))))

    @classmethod
    def from_moments(
        cls, count: int, mean: Float[np.ndarray, " channel"], m2: Float[np.ndarray, " channel"]
    ) -> Scaler:
        """The z-score from accumulated moments: ``count`` values per channel, their ``mean``
        and ``m2``, the sum of squared deviations from it (what a streaming fit, such as
        `emg_lens.data.windows.pipeline.fit_scaler`, accumulates); equal to `fit` on the same
        values.

        >>> X = np.array([[[1.0, 3.0], [2.0, 2.0]]])
        >>> scaler = Scaler.from_moments(2, X.mean(axis=(0, 2)), np.array([2.0, 0.0]))
        >>> scaler.std.tolist() == Scaler.fit(X).std.tolist()
        True
        """
        count, shapes = check_int(count, "count", minimum=1), (np.shape(mean), np.shape(m2))
        if shapes[0] != shapes[1] or len(shapes[0]) != 1:
            raise ArgumentError(
                f"mean and m2 must be [channel] arrays, got shapes {shapes[0]} and {shapes[1]}"
            )
        return cls(np.asarray(mean), _usable_std(np.sqrt(np.asarray(m2) / count)))

    def transform(self, X: Float[np.ndarray, "n channel time"]) -> np.ndarray:
        return ((X - self.mean[None, :, None]) / self.std[None, :, None]).astype(np.float32)


def _butter(
    x: np.ndarray, kind: str, cutoff: Any, fs: float, spec: PreprocessSpec, what: str
) -> np.ndarray:
    """``x`` through ``spec``'s Butterworth ``kind`` filter (its order; zero-phase unless
    ``spec.causal``), a cut-off outside (0, Nyquist) a `ConfigError` naming ``what``."""
    for c in np.atleast_1d(cutoff):  # strictly inside (0, Nyquist)
        in_band = f"in (0, {fs / 2:g}) Hz: below Nyquist at {fs:g} Hz"
        check_number(float(c), f"{what} cut-off", in_band, lambda hz: 0 < hz < fs / 2, ConfigError)
    sos = sps.butter(spec.order, cutoff, btype=kind, fs=fs, output="sos")
    return sps.sosfilt(sos, x, axis=0) if spec.causal else sps.sosfiltfilt(sos, x, axis=0)


def filter_signals(
    signals: dict[str, np.ndarray], fs: float, spec: PreprocessSpec
) -> dict[str, np.ndarray]:
    """Filter, take ACC magnitudes and rectify, per `PreprocessSpec`; ``[time, channel]`` in
    and out (float32).

    >>> x = {"emg": np.random.default_rng(0).standard_normal((4000, 2))}
    >>> bool(filter_signals(x, 2000.0, PreprocessSpec())["emg"].min() >= 0)  # rectified
    True
    """
    out = {}
    for name, x in signals.items():
        x = np.asarray(x, dtype=np.float64)
        if name == "emg":
            if spec.emg_band is not None:
                x = _butter(x, "bandpass", spec.emg_band, fs, spec, "sEMG band-pass")
            if spec.notch is not None:
                if not 0 < spec.notch < fs / 2:
                    raise ConfigError(f"notch {spec.notch} Hz must be below Nyquist {fs / 2:g} Hz")
                b, a = sps.iirnotch(spec.notch, Q=30.0, fs=fs)
                x = sps.lfilter(b, a, x, axis=0) if spec.causal else sps.filtfilt(b, a, x, axis=0)
            if spec.rectify:
                x = np.abs(x)
            if spec.envelope is not None:
                x = _butter(x, "lowpass", spec.envelope, fs, spec, "sEMG envelope")
        else:
            if spec.lowpass is not None:
                x = _butter(x, "lowpass", spec.lowpass, fs, spec, f"{name} low-pass")
            if name == "acc" and spec.acc_magnitude:
                if x.shape[1] % 3:
                    raise DataFormatError(
                        f"acc has {x.shape[1]} channels; acc_magnitude needs 3 axes per sensor"
                    )
                x = np.linalg.norm(x.reshape(len(x), -1, 3), axis=-1)
        out[name] = x.astype(np.float32)
    return out


def find_segments(stimulus: np.ndarray, repetition: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Maximal runs of one (gesture, repetition) with gesture != 0:
    ``[(gesture, repetition, start, stop), ...]`` in time order.

    >>> find_segments(np.array([0, 3, 3, 0, 3]), np.array([0, 1, 1, 0, 2]))
    [(3, 1, 1, 3), (3, 2, 4, 5)]
    """
    if len(stimulus) == 0:
        return []
    change = np.flatnonzero((np.diff(stimulus) != 0) | (np.diff(repetition) != 0)) + 1
    starts = np.concatenate(([0], change))
    stops = np.concatenate((change, [len(stimulus)]))
    return [
        (int(stimulus[s]), int(repetition[s]), int(s), int(e))
        for s, e in zip(starts, stops)
        if stimulus[s] != 0
    ]


def _segment_bounds(start: int, stop: int, fs: float, segment) -> tuple[int, int]:
    lo_s, hi_s = SEGMENTS[segment] if isinstance(segment, str) else segment
    lo = start + round(lo_s * fs)
    hi = stop if hi_s is None else min(stop, start + round(hi_s * fs))
    return lo, hi


@checked
def prepare_subject(recording: Recording, spec: PreprocessSpec = PreprocessSpec()) -> SubjectData:
    """Filter, segment, window, split by repetition and standardise one subject."""
    fs = recording.sample_rate
    filtered = filter_signals(recording.signals, fs, spec)
    signal = np.concatenate(list(filtered.values()), axis=1)  # [time, channel], montage order
    modalities = {name: x.shape[1] for name, x in filtered.items()}
    wanted = set(spec.train_repetitions) | set(spec.test_repetitions)
    cuts: list[tuple[int, int, int]] = []  # each window's first sample, gesture, repetition
    for gesture, rep, start, stop in find_segments(recording.stimulus, recording.repetition):
        if rep not in wanted or (spec.gestures is not None and gesture not in spec.gestures):
            continue
        lo, hi = _segment_bounds(start, stop, fs, spec.segment)
        step = spec.step or max(hi - lo, 1)
        cuts += [(s, gesture, rep) for s in range(lo, hi - spec.window + 1, step)]
    if not cuts:
        raise DataFormatError(
            f"{recording.source}: no {spec.window}-sample window fits the {spec.segment!r} "
            f"segment of any repetition in {sorted(wanted)}"
        )
    X = np.stack([signal[s : s + spec.window].T for s, _, _ in cuts])
    y, reps = np.asarray([g for _, g, _ in cuts]), np.asarray([r for _, _, r in cuts])
    classes = sorted(set(y.tolist()))
    y = np.searchsorted(classes, y)
    train, test = np.isin(reps, spec.train_repetitions), np.isin(reps, spec.test_repetitions)
    missing = [c for c in classes if not (train & (y == classes.index(c))).any()]
    if len(classes) < 2 or missing or not test.any():
        raise DataFormatError(
            f"{recording.source}: repetitions {sorted(wanted)} hold gestures {classes}, {missing} "
            f"without training windows, {test.sum()} test windows; need 2+ gestures, each trained"
        )
    X_train, X_test = X[train], X[test]
    if spec.standardize:
        scaler = Scaler.fit(X_train)
        X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    return SubjectData(
        subject=recording.subject,
        modalities=modalities,
        classes=classes,
        X_train=X_train.astype(np.float32),
        y_train=y[train],
        rep_train=reps[train],
        X_test=X_test.astype(np.float32),
        y_test=y[test],
        rep_test=reps[test],
        meta={
            "source": recording.source,
            "preprocess": spec.to_dict(),
            # a reader that names its channels (DB2, your own files) names the model's tokens
            **_channel_names(recording, modalities),
        },
    )


def _channel_names(recording: Recording, modalities: dict[str, int]) -> dict[str, list[str]]:
    """``{"channel_names": ...}`` of the preprocessed channels, where the recording names its
    own (a sensor's magnitude by what its axes' names share: ``acc1x``... -> ``acc1``)."""
    names = recording.meta.get("channel_names") or []  # none named: {}
    out: list[str] = []
    for name, n in recording.modalities.items():
        own, names = names[:n], names[n:]
        if modalities[name] != n:  # 3 axes -> 1 magnitude
            shared = os.path.commonprefix  # character by character: what the names share
            own = [shared(own[i : i + 3]).rstrip("_ -") for i in range(0, n, 3)]
        out += own
    fits = len(out) == sum(modalities.values()) == len(set(out)) and all(out)
    return {"channel_names": out} if out and fits else {}
