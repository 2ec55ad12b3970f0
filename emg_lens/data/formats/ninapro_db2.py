"""NinaPro DB2 (and DB3-named) loader and a DB2 writer: MATLAB v5 ``.mat`` -> `Recording`.

Layout and labels: docs/guide/recordings.md, "NinaPro DB2 (IsoNet's dataset)". Every file is
read by `emg_lens.data.formats._matlab.read_exercise_file` (the quirks all NinaPro databases
share); DB2's own are handled here: labels global across exercises (E1 1-17, E2 18-40, E3 41-49),
the published E3 files' other codes (`EXERCISE_D_CODES`), and ``glove`` missing in some files.

`write_ninapro_db2` writes a file the same way the real ones are laid out, so that synthetic
data goes through this very loader:

>>> import tempfile
>>> import numpy as np
>>> from emg_lens.data import Recording
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

import functools
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import scipy.io

from emg_lens.data.files import duplicate_error, unique_files
from emg_lens.data.formats._matlab import (
    LABEL_COLUMNS,
    load_exercises,
    read_exercise_file,
    require,
    stimulus_columns,
)
from emg_lens.data.reader import DatasetReader, Source, found_subjects
from emg_lens.data.recording import Recording
from emg_lens.errors import ArgumentError, DataFormatError, check_int, is_int, warn_caller
from emg_lens.geometry import Montage, points

SAMPLE_RATE = 2000.0
"""Hz: EMG is sampled at 2 kHz; every other stream in the files is upsampled to it."""

EXERCISES: dict[str, int] = {"B": 1, "C": 2, "D": 3}
"""Exercise letter (as in the NinaPro papers) -> the ``E<k>`` number in the file names."""

LABEL_RANGES: dict[int, tuple[int, int]] = {1: (1, 17), 2: (18, 40), 3: (41, 49)}
"""Exercise number -> (first, last) global gesture label it holds."""

EXERCISE_D_CODES: dict[int, int] = dict(zip((1, 2, 4, 6, 8, 9, 16, 32, 40), range(41, 50)))
"""The gesture codes the published DB2 E3 files hold (they lack ``restimulus``), and the label
each is given: in increasing order, as the public DB2 loaders map them (``nina_helper``:
"Movements number in non-logical pattern [0 1 2 4 6 8 9 16 32 40]"). The codes look like one
bit per finger (9 = 8 + 1), so which movement each of 41-49 names is not certain; the labels
agree across subjects either way. Any other code outside 41-49 is a `DataFormatError`."""

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


def _exercise_number(exercise: str | int) -> int:
    """``"B"``/``"C"``/``"D"``, ``1``/``2``/``3`` or ``"E1"``... -> 1, 2 or 3."""
    if is_int(exercise):
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


def _subject_folder(root: Path, subject: int) -> Path:
    """The folder holding subject ``subject``'s files: ``root/DB<k>_s<N>``, ``root/s<N>``,
    ``root/Subject_<N>`` (as the archives unpack), or ``root`` itself."""
    require(root.is_dir(), root, f"no such folder (the dataset root or DB2_s{subject}/)")
    names = [f"DB{db}_s{subject}" for db in (2, 3, 5, 7)]
    names += [f"s{subject}", f"S{subject}", f"Subject_{subject}"]
    # Two of these folders (DB2_s1/ and s1/) would be two copies of the subject: refused.
    candidates = [(subject, root / name) for name in names if (root / name).is_dir()]
    folders = unique_files(candidates, root, lambda s: f"subject {s}", kind="folders")
    return folders.get(subject, root)


def find_exercise_file(folder: str | Path, subject: int, exercise: str | int) -> Path:
    """The ``.mat`` file of ``subject``'s ``exercise`` in ``folder``, whatever its token order.

    A file matches when its name's tokens include ``S<subject>`` and ``E<k>``
    (case-insensitive): ``S1_E1_A1.mat`` (DB2) and ``S1_A1_E1.mat`` (DB3) both do; of several,
    the one with an ``A1`` token. ``folder`` may also be the root holding ``DB2_s<N>/``.

    >>> import tempfile
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "S7_A1_E2.mat").write_bytes(b"")
    >>> find_exercise_file(folder, 7, "C").name
    'S7_A1_E2.mat'
    """
    subject = check_int(subject, "subject", minimum=1)
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
            f"{folder}: no file for subject {subject}, exercise E{k} (a .mat name with tokens "
            f"'S{subject}' and 'E{k}', e.g. S{subject}_E{k}_A1.mat); .mat files there: {present}"
        )
    if len(matches) > 1:
        first_take = [p for p in matches if "a1" in p.stem.lower().split("_")]
        if len(first_take) != 1:
            both = first_take if len(first_take) > 1 else matches
            raise duplicate_error(folder, f"subject {subject}, exercise E{k}", *both[:2])
        return first_take[0]
    return matches[0]


def _remap_exercise_d(stimulus: np.ndarray, path: Path, others: list[np.ndarray]) -> None:
    """Map the published E3 codes (`EXERCISE_D_CODES`) onto 41-49 in place (in ``stimulus``
    and ``others``); refuse codes that are neither."""
    first, last = LABEL_RANGES[3]
    codes = sorted(int(c) for c in np.unique(stimulus) if c != 0)
    if all(first <= c <= last for c in codes):
        return
    unknown = [c for c in codes if c not in EXERCISE_D_CODES]
    if unknown:
        raise DataFormatError(
            f"{path}: exercise E3 (D) holds gesture codes {codes}; {unknown} are neither labels "
            f"{first}-{last} nor codes of the published E3 files ({sorted(EXERCISE_D_CODES)}): "
            f"relabel the file's stimulus to {first}-{last}"
        )
    mapping = {c: EXERCISE_D_CODES[c] for c in codes}
    warn_caller(
        f"{path}: exercise E3 (D) holds the published E3 codes {codes}; mapped them as "
        f"{mapping} (the public DB2 loaders' order)"
    )
    for arr in [stimulus, *others]:
        mapped = arr.copy()
        for old, new in mapping.items():
            mapped[arr == old] = new
        arr[:] = mapped


def _load_exercise(root: Path, subject: int, k: int, modalities: tuple[str, ...]) -> Recording:
    """One DB2 file (`find_exercise_file`), its E3 codes mapped onto 41-49 where they are not."""
    path = find_exercise_file(root, subject, k)
    rec = read_exercise_file(
        path, subject=subject, sample_rate=SAMPLE_RATE, modalities=modalities, channels=CHANNELS
    )
    if k == 3:
        stimulus, *others = stimulus_columns(rec)
        _remap_exercise_d(stimulus, path, others)
    return rec


def load_ninapro_db2(
    root: str | Path,
    subject: int,
    *,
    exercises: int | Iterable[str | int] = ("B",),
    modalities: Iterable[str] = ("emg", "acc"),
) -> Recording:
    """Load one NinaPro DB2 subject as a `Recording` (2 kHz; several exercises concatenated).

    Args:
        root: the dataset root holding ``DB2_s<N>/``, or the subject folder itself.
        subject: subject number, 1-based.
        exercises: which exercises, as ``"B"``/``"C"``/``"D"`` or ``1``/``2``/``3``; they are
            concatenated in time in the order given.
        modalities: which arrays become ``Recording.signals`` (in this order): any of
            `CHANNELS` (``"force"``: exercise D only). Every other per-sample array the files
            hold (with one width in every file) lands in ``extras`` under its file name,
            including the unrelabelled ``stimulus``/``repetition`` columns.

    Raises:
        DataFormatError: a file is missing, or as `read_exercise_file`; the message names it.
        ArgumentError: an unknown exercise or modality.

    >>> import tempfile
    >>> import numpy as np
    >>> from emg_lens.data import Recording
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
    load = functools.partial(_load_exercise, Path(root))
    rec = load_exercises(subject, exercises, _exercise_number, modalities, CHANNELS, load)
    rec.meta["channel_names"] = db2_channel_names(rec.modalities)  # a model's token names
    return rec


def db2_channel_names(modalities: Mapping[str, int]) -> list[str]:
    """DB2's channel names, one per column of ``modalities``, as the dataset numbers its
    electrodes (1-12, `DB2_ELECTRODES`): electrode k's sEMG ``emg<k>``, its accelerometer's
    ``acc<k>x``, ``acc<k>y``, ``acc<k>z``, any other array's columns ``<name><column>``.

    >>> names = db2_channel_names({"emg": 12, "acc": 6})
    >>> names[8], names[12:]
    ('emg9', ['acc1x', 'acc1y', 'acc1z', 'acc2x', 'acc2y', 'acc2z'])
    """
    return [
        f"acc{k // 3 + 1}{'xyz'[k % 3]}" if modality == "acc" else f"{modality}{k + 1}"
        for modality, n in modalities.items()
        for k in range(n)
    ]


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

    MATLAB v5, labels as (N, 1) columns: ``restimulus``/``rerepetition`` hold the recording's
    labels and ``stimulus``/``repetition`` its ``extras`` of those names where present (else
    the same labels); every signal and 1-D/2-D extra is written under its name, so
    `load_ninapro_db2` gives it back. The real files' quirks can be reproduced:
    ``short_labels`` writes label columns one sample shorter; ``omit_glove`` leaves ``glove``
    out (else a missing one is zeros of ``glove_channels``); exercise D gets a zero ``force``
    and ``forcecal`` where the recording has none. Nothing more is validated, so tests can
    write malformed files. Returns the path written.

    >>> import tempfile
    >>> import numpy as np
    >>> from emg_lens.data import Recording
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
    subject = check_int(recording.subject, "subject", minimum=1)
    if "emg" not in recording.signals:
        raise ArgumentError(
            f"{recording.source}: a DB2 file needs an 'emg' signal, got {list(recording.signals)}"
        )
    n = recording.n_samples
    n_labels = n - 1 if short_labels else n
    out: dict[str, np.ndarray | int] = {}
    arrays: Mapping[str, np.ndarray] = {**recording.extras, **recording.signals}
    for name, x in arrays.items():
        if name in LABEL_COLUMNS or np.asarray(x).ndim not in (1, 2):
            continue
        column = np.asarray(x, dtype=np.float64)
        out[name] = column.reshape(-1, 1) if column.ndim == 1 else column
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


def _subjects(source: Source) -> list[int]:
    root = Path(source["root"])
    tails = (p.name.rsplit("_s", 1)[1] for p in root.glob("*_s*") if p.is_dir())
    found = sorted({int(t) for t in tails if t.isdigit()})
    return found_subjects(found, root, "subject folders DB2_s<N>/")


FOREARM_CIRCUMFERENCE = 250.0
"""mm around an adult forearm at the elbow: the width of the unrolled forearm that NinaPro's
ring is drawn on (a convention: the files carry no circumference)."""

DB2_ELECTRODES = (*(str(k) for k in range(1, 9)), "FDS", "EDS", "biceps", "triceps")
"""DB2's 12 electrodes in column order: columns 1-8 the forearm ring, 9 and 10 the flexor and
extensor digitorum superficialis, 11 and 12 biceps and triceps brachii."""


def db2_montage(n_electrodes: int = 12, axes: int = 1) -> Montage:
    """Where NinaPro DB2's electrodes lie (the first ``n_electrodes``, ``axes`` channels each:
    3 for each electrode's accelerometer), as dots on the forearm unrolled
    (`emg_lens.geometry.montage`).

    >>> montage = db2_montage(axes=3)
    >>> montage.n_channels, montage.locate(0), montage.locate(3 * 8)  # acc of ring 1, of FDS
    (36, (0, (0.0, 0.0)), (0, (125.0, 60.0)))
    """
    step = FOREARM_CIRCUMFERENCE / 8
    ring = [(k * step, 0.0) for k in range(8)]
    half = FOREARM_CIRCUMFERENCE / 2  # the volar midline
    spots = [(half, 60.0), (0.0, 60.0), (half, -120.0), (0.0, -120.0)]
    xy = (ring + spots)[:n_electrodes]
    part = points("forearm and upper arm", xy, labels=DB2_ELECTRODES[:n_electrodes])
    return Montage(
        (part,),
        axes=axes,
        source="NinaPro DB2 (Atzori et al. 2014, Sci. Data 1:140053, doi:10.1038/sdata.2014.53; "
        "ninapro.hevs.ch/instructions/DB2.html): 12 Delsys Trigno electrodes, columns 1-8 "
        "equally spaced around the forearm at the height of the radio-humeral joint, 9 and 10 "
        "on the main activity spots of the flexor and extensor digitorum superficialis, 11 "
        "and 12 on biceps and triceps brachii; acc: the three axes of each electrode",
        convention="not documented, chosen here: ring electrode 1 on the dorsal midline and the "
        f"ring numbered toward the radial side, a {FOREARM_CIRCUMFERENCE:g} mm circumference; "
        "FDS on the volar and EDS on the dorsal midline 60 mm distal to the elbow crease, "
        "biceps and triceps 120 mm proximal to it",
    )


READER = DatasetReader(
    montage=lambda source: {m: CHANNELS[m] for m in ("emg", "acc")},  # what it reads
    subjects=_subjects,
    files=lambda source, subject: [
        find_exercise_file(source["root"], subject, e) for e in source["exercises"]
    ],
    read=lambda source, subject: load_ninapro_db2(
        source["root"], subject, exercises=tuple(source["exercises"])
    ),
    preprocess={"train_repetitions": (1, 3, 4, 6), "test_repetitions": (2, 5)},
    source_fields=lambda options: {"exercises": list(options["exercises"])},
    channel_names={m: tuple(db2_channel_names({m: CHANNELS[m]})) for m in ("emg", "acc")},
    gesture_names=EXERCISE_B_NAMES,
    geometry=lambda source: {"emg": db2_montage(), "acc": db2_montage(axes=3)},
)
"""NinaPro DB2 for the registry (`emg_lens.data.registry`): a data source names the
``exercises`` it reads (default B); the repetition split is the NinaPro protocol's."""
