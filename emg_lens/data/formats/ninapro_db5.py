"""NinaPro DB5: two Myo armbands (16 sEMG channels at 200 Hz), one file per exercise
``S<N>_E{1,2,3}_A1.mat``, read as a `Recording` for fine-tuning (`load_ninapro_db5`).

Its ``restimulus`` restarts at 1 in every exercise (E1 1-12, E2 1-17, E3 1-23) and is shifted
here onto the global labels 1-52 (offsets 0, 12, 29), so the concatenated recording holds one
label per movement."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from emg_lens.data.formats._matlab import (
    files_by_subject,
    load_exercises,
    mat_files,
    read_exercise_file,
    stimulus_columns,
)
from emg_lens.data.reader import DatasetReader, Source
from emg_lens.data.recording import Recording
from emg_lens.errors import ArgumentError, DataFormatError
from emg_lens.geometry import Montage, ring

DB5_SAMPLE_RATE = 200.0
"""Hz: DB5's two Myo armbands stream EMG at 200 Hz."""

DB5_CHANNELS: dict[str, int | None] = {"emg": 16, "acc": None, "glove": None}
"""DB5 modality -> channel count (None: taken from the file); the loadable modalities."""

DB5_LABEL_OFFSETS: dict[int, tuple[int, int]] = {1: (12, 0), 2: (17, 12), 3: (23, 29)}
"""DB5 exercise -> (movements in it, offset onto the global labels 1-52)."""

_DB5_FILE = re.compile(r"s0*(\d+)_e([123])_a1", re.IGNORECASE)


def ninapro_db5_files(root: str | Path) -> dict[tuple[int, ...], Path]:
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
    what = "NinaPro DB5 subject {}, exercise E{}"
    return mat_files(root, _DB5_FILE, what, "NinaPro DB5 S<N>_E1_A1.mat")


def _db5_exercise(exercise: str | int) -> int:
    """``1``/``2``/``3`` or ``"E1"``... -> 1, 2 or 3 (DB5's letters differ from DB2's, so
    letters are refused rather than guessed)."""
    key = str(exercise).strip().upper().removeprefix("E")
    if key.isdigit() and int(key) in DB5_LABEL_OFFSETS:  # True reads 'TRUE', 2.0 '2.0': no
        return int(key)
    raise ArgumentError(f"DB5 exercise must be 1, 2 or 3 (or 'E1', 'E2', 'E3'), got {exercise!r}")


def _globalise_db5_labels(recording: Recording, k: int) -> None:
    """Shift exercise ``k``'s restarting codes (1..count) onto the global labels, in place.

    Codes already inside the exercise's global range (offset+1..offset+count) are kept, so a
    file relabelled by hand loads too; anything else is a `DataFormatError`. Where both
    readings fit (E2 codes 13-17 only), the documented restart is assumed."""
    count, offset = DB5_LABEL_OFFSETS[k]
    codes = sorted(int(c) for c in np.unique(recording.stimulus) if c != 0)
    if all(c <= count for c in codes):
        for column in stimulus_columns(recording):
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
    exercises: int | Iterable[str | int] = (1, 2, 3),
    modalities: Iterable[str] = ("emg",),
) -> Recording:
    """Load one NinaPro DB5 subject as a `Recording` at 200 Hz, labels global (1-52).

    Each exercise's codes are shifted onto the global labels (the module docstring), the raw
    ``stimulus`` column (in ``extras``) the same way.

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
    files = functools.cache(lambda: ninapro_db5_files(root))  # looked for once, when first read

    def load(subject: int, k: int, modalities: tuple[str, ...]) -> Recording:
        path = files().get((subject, k))
        if path is None:
            found = [p.name for p in files().values()][:10]
            raise DataFormatError(f"{root}: no file S{subject}_E{k}_A1.mat; DB5 files: {found}")
        rec = read_exercise_file(
            path,
            subject=subject,
            sample_rate=DB5_SAMPLE_RATE,
            modalities=modalities,
            channels=DB5_CHANNELS,
        )
        _globalise_db5_labels(rec, k)
        return rec

    return load_exercises(subject, exercises, _db5_exercise, modalities, DB5_CHANNELS, load)


def _subject_files(source: Source) -> dict[int, list[Path]]:
    return files_by_subject(ninapro_db5_files(source["root"]))  # in exercise order


MONTAGE = Montage(
    (
        ring("Myo 1 (columns 1-8)", 8),
        ring("Myo 2 (columns 9-16)", 8, first=22.5, radius=0.7).shifted(8),
    ),
    source="NinaPro DB5 (Pizzolato et al. 2017, PLoS ONE 12:e0186132, "
    "doi:10.1371/journal.pone.0186132; ninapro.hevs.ch/instructions/DB5.html): two Thalmic "
    "Myo armbands; columns 1-8 equally spaced around the forearm at the height of the "
    "radio-humeral joint, columns 9-16 the second Myo, tilted by 22.5 degrees clockwise",
    convention="the first Myo drawn outside (proximal), electrode 1 on the dorsal midline and "
    "the electrodes numbered, and the second band tilted, toward the radial side",
)
"""Where DB5's channels lie."""


READER = DatasetReader(
    montage=lambda source: {"emg": DB5_CHANNELS["emg"]},  # what the store reads
    subjects=lambda source: sorted(_subject_files(source)),
    files=lambda source, subject: _subject_files(source).get(subject, []),
    store=lambda source, subjects: lambda: (load_ninapro_db5(source["root"], s) for s in subjects),
    geometry=lambda source: {"emg": MONTAGE},
)
"""NinaPro DB5 for the registry (`emg_lens.data.registry`): a window-store source."""
