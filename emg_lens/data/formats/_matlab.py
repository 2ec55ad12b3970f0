"""MATLAB files: the layout every NinaPro database shares (DB2, DB5-DB8), one file per exercise
or session of per-sample matrices (``emg``, ``acc``, ...) and label columns.

`read_exercise_file` turns one file into a `Recording`, `load_exercises` reads and joins a
subject's exercises; the database readers add their own names, rates and label conventions.
Quirks of the real files handled here: label columns a sample shorter than ``emg`` (every
array is cut to the shortest, up to `LENGTH_TOLERANCE`), and the relabelled ``restimulus`` /
``rerepetition`` used where present. `write_mat73` writes MATLAB v7.3 (HDF5 with MATLAB's
header), as the HD-sEMG database ships its files."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import scipy.io

from emg_lens.data.files import find_files
from emg_lens.data.recording import Recording
from emg_lens.errors import (
    ArgumentError,
    DataFormatError,
    EmgLensError,
    check_int,
    warn_caller,
)

LENGTH_TOLERANCE = 5
"""Most samples by which per-sample arrays of one file may differ before it is an error."""

ChannelCounts = int | tuple[int, ...] | None
"""Accepted channel counts of a variable: one, several, or None for any."""

_STIMULUS = ("restimulus", "stimulus")
_REPETITION = ("rerepetition", "repetition")
LABEL_COLUMNS = frozenset(_STIMULUS + _REPETITION)
"""The label columns a NinaPro file may hold (the relabelled ones preferred)."""
_PER_SAMPLE = frozenset({"emg", "acc", "glove", "force", "inclin", "gyro", "mag"})
_SCALARS = frozenset({"subject", "exercise", "forcecal"})


def require(
    ok: object, where: object, message: str, error: type[EmgLensError] = DataFormatError
) -> None:
    """Refuse the file, folder or argument ``where`` names unless ``ok``: ``error`` saying
    ``"{where}: {message}"`` (what is wrong and what would be accepted). The one check of the
    readers' files, each message starting with the path at fault.

    >>> require(True, "S1_E1_A1.mat", "an empty file")
    >>> require([], "S1_E1_A1.mat", "an empty file")
    Traceback (most recent call last):
    ...
    emg_lens.errors.DataFormatError: S1_E1_A1.mat: an empty file
    """
    if not ok:
        raise error(f"{where}: {message}")


def read_mat(path: Path, *, reader: str = "the NinaPro readers") -> dict[str, np.ndarray]:
    """All variables of a MATLAB v5 file, refusing v7.3 (HDF5) files with a clear message."""
    require(path.is_file(), path, "no such file")
    try:
        is_hdf5 = h5py.is_hdf5(str(path))
    except OSError:
        is_hdf5 = False
    require(not is_hdf5, path, f"HDF5 (MATLAB v7.3); {reader} read v5: save(..., '-v7') it")
    try:
        contents = scipy.io.loadmat(str(path))
    except Exception as exc:  # scipy raises MatReadError, ValueError, OSError, IndexError...
        raise DataFormatError(
            f"{path}: cannot be read as a MATLAB v5 file (truncated or corrupt?): {exc!r}"
        ) from exc
    return {k: v for k, v in contents.items() if not k.startswith("__")}


def as_labels(x: np.ndarray, name: str, path: Path) -> np.ndarray:
    x = np.asarray(x)
    column = x.ndim < 2 or (x.ndim == 2 and min(x.shape) == 1)
    if not column or not np.issubdtype(x.dtype, np.number):
        raise DataFormatError(
            f"{path}: label {name!r} must be a numeric column, got {x.dtype} {x.shape}"
        )
    x = x.reshape(-1)
    whole = np.isfinite(x).all() and np.array_equal(x, np.round(x))
    if not whole or x.min(initial=0) < 0:
        bad = f"{'negative' if whole else 'non-integer'} values (min {x.min(initial=0):g})"
        raise DataFormatError(f"{path}: label {name!r} holds {bad}; a label is a code >= 0")
    return x.astype(np.int64)


def check_signal(x: np.ndarray, name: str, path: Path, expected: ChannelCounts) -> None:
    accepted = (expected,) if isinstance(expected, int) else expected
    if x.ndim != 2 or not np.issubdtype(x.dtype, np.number):
        raise DataFormatError(
            f"{path}: {name!r} must be a numeric [time, channels] matrix, got {x.dtype} {x.shape}"
        )
    if accepted is not None and x.shape[1] not in accepted:
        counts = " or ".join(map(str, accepted))
        raise DataFormatError(
            f"{path}: {name!r} has the wrong channel count: expected {counts}, got {x.shape[1]}"
        )


def select_modalities(modalities: Iterable[str], known: Iterable[str]) -> tuple[str, ...]:
    if isinstance(modalities, str):
        modalities = (modalities,)
    modalities, known = tuple(modalities), list(known)
    unknown = [m for m in modalities if m not in known]
    if unknown or not modalities or len(set(modalities)) != len(modalities):
        raise ArgumentError(f"modalities must be distinct names among {known}, got {modalities}")
    return modalities


def exercise_list(
    exercises: int | Iterable[str | int], parse: Callable[[str | int], int]
) -> list[int]:
    if isinstance(exercises, (str, int)):
        exercises = (exercises,)
    numbers = [parse(e) for e in exercises]
    require(numbers, "exercises", "name at least one exercise", ArgumentError)
    return numbers


def stimulus_columns(recording: Recording) -> list[np.ndarray]:
    """The label vector and the unrelabelled ``stimulus`` column kept in ``extras``, if any."""
    columns = [recording.stimulus]
    if "stimulus" in recording.extras:
        columns.append(recording.extras["stimulus"])
    return columns


def common_length(path: str | Path, lengths: Mapping[str, int]) -> int:
    """The length a file's per-sample arrays are cut to: the shortest of ``lengths`` (name ->
    samples); arrays that differ by more than `LENGTH_TOLERANCE` are a `DataFormatError`
    naming the file and every length.

    >>> common_length("S1_E1_A1.mat", {"emg": 100, "restimulus": 99})
    99
    """
    n, longest = min(lengths.values()), max(lengths.values())
    if longest - n > LENGTH_TOLERANCE:
        apart = f"{longest - n} samples (> {LENGTH_TOLERANCE}): {dict(lengths)}"
        raise DataFormatError(f"{path}: signals and labels differ in length by {apart}")
    return n


def mat_files(
    root: str | Path, pattern: re.Pattern[str], what: str, looking_for: str
) -> dict[tuple[int, ...], Path]:
    """`find_files` of the ``.mat`` files under ``root`` (any depth) whose name ``pattern``
    matches whole (any case of the suffix), keyed by the numbers its groups read, each key
    named by ``what.format(*key)`` where two files share it."""

    def key(path: Path) -> tuple[int, ...] | None:
        match = pattern.fullmatch(path.stem) if path.suffix.lower() == ".mat" else None
        return None if match is None else tuple(int(g) for g in match.groups())

    return find_files(root, key, lambda k: what.format(*k), looking_for=looking_for)


def files_by_subject(found: Mapping[Any, Path]) -> dict[int, list[Path]]:
    """Subject -> its files in key order, of `mat_files`' ``{(subject, ...): path}`` (or of
    ``{subject: path}``)."""
    by_subject: dict[int, list[Path]] = {}
    for key, path in sorted(found.items()):
        by_subject.setdefault(key[0] if isinstance(key, tuple) else key, []).append(path)
    return by_subject


def read_exercise_file(
    path: str | Path,
    *,
    subject: int,
    sample_rate: float,
    modalities: Iterable[str] = ("emg",),
    channels: Mapping[str, ChannelCounts],
) -> Recording:
    """One NinaPro ``.mat`` file (any database) as a `Recording`, its arrays cut to one length.

    Labels are ``restimulus``/``rerepetition`` where present, else ``stimulus``/``repetition``
    (``meta["label_columns"]`` says which); the unrelabelled columns and every other
    per-sample matrix land in ``extras``.

    Args:
        path: the file (MATLAB v5).
        subject: the subject number the recording gets.
        sample_rate: Hz, the file's common clock.
        modalities: variables that become ``Recording.signals``, in this order; each must be
            a key of ``channels``.
        channels: the loadable modalities -> accepted channel count(s) (None: any); other
            variables are checked only for length.

    Raises:
        DataFormatError: the file is missing, unreadable, v7.3, lacks a modality or the labels,
            has a wrong channel count, non-integer or negative labels, NaN/Inf in a signal, or
            arrays that differ in length by more than `LENGTH_TOLERANCE`. The message names
            the file.
        ArgumentError: ``modalities`` names something outside ``channels``, or twice.

    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> import scipy.io
    >>> path = Path(tempfile.mkdtemp()) / "S1_E1_A1.mat"
    >>> scipy.io.savemat(path, {"emg": np.ones((50, 16)), "restimulus": np.zeros((49, 1)),
    ...                         "rerepetition": np.zeros((49, 1))})
    >>> rec = read_exercise_file(path, subject=1, sample_rate=200.0, channels={"emg": 16})
    >>> rec.n_samples, rec.modalities
    (49, {'emg': 16})
    """
    modalities = select_modalities(modalities, channels)
    path = Path(path)
    data = read_mat(path)

    def pick(names: tuple[str, ...], why: str = "") -> str:
        found = [name for name in names if name in data]
        wanted = " or ".join(map(repr, names))
        require(
            found, path, f"missing required variable {wanted}{why}; the file holds {sorted(data)}"
        )
        return found[0]

    for name in modalities:
        pick((name,), f" (asked for modality {name!r})")
        check_signal(data[name], name, path, channels.get(name))
    stim_name, rep_name = pick(_STIMULUS), pick(_REPETITION)
    labels = {name: as_labels(data[name], name, path) for name in LABEL_COLUMNS if name in data}

    # Per-sample arrays: the chosen signals, the labels and every other matrix of about that
    # length. A few samples of difference is a known quirk; more is a broken file.
    lengths = {name: len(data[name]) for name in modalities}
    lengths.update({name: len(x) for name, x in labels.items()})
    ref = min(lengths.values())
    extras_names = []
    for name, x in data.items():
        if name in lengths or name in _SCALARS or not isinstance(x, np.ndarray) or x.ndim != 2:
            continue
        if not np.issubdtype(x.dtype, np.number):
            continue
        if name in _PER_SAMPLE or abs(len(x) - ref) <= LENGTH_TOLERANCE:
            lengths[name] = len(x)
            extras_names.append(name)
    n = common_length(path, lengths)
    labels = {name: x[:n].copy() for name, x in labels.items()}
    stimulus, repetition = labels.pop(stim_name), labels.pop(rep_name)
    extras = {name: np.asarray(data[name][:n]) for name in extras_names}
    extras.update(labels)  # the unrelabelled columns, under their file names
    return Recording(  # checks NaN/Inf per signal, naming the file
        subject=subject,
        signals={name: np.asarray(data[name][:n], dtype=np.float32) for name in modalities},
        sample_rate=sample_rate,
        stimulus=stimulus,
        repetition=repetition,
        source=str(path),
        extras=extras,
        meta={"label_columns": {str(path): (stim_name, rep_name)}},
    )


def concatenate_recordings(parts: list[Recording]) -> Recording:
    """Several files of one subject (same clock and modalities) joined in time.

    ``extras`` keeps only the arrays every part holds with the same width; ``source`` lists
    every file, joined by ``" + "``; ``meta["label_columns"]`` each file's label columns.

    >>> import numpy as np
    >>> part = Recording(1, {"emg": np.zeros((5, 2), np.float32)}, 200.0, np.zeros(5), np.zeros(5))
    >>> concatenate_recordings([part, part]).n_samples
    10
    """
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    extras = {}
    for name in sorted(set.intersection(*(set(p.extras) for p in parts))):
        pieces = [p.extras[name] for p in parts]
        if len({x.shape[1:] for x in pieces}) == 1:
            extras[name] = np.concatenate(pieces)
    return Recording(
        subject=first.subject,
        signals={m: np.concatenate([p.signals[m] for p in parts]) for m in first.signals},
        sample_rate=first.sample_rate,
        stimulus=np.concatenate([p.stimulus for p in parts]),
        repetition=np.concatenate([p.repetition for p in parts]),
        source=" + ".join(p.source for p in parts),
        extras=extras,
        meta=_label_columns(parts),
    )


def _label_columns(parts: list[Recording]) -> dict[str, Any]:
    """The parts' ``meta["label_columns"]`` merged (file -> its label columns), or nothing."""
    merged = {}
    for part in parts:
        merged.update(part.meta.get("label_columns", {}))
    return {"label_columns": merged} if merged else {}


def load_exercises(
    subject: int,
    exercises: int | Iterable[str | int],
    parse: Callable[[str | int], int],
    modalities: Iterable[str],
    channels: Mapping[str, ChannelCounts],
    load: Callable[[int, int, tuple[str, ...]], Recording],
) -> Recording:
    """One subject's exercises, each read by ``load(subject, exercise, modalities)`` and
    joined in the order given (`concatenate_recordings`); the subject, the exercises (by
    ``parse``) and the modalities are checked before any file is read.

    >>> def load(subject, k, modalities):
    ...     return Recording(subject, {"emg": np.zeros((k, 2))}, 200.0, np.zeros(k), np.zeros(k))
    >>> load_exercises(3, ("2", "1"), int, ("emg",), {"emg": 2}, load).n_samples
    3
    """
    subject = check_int(subject, "subject", minimum=1)
    numbers = exercise_list(exercises, parse)
    modalities = select_modalities(modalities, channels)
    recording = concatenate_recordings([load(subject, k, modalities) for k in numbers])
    columns = recording.meta.get("label_columns", {})
    if len(set(columns.values())) > 1:
        warn_caller(
            "the exercises' labels come from different columns (the relabelled restimulus/"
            "rerepetition where a file has them, else the raw stimulus/repetition, whose "
            f"movement boundaries were not refined): {columns}"
        )
    return recording


_MAT73_HEADER_SIZE = 128
_MAT73_USERBLOCK = 512
_MATLAB_CLASS = {
    np.dtype(np.float64): "double",
    np.dtype(np.float32): "single",
    np.dtype(np.int8): "int8",
    np.dtype(np.int16): "int16",
    np.dtype(np.int32): "int32",
    np.dtype(np.int64): "int64",
    np.dtype(np.uint8): "uint8",
    np.dtype(np.uint16): "uint16",
    np.dtype(np.uint32): "uint32",
    np.dtype(np.uint64): "uint64",
}


def _mat73_header() -> bytes:
    text = (
        "MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Thu Jan  1 00:00:00 1970 "
        "HDF5 schema 1.00 ."
    ).encode("ascii")
    header = text.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
    assert len(header) == _MAT73_HEADER_SIZE
    return header


def write_mat73(path: str | Path, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write ``arrays`` (variable name -> array in MATLAB's orientation) as MATLAB v7.3 does:
    HDF5 with a 512-byte userblock holding MATLAB's header, every array stored transposed with
    its ``MATLAB_class`` attribute; returns the path (its folder made).

    >>> import tempfile
    >>> path = write_mat73(Path(tempfile.mkdtemp()) / "x.mat", {"x": np.zeros((3, 2))})
    >>> with h5py.File(path, "r") as f:
    ...     f["x"].shape, bytes(f["x"].attrs["MATLAB_class"])
    ((2, 3), b'double')
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w", userblock_size=_MAT73_USERBLOCK) as f:
        for name, x in arrays.items():
            x = np.asarray(x)
            ds = f.create_dataset(name, data=np.ascontiguousarray(x.T))
            ds.attrs["MATLAB_class"] = np.bytes_(_MATLAB_CLASS.get(x.dtype, "double"))
    with open(path, "r+b") as fh:
        fh.write(_mat73_header())
    return path
