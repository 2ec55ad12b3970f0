"""The HDF5 window store: TinyMyo windows of many recordings in one file, read lazily.

`write_window_store` writes it, `WindowStore` reads it; `split_repetitions` checks the
repetition split by which a store's labelled windows (and any other window source's) are
divided into training and test windows.

>>> import tempfile
>>> from pathlib import Path
>>> from emg_lens.data import Recording
>>> rng = np.random.default_rng(0)
>>> rec = Recording(1, {"emg": rng.standard_normal((3000, 8)).astype(np.float32)}, 2000.0,
...                 np.zeros(3000, np.int64), np.zeros(3000, np.int64))
>>> path = write_window_store(Path(tempfile.mkdtemp()) / "w.h5", [rec], labeled=False,
...                           progress=False)
>>> store = WindowStore(path)
>>> x, y = store[0]
>>> len(store), tuple(x.shape), x.dtype, int(y), float(x[:8].abs().max()), float(x[8:].max())
(5, (16, 1000), torch.float32, -1, 1.0, -1.0)
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import h5py
import numpy as np
import torch
from jaxtyping import Float
from tqdm.auto import tqdm

from emg_lens._io import atomic_write, leftover_temp_files, make_folder
from emg_lens.data.preprocess import Scaler
from emg_lens.data.reader import DatasetReader, Source, Windows
from emg_lens.data.recording import Recording
from emg_lens.data.windows.pipeline import (
    TinyMyoPreprocess,
    WindowBatch,
    check_scaler,
    tinymyo_windows,
)
from emg_lens.errors import (
    ArgumentError,
    DataFormatError,
    IndexOutOfRangeError,
    check_choice,
    check_int,
    check_type,
    checked,
)

STORE_FORMAT = "emg_lens.window_store/1"
"""The ``format`` attribute of a window store; a file without it is not one."""


def split_repetitions(train: Iterable[int], test: Iterable[int]) -> dict[str, list[int]]:
    """The train and test repetitions of a window source, sorted, refused unless both are
    non-empty and share none.

    >>> split_repetitions((4, 1, 3), [5, 2])
    {'train_repetitions': [1, 3, 4], 'test_repetitions': [2, 5]}
    """
    train, test = sorted({int(r) for r in train}), sorted({int(r) for r in test})
    if not train or not test or set(train) & set(test):
        raise ArgumentError(f"train repetitions {train}, test {test}: both needed, share none")
    return {"train_repetitions": train, "test_repetitions": test}


@dataclass
class RegressionBatch(WindowBatch):
    """A `WindowBatch` of regression windows: ``targets`` float32 ``[window, time, output]``
    (e.g. NinaPro DB8's degrees of actuation at every sample of each window)."""

    targets: Float[np.ndarray, "window time output"] | None = None

    def keep(self, rows: np.ndarray) -> None:
        super().keep(rows)
        self.targets = None if self.targets is None else self.targets[rows]


@checked
def write_window_store(
    path: str | Path,
    source: Iterable[Recording | WindowBatch],
    spec: Any = TinyMyoPreprocess(),  # noqa: B008 (frozen, so never shared state)
    *,
    labeled: bool = True,
    scaler: Scaler | None = None,
    compression: str | None = None,
    progress: bool = True,
    splits: dict[str, list[int]] | None = None,
    target_names: list[str] | None = None,
    repetition_split: dict[str, list[int]] | None = None,
) -> Path:
    """Write the windows of ``source`` to an HDF5 window store at ``path``.

    Recordings go through `tinymyo_windows` (with ``spec``, ``labeled``, ``scaler``);
    `WindowBatch` items are written as they are (their shape must match ``spec``, any recipe
    with ``n_channels``, ``window``, ``sample_rate`` and ``to_dict``), one in memory at a time.

    A store of `RegressionBatch` es (``target_names`` naming the outputs) also holds
    ``targets`` float32 ``[N, time, output]`` and the attributes ``task = "regression"`` and
    ``target_names``. ``splits`` (split name -> ``repetition`` codes, e.g. ``{"train": [1],
    "val": [2], "test": [3]}``) and ``repetition_split`` (`split_repetitions`' dict, which
    `windows_source` splits by) are stored as attributes of those names.

    The file holds ``windows`` float32 ``[N, C, T]`` (one chunk per window, optionally
    ``compression="gzip"`` or ``"lzf"``), ``labels`` int64 ``[N]`` (-1: unlabelled),
    ``repetition``, ``subject`` and ``session`` int64 ``[N]``; attributes ``format``,
    ``preprocess`` (the spec as JSON), ``sample_rate``, ``n_channels``, ``window``,
    ``labeled``, ``scaler`` (JSON, or ``null``), ``sessions`` (JSON list: one entry per
    recording, with its source, subject, source rate and applied band; ``session`` indexes
    it) and ``complete``.

    Written atomically: a failed or interrupted run leaves an existing store untouched.

    Raises:
        DataFormatError: no item yields a window, or a recording is unusable.
        ArgumentError: an item is neither a Recording nor a WindowBatch, a batch's shape does
            not match ``spec``, or the scaler does not fit ``spec.normalize``.

    Returns the path written."""
    path = Path(path)
    if isinstance(spec, TinyMyoPreprocess):
        check_scaler(spec, scaler)
    elif scaler is not None:
        raise ArgumentError("a scaler applies to TinyMyoPreprocess windows only")
    check_choice(compression, (None, "gzip", "lzf"), "compression")
    shape = (spec.n_channels, spec.window)
    make_folder(path.parent)

    def write(tmp: Path) -> None:
        sessions: list[dict[str, Any]] = []
        with h5py.File(tmp, "w") as f:
            windows = _rows_dataset(f, "windows", shape, compression)
            columns = {
                name: f.create_dataset(
                    name, shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(4096,)
                )
                for name in ("labels", "repetition", "subject", "session")
            }
            targets = None
            total = len(source) if isinstance(source, Sized) else None
            bar = tqdm(source, total=total, desc=path.name, unit="rec", disable=not progress)
            for item in bar:
                batch = _as_batch(item, spec, labeled, scaler)
                _check_targets(batch, targets, target_names)
                if target_names is not None and targets is None:
                    rows = cast(np.ndarray, _targets_of(batch)).shape[1:]  # checked: [N, T, out]
                    targets = _rows_dataset(f, "targets", rows, compression)
                start, n = len(windows), len(batch)
                grown = (windows, *columns.values(), *([targets] if targets is not None else []))
                for ds in grown:
                    ds.resize(start + n, axis=0)
                if n:
                    windows[start:] = batch.x
                    if targets is not None:
                        targets[start:] = _targets_of(batch)
                    columns["labels"][start:] = batch.labels
                    columns["repetition"][start:] = batch.repetition
                    columns["subject"][start:] = batch.subject
                    columns["session"][start:] = len(sessions)
                sessions.append({"source": batch.source, "subject": batch.subject, **batch.info})
                bar.set_postfix(windows=start + n)
            if len(windows) == 0:
                raise DataFormatError(
                    f"{path}: no window written: no recording of {spec.window}+ samples"
                )
            f.attrs.update(
                {
                    "format": STORE_FORMAT,
                    "preprocess": json.dumps(spec.to_dict()),
                    "sample_rate": spec.sample_rate,
                    "n_channels": spec.n_channels,
                    "window": spec.window,
                    "labeled": labeled,
                    "scaler": json.dumps(_scaler_dict(scaler)),
                    "sessions": json.dumps(sessions),
                }
            )
            for name, value in (("splits", splits), ("repetition_split", repetition_split)):
                if value is not None:
                    f.attrs[name] = json.dumps({k: list(map(int, v)) for k, v in value.items()})
            if targets is not None:
                f.attrs.update({"task": "regression", "target_names": json.dumps(target_names)})
            f.attrs["complete"] = True  # last: a store without it was never finished

    return atomic_write(path, write)


def _as_batch(
    item: Recording | WindowBatch, spec: Any, labeled: bool, scaler: Scaler | None
) -> WindowBatch:
    check_type(item, Recording | WindowBatch, "write_window_store's source items")
    if isinstance(item, Recording):
        check_type(spec, TinyMyoPreprocess, f"{item.source}: the spec windowing a Recording")
        return tinymyo_windows(item, spec, labeled=labeled, scaler=scaler)
    n, shape = len(item.x), (spec.n_channels, spec.window)
    if item.x.shape[1:] != shape or not len(item.labels) == len(item.repetition) == n:
        counts = f"{len(item.labels)} labels and {len(item.repetition)} repetitions"
        raise ArgumentError(
            f"{item.source}: WindowBatch.x has shape {item.x.shape} with {counts}; the store "
            f"takes [N, *{shape}], N of each"
        )
    return item


def _rows_dataset(
    f: h5py.File, name: str, shape: tuple[int, ...], compression: str | None
) -> h5py.Dataset:
    """An empty float32 dataset of rows shaped ``shape``, grown as batches come (one row a
    chunk: a window is read whole)."""
    return f.create_dataset(
        name,
        shape=(0, *shape),
        maxshape=(None, *shape),
        dtype=np.float32,
        chunks=(1, *shape),
        compression=compression,
    )


def _targets_of(batch: WindowBatch) -> np.ndarray | None:
    return batch.targets if isinstance(batch, RegressionBatch) else None


def _check_targets(batch: WindowBatch, targets: h5py.Dataset | None, names: Any) -> None:
    """Refuse a batch's targets unless None without ``names``, or else ``[window, time,
    output]``, one output per name, the time of the store's ``targets`` so far."""
    shape = None if (given := _targets_of(batch)) is None else list(given.shape)
    time = (
        targets.shape[1] if targets is not None else shape[1] if shape and len(shape) == 3 else "T"
    )
    want = None if names is None else [len(batch), time, len(names)]
    if shape != want:
        raise ArgumentError(f"{batch.source}: targets must be {want} ({names}), got {shape}")


def _scaler_dict(scaler: Scaler | None) -> dict[str, list[float]] | None:
    if scaler is None:
        return None
    return {"mean": np.asarray(scaler.mean).tolist(), "std": np.asarray(scaler.std).tolist()}


@checked
class WindowStore(torch.utils.data.Dataset):
    """A window store read lazily: a `torch.utils.data.Dataset` of ``(x, y)`` pairs.

    ``x`` is a float32 tensor ``[n_channels, window]``, ``y`` an int64 scalar tensor (-1:
    unlabelled) or, in a regression store, the window's float32 targets ``[time, output]``.
    Each item reads one window; each process opens the file on first access.

    Args:
        path: a file written by `write_window_store`.
        subjects: keep only the windows of these subjects.
        repetitions: keep only the windows whose centre lies in these repetitions.

    Attributes:
        meta: the store's attributes (JSON decoded): ``preprocess``, ``sample_rate``,
            ``n_channels``, ``window``, ``labeled``, ``scaler``, ``sessions``, ...
        n_channels, window, sample_rate: the window shape and clock.
        labels, subject, repetition, session: the selected windows' columns (numpy).

    >>> import tempfile
    >>> from emg_lens.data import Recording
    >>> recs = [Recording(s, {"emg": np.ones((2000, 4))}, 2000.0, np.ones(2000), np.ones(2000))
    ...         for s in (1, 2)]
    >>> path = write_window_store(Path(tempfile.mkdtemp()) / "w.h5", recs, progress=False)
    >>> WindowStore(path).subjects, len(WindowStore(path)), len(WindowStore(path, subjects=[2]))
    ([1, 2], 6, 3)
    """

    def __init__(
        self,
        path: str | Path,
        *,
        subjects: Iterable[int] | None = None,
        repetitions: Iterable[int] | None = None,
    ) -> None:
        self.path = Path(path)
        self._h5: h5py.File | None = None
        self._dataset: h5py.Dataset | None = None
        self._targets: h5py.Dataset | None = None
        self._pid: int | None = None
        columns = self._read_index()
        keep = np.ones(len(columns["labels"]), dtype=bool)
        if subjects is not None:
            subjects = sorted(set(subjects))
            present = sorted(set(columns["subject"].tolist()))
            if missing := [s for s in subjects if s not in present]:
                raise ArgumentError(
                    f"{self.path}: no windows of subjects {missing}; it holds {present}"
                )
            keep &= np.isin(columns["subject"], subjects)
        if repetitions is not None:
            keep &= np.isin(columns["repetition"], sorted(set(repetitions)))
        self._rows = np.flatnonzero(keep)
        self.labels = columns["labels"][self._rows]
        self.subject = columns["subject"][self._rows]
        self.repetition = columns["repetition"][self._rows]
        self.session = columns["session"][self._rows]

    def _read_index(self) -> dict[str, np.ndarray]:
        if not self.path.is_file():
            left = [p.name for p in leftover_temp_files(self.path)]
            hint = f" ({', '.join(left)} left from an interrupted write)" if left else ""
            raise DataFormatError(f"{self.path}: no such window store{hint}")
        try:
            with h5py.File(self.path, "r") as f:
                attrs, names = dict(f.attrs), ["labels", "repetition", "subject", "session"]
                needed = ["windows", *names, *["targets"] * (attrs.get("task") == "regression")]
                marks = (
                    attrs.get("format"),
                    attrs.get("complete"),
                    [n for n in needed if n not in f],
                )
                if marks[:2] != (STORE_FORMAT, True) or marks[2]:
                    raise DataFormatError(
                        f"{self.path}: not a complete window store: (format, complete, missing) "
                        f"are {marks}, not ({STORE_FORMAT!r}, True, [])"
                    )
                columns, shape = {n: f[n][:] for n in names}, f["windows"].shape
        except OSError as exc:
            raise DataFormatError(
                f"{self.path}: cannot be read as an HDF5 window store (truncated?): {exc}"
            ) from exc
        if any(len(c) != shape[0] for c in columns.values()):
            lengths = {n: len(c) for n, c in columns.items()}
            raise DataFormatError(f"{self.path}: {shape[0]} windows but columns of {lengths} rows")
        self.meta = {k: _decode_attr(k, v) for k, v in attrs.items()}
        self.n_channels, self.window = int(shape[1]), int(shape[2])
        self.sample_rate = float(self.meta["sample_rate"])
        return columns

    @property
    def regression(self) -> bool:
        """True for a store of regression windows (items carry float targets)."""
        return self.meta.get("task") == "regression"

    @property
    def subjects(self) -> list[int]:
        """The distinct subjects among the selected windows, sorted."""
        return sorted(set(self.subject.tolist()))

    def _windows(self) -> h5py.Dataset:
        """This process's handle on the ``windows`` dataset, opened on first use."""
        if self._h5 is None or self._pid != os.getpid():
            self._h5 = h5py.File(self.path, "r")  # per process: never a forked parent's handle
            self._pid = os.getpid()
            self._dataset = self._h5["windows"]  # looked up once: a lookup costs more than a read
            self._targets = self._h5.get("targets")
        return self._dataset

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(self._rows)
        index = check_int(index, f"{self.path}: index", -n, n - 1, IndexOutOfRangeError)
        row = int(self._rows[index])
        x = torch.from_numpy(self._windows()[row])
        if self.regression:
            assert self._targets is not None  # a regression store's file holds them
            return x, torch.from_numpy(self._targets[row])
        return x, torch.tensor(int(self.labels[index]), dtype=torch.int64)

    def close(self) -> None:
        """Close this process's file handle (reopened on the next access)."""
        if self._h5 is not None and self._pid == os.getpid():
            self._h5.close()
        self._h5, self._dataset, self._targets = None, None, None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_h5"], state["_pid"], state["_dataset"] = None, None, None  # per process
        state["_targets"] = None
        return state

    def __repr__(self) -> str:
        return (
            f"WindowStore({str(self.path)!r}, windows={len(self)}, subjects={self.subjects}, "
            f"shape=[{self.n_channels}, {self.window}])"
        )


def _decode_attr(name: str, value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode()
    decoded = ("preprocess", "scaler", "sessions", "splits", "repetition_split", "target_names")
    if name in decoded and isinstance(value, str):
        return json.loads(value)
    return value.item() if isinstance(value, np.generic) else value


def _read_windows(source: Source, subject: int) -> Windows:
    train, test = source["train_repetitions"], source["test_repetitions"]
    store = WindowStore(source["path"], subjects=[subject], repetitions=train + test)
    items = [store[i] for i in range(len(store))]
    X = np.stack([x.numpy() for x, _ in items]) if items else np.zeros((0, 0, 0), np.float32)
    meta = {"source": source["path"], "preprocess": store.meta.get("preprocess")}
    return Windows(X, store.labels, store.repetition, f"{source['path']} (subject {subject})", meta)


READER = DatasetReader(
    montage=lambda source: {"emg": None},  # the store's channels
    subjects=lambda source: WindowStore(source["path"]).subjects,
    files=lambda source, subject: [Path(source["path"])],
    read_windows=_read_windows,
)
"""A window store as a window source for the registry (`emg_lens.data.registry`)."""
