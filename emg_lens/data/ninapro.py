"""NinaPro DB2 (and DB3-named) and DB5 loaders, and a DB2 writer: MATLAB v5 ``.mat`` -> `Recording`.

The real dataset holds one folder per subject, ``DB2_s<N>/``, with one file per exercise,
``S<N>_E<k>_A1.mat`` (E1, E2, E3 = exercises B, C, D; DB3 names them ``S<N>_A1_E<k>.mat``, so
files are found by their tokens, not by a fixed order). Each file holds ``emg`` (N, 12) at
2 kHz, ``acc`` (N, 36) (3 axes x 12 electrodes), per-sample label columns ``stimulus``,
``restimulus``, ``repetition``, ``rerepetition`` (N, 1), usually ``glove`` (N, 22), and in E3
``force`` (N, 6), ``forcecal`` (2, 6) and ``inclin``.

Quirks handled here, as found in the real files:

* label columns can be a sample shorter than ``emg``: every per-sample array is cut to the
  shortest, and a mismatch of more than `LENGTH_TOLERANCE` samples is a `DataFormatError`;
* ``restimulus`` / ``rerepetition`` (the relabelled versions) are used when present, each
  falling back to ``stimulus`` / ``repetition``;
* labels are global across exercises (E1 1-17, E2 18-40, E3 41-49); E3 files that hold other
  codes have their sorted non-zero codes mapped onto 41-49, with a warning naming the file and
  the mapping;
* ``glove`` is missing in some files.

DB5 (`load_ninapro_db5`, for fine-tuning) holds ``S<N>_E{1,2,3}_A1.mat`` at 200 Hz with 16 EMG
channels (two Myo armbands); its ``restimulus`` restarts at 1 in every exercise (E1 1-12, E2 1-17,
E3 1-23) and is shifted here onto the global labels 1-52 (offsets 0, 12, 29).

Every NinaPro database stores its files the same way, so one reader serves them all:
`read_exercise_file` turns one file into a `Recording` (label choice, length quirk, channel and
NaN checks, errors naming the file) and `concatenate_recordings` joins exercises;
`emg_lens.data.ninapro_pretrain` reads DB6 and DB7 with them.

`write_ninapro_db2` writes a file the same way the real ones are laid out, so that synthetic
data goes through this very loader:

>>> import tempfile
>>> import numpy as np
>>> from emg_lens.data.recording import Recording
>>> n = 400
>>> rng = np.random.default_rng(0)
>>> rec = Recording(
...     subject=3,
...     signals={
...         "emg": rng.standard_normal((n, 12)).astype(np.float32),
...         "acc": rng.standard_normal((n, 36)).astype(np.float32),
...     },
...     sample_rate=2000.0,
...     stimulus=np.repeat([0, 1, 0, 2], n // 4),
...     repetition=np.repeat([0, 1, 0, 1], n // 4),
... )
>>> root = tempfile.mkdtemp()
>>> path = write_ninapro_db2(rec, root, exercise="B")
>>> path.relative_to(root).as_posix()
'DB2_s3/S3_E1_A1.mat'
>>> back = load_ninapro_db2(root, 3)
>>> back.modalities, back.gestures, bool(np.array_equal(back.signals["emg"], rec.signals["emg"]))
({'emg': 12, 'acc': 36}, [1, 2], True)
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import h5py
import numpy as np
import scipy.io

from emg_lens.data.files import duplicate_error, find_files, unique_files
from emg_lens.data.recording import Recording
from emg_lens.errors import ArgumentError, DataFormatError

__all__ = [
    "CHANNELS",
    "DB5_CHANNELS",
    "DB5_LABEL_OFFSETS",
    "DB5_SAMPLE_RATE",
    "EXERCISES",
    "EXERCISE_B_NAMES",
    "LABEL_RANGES",
    "LENGTH_TOLERANCE",
    "SAMPLE_RATE",
    "concatenate_recordings",
    "find_exercise_file",
    "load_ninapro_db2",
    "load_ninapro_db5",
    "ninapro_db5_files",
    "read_exercise_file",
    "write_ninapro_db2",
]

SAMPLE_RATE = 2000.0
"""Hz: EMG is sampled at 2 kHz; every other stream in the files is upsampled to it."""

EXERCISES: dict[str, int] = {"B": 1, "C": 2, "D": 3}
"""Exercise letter (as in the NinaPro papers) -> the ``E<k>`` number in the file names."""

LABEL_RANGES: dict[int, tuple[int, int]] = {1: (1, 17), 2: (18, 40), 3: (41, 49)}
"""Exercise number -> (first, last) global gesture label it holds."""

EXERCISE_B_NAMES: dict[int, str] = {
    1: "thumb up",
    2: "index and middle extended, others flexed",
    3: "ring and little flexed, others extended",
    4: "thumb opposing base of little finger",
    5: "abduction of all fingers",
    6: "fist",
    7: "pointing index",
    8: "adduction of extended fingers",
    9: "wrist supination (middle finger axis)",
    10: "wrist pronation (middle finger axis)",
    11: "wrist supination (little finger axis)",
    12: "wrist pronation (little finger axis)",
    13: "wrist flexion",
    14: "wrist extension",
    15: "wrist radial deviation",
    16: "wrist ulnar deviation",
    17: "wrist extension, closed hand",
}
"""Global gesture label -> movement of exercise B (DB2's labels 1-17; DB5's 13-29 hold the
same movements, shifted), shortened from the movement list of Atzori et al., "Electromyography
data for non-invasive naturally-controlled robotic hand prostheses", Scientific Data 1, 140053
(2014), Fig. 2."""

CHANNELS: dict[str, int] = {"emg": 12, "acc": 36, "force": 6, "glove": 22}
"""Modality -> the channel count the real files hold; the loadable modalities."""

LENGTH_TOLERANCE = 5
"""Most samples by which per-sample arrays of one file may differ before it is an error."""

DB5_SAMPLE_RATE = 200.0
"""Hz: DB5's two Myo armbands stream EMG at 200 Hz."""

DB5_CHANNELS: dict[str, int | None] = {"emg": 16, "acc": None, "glove": None}
"""DB5 modality -> channel count (None: taken from the file); the loadable modalities."""

DB5_LABEL_OFFSETS: dict[int, tuple[int, int]] = {1: (12, 0), 2: (17, 12), 3: (23, 29)}
"""DB5 exercise -> (movements in it, offset onto the global labels 1-52)."""

ChannelCounts = int | tuple[int, ...] | None
"""Accepted channel counts of a variable: one, several, or None for any."""

_STIMULUS = ("restimulus", "stimulus")
_REPETITION = ("rerepetition", "repetition")
_LABELS = frozenset(_STIMULUS + _REPETITION)
_PER_SAMPLE = frozenset({"emg", "acc", "glove", "force", "inclin", "gyro", "mag"})
_SCALARS = frozenset({"subject", "exercise", "forcecal"})
_DB5_FILE = re.compile(r"s0*(\d+)_e([123])_a1", re.IGNORECASE)


def _exercise_number(exercise: str | int) -> int:
    """``"B"``/``"C"``/``"D"``, ``1``/``2``/``3`` or ``"E1"``... -> 1, 2 or 3."""
    if isinstance(exercise, (int, np.integer)) and not isinstance(exercise, bool):
        if int(exercise) in LABEL_RANGES:
            return int(exercise)
    elif isinstance(exercise, str):
        key = exercise.strip().upper()
        if key in EXERCISES:
            return EXERCISES[key]
        key = key.removeprefix("E")
        if key.isdigit() and int(key) in LABEL_RANGES:
            return int(key)
    raise ArgumentError(f"exercise must be one of 'B', 'C', 'D' (or 1, 2, 3), got {exercise!r}")


def _subject_number(subject: int) -> int:
    if isinstance(subject, bool) or not isinstance(subject, (int, np.integer)) or subject < 1:
        raise ArgumentError(f"subject must be an integer >= 1, got {subject!r}")
    return int(subject)


def _subject_folder(root: Path, subject: int) -> Path:
    """The folder holding subject ``subject``'s files: ``root/DB<k>_s<N>``, ``root/s<N>``,
    ``root/Subject_<N>`` (as the archives unpack), or ``root`` itself."""
    if not root.exists():
        raise DataFormatError(f"{root}: no such folder (looking for NinaPro subject {subject})")
    if root.is_file():
        raise DataFormatError(f"{root}: expected a folder (the dataset root or DB2_s{subject}/)")
    names = [f"DB{db}_s{subject}" for db in (2, 3, 5, 7)]
    names += [f"s{subject}", f"S{subject}", f"Subject_{subject}"]
    # Two of these folders (DB2_s1/ and s1/) would be two copies of the subject: refused.
    candidates = [(subject, root / name) for name in names if (root / name).is_dir()]
    folders = unique_files(candidates, root, lambda s: f"subject {s}", kind="folders")
    return folders.get(subject, root)


def find_exercise_file(folder: str | Path, subject: int, exercise: str | int) -> Path:
    """The ``.mat`` file of ``subject``'s ``exercise`` in ``folder``, whatever its token order.

    A file matches when the underscore-separated tokens of its name include ``S<subject>`` and
    ``E<k>`` (case-insensitive): ``S1_E1_A1.mat`` (DB2) and ``S1_A1_E1.mat`` (DB3) both do.
    Where several match, the one with an ``A1`` token is taken. ``folder`` may also be the
    dataset root that holds ``DB2_s<N>/``.

    >>> import tempfile
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "S7_A1_E2.mat").write_bytes(b"")
    >>> find_exercise_file(folder, 7, "C").name
    'S7_A1_E2.mat'
    """
    subject = _subject_number(subject)
    k = _exercise_number(exercise)
    folder = _subject_folder(Path(folder), subject)
    subject_token = re.compile(rf"s0*{subject}", re.IGNORECASE)
    exercise_token = re.compile(rf"e0*{k}", re.IGNORECASE)
    matches = []
    for path in sorted(folder.glob("*")):
        if path.suffix.lower() != ".mat" or not path.is_file():
            continue
        tokens = path.stem.split("_")
        if any(subject_token.fullmatch(t) for t in tokens) and any(
            exercise_token.fullmatch(t) for t in tokens
        ):
            matches.append(path)
    if not matches:
        present = sorted(p.name for p in folder.glob("*.mat"))
        raise DataFormatError(
            f"{folder}: no file for subject {subject}, exercise E{k} (searched for a .mat name "
            f"with tokens 'S{subject}' and 'E{k}', e.g. S{subject}_E{k}_A1.mat or "
            f"S{subject}_A1_E{k}.mat); .mat files there: {present or 'none'}"
        )
    if len(matches) > 1:
        first_take = [p for p in matches if "a1" in p.stem.lower().split("_")]
        if len(first_take) != 1:
            both = first_take if len(first_take) > 1 else matches
            raise duplicate_error(folder, f"subject {subject}, exercise E{k}", *both[:2])
        return first_take[0]
    return matches[0]


def ninapro_db5_files(root: str | Path) -> dict[tuple[int, int], Path]:
    """``{(subject, exercise): path}`` of the DB5 files ``S<N>_E<k>_A1.mat`` under ``root``
    at any depth (``s<N>/``, ``DB5_s<N>/``, or ``root`` itself being a subject's folder); two
    copies of one file are a `DataFormatError` naming both.

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> (root / "s2").mkdir()
    >>> _ = (root / "s2" / "S2_E3_A1.mat").write_bytes(b"")
    >>> list(ninapro_db5_files(root))
    [(2, 3)]
    """
    root = Path(root)
    if not root.is_dir():
        raise DataFormatError(f"{root}: no such folder (looking for NinaPro DB5 S<N>_E1_A1.mat)")

    def key(path: Path) -> tuple[int, int] | None:
        m = _DB5_FILE.fullmatch(path.stem) if path.suffix.lower() == ".mat" else None
        return None if m is None else (int(m.group(1)), int(m.group(2)))

    return find_files(root, key, lambda k: f"NinaPro DB5 subject {k[0]}, exercise E{k[1]}")


def _read_mat(path: Path) -> dict[str, np.ndarray]:
    """All variables of a MATLAB v5 file, refusing v7.3 (HDF5) files with a clear message."""
    if not path.is_file():
        raise DataFormatError(f"{path}: no such file")
    try:
        is_hdf5 = h5py.is_hdf5(str(path))
    except OSError:
        is_hdf5 = False
    if is_hdf5:
        raise DataFormatError(
            f"{path}: this is an HDF5 (MATLAB v7.3) file; the NinaPro readers expect "
            "MATLAB v5 files (as the dataset ships them) - re-save it with save(..., '-v7')"
        )
    try:
        contents = scipy.io.loadmat(str(path))
    except Exception as exc:  # scipy raises MatReadError, ValueError, OSError, IndexError...
        raise DataFormatError(
            f"{path}: cannot be read as a MATLAB v5 file (truncated or corrupt?): "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    return {k: v for k, v in contents.items() if not k.startswith("__")}


def _as_labels(x: np.ndarray, name: str, path: Path) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim > 2 or (x.ndim == 2 and min(x.shape) != 1) or not np.issubdtype(x.dtype, np.number):
        raise DataFormatError(
            f"{path}: label variable {name!r} must be a numeric (N, 1) column, got shape "
            f"{x.shape} of {x.dtype}"
        )
    x = x.reshape(-1)
    if np.issubdtype(x.dtype, np.floating) and (
        not np.isfinite(x).all() or not np.array_equal(x, np.round(x))
    ):
        raise DataFormatError(f"{path}: label variable {name!r} holds non-integer values")
    if x.size and x.min() < 0:
        raise DataFormatError(
            f"{path}: label variable {name!r} holds negative values (min {x.min():g}); labels "
            "are 0 (rest) or positive codes"
        )
    return x.astype(np.int64)


def _check_signal(x: np.ndarray, name: str, path: Path, expected: ChannelCounts) -> None:
    if x.ndim != 2 or not np.issubdtype(x.dtype, np.number):
        raise DataFormatError(
            f"{path}: variable {name!r} must be a numeric [time, channels] matrix, got shape "
            f"{x.shape} of {x.dtype}"
        )
    accepted = (expected,) if isinstance(expected, int) else expected
    if accepted is not None and x.shape[1] not in accepted:
        wanted = " or ".join(str(c) for c in accepted)
        raise DataFormatError(
            f"{path}: variable {name!r} has the wrong channel count: expected {wanted}, "
            f"got {x.shape[1]} (shape {x.shape})"
        )


def _remap_exercise_d(stimulus: np.ndarray, path: Path, others: list[np.ndarray]) -> None:
    """Map E3 codes outside 41-49 onto 41-49 in place (in ``stimulus`` and ``others``)."""
    first, last = LABEL_RANGES[3]
    codes = sorted(int(c) for c in np.unique(stimulus) if c != 0)
    if all(first <= c <= last for c in codes):
        return
    if len(codes) > last - first + 1:
        raise DataFormatError(
            f"{path}: exercise E3 (D) holds {len(codes)} distinct gesture codes {codes}; "
            f"expected at most {last - first + 1} (labels {first}-{last})"
        )
    if all(1 <= c <= last - first + 1 for c in codes):
        mapping = {c: c + first - 1 for c in codes}  # codes 1-9 missing the +40 offset
    else:
        mapping = {c: first + i for i, c in enumerate(codes)}
    warnings.warn(
        f"{path}: exercise E3 (D) holds gesture codes {codes} outside {first}-{last}; "
        f"mapped them as {mapping}",
        UserWarning,
        stacklevel=4,
    )
    for arr in [stimulus, *others]:
        mapped = arr.copy()
        for old, new in mapping.items():
            mapped[arr == old] = new
        arr[:] = mapped


def _modalities(modalities: Iterable[str], known: Iterable[str]) -> tuple[str, ...]:
    if isinstance(modalities, str):
        modalities = (modalities,)
    modalities, known = tuple(modalities), list(known)
    unknown = [m for m in modalities if m not in known]
    if unknown or not modalities or len(set(modalities)) != len(modalities):
        raise ArgumentError(
            f"modalities must be distinct names among {known}, got {list(modalities)}"
        )
    return modalities


def _exercise_list(exercises: Iterable[str | int], parse: Callable[[str | int], int]) -> list[int]:
    if isinstance(exercises, (str, int)):
        exercises = (exercises,)
    numbers = [parse(e) for e in exercises]
    if not numbers:
        raise ArgumentError("exercises must name at least one exercise")
    return numbers


def _stimulus_columns(recording: Recording) -> list[np.ndarray]:
    """The label vector and the unrelabelled ``stimulus`` column kept in ``extras``, if any."""
    columns = [recording.stimulus]
    if "stimulus" in recording.extras:
        columns.append(recording.extras["stimulus"])
    return columns


def read_exercise_file(
    path: str | Path,
    *,
    subject: int,
    sample_rate: float,
    modalities: Iterable[str] = ("emg",),
    channels: Mapping[str, ChannelCounts] = CHANNELS,
) -> Recording:
    """One NinaPro ``.mat`` file (any database) as a `Recording`, its arrays cut to one length.

    Labels are ``restimulus``/``rerepetition`` where present, else ``stimulus``/``repetition``;
    the unrelabelled columns and every other per-sample matrix land in ``extras``. Arrays may
    differ by up to `LENGTH_TOLERANCE` samples (the real files' label columns are often one
    short); all are cut to the shortest.

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
    modalities = _modalities(modalities, channels)
    path = Path(path)
    data = _read_mat(path)

    def pick(names: tuple[str, ...]) -> str:
        for name in names:
            if name in data:
                return name
        raise DataFormatError(
            f"{path}: missing required variable {' or '.join(repr(n) for n in names)}; the file "
            f"holds {sorted(data)}"
        )

    for name in modalities:
        if name not in data:
            raise DataFormatError(
                f"{path}: missing required variable {name!r} (asked for modality {name!r}); "
                f"the file holds {sorted(data)}"
            )
        _check_signal(data[name], name, path, channels.get(name))
    stim_name, rep_name = pick(_STIMULUS), pick(_REPETITION)
    labels = {name: _as_labels(data[name], name, path) for name in _LABELS if name in data}

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
    n, longest = min(lengths.values()), max(lengths.values())
    if longest - n > LENGTH_TOLERANCE:
        raise DataFormatError(
            f"{path}: signals and labels differ in length by {longest - n} samples (more than "
            f"the {LENGTH_TOLERANCE} tolerated): {lengths}"
        )

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
    )


def concatenate_recordings(parts: list[Recording]) -> Recording:
    """Several files of one subject (same clock and modalities) joined in time.

    ``extras`` keeps only the arrays every part holds with the same width; ``source`` lists
    every file, joined by ``" + "``.

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
    )


def _load_exercise(path: Path, subject: int, k: int, modalities: tuple[str, ...]) -> Recording:
    """One DB2 file, its E3 codes mapped onto 41-49 where they are not."""
    rec = read_exercise_file(path, subject=subject, sample_rate=SAMPLE_RATE, modalities=modalities)
    if k == 3:
        stimulus, *others = _stimulus_columns(rec)
        _remap_exercise_d(stimulus, path, others)
    return rec


def load_ninapro_db2(
    root: str | Path,
    subject: int,
    *,
    exercises: Iterable[str | int] = ("B",),
    modalities: Iterable[str] = ("emg", "acc"),
) -> Recording:
    """Load one NinaPro DB2 subject as a `Recording` (2 kHz; several exercises concatenated).

    Args:
        root: the dataset root holding ``DB2_s<N>/``, or the subject folder itself.
        subject: subject number, 1-based.
        exercises: which exercises, as ``"B"``/``"C"``/``"D"`` or ``1``/``2``/``3``; they are
            concatenated in time in the order given.
        modalities: which arrays become ``Recording.signals`` (in this order): any of
            ``"emg"`` (12 ch), ``"acc"`` (36 ch), ``"force"`` (6 ch, exercise D only),
            ``"glove"`` (22 ch). Every other per-sample array the files hold lands in
            ``extras`` under its file name (when every loaded file holds it with the same
            width), including the unrelabelled ``stimulus``/``repetition`` columns where
            ``restimulus``/``rerepetition`` were used for the labels.

    Raises:
        DataFormatError: a file is missing, unreadable, v7.3, lacks a variable, has the wrong
            channel count, holds NaN/Inf, or its arrays differ in length by more than
            `LENGTH_TOLERANCE` samples. The message names the file.
        ArgumentError: an unknown exercise or modality.

    >>> import tempfile
    >>> import numpy as np
    >>> from emg_lens.data.recording import Recording
    >>> n = 200
    >>> rec = Recording(
    ...     subject=1,
    ...     signals={"emg": np.ones((n, 12), np.float32), "acc": np.zeros((n, 36), np.float32)},
    ...     sample_rate=2000.0,
    ...     stimulus=np.repeat([0, 18], n // 2),
    ...     repetition=np.repeat([0, 1], n // 2),
    ... )
    >>> root = tempfile.mkdtemp()
    >>> _ = write_ninapro_db2(rec, root, exercise="B")
    >>> _ = write_ninapro_db2(rec, root, exercise="C")
    >>> both = load_ninapro_db2(root, 1, exercises=("B", "C"), modalities=("emg",))
    >>> both.n_samples, both.modalities, sorted(both.extras)
    (400, {'emg': 12}, ['acc', 'glove', 'repetition', 'stimulus'])
    """
    subject = _subject_number(subject)
    numbers = _exercise_list(exercises, _exercise_number)
    modalities = _modalities(modalities, CHANNELS)
    root = Path(root)
    parts = []
    for k in numbers:  # a loop, not a comprehension: the E3 warning's stacklevel counts frames
        parts.append(_load_exercise(find_exercise_file(root, subject, k), subject, k, modalities))
    return concatenate_recordings(parts)


def _db5_exercise(exercise: str | int) -> int:
    """``1``/``2``/``3`` or ``"E1"``... -> 1, 2 or 3 (DB5's letters differ from DB2's, so
    letters are refused rather than guessed)."""
    key = str(exercise).strip().upper().removeprefix("E")
    if not isinstance(exercise, bool) and key.isdigit() and int(key) in DB5_LABEL_OFFSETS:
        return int(key)
    raise ArgumentError(f"DB5 exercise must be 1, 2 or 3 (or 'E1', 'E2', 'E3'), got {exercise!r}")


def _globalise_db5_labels(recording: Recording, k: int) -> None:
    """Shift exercise ``k``'s restarting codes (1..count) onto the global labels, in place.

    Codes already inside the exercise's global range (offset+1..offset+count) are kept, so a
    file relabelled by hand loads too; anything else is a `DataFormatError`. Where both
    readings fit (E2 codes 13-17 only), the documented restart is assumed.
    """
    count, offset = DB5_LABEL_OFFSETS[k]
    codes = sorted(int(c) for c in np.unique(recording.stimulus) if c != 0)
    if all(c <= count for c in codes):
        for column in _stimulus_columns(recording):
            column[column != 0] += offset
    elif not all(offset < c <= offset + count for c in codes):
        raise DataFormatError(
            f"{recording.source}: DB5 exercise E{k} holds gesture codes {codes}; expected "
            f"1-{count} (restarting per exercise) or {offset + 1}-{offset + count} (global)"
        )


def load_ninapro_db5(
    root: str | Path,
    subject: int,
    *,
    exercises: Iterable[str | int] = (1, 2, 3),
    modalities: Iterable[str] = ("emg",),
) -> Recording:
    """Load one NinaPro DB5 subject as a `Recording` at 200 Hz, labels global (1-52).

    Each exercise file ``S<N>_E<k>_A1.mat`` restarts its ``restimulus`` at 1 (E1 1-12,
    E2 1-17, E3 1-23); the codes are shifted by 0, 12, 29 so the concatenated recording holds
    one label per movement. The raw ``stimulus`` column (in ``extras``) is shifted the same
    way.

    Args:
        root: the dataset root holding ``s<N>/`` (or ``DB5_s<N>/``), or the subject folder:
            the files are found at any depth (`ninapro_db5_files`), two copies refused.
        subject: subject number, 1-based.
        exercises: ``1``, ``2``, ``3`` (or ``"E1"``...), concatenated in the order given.
        modalities: any of ``"emg"`` (16 ch), ``"acc"``, ``"glove"`` (widths from the file).

    Raises:
        DataFormatError: as `read_exercise_file`, or gesture codes outside the exercise's range.
        ArgumentError: an unknown exercise or modality.

    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> import scipy.io
    >>> root = Path(tempfile.mkdtemp())
    >>> for k in (1, 2):
    ...     labels = np.repeat([0, 1, 0, 2], 25)[:, None]
    ...     scipy.io.savemat(root / f"S3_E{k}_A1.mat", {"emg": np.zeros((100, 16)),
    ...                      "restimulus": labels, "rerepetition": (labels > 0) * 1})
    >>> rec = load_ninapro_db5(root, 3, exercises=(1, 2))
    >>> rec.sample_rate, rec.modalities, rec.gestures
    (200.0, {'emg': 16}, [1, 2, 13, 14])
    """
    subject = _subject_number(subject)
    numbers = _exercise_list(exercises, _db5_exercise)
    modalities = _modalities(modalities, DB5_CHANNELS)
    files = ninapro_db5_files(root)
    parts = []
    for k in numbers:
        path = files.get((subject, k))
        if path is None:
            raise DataFormatError(
                f"{root}: no file S{subject}_E{k}_A1.mat (NinaPro DB5 subject {subject}, "
                f"exercise E{k}) at any depth; DB5 files found: "
                f"{[p.name for p in files.values()][:10] or 'none'}"
            )
        rec = read_exercise_file(
            path,
            subject=subject,
            sample_rate=DB5_SAMPLE_RATE,
            modalities=modalities,
            channels=DB5_CHANNELS,
        )
        _globalise_db5_labels(rec, k)
        parts.append(rec)
    return concatenate_recordings(parts)


def _column(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    return x.reshape(-1, 1) if x.ndim == 1 else x


def write_ninapro_db2(
    recording: Recording,
    root: str | Path,
    *,
    exercise: str | int = "B",
    short_labels: bool = False,
    omit_glove: bool = False,
    glove_channels: int = 22,
) -> Path:
    """Write ``recording`` as ``root/DB2_s<N>/S<N>_E<k>_A1.mat``, laid out like the real files.

    MATLAB v5 (`scipy.io.savemat`), signals as double matrices, labels as (N, 1) double columns:
    ``restimulus``/``rerepetition`` hold ``recording.stimulus``/``repetition`` and
    ``stimulus``/``repetition`` hold ``extras["stimulus"]``/``extras["repetition"]`` where
    present (else the same labels); ``subject`` and ``exercise`` are scalars. Every signal and
    every 1-D/2-D extra is written under its name, so `load_ninapro_db2` gives it back.

    The real files' quirks can be reproduced: ``short_labels`` writes label columns one sample
    shorter than the signals; ``omit_glove`` leaves ``glove`` out; otherwise a ``glove`` the
    recording lacks is written as zeros of ``glove_channels`` columns. Exercise D files get a
    zero ``force`` (N, 6) and ``forcecal`` (2, 6) when the recording has no force. Nothing is
    validated beyond the recording's own checks, so tests can write malformed files.

    Returns the path written.

    >>> import tempfile
    >>> import numpy as np
    >>> from emg_lens.data.recording import Recording
    >>> rec = Recording(
    ...     subject=2,
    ...     signals={"emg": np.zeros((10, 12), np.float32), "acc": np.zeros((10, 36), np.float32)},
    ...     sample_rate=2000.0,
    ...     stimulus=np.zeros(10, np.int64),
    ...     repetition=np.zeros(10, np.int64),
    ... )
    >>> path = write_ninapro_db2(rec, tempfile.mkdtemp(), exercise="D", short_labels=True)
    >>> path.name, load_ninapro_db2(path.parent, 2, exercises="D").n_samples
    ('S2_E3_A1.mat', 9)
    """
    k = _exercise_number(exercise)
    subject = _subject_number(recording.subject)
    if "emg" not in recording.signals:
        raise ArgumentError(
            f"{recording.source}: a NinaPro DB2 file needs an 'emg' signal; the recording has "
            f"{list(recording.signals)}"
        )
    n = recording.n_samples
    n_labels = n - 1 if short_labels else n
    out: dict[str, np.ndarray | int] = {}
    arrays: Mapping[str, np.ndarray] = {**recording.extras, **recording.signals}
    for name, x in arrays.items():
        if name in _LABELS or np.asarray(x).ndim not in (1, 2):
            continue
        out[name] = _column(np.asarray(x, dtype=np.float64))
    if omit_glove:
        out.pop("glove", None)
    elif "glove" not in out:
        out["glove"] = np.zeros((n, glove_channels))
    if k == 3 and "force" not in out:
        out["force"] = np.zeros((n, CHANNELS["force"]))
    if k == 3:
        out["forcecal"] = np.zeros((2, CHANNELS["force"]))

    stimulus = np.asarray(recording.stimulus)
    repetition = np.asarray(recording.repetition)
    raw_stimulus = np.asarray(recording.extras.get("stimulus", stimulus))
    raw_repetition = np.asarray(recording.extras.get("repetition", repetition))
    for name, x in (
        ("stimulus", raw_stimulus),
        ("restimulus", stimulus),
        ("repetition", raw_repetition),
        ("rerepetition", repetition),
    ):
        out[name] = np.asarray(x, dtype=np.float64).reshape(-1, 1)[:n_labels]
    out["subject"] = subject
    out["exercise"] = k

    folder = Path(root) / f"DB2_s{subject}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"S{subject}_E{k}_A1.mat"
    scipy.io.savemat(str(path), out, format="5", do_compression=False, oned_as="column")
    return path
