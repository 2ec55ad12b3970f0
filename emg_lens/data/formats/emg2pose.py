"""emg2pose, TinyMyo's largest pretraining corpus: sessions in HDF5 beside a ``metadata.csv``.

Layout for users: docs/guide/tinymyo.md, "TinyMyo's pretraining corpora". Each session file's
group ``emg2pose`` holds a dataset ``timeseries`` of compound dtype (``time <f8``,
``joint_angles <f8 (20,)``, ``emg <f4 (16,)``) and attributes (``sample_rate``, ``user``, ...).
`Emg2PoseSession` reads slices lazily; `Emg2PoseDataset` selects sessions by split and user from
``metadata.csv``. No gesture labels: ``stimulus`` and ``repetition`` are 0, the joint angles
in ``extras["joint_angles"]``; users (hex ids) become subjects 1, 2, ... in sorted order.

>>> import tempfile
>>> from pathlib import Path
>>> import numpy as np
>>> root = Path(tempfile.mkdtemp())
>>> _ = write_emg2pose_session(root / "s1.hdf5", np.ones((3000, 16), np.float32), user="u7")
>>> write_emg2pose_metadata(root, [{"filename": "s1", "user": "u7", "split": "train"}])
>>> data = Emg2PoseDataset(root)
>>> [rec.modalities for rec in data.recordings(split="train")]
[{'emg': 16}]
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
from jaxtyping import Float

from emg_lens.data.files import OpenFile
from emg_lens.data.formats._matlab import require
from emg_lens.data.reader import DatasetReader, Source
from emg_lens.data.recording import Recording
from emg_lens.errors import ArgumentError, DataFormatError, check_number

EMG2POSE_CHANNELS = 16
"""EMG channels of the emg2pose wristband (the ``emg`` field's width)."""

EMG2POSE_JOINTS = 20
"""Joint angles per sample (the ``joint_angles`` field's width)."""

METADATA_COLUMNS = (
    "filename",
    "user",
    "session",
    "stage",
    "side",
    "moving_hand",
    "held_out_user",
    "held_out_stage",
    "split",
)
"""The columns of emg2pose's ``metadata.csv`` that are read (each required; the published
file's ``generalization`` is not)."""

_GROUP = "emg2pose"
_TIMESERIES = "timeseries"
_FIELDS = {"time": (), "joint_angles": (EMG2POSE_JOINTS,), "emg": (EMG2POSE_CHANNELS,)}


def _text(value: Any) -> Any:
    """HDF5 attributes come back as bytes or numpy scalars; give str / Python numbers."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        return value.item()
    return value


class Emg2PoseSession(OpenFile):
    """One emg2pose session file, opened for lazy reading.

    Opening checks the layout and reads the attributes only; `read` reads a time slice of the
    fields asked for. Use as a context manager, or call `close`.

    Attributes:
        path: the file.
        subject: the subject number given (from `Emg2PoseDataset`), or None.
        attrs: the ``emg2pose`` group's attributes (``user``, ``session``, ``side``, ...).
        sample_rate: Hz, from the ``sample_rate`` attribute.
        n_samples: samples in the session.

    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> emg = np.arange(32000, dtype=np.float32).reshape(2000, 16)
    >>> path = write_emg2pose_session(Path(tempfile.mkdtemp()) / "s.hdf5", emg, user="u1")
    >>> with Emg2PoseSession(path) as session:
    ...     part = session.read(10, 12)
    ...     session.n_samples, session.attrs["user"], part["emg"].shape, float(part["emg"][0, 1])
    (2000, 'u1', (2, 16), 161.0)
    """

    def __init__(self, path: str | Path, *, subject: int | None = None) -> None:
        self.path = Path(path)
        self.subject = subject
        require(self.path.is_file(), self.path, "no such file (an emg2pose session .hdf5)")
        self._h5 = self._open_hdf5("an HDF5 file")
        try:
            self._timeseries = self._check_layout()
        except BaseException:
            self.close()
            raise

    def _check_layout(self) -> h5py.Dataset:
        group = self._h5.get(_GROUP)
        ds = group.get(_TIMESERIES) if isinstance(group, h5py.Group) else None
        if not isinstance(ds, h5py.Dataset) or ds.dtype.fields is None or ds.ndim != 1:
            raise DataFormatError(
                f"{self.path}: {_GROUP}/{_TIMESERIES} must be a 1-D dataset of {list(_FIELDS)}; "
                f"found {ds!r}, the file holds {sorted(self._h5)}"
            )
        have = {name: field[0].shape for name, field in ds.dtype.fields.items()}
        for name, shape in _FIELDS.items():
            if have.get(name) != shape:
                raise DataFormatError(f"{self.path}: lacks field {name!r} of shape {shape}: {have}")
        self.attrs = {key: _text(value) for key, value in group.attrs.items()}
        what = f"{self.path}: group attribute 'sample_rate'"
        wanted = "a positive number (2000 in emg2pose)"
        rate = self.attrs.get("sample_rate")
        self.sample_rate = check_number(
            rate, what, wanted, lambda r: 0 < r < np.inf, DataFormatError
        )
        channels = self.attrs.get("num_channels", EMG2POSE_CHANNELS)
        if channels != EMG2POSE_CHANNELS:
            raise DataFormatError(
                f"{self.path}: 'num_channels' is {channels!r}, not {EMG2POSE_CHANNELS}"
            )
        self.n_samples = len(ds)
        return ds

    def read(
        self,
        start: int = 0,
        stop: int | None = None,
        *,
        fields: Iterable[str] = ("emg", "joint_angles", "time"),
    ) -> dict[str, np.ndarray]:
        """Samples ``start:stop`` of the named fields: ``emg`` float32 ``[time, 16]``,
        ``joint_angles`` float64 ``[time, 20]``, ``time`` float64 ``[time]``.

        Only that slice is read from disk; NaN/Inf in the EMG is a `DataFormatError`."""
        stop = self._slice_end(start, stop)
        fields = [fields] if isinstance(fields, str) else list(fields)
        unknown = [f for f in fields if f not in _FIELDS]
        if unknown or not fields:
            raise ArgumentError(f"fields must be among {list(_FIELDS)}, got {fields}")
        out = {
            name: self._read(
                f"field {name!r}", lambda n: self._timeseries.fields(n)[start:stop], name
            )
            for name in fields
        }
        if "emg" in out:
            out["emg"] = np.ascontiguousarray(out["emg"], dtype=np.float32)
            self._check_finite("field 'emg'", out["emg"], start, stop)
        return out

    def to_recording(self, subject: int | None = None) -> Recording:
        """The whole session as a `Recording`: ``signals["emg"]`` ``[T, 16]``, labels all 0
        (emg2pose has no gestures), ``extras["joint_angles"]`` ``[T, 20]`` and
        ``extras["time"]``. ``subject`` defaults to the one the session was opened with."""
        subject = self.subject if subject is None else subject
        if subject is None:
            raise ArgumentError(f"{self.path}: no subject number; pass subject=")
        data = self.read()
        zeros = np.zeros(self.n_samples, np.int64)
        return Recording(
            subject=int(subject),
            signals={"emg": data["emg"]},
            sample_rate=self.sample_rate,
            stimulus=zeros,
            repetition=zeros.copy(),
            source=str(self.path),
            extras={"joint_angles": data["joint_angles"], "time": data["time"]},
        )

    def __repr__(self) -> str:
        return f"Emg2PoseSession({str(self.path)!r}, n_samples={self.n_samples})"


class Emg2PoseDataset:
    """The emg2pose sessions listed in ``root/metadata.csv``, selectable by split and user.

    Attributes:
        root: the folder holding ``metadata.csv`` and the ``<filename>.hdf5`` files.
        table: ``metadata.csv`` as a DataFrame, plus a ``subject`` column (1-based, users in
            sorted order).
        users: the distinct users, sorted; user ``users[i]`` is subject ``i + 1``.

    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> root = Path(tempfile.mkdtemp())
    >>> rows = []
    >>> for name, user, split in [("a", "u2", "train"), ("b", "u1", "train"), ("c", "u1", "test")]:
    ...     _ = write_emg2pose_session(root / f"{name}.hdf5", np.zeros((100, 16), np.float32))
    ...     rows.append({"filename": name, "user": user, "split": split})
    >>> write_emg2pose_metadata(root, rows)
    >>> data = Emg2PoseDataset(root)
    >>> data.users, data.select(split="train").filename.tolist(), data.subject_of("u2")
    (['u1', 'u2'], ['a', 'b'], 2)
    >>> [p.name for p in data.paths(users=["u1"])]
    ['b.hdf5', 'c.hdf5']
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        csv = self.root / "metadata.csv"
        require(csv.is_file(), csv, "no such file (emg2pose's session list, beside its .hdf5)")
        try:
            table = pd.read_csv(csv, dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise DataFormatError(f"{csv}: cannot be read as CSV: {exc}") from exc
        missing = [c for c in METADATA_COLUMNS if c not in table.columns]
        require(not missing, csv, f"missing columns {missing}; found {list(table.columns)}")
        sessions = table["filename"].str.removesuffix(".hdf5")
        if sessions.duplicated().any():  # one session read twice would count its windows twice
            name = sessions[sessions.duplicated()].iloc[0]
            rows = [i + 2 for i in np.flatnonzero(sessions == name)]  # line numbers, header 1
            raise DataFormatError(
                f"{csv}: rows {rows[0]} and {rows[1]} both list session {name!r}: drop one"
            )
        self.users = sorted(set(table["user"]))
        self._subjects = {user: i + 1 for i, user in enumerate(self.users)}
        table["subject"] = table["user"].map(self._subjects)
        self.table = table

    def subject_of(self, user: str) -> int:
        """The subject number of ``user`` (its 1-based place among the sorted users)."""
        if user not in self._subjects:
            raise ArgumentError(f"unknown emg2pose user {user!r}; known: {self.users[:10]}")
        return self._subjects[user]

    def select(
        self, *, split: str | Iterable[str] | None = None, users: Iterable[str] | None = None
    ) -> pd.DataFrame:
        """The rows of ``metadata.csv`` in ``split`` (e.g. ``"train"``) and of ``users``."""
        rows = self.table
        if split is not None:
            splits = [split] if isinstance(split, str) else list(split)
            known = sorted(set(rows["split"]))
            if unknown := [s for s in splits if s not in known]:
                raise ArgumentError(f"unknown emg2pose split {unknown}; metadata.csv has {known}")
            rows = rows[rows["split"].isin(splits)]
        if users is not None:
            users = [users] if isinstance(users, str) else list(users)
            for user in users:
                self.subject_of(user)  # refuses unknown users by name
            rows = rows[rows["user"].isin(users)]
        return rows

    def path_of(self, filename: str) -> Path:
        """``root/<filename>.hdf5`` (``filename`` as in ``metadata.csv``, without suffix)."""
        return self.root / (filename if filename.endswith(".hdf5") else f"{filename}.hdf5")

    def paths(
        self, *, split: str | Iterable[str] | None = None, users: Iterable[str] | None = None
    ) -> list[Path]:
        """The session files of `select`'s rows, in ``metadata.csv`` order."""
        return [self.path_of(f) for f in self.select(split=split, users=users)["filename"]]

    def open(self, filename: str) -> Emg2PoseSession:
        """One session, lazily, with its subject number set."""
        rows = self.table[self.table["filename"] == filename.removesuffix(".hdf5")]
        if rows.empty:
            raise ArgumentError(f"{filename!r} is not listed in {self.root / 'metadata.csv'}")
        return Emg2PoseSession(self.path_of(filename), subject=int(rows["subject"].iloc[0]))

    def recordings(
        self, *, split: str | Iterable[str] | None = None, users: Iterable[str] | None = None
    ) -> Iterator[Recording]:
        """One `Recording` per selected session, each read when reached (one file open at a
        time), so a generator over thousands of sessions stays small."""
        for filename in self.select(split=split, users=users)["filename"]:
            with self.open(filename) as session:
                yield session.to_recording()

    def __len__(self) -> int:
        return len(self.table)


def write_emg2pose_session(
    path: str | Path,
    emg: Float[np.ndarray, "time channel"],
    joint_angles: Float[np.ndarray, "time joint"] | None = None,
    *,
    time: Float[np.ndarray, " time"] | None = None,
    sample_rate: float = 2000.0,
    user: str = "user0",
    session: str | None = None,
    side: str = "right",
    stage: str = "stage0",
) -> Path:
    """Write an emg2pose session file laid out like the real ones (the module docstring), for
    tests and synthetic data. The field widths follow the arrays given, so tests can write
    malformed files; missing joint angles are zeros, missing times count from 0 at
    ``sample_rate``. Returns the path.

    >>> import tempfile
    >>> from pathlib import Path
    >>> path = write_emg2pose_session(Path(tempfile.mkdtemp()) / "s.hdf5", np.zeros((5, 16)))
    >>> with h5py.File(path, "r") as f:
    ...     f["emg2pose/timeseries"].dtype.names, int(f["emg2pose"].attrs["num_channels"])
    (('time', 'joint_angles', 'emg'), 16)
    """
    path = Path(path)
    emg = np.asarray(emg, dtype=np.float32)
    n = len(emg)
    joint_angles = np.zeros((n, EMG2POSE_JOINTS)) if joint_angles is None else joint_angles
    joint_angles = np.asarray(joint_angles, dtype=np.float64)
    time = np.arange(n) / sample_rate if time is None else np.asarray(time, dtype=np.float64)
    dtype = np.dtype(
        [
            ("time", "<f8"),
            ("joint_angles", "<f8", joint_angles.shape[1:]),
            ("emg", "<f4", emg.shape[1:]),
        ]
    )
    table = np.zeros(n, dtype)
    table["time"], table["joint_angles"], table["emg"] = time, joint_angles, emg
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        group = f.create_group(_GROUP)
        group.create_dataset(_TIMESERIES, data=table)
        group.attrs.update(
            {
                "sample_rate": sample_rate,
                "num_channels": emg.shape[1] if emg.ndim == 2 else 0,
                "session": session or path.stem,
                "user": user,
                "side": side,
                "stage": stage,
                "start": float(time[0]) if n else 0.0,
                "end": float(time[-1]) if n else 0.0,
            }
        )
    return path


def write_emg2pose_metadata(root: str | Path, rows: Iterable[Mapping[str, Any]]) -> None:
    """Write ``root/metadata.csv`` with emg2pose's columns. Each row needs ``filename``,
    ``user`` and ``split``; the other columns default to the filename (``session``),
    ``"stage0"``, ``"right"``, ``"right"``, ``False``, ``False``.

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> write_emg2pose_metadata(root, [{"filename": "s1", "user": "u", "split": "val"}])
    >>> (root / "metadata.csv").read_text().splitlines()[0]
    'filename,user,session,stage,side,moving_hand,held_out_user,held_out_stage,split'
    """
    full = []
    for row in rows:
        missing = [c for c in ("filename", "user", "split") if c not in row]
        require(not missing, f"emg2pose metadata row {row}", f"lacks {missing}", ArgumentError)
        defaults = {
            "session": row["filename"],
            "stage": "stage0",
            "side": "right",
            "moving_hand": "right",
            "held_out_user": False,
            "held_out_stage": False,
        }
        full.append({c: row.get(c, defaults.get(c)) for c in METADATA_COLUMNS})
    Path(root).mkdir(parents=True, exist_ok=True)
    pd.DataFrame(full, columns=list(METADATA_COLUMNS)).to_csv(
        Path(root) / "metadata.csv", index=False
    )


def _store(source: Source, subjects: list[int]):
    """The sessions of ``subjects`` in ``source["split"]`` (None: every split)."""
    dataset = Emg2PoseDataset(source["root"])
    users = [dataset.users[s - 1] for s in subjects]
    split = source.get("split")
    dataset.select(split=split, users=users)  # refuses an unknown split now, by name
    return lambda: dataset.recordings(split=split, users=users)


def _files(source: Source, subject: int) -> list[Path]:
    dataset = Emg2PoseDataset(source["root"])
    return dataset.paths(users=[dataset.users[subject - 1]])


READER = DatasetReader(
    montage=lambda source: {"emg": EMG2POSE_CHANNELS},
    subjects=lambda source: list(range(1, len(Emg2PoseDataset(source["root"]).users) + 1)),
    files=_files,
    store=_store,
)
"""emg2pose for the registry (`emg_lens.data.registry`): a window-store source whose subjects
are its users in sorted order and whose split is ``metadata.csv``'s."""
