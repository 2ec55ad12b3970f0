"""HD-sEMG 65-gesture dataset: MATLAB v7.3 (HDF5) files read lazily with h5py -> `Recording`.

Layout and channel order for users: docs/guide/recordings.md, "HD-sEMG, 65 gestures". One
v7.3 (HDF5) file per subject, over 6 GB, which `scipy.io.loadmat` cannot read. h5py sees MATLAB's
arrays transposed: the grids ``emg_extensors`` / ``emg_flexors`` ``[T, 8, 8]`` as ``(8, 8, T)``,
the labels as ``(1, T)``, ``force`` ``(T, F)`` as ``(F, T)`` (volts, 2.5 V at rest). The 128
channels are the extensor grid's, then the flexor grid's, channel ``c = row + 8 * col`` being
MATLAB's ``emg(t, row + 1, col + 1)``. The adjusted labels are used where present.

`HDsEMGFile` reads slices without loading the rest, `load_hdsemg` a whole file, and
`write_hdsemg` writes one laid out like the real ones. A v5 file with the same variables
(small exports) is read too, from memory.

>>> import tempfile
>>> from pathlib import Path
>>> import numpy as np
>>> from emg_lens.data import Recording
>>> n = 600
>>> rec = Recording(
...     subject=4,
...     signals={
...         "emg": np.random.default_rng(0).standard_normal((n, 128)).astype(np.float32),
...         "force": np.full((n, 5), 2.5, np.float32),
...     },
...     sample_rate=2048.0,
...     stimulus=np.repeat([0, 7, 0], n // 3),
...     repetition=np.repeat([0, 1, 0], n // 3),
... )
>>> path = write_hdsemg(rec, Path(tempfile.mkdtemp()) / "s4.mat")
>>> with HDsEMGFile(path) as f:
...     chunk = f.read(200, 300)
...     f.n_samples, f.n_force_channels, chunk["emg"].shape, f.segments()
(600, 5, (100, 128), [(7, 1, 200, 400)])
>>> bool(np.array_equal(chunk["emg"], rec.signals["emg"][200:300]))
True
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import scipy.io

from emg_lens.data.files import OpenFile, find_files
from emg_lens.data.formats._matlab import common_length, require, write_mat73
from emg_lens.data.preprocess import find_segments
from emg_lens.data.reader import DatasetReader, Source, found_subjects
from emg_lens.data.recording import Recording
from emg_lens.errors import ArgumentError, DataFormatError, checked
from emg_lens.geometry import Montage
from emg_lens.geometry import grid as grid_part

SAMPLE_RATE = 2048.0
"""Hz, shared by EMG, force and labels."""

GRID = (8, 8)
"""Electrodes per grid (MATLAB dims 2 and 3 of ``emg_extensors`` / ``emg_flexors``)."""

_GRIDS = ("emg_extensors", "emg_flexors")
_CLASS = ("adjusted_class", "class")
_REPETITION = ("adjusted_repetition", "repetition")
_LABELS = frozenset(_CLASS + _REPETITION)


class HDsEMGFile(OpenFile):
    """One subject file of the HD-sEMG 65-gesture dataset, opened for lazy reading.

    Opening reads only the shapes; `labels` reads the label vectors; `read` reads a time slice
    of the EMG grids (and force). Use as a context manager, or call `close`.

    Attributes:
        path: the file.
        n_samples: samples in the recording (the shortest of EMG and labels).
        n_force_channels: force channels the file holds (0 if it has none).
        sample_rate: 2048.0 Hz.

    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> path = Path(tempfile.mkdtemp()) / "s1.mat"
    >>> t = 100
    >>> _ = write_hdsemg(
    ...     {
    ...         "emg_extensors": np.zeros((t, 8, 8)),
    ...         "emg_flexors": np.ones((t, 8, 8)),
    ...         "class": np.repeat([0, 3], t // 2),
    ...         "repetition": np.repeat([0, 2], t // 2),
    ...         "force": np.full((t, 6), 2.5),
    ...     },
    ...     path,
    ... )
    >>> with HDsEMGFile(path) as f:
    ...     stimulus, repetition = f.labels()
    ...     x = f.read(0, 10)
    ...     f.segments(), float(x["emg"][0, 63]), float(x["emg"][0, 64]), x["force"].shape
    ([(3, 2, 50, 100)], 0.0, 1.0, (10, 6))
    """

    sample_rate: float = SAMPLE_RATE

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._vars: Mapping[str, Any] = {}
        require(self.path.is_file(), self.path, "no such file (an HD-sEMG subject file s<N>.mat)")
        try:
            is_hdf5 = h5py.is_hdf5(str(self.path))
        except OSError:
            is_hdf5 = False
        if is_hdf5:
            self._vars = self._h5 = self._open_hdf5("a MATLAB v7.3 (HDF5) file")
        else:
            self._vars = self._read_v5()
        try:
            self._check_layout()
        except BaseException:
            self.close()
            raise

    def _read_v5(self) -> dict[str, np.ndarray]:
        try:
            contents = scipy.io.loadmat(str(self.path))
        except Exception as exc:
            raise DataFormatError(
                f"{self.path}: neither a MATLAB v7.3 (HDF5) nor a v5 file (truncated?): {exc!r}"
            ) from exc
        # Present v5 arrays the way h5py presents v7.3 ones: every axis reversed.
        return {k: np.asarray(v).T for k, v in contents.items() if not k.startswith("__")}

    def _names(self) -> list[str]:
        return sorted(k for k in self._vars if not k.startswith("#"))

    def _get(self, names: tuple[str, ...]) -> tuple[str, Any]:
        for name in names:
            if name in self._vars:
                return name, self._vars[name]
        wanted = " or ".join(map(repr, names))
        raise DataFormatError(f"{self.path}: missing required variable {wanted}: {self._names()}")

    def _check_layout(self) -> None:
        lengths = {}
        for grid in _GRIDS:
            _, ds = self._get((grid,))
            shape = tuple(ds.shape)
            grid_shape = len(shape) == 3 and shape[:2] == GRID
            self._require_shape(grid, grid_shape, "8 x 8 electrodes: (8, 8, T), MATLAB [T, 8, 8]")
            lengths[grid] = shape[2]
        self._class_name, self._class = self._get(_CLASS)
        self._rep_name, self._rep = self._get(_REPETITION)
        for name in {self._class_name, self._rep_name} | (_LABELS & set(self._vars)):
            shape = tuple(self._vars[name].shape)
            vector = len(shape) < 2 or (len(shape) == 2 and min(shape) == 1)
            self._require_shape(name, vector, "a vector (HDF5 shape (1, T))")
            lengths[name] = int(np.prod(shape))
        self._force = self._vars.get("force")
        if self._force is not None:
            shape = tuple(self._force.shape)
            self._require_shape("force", len(shape) == 2, "HDF5 shape (F, T), MATLAB [T, F]")
            lengths["force"] = shape[1]
        self.n_samples = int(common_length(self.path, lengths))
        self.n_force_channels = 0 if self._force is None else int(self._force.shape[0])

    def _require_shape(self, name: str, ok: bool, wanted: str) -> None:
        if not ok:
            shape = tuple(self._vars[name].shape)
            raise DataFormatError(f"{self.path}: {name!r} must be {wanted}, got HDF5 shape {shape}")

    @property
    def label_names(self) -> tuple[str, str]:
        """The file variables used as (stimulus, repetition): the adjusted ones if present."""
        return self._class_name, self._rep_name

    def _vector(self, name: str) -> np.ndarray:
        x = self._load(name, lambda ds: np.asarray(ds[()])).reshape(-1)[: self.n_samples]
        numeric = np.issubdtype(x.dtype, np.number)
        whole = numeric and np.isfinite(x).all() and np.array_equal(x, np.round(x))
        require(whole, self.path, f"label variable {name!r} holds non-integer values ({x.dtype})")
        return x.astype(np.int64)

    def labels(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-sample (gesture class, repetition), int64 of length `n_samples` (0 = rest)."""
        return self._vector(self._class_name), self._vector(self._rep_name)

    def raw_labels(self) -> dict[str, np.ndarray]:
        """Every label vector the file holds, by variable name."""
        return {name: self._vector(name) for name in sorted(_LABELS & set(self._vars))}

    def read(self, start: int = 0, stop: int | None = None, *, force: bool = True) -> dict:
        """Samples ``start:stop`` as ``{"emg": [time, 128], "force": [time, F]}`` float32, only
        that slice read from disk (``"force"`` where the file has it and ``force`` is true). A
        slice holding NaN/Inf is a `DataFormatError`."""
        stop = self._slice_end(start, stop)
        n = stop - start
        grids = []
        for grid in _GRIDS:
            block = self._load(grid, lambda ds: np.asarray(ds[:, :, start:stop], np.float32))
            # HDF5 (col, row, t) == MATLAB emg(t, row, col); channel = row + 8 * col.
            grids.append(block.reshape(GRID[0] * GRID[1], n).T)
        out = {"emg": np.ascontiguousarray(np.concatenate(grids, axis=1))}
        if force and self._force is not None:
            block = self._load("force", lambda ds: np.asarray(ds[:, start:stop], np.float32))
            out["force"] = np.ascontiguousarray(block.T)
        for name, x in out.items():
            self._check_finite(f"signal {name!r}", x, start, stop)
        return out

    def segments(self) -> list[tuple[int, int, int, int]]:
        """(gesture, repetition, start, stop) of each labelled run, in time order
        (`emg_lens.data.preprocess.find_segments`)."""
        return find_segments(*self.labels())

    def _load(self, name: str, how: Any) -> np.ndarray:
        return self._read(f"variable {name!r}", lambda: how(self._vars[name]))

    def __repr__(self) -> str:
        return (
            f"HDsEMGFile({str(self.path)!r}, n_samples={self.n_samples}, "
            f"n_force_channels={self.n_force_channels})"
        )


def _subject_from_name(path: Path) -> int | None:
    match = re.fullmatch(r"s0*(\d+)", path.stem, re.IGNORECASE)
    return int(match.group(1)) if match and int(match.group(1)) >= 1 else None


def _subject_files(root: Path) -> dict[int, Path]:
    """N -> the ``s<N>.mat`` file in ``root`` (any case, leading zeros allowed); two files of
    one subject (``s1.mat``, ``S01.mat``) are a `DataFormatError` naming both."""

    def key(path: Path) -> int | None:
        return _subject_from_name(path) if path.suffix.lower() == ".mat" else None

    what = "the HD-sEMG dataset, holding s<N>.mat"
    return find_files(root, key, "HD-sEMG subject {}".format, looking_for=what, recursive=False)


def subject_file(root: str | Path, subject: int) -> Path:
    """The file of ``subject`` in the dataset folder ``root``: ``s<subject>.mat``.

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> _ = (root / "S03.mat").write_bytes(b"")
    >>> subject_file(root, 3).name
    'S03.mat'
    """
    root = Path(root)
    found = _subject_files(root).get(subject)
    if found is None:
        there = sorted(p.name for p in root.glob("*.mat"))
        raise DataFormatError(
            f"{root}: no file for subject {subject} (searched for s{subject}.mat): {there}"
        )
    return found


def find_subjects(root: str | Path) -> list[int]:
    """The subjects whose ``s<N>.mat`` file is in the dataset folder ``root``, sorted.

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> for name in ("s10.mat", "s2.mat", "notes.mat", "s3.txt"):
    ...     _ = (root / name).write_bytes(b"")
    >>> find_subjects(root)
    [2, 10]
    """
    return sorted(_subject_files(Path(root)))


@checked
def load_hdsemg(
    path_or_root: str | Path, subject: int | None = None, *, force: bool = True
) -> Recording:
    """Load a whole HD-sEMG file as a `Recording` (2048 Hz): ``"emg"`` 128 ch, ``"force"`` F ch.

    Args:
        path_or_root: a subject file, or the folder holding ``s<subject>.mat``.
        subject: subject number; read from the file name ``s<N>.mat`` when not given.
        force: include the force channels as modality ``"force"``.

    Loads everything into memory (a real subject file is over 6 GB: use `HDsEMGFile` to read
    slices). The labels are the adjusted ones where the file has them; the other label vectors
    land in ``extras`` under their file names.

    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> root = Path(tempfile.mkdtemp())
    >>> t = 50
    >>> _ = write_hdsemg(
    ...     {
    ...         "emg_extensors": np.zeros((t, 8, 8)),
    ...         "emg_flexors": np.zeros((t, 8, 8)),
    ...         "class": np.full(t, 2),
    ...         "repetition": np.full(t, 1),
    ...         "adjusted_class": np.full(t, 3),
    ...         "adjusted_repetition": np.full(t, 1),
    ...         "force": np.zeros((t, 5)),
    ...     },
    ...     root / "s2.mat",
    ... )
    >>> rec = load_hdsemg(root, 2)
    >>> rec.modalities, rec.gestures, sorted(rec.extras)
    ({'emg': 128, 'force': 5}, [3], ['class', 'repetition'])
    """
    path = Path(path_or_root)
    if path.is_dir():
        if subject is None:
            raise ArgumentError(f"{path} is a folder: pass subject= to pick s<subject>.mat")
        path = subject_file(path, subject)
    with HDsEMGFile(path) as f:  # a missing file is named first
        subject = _subject_from_name(path) if subject is None else subject
        if subject is None:
            raise ArgumentError(f"{path}: not named s<N>.mat; pass subject=")
        if force and f.n_force_channels == 0:
            raise DataFormatError(f"{path}: missing variable 'force' (force=True): {f._names()}")
        signals = f.read(0, f.n_samples, force=force)
        stimulus, repetition = f.labels()
        extras = {k: v for k, v in f.raw_labels().items() if k not in f.label_names}
    return Recording(
        subject=int(subject),
        signals=signals,
        sample_rate=SAMPLE_RATE,
        stimulus=stimulus,
        repetition=repetition,
        source=str(path),
        extras=extras,
    )


def _recording_arrays(recording: Recording, adjusted: bool) -> dict[str, np.ndarray]:
    """A `Recording` -> MATLAB-oriented arrays named as in the real files."""
    emg = np.asarray(recording.signals.get("emg"))
    if emg.ndim != 2 or emg.shape[1] != 128:
        raise ArgumentError(
            f"{recording.source}: an HD-sEMG file needs 'emg' of 128 channels (extensors 64 then "
            f"flexors 64), got {recording.modalities}"
        )
    t = len(emg)
    out: dict[str, np.ndarray] = {}
    for i, grid in enumerate(_GRIDS):
        # channel c = row + 8 * col  ->  MATLAB emg(t, row, col)
        block = emg[:, 64 * i : 64 * (i + 1)].astype(np.float64)
        out[grid] = block.reshape(t, GRID[1], GRID[0]).transpose(0, 2, 1)
    force = recording.signals.get("force", recording.extras.get("force"))
    if force is not None:
        out["force"] = np.asarray(force, dtype=np.float64)
    stimulus, repetition = recording.stimulus, recording.repetition
    if adjusted:
        out["adjusted_class"] = stimulus
        out["adjusted_repetition"] = repetition
        out["class"] = recording.extras.get("class", stimulus)
        out["repetition"] = recording.extras.get("repetition", repetition)
    else:
        out["class"] = stimulus
        out["repetition"] = repetition
    return out


def write_hdsemg(
    data: Recording | Mapping[str, np.ndarray],
    path: str | Path,
    *,
    adjusted: bool = True,
) -> Path:
    """Write an HD-sEMG file as MATLAB v7.3 does: HDF5, every array stored transposed.

    ``data`` is a `Recording` (``"emg"`` of 128 channels in this module's order; ``"force"``
    as a signal or extra) or a mapping of variable name -> array in MATLAB orientation,
    written as given, so tests can write malformed files. From a Recording, with ``adjusted``
    the labels go to ``adjusted_class`` / ``adjusted_repetition`` and ``class`` /
    ``repetition`` take its ``extras`` of those names where present (else the same labels).

    >>> import tempfile
    >>> from pathlib import Path
    >>> import h5py
    >>> import numpy as np
    >>> path = Path(tempfile.mkdtemp()) / "s1.mat"
    >>> _ = write_hdsemg({"emg_extensors": np.zeros((30, 8, 8)), "class": np.zeros(30)}, path)
    >>> with h5py.File(path, "r") as f:
    ...     f["emg_extensors"].shape, f["class"].shape
    ((8, 8, 30), (1, 30))
    >>> path.read_bytes()[:19]
    b'MATLAB 7.3 MAT-file'
    """
    arrays = _recording_arrays(data, adjusted) if isinstance(data, Recording) else dict(data)
    for name in _LABELS & set(arrays):  # MATLAB [T, 1] double columns
        x = np.asarray(arrays[name], dtype=np.float64)
        arrays[name] = x.reshape(-1, 1) if x.ndim == 1 else x
    return write_mat73(path, arrays)


def _subjects(source: Source) -> list[int]:
    root = Path(source["root"])
    return found_subjects(find_subjects(root), root, "s<N>.mat files")


def _channel_names() -> tuple[str, ...]:
    """Extensor grid then flexor grid; channel ``row + 8 * col`` of a grid is MATLAB's
    ``emg(t, row + 1, col + 1)``."""
    rows, cols = GRID
    return tuple(
        f"{grid}_r{c % rows + 1}c{c // rows + 1}"
        for grid in ("extensor", "flexor")
        for c in range(rows * cols)
    )


PITCH = 10.0
"""mm between neighbouring contacts of the ELSCH064NM3 grids (OT Bioelettronica: "64 Adhesive
Array 10 mm i.e.d.")."""


def hdsemg_montage() -> Montage:
    """The two 8 x 8 grids, extensors then flexors, channel ``row + 8 * col`` of each at its
    row and column as the file's ``emg(t, row + 1, col + 1)`` holds it.

    >>> montage = hdsemg_montage()
    >>> montage.n_channels, montage.locate(9), montage.locate(64)
    (128, (0, (10.0, 10.0)), (1, (0.0, 0.0)))
    """
    rows, cols = GRID
    grids = [
        grid_part(f"{name} grid", rows, cols, PITCH).shifted(g * rows * cols)
        for g, name in enumerate(("extensor", "flexor"))
    ]
    return Montage(
        tuple(grids),
        source="Malešević et al. 2021, 'A database of high-density surface electromyogram "
        "signals comprising 65 isometric hand gestures', Sci. Data 8:63 "
        "(doi:10.1038/s41597-021-00843-9), Fig. 1: two 64-contact grids (OT Bioelettronica "
        "ELSCH064NM3, 10 mm inter-electrode distance) on the dorsal (extensor) and volar "
        "(flexor) aspects of the upper forearm; each channel the difference of two "
        "consecutive contacts along the channel index",
        convention="the file's (row, column) axes drawn as they are, row 0 at the top: how "
        "they lie on the forearm is not given in the text read; channels 8, 16, ..., 64 join "
        "the end of one contact line to the start of the next (not neighbours)",
    )


READER = DatasetReader(
    montage=lambda source: {"emg": 2 * GRID[0] * GRID[1], "force": None},
    subjects=_subjects,
    files=lambda source, subject: [subject_file(source["root"], subject)],
    read=lambda source, subject: load_hdsemg(source["root"], subject),
    # 2048 Hz, so the 500 Hz band edge is well below Nyquist; force is low-passed like ACC.
    preprocess={
        "emg_band": (10.0, 500.0),
        "lowpass": 90.0,
        "train_repetitions": (1, 3, 4),
        "test_repetitions": (2, 5),
    },
    channel_names={"emg": _channel_names()},
    geometry=lambda source: {"emg": hdsemg_montage()},
)
"""The HD-sEMG 65-gesture database for the registry (`emg_lens.data.registry`)."""
