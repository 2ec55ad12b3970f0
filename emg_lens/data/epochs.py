"""EEG researchers' own objects: an ``mne.Epochs`` or a braindecode windows dataset, as the
arrays, labels, channel names and electrode positions a `SubjectData` is built from.

`emg_lens.data.preprocess.SubjectData.from_epochs` and ``.from_windows_dataset`` call these.
Neither mne nor braindecode is imported: the objects are read through their public attributes
(``get_data``, ``events``, ``get_montage``, ...), so any version that has them works. Positions
are drawn as MNE's ``plot_topomap`` draws them (``sphere=None``): azimuthal about the vertex,
scaled by MNE's head radius 0.095 m, so the 10 % row lies near radius 1 (Fpz of
``standard_1020`` at 1.08).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from emg_lens.errors import ArgumentError, DataFormatError, describe
from emg_lens.geometry import Montage, Part
from emg_lens.geometry.ten_twenty import project


@dataclass(frozen=True)
class EpochArrays:
    """Windows ``X [n, channels, time]`` (channels grouped by type), class codes and names,
    channel names, modalities, the placement (or None), the sample rate, and each window's
    trial (None where nothing records one) of the trial unit ``unit``."""

    X: np.ndarray
    codes: np.ndarray
    class_names: dict[int, str]
    channel_names: list[str]
    modalities: dict[str, int]
    placement: Montage | None
    sample_rate: float
    trials: np.ndarray | None = None
    unit: str = "given"

    @classmethod
    def read(cls, signal: Any, X: np.ndarray, codes: np.ndarray, order: list[int],
             modalities: dict[str, int], what: str, names: dict[int, str], **trials: Any
             ) -> EpochArrays:  # fmt: skip
        """The arrays of the windows ``X`` (finite, or a `DataFormatError` names ``what``)
        cut from ``signal`` (an mne object, its channels picked in ``order``), the classes
        named by ``names`` where it names them."""
        if not np.isfinite(X).all():
            raise DataFormatError(f"{what} hold NaN or Inf values; drop or repair them first")
        kept = [list(signal.ch_names)[i] for i in order]
        classes = {int(c): names.get(int(c), str(int(c))) for c in np.unique(codes)}
        placement, rate = _placement(signal, kept), float(signal.info["sfreq"])
        return cls(X, codes, classes, kept, modalities, placement, rate, **trials)


HEAD_RADIUS = 0.095
"""MNE's head radius in metres (``mne.defaults.HEAD_SIZE_DEFAULT``): its topomaps' unit circle."""


def _fit_sphere(points: np.ndarray) -> tuple[np.ndarray, float]:
    """The centre and radius of the sphere closest to ``points`` (least squares: |p|^2 =
    2 p.c + k, so r^2 = k + |c|^2)."""
    A = np.c_[2 * points, np.ones(len(points))]
    solution, *_ = np.linalg.lstsq(A, (points**2).sum(axis=1), rcond=None)
    centre = solution[:3]
    return centre, float(np.sqrt(max(solution[3] + centre @ centre, 0.0)))


def scalp_placement(
    names: list[str], positions: dict[str, Any], frame: str = "head"
) -> Montage | None:
    """The channels' positions (in MNE's ``frame``) on a topographic map, as MNE draws them
    (the module docstring); None when a channel lacks one, or with fewer than four outside the
    head frame (no sphere fits).

    >>> import math
    >>> pos = {n: (math.sin(t), 0.0, math.cos(t)) for n, t in zip("abcd", (0, 0.5, 1, 1.5))}
    >>> pos["e"] = (0.0, 1.0, 0.0)
    >>> part = scalp_placement(list("abcde"), pos, frame="unknown").parts[0]
    >>> [tuple(round(v, 3) + 0 for v in xy) for xy in part.xy][:3]
    [(0.0, 0.0), (0.318, 0.0), (0.637, 0.0)]
    """
    xyz = [np.asarray(positions.get(n, (np.nan,) * 3), dtype=float) for n in names]
    if not names or any(p.shape != (3,) or not np.isfinite(p).all() for p in xyz):
        return None
    points = np.stack(xyz)
    if frame == "head":
        centre, radius = np.zeros(3), HEAD_RADIUS
    elif len(names) >= 4:
        centre, radius = _fit_sphere(points)
    else:
        return None
    units = points - centre
    distance = np.linalg.norm(units, axis=1)
    units /= distance[:, None]
    part = Part(
        "scalp",
        "scalp",
        tuple(range(len(names))),
        tuple(
            (float(x * d / radius), float(y * d / radius))
            for (x, y), d in zip((project(tuple(u)) for u in units), distance, strict=True)
        ),
        "topographic map (vertex at 0, the head frame's equator at 1)",
        labels=tuple(names),
    )
    return Montage(
        (part,),
        source="the electrode positions of the recording's montage (mne info), projected as "
        "MNE's topographic maps project them",
    )


def _placement(recording: Any, names: list[str]) -> Montage | None:
    montage = recording.get_montage()
    if montage is None:
        return None
    positions = montage.get_positions()
    return scalp_placement(names, dict(positions["ch_pos"]), str(positions["coord_frame"]))


DATA_TYPES = ("eeg", "emg", "seeg", "ecog", "dbs", "meg", "mag", "grad", "eog", "ecg", "misc")
"""Channel types kept as signals (stimulus channels and the like are left out)."""


def _grouped(types: list[str], what: str) -> tuple[list[int], dict[str, int]]:
    """The data channels' indices grouped by type (types in order of first appearance), and
    type -> count."""
    keep = [i for i, t in enumerate(types) if t in DATA_TYPES]
    if not keep:
        raise DataFormatError(f"{what} hold no data channel (their types: {sorted(set(types))})")
    order_of_types = list(dict.fromkeys(types[i] for i in keep))
    order = [i for t in order_of_types for i in keep if types[i] == t]
    return order, {t: sum(types[i] == t for i in keep) for t in order_of_types}


def epoch_arrays(epochs: Any) -> EpochArrays:
    """What `SubjectData.from_epochs` needs from an ``mne.Epochs`` (see the module)."""
    wanted = ("get_data", "events", "event_id", "ch_names", "info")
    if lacks := [a for a in wanted if not hasattr(epochs, a)]:
        raise ArgumentError(
            f"epochs must be an mne.Epochs, got a {type(epochs).__name__} without {lacks}"
        )
    order, modalities = _grouped(list(epochs.get_channel_types()), "epochs")
    X = np.asarray(epochs.get_data(picks=order), dtype=np.float32)
    codes = np.asarray(epochs.events)[:, 2].astype(np.int64)
    if len(codes) != len(X):
        raise DataFormatError(f"epochs: {len(X)} epochs but {len(codes)} events")
    by_code = {int(code): name for name, code in dict(epochs.event_id).items()}
    trials = _recorded_trials(getattr(epochs, "metadata", None), len(X), "the epochs")
    return EpochArrays.read(epochs, X, codes, order, modalities, "epochs", by_code, trials=trials)


TRIAL_COLUMN = "i_trial_in_dataset"
"""braindecode's column of each window's trial in its windows' metadata (per recording)."""


def _recorded_trials(metadata: Any, n: int, what: str) -> np.ndarray | None:
    """Each of ``n`` windows' `TRIAL_COLUMN` in ``metadata`` (a DataFrame or None), or None
    where it has none."""
    if metadata is None or TRIAL_COLUMN not in getattr(metadata, "columns", ()):
        return None
    trials = np.asarray(metadata[TRIAL_COLUMN])
    if trials.shape != (n,) or not np.issubdtype(trials.dtype, np.integer):
        raise DataFormatError(
            f"{what}' {TRIAL_COLUMN!r} must be an integer per window ({n}), got {describe(trials)}"
        )
    return trials.astype(np.int64)


def windows_arrays(parts: list[Any], split_by: str | None) -> tuple[EpochArrays, np.ndarray]:
    """One subject's windows from its braindecode recordings (``WindowsDataset`` or
    ``EEGWindowsDataset``), with their recorded trials (else the recording), and each window's
    value of the description's ``split_by`` column (None: all None)."""
    X, y, groups, names, order = [], [], [], None, None
    pick: list[int] = []  # the window's channels, grouped by type (order: the signal's)
    trials: list[tuple[int, int]] = []  # (recording, its trial; -1 where none)
    recorded_any = False
    modalities: dict[str, int] = {}
    for number, part in enumerate(parts):
        signal = getattr(part, "windows", None) or getattr(part, "raw", None)
        if signal is None:
            raise ArgumentError(f"a {type(part).__name__} has neither windows nor raw")
        held = _window_channels(part, signal)
        if names is None:
            names = list(signal.ch_names)
            types = list(signal.get_channel_types())
            pick, modalities = _grouped([types[i] for i in held], "windows")
            order = [held[i] for i in pick]  # the signal's channels; pick: the window's
        elif list(signal.ch_names) != names:
            raise DataFormatError(
                f"a subject's recordings hold channels {names} and {signal.ch_names}"
            )
        value = None if split_by is None else part.description.get(split_by)
        if split_by is not None and value is None:
            raise DataFormatError(f"a recording's description has no {split_by!r}")
        recorded = _recorded_trials(_window_metadata(part), len(part), "a recording's windows")
        recorded_any |= recorded is not None
        for i in range(len(part)):
            item = part[i]
            X.append(np.asarray(item[0], dtype=np.float32)[pick])
            y.append(_window_label(item[1], i, held != list(range(len(names)))))
            groups.append(value)
            trials.append((number, int(recorded[i]) if recorded is not None else -1))
    if not X:
        raise DataFormatError("a subject of the dataset holds no window")
    assert order is not None  # the first recording set it
    arrays = EpochArrays.read(
        signal, np.stack(X), np.asarray(y, dtype=np.int64), order, modalities, "the windows", {},
        trials=np.unique(trials, axis=0, return_inverse=True)[1].reshape(-1),
        unit="given" if recorded_any else "recording",
    )  # fmt: skip
    return arrays, np.asarray(groups, dtype=object)


def _window_channels(part: Any, signal: Any) -> list[int]:
    """The indices of ``signal``'s channels a recording's windows hold: all of them, or with
    braindecode's ``targets_from="channels"`` all but the misc channels, which hold the
    windows' targets."""
    types = list(signal.get_channel_types())
    if getattr(part, "targets_from", None) == "channels":
        return [i for i, t in enumerate(types) if t != "misc"]
    return list(range(len(types)))


def _window_label(target: Any, i: int, from_channels: bool) -> int:
    """A window's class label from its braindecode target (a number; from a misc channel,
    an array of one), or a `DataFormatError` naming window ``i`` and what its target holds."""
    value = np.asarray(target, dtype=float)
    if value.size == 1 and float(value.reshape(-1)[0]).is_integer():
        return int(value.reshape(-1)[0])
    source = " from its misc channels (targets_from='channels')" if from_channels else ""
    raise DataFormatError(
        f"a recording's window {i} carries the target {np.round(value, 3).tolist()} (shape "
        f"{list(value.shape)}){source}: accepted is one whole-number class label a window "
        "(targets_from='channels': one misc target channel, last_target_only=True)"
    )


def _window_metadata(part: Any) -> Any:
    """A braindecode recording's windows' metadata: its ``mne.Epochs``' (``WindowsDataset``,
    kept in step with epochs dropped later) or its own (``EEGWindowsDataset``); None if none."""
    windows = getattr(part, "windows", None)
    metadata = getattr(windows, "metadata", None)
    return metadata if metadata is not None else getattr(part, "metadata", None)


def windows_dataset_subjects(dataset: Any, column: str = "subject") -> dict[Any, list[Any]]:
    """A braindecode ``BaseConcatDataset``'s recordings by the value of their description's
    ``column`` (its subject), in order of appearance."""
    parts = getattr(dataset, "datasets", None)
    if parts is None:
        raise ArgumentError(f"dataset must be a braindecode BaseConcatDataset, not {type(dataset)}")
    subjects: dict[Any, list[Any]] = {}
    for part in parts:
        description = getattr(part, "description", None)
        if description is None or column not in description:
            raise DataFormatError(f"a recording of the dataset has no {column!r} described")
        subjects.setdefault(description[column], []).append(part)
    return subjects
