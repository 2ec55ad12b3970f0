"""TinyMyo's NinaPro pretraining corpora: DB6 and DB7 (MATLAB v5), one Recording per file.

Layouts for users: docs/guide/tinymyo.md, "TinyMyo's pretraining corpora". DB6: one file per
session, ``S<N>_D<day>_T<time>.mat``, ``emg`` (N, 14) and ``acc`` (N, 42) at 2 kHz; files with
16 ``emg`` columns (the base station's slots) lose the unused slots 9 and 10 (1-based), as
BioFoundation's DB6 preparation does. DB7: one file per subject, ``S<N>_E1_A1.mat``, with
``emg`` (N, 12) and ``acc``, ``gyro``, ``mag`` (N, 36). Both are read by
`emg_lens.data.formats._matlab.read_exercise_file`.

>>> import tempfile
>>> from pathlib import Path
>>> root = Path(tempfile.mkdtemp())
>>> _ = (root / "S1_D1_T2.mat").write_bytes(b"")
>>> _ = (root / "S4_E1_A1.mat").write_bytes(b"")
>>> list(ninapro_db6_files(root)), list(ninapro_db7_files(root))
([(1, 1, 2)], [4])
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from emg_lens.data.formats._matlab import files_by_subject, mat_files, read_exercise_file
from emg_lens.data.reader import DatasetReader, Source
from emg_lens.data.recording import Recording
from emg_lens.errors import ArgumentError, DataFormatError, warn_caller

DB6_CHANNELS: dict[str, tuple[int, ...]] = {"emg": (14, 16), "acc": (42, 48)}
"""DB6 modality -> accepted channel counts (16 / 48: the base's slots, unused ones included)."""

DB6_UNUSED_SLOTS = (8, 9)
"""0-based ``emg`` columns of a 16-column DB6 file that no electrode fills; dropped."""

DB7_CHANNELS: dict[str, int] = {"emg": 12, "acc": 36, "gyro": 36, "mag": 36}
"""DB7 modality -> channel count; the loadable modalities."""

DB7_LABELS = 40
"""DB7's highest gesture label (exercises 1 and 2 concatenated: 17 + 23 movements)."""

NINAPRO_RATE = 2000.0
"""Hz: DB6 and DB7 record EMG (and resample every other stream) at 2 kHz."""

_DB6_NAME = re.compile(r"s0*(\d+)_d0*(\d+)_t0*(\d+)", re.IGNORECASE)
_DB7_NAME = re.compile(r"s0*(\d+)_e1_a1", re.IGNORECASE)


def _read_named_file(
    path: str | Path,
    name: re.Pattern,
    example: str,
    subject: int | None,
    modalities: Iterable[str],
    channels: Mapping[str, Any],
) -> Recording:
    """A DB6/DB7 file through the shared NinaPro reader, the subject taken from its name."""
    path = Path(path)
    match = name.fullmatch(path.stem)
    subject = subject if subject is not None or match is None else int(match.group(1))
    if subject is None:
        raise ArgumentError(
            f"{path}: cannot tell the subject from the file name (e.g. {example}); pass subject="
        )
    return read_exercise_file(
        path,
        subject=subject,
        sample_rate=NINAPRO_RATE,
        modalities=modalities,
        channels=channels,
    )


def ninapro_db6_files(root: str | Path) -> dict[tuple[int, ...], Path]:
    """``{(subject, day, time): path}`` of every ``S<s>_D<d>_T<t>.mat`` under ``root``.

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> (root / "DB6_s2_a").mkdir()
    >>> _ = (root / "DB6_s2_a" / "S2_D3_T1.mat").write_bytes(b"")
    >>> list(ninapro_db6_files(root))
    [(2, 3, 1)]
    """
    what = "NinaPro DB6 subject {}, day {}, time {}"
    return mat_files(root, _DB6_NAME, what, "files like S1_D1_T1.mat")


def ninapro_db7_files(root: str | Path) -> dict[int, Path]:
    """``{subject: path}`` of every ``S<N>_E1_A1.mat`` under ``root``.

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> (root / "Subject_4").mkdir()
    >>> _ = (root / "Subject_4" / "S4_E1_A1.mat").write_bytes(b"")
    >>> list(ninapro_db7_files(root))
    [4]
    """
    found = mat_files(root, _DB7_NAME, "NinaPro DB7 subject {}", "files like S1_E1_A1.mat")
    return {key[0]: path for key, path in found.items()}


def _drop_unused_db6_slots(rec: Recording) -> None:
    """A 16-column DB6 ``emg`` -> its 14 electrodes (slots `DB6_UNUSED_SLOTS` dropped)."""
    emg = rec.signals.get("emg")
    if emg is None or emg.shape[1] != 16:
        return
    unused = emg[:, DB6_UNUSED_SLOTS]
    if np.abs(unused).max(initial=0.0) > 0:
        warn_caller(
            f"{rec.source}: DB6 'emg' has 16 columns and the unused slots "
            f"{[s + 1 for s in DB6_UNUSED_SLOTS]} (1-based) are not empty; dropped them anyway "
            "(14 electrodes)"
        )
    rec.signals["emg"] = np.delete(emg, DB6_UNUSED_SLOTS, axis=1)


def load_ninapro_db6(
    path: str | Path, *, subject: int | None = None, modalities: Iterable[str] = ("emg",)
) -> Recording:
    """One NinaPro DB6 session file as a `Recording` (2 kHz, ``emg`` 14 channels).

    Args:
        path: a ``S<s>_D<d>_T<t>.mat`` file (see `ninapro_db6_files`).
        subject: subject number; read from the file name when not given.
        modalities: any of ``"emg"``, ``"acc"``.

    Raises:
        DataFormatError: as `emg_lens.data.formats._matlab.read_exercise_file` (the message
            names the file); ``emg`` must have 14 columns, or 16 with the two unused slots.

    >>> import tempfile
    >>> import scipy.io
    >>> path = Path(tempfile.mkdtemp()) / "S3_D2_T1.mat"
    >>> labels = np.repeat([0, 1, 0], 40)[:, None]
    >>> emg = np.ones((120, 16))
    >>> emg[:, 8:10] = 0  # the base station's two unused slots
    >>> scipy.io.savemat(path, {"emg": emg, "restimulus": labels, "rerepetition": labels,
    ...                         "daytesting": 2, "time": 1})
    >>> rec = load_ninapro_db6(path)
    >>> rec.subject, rec.modalities, rec.gestures
    (3, {'emg': 14}, [1])
    """
    rec = _read_named_file(path, _DB6_NAME, "S1_D1_T1.mat", subject, modalities, DB6_CHANNELS)
    _drop_unused_db6_slots(rec)
    return rec


def load_ninapro_db7(
    path: str | Path, *, subject: int | None = None, modalities: Iterable[str] = ("emg",)
) -> Recording:
    """One NinaPro DB7 subject file as a `Recording` (2 kHz, ``emg`` 12 channels, labels 1-40).

    Args:
        path: a ``S<N>_E1_A1.mat`` file (see `ninapro_db7_files`).
        subject: subject number; read from the file name when not given.
        modalities: any of ``"emg"`` (12), ``"acc"``, ``"gyro"``, ``"mag"`` (36 each).

    Raises:
        DataFormatError: as `emg_lens.data.formats._matlab.read_exercise_file` (the message
            names the file), or gesture labels above `DB7_LABELS`.

    >>> import tempfile
    >>> import scipy.io
    >>> path = Path(tempfile.mkdtemp()) / "S5_E1_A1.mat"
    >>> labels = np.repeat([0, 17, 0, 40], 30)[:, None]
    >>> scipy.io.savemat(path, {"emg": np.ones((120, 12)), "gyro": np.zeros((120, 36)),
    ...                         "restimulus": labels, "rerepetition": (labels > 0) * 1})
    >>> rec = load_ninapro_db7(path, modalities=("emg", "gyro"))
    >>> rec.subject, rec.modalities, rec.gestures
    (5, {'emg': 12, 'gyro': 36}, [17, 40])
    """
    rec = _read_named_file(path, _DB7_NAME, "S1_E1_A1.mat", subject, modalities, DB7_CHANNELS)
    if rec.stimulus.max(initial=0) > DB7_LABELS:
        raise DataFormatError(
            f"{rec.source}: DB7 gesture labels run 1-{DB7_LABELS} (exercises 1 and 2), but "
            f"the file holds {sorted(c for c in set(rec.stimulus.tolist()) if c > DB7_LABELS)}"
        )
    return rec


def _reader(files: Any, load: Any, emg: int) -> DatasetReader:
    """A store source reading one recording per file of `files`(root) with ``load``."""

    def by_subject(source: Source) -> dict[int, list[Path]]:
        return files_by_subject(files(source["root"]))  # in (subject, day, time) order

    return DatasetReader(
        montage=lambda source: {"emg": emg},
        subjects=lambda source: sorted(by_subject(source)),
        files=lambda source, subject: by_subject(source).get(subject, []),
        store=lambda source, subjects: (
            lambda: (load(path) for s in subjects for path in by_subject(source)[s])
        ),
    )


DB6_READER = _reader(ninapro_db6_files, load_ninapro_db6, DB6_CHANNELS["emg"][0])
"""NinaPro DB6 for the registry: a window-store source, one recording per session file (12
repetitions; its store's split: `emg_lens.data.registry.STORE_REPETITIONS`)."""

DB7_READER = _reader(ninapro_db7_files, load_ninapro_db7, DB7_CHANNELS["emg"])
"""NinaPro DB7 for the registry (`emg_lens.data.registry`): a window-store source (6
repetitions; its store's split: `emg_lens.data.registry.STORE_REPETITIONS`)."""
