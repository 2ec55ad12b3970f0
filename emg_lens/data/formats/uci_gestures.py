"""UCI EMG Data for Gestures (text files): reader, the thesis's windows, and a writer.

Layout and labels for users: docs/guide/tinymyo.md, "Downstream datasets". Two text files per
subject folder ``<NN>/``, columns ``time`` (ms), ``channel1``..``channel8``, ``class`` (`CLASSES`;
7 was not performed by every subject, hence the thesis's "six gestures"). Protocol: Lobov et al.
2018, Sensors 18(4):1122, each gesture held 3 s. The files log a row about every millisecond
(`ROWS_PER_SECOND`), but the rows are read at the Myo's nominal 200 Hz, as the thesis's script
assumes (its 20-90 Hz band is then a band of the row clock); ``time`` is kept in
``extras["time_ms"]``, not used to resample. `uci_windows` is the thesis's preprocessing
(BioFoundation's ``scripts/uci.py``): class 0 dropped, label = class - 1, subjects split by
`SUBJECT_SPLITS` (1-24, 25-30, 31-36).

>>> import tempfile
>>> from emg_lens.data import synthetic_uci
>>> root = Path(tempfile.mkdtemp())
>>> recordings = synthetic_uci(n_subjects=2, gesture_seconds=0.5)
>>> [p.relative_to(root).as_posix() for r in recordings for p in write_uci_gestures(r, root)]
['01/1_raw_data_13-12_22.03.16.txt', '01/2_raw_data_13-13_22.03.16.txt', \
'25/1_raw_data_13-12_22.03.16.txt', '25/2_raw_data_13-13_22.03.16.txt']
>>> back = load_uci_gestures(root, 25)
>>> back.modalities, back.gestures, find_subjects(root)
({'emg': 8}, [1, 2, 3, 4, 5, 6, 7], [1, 25])
>>> bool(np.array_equal(back.signals["emg"], recordings[1].signals["emg"]))
True
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from emg_lens.data.files import find_files
from emg_lens.data.formats._matlab import require
from emg_lens.data.recording import Recording
from emg_lens.data.windows.downstream import (
    SPLIT_CODES,
    DownstreamPreprocess,
    DownstreamTask,
    downstream_reader,
    label_runs,
    stack_windows,
    thesis_preprocess,
    window_starts,
)
from emg_lens.data.windows.pipeline import WindowBatch
from emg_lens.errors import ArgumentError, DataFormatError, check_int
from emg_lens.geometry import Montage, ring

SAMPLE_RATE = 200.0
"""Hz: the Myo armband's nominal EMG rate, at which the rows are read (as the thesis does)."""

ROWS_PER_SECOND = 1000.0
"""Rows a second in the published files (``time`` in ms, about one row each): a 3 s gesture is
about 3000 rows. What `emg_lens.data.synthetic.downstream.synthetic_uci` writes."""

CHANNELS = 8
"""EMG columns, ``channel1``..``channel8``."""

COLUMNS = ("time", *(f"channel{c}" for c in range(1, CHANNELS + 1)), "class")
"""The header of every file."""

CLASSES = (
    "unmarked",
    "hand at rest",
    "fist",
    "wrist flexion",
    "wrist extension",
    "radial deviation",
    "ulnar deviation",
    "extended palm",
)
"""``class`` code -> gesture; 0 (unmarked) is dropped, a window's label is code - 1."""

SUBJECT_SPLITS: dict[str, tuple[int, ...]] = {
    "train": tuple(range(1, 25)),
    "val": tuple(range(25, 31)),
    "test": tuple(range(31, 37)),
}
"""The thesis's subject split."""

_FILE_NAMES = ("1_raw_data_13-12_22.03.16.txt", "2_raw_data_13-13_22.03.16.txt")


def _subject_folders(root: Path) -> dict[int, Path]:
    """Subject -> its numbered folder (``01`` or ``1``); both present is a `DataFormatError`
    naming them."""

    def key(path: Path) -> int | None:
        return int(path.name) if path.name.isdigit() and int(path.name) >= 1 else None

    what, looking_for = "UCI subject {}".format, "UCI subject folders 01..36"
    return find_files(root, key, what, looking_for=looking_for, recursive=False, folders=True)


def find_subjects(root: str | Path) -> list[int]:
    """The subjects with a numbered folder holding ``.txt`` files under ``root``, sorted."""
    root = Path(root)
    found = [s for s, folder in _subject_folders(root).items() if any(folder.glob("*.txt"))]
    require(found, root, "no UCI subject folder (<NN>/ holding .txt files) found")
    return sorted(found)


def _file_number(path: Path) -> int | str | None:
    """A file's place in the subject's series (``<k>_raw_data_...txt``: k), or its name."""
    if path.suffix.lower() != ".txt":
        return None
    head = path.name.split("_", 1)[0]
    return int(head) if head.isdigit() else path.name


def subject_files(root: str | Path, subject: int) -> list[Path]:
    """A subject's text files, in name order; none is a `DataFormatError` naming the folder,
    and so are two files of one place in the series (``1_raw_data_...txt`` twice), naming
    both."""
    subject = check_int(subject, "subject", minimum=1)
    folder = _subject_folders(Path(root)).get(subject)
    files = []
    if folder is not None:

        def what(k: int | str) -> str:
            return f"UCI subject {subject}, series {k} ({k}_raw_data_*.txt)"

        found: dict[int | str, Path] = find_files(
            folder, _file_number, what, looking_for="its .txt files", recursive=False
        )
        files = sorted(found.values())
    require(files, Path(root) / f"{subject:02d}", f"no .txt files of UCI subject {subject}")
    return files


def _read_file(path: Path) -> np.ndarray:
    """One file's rows as float64 ``[rows, 10]``, the header checked."""
    try:
        with path.open(encoding="utf-8") as f:
            header = f.readline().split()
            if [h.lower() for h in header] != list(COLUMNS):
                raise DataFormatError(f"{path}: header must be {' '.join(COLUMNS)}, got {header}")
            rows = np.loadtxt(f, dtype=np.float64, ndmin=2)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataFormatError(
            f"{path}: not a table of {len(COLUMNS)} numeric columns (truncated or corrupt?): {exc}"
        ) from exc
    require(rows.size, path, "no data rows below the header")
    if rows.shape[1] != len(COLUMNS):
        raise DataFormatError(
            f"{path}: expected {len(COLUMNS)} columns ({CHANNELS} channels), got {rows.shape[1]}"
        )
    codes = rows[:, -1]
    bad = ~np.isin(codes, np.arange(len(CLASSES)))
    if bad.any():
        raise DataFormatError(
            f"{path}: unknown class {sorted(set(codes[bad].tolist()))[:5]} (row "
            f"{int(np.argmax(bad)) + 2}); expected 0-{len(CLASSES) - 1}"
        )
    return rows


def load_uci_gestures(root: str | Path, subject: int) -> Recording:
    """One UCI subject's files as a `Recording` (see the module docstring); a missing,
    truncated or malformed file, a wrong column count, NaN or an unknown class is a
    `DataFormatError` naming the file."""
    files = subject_files(root, subject)
    tables = [_read_file(path) for path in files]
    for path, rows in zip(files, tables):
        require(np.isfinite(rows).all(), path, f"holds {(~np.isfinite(rows)).sum()} NaN/Inf")
    rows = np.concatenate(tables)
    return Recording(
        subject=int(subject),
        signals={"emg": rows[:, 1 : 1 + CHANNELS].astype(np.float32)},
        sample_rate=SAMPLE_RATE,
        stimulus=rows[:, -1].astype(np.int64),
        repetition=np.concatenate([np.full(len(t), k + 1, np.int64) for k, t in enumerate(tables)]),
        source=" + ".join(str(p) for p in files),
        extras={"time_ms": rows[:, 0]},
    )


def split_of(subject: int, splits: Mapping[str, tuple[int, ...]] = SUBJECT_SPLITS) -> int | None:
    """The split code of ``subject`` under ``splits``, or None where no split names it.

    >>> split_of(3), split_of(30), split_of(36), split_of(40)
    (1, 2, 3, None)
    """
    for name, subjects in splits.items():
        if subject in subjects:
            return SPLIT_CODES[name]
    return None


def uci_windows(
    recording: Recording,
    spec: DownstreamPreprocess,
    *,
    splits: Mapping[str, tuple[int, ...]] = SUBJECT_SPLITS,
) -> WindowBatch:
    """``recording``'s windows (from `load_uci_gestures`), preprocessed per file as the thesis
    does; labels are class - 1, ``repetition`` the subject's split code. A subject outside
    ``splits`` is an `ArgumentError`."""
    code = split_of(recording.subject, splits)
    if code is None:
        raise ArgumentError(
            f"UCI subject {recording.subject} is in none of the splits {dict(splits)}"
        )
    xs, labels = [], []
    longest = 0  # the longest run of one class: what a window must fit in
    emg = recording.signals["emg"]
    step = check_int(spec.step, "DownstreamPreprocess.step of UCI windows", minimum=1)
    for k in np.unique(recording.repetition):
        rows = np.flatnonzero((recording.repetition == k) & (recording.stimulus > 0))
        if not len(rows):
            continue
        x = thesis_preprocess(emg[rows], spec, f"{recording.source}: file {int(k)}")
        for label, start, stop in label_runs(recording.stimulus[rows]):
            longest = max(longest, stop - start)
            for s in window_starts(stop - start, spec.window, step):
                xs.append(x[start + s : start + s + spec.window].T)
                labels.append(label - 1)
    return WindowBatch(
        x=stack_windows(xs, (CHANNELS, spec.window)),
        labels=np.asarray(labels, np.int64),
        repetition=np.full(len(labels), code, np.int64),
        subject=recording.subject,
        source=recording.source,
        info={"longest": {code: longest}},
    )


def write_uci_gestures(recording: Recording, root: str | Path) -> list[Path]:
    """Write ``recording`` as ``root/<NN>/<k>_raw_data_....txt``, one file per
    ``repetition`` value (the file number), with the real header and columns: ``time`` from
    ``extras["time_ms"]`` (else 1 ms steps, `ROWS_PER_SECOND`, as the published files log), the
    channels with 5 decimals, the ``class``. Returns the paths written."""
    folder = Path(root) / f"{recording.subject:02d}"
    folder.mkdir(parents=True, exist_ok=True)
    step = 1000.0 / ROWS_PER_SECOND  # ms
    time = recording.extras.get("time_ms", np.arange(recording.n_samples) * step + 1)
    paths = []
    for i, k in enumerate(np.unique(recording.repetition)):
        rows = recording.repetition == k
        name = _FILE_NAMES[i] if i < len(_FILE_NAMES) else f"{i + 1}_raw_data.txt"
        table = np.column_stack(
            [time[rows], recording.signals["emg"][rows], recording.stimulus[rows]]
        )
        path = folder / name
        fmt = ["%d", *["%.5f"] * CHANNELS, "%d"]
        np.savetxt(path, table, fmt=fmt, delimiter="\t", header="\t".join(COLUMNS), comments="")
        paths.append(path)
    return paths


MONTAGE = Montage(
    (ring("Myo armband", CHANNELS),),
    source="UCI EMG Data for Gestures (archive.ics.uci.edu/dataset/481; Lobov et al. 2018, "
    "Sensors 18:1122, doi:10.3390/s18041122): a Myo bracelet whose eight sensors are equally "
    "spaced around the forearm",
    convention="channel 1 on the dorsal midline and the channels numbered toward the radial "
    "side: the dataset documents no anchor and no direction",
)
"""Where UCI's channels lie."""


READER = downstream_reader(
    MONTAGE,
    DownstreamTask(
        task="classification",
        sample_rate=SAMPLE_RATE,
        n_channels=CHANNELS,
        windows=lambda recording, spec, options: uci_windows(
            recording, spec, splits=options.get("splits", SUBJECT_SPLITS)
        ),
        split_rule="by subject: train 1-24, val 25-30, test 31-36 (option `splits`)",
        classes=CLASSES[1:],
        options=("splits",),
        # about 5 windows in a 3 s gesture's run of some 3000 rows (the module docstring)
        window=1000,
        step=500,
        unit="run of one class",
    ),
    subjects=find_subjects,
    files=subject_files,
    read=load_uci_gestures,
)
"""UCI EMG Data for Gestures for the registry (`emg_lens.data.registry`) and its TinyMyo
downstream task."""
